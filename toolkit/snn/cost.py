r"""An H2Learn-style cost model: operations, memory traffic, time and energy of one BPTT step.

From a measured :class:`~toolkit.snn.profile.SparsityProfile`, for every synapse layer and
the three phases of BPTT it counts the work of a dense GPU-style baseline and of an
accelerator that exploits H2Learn's three observations, then prices both with a per-operation
table that the user can edit (:data:`DEFAULT_TABLE`).

Assumptions (all counts per training sample, summed over the ``T`` time steps):

1. **Forward.** Baseline: every synapse does its ``M`` multiply-accumulates (MACs) per step.
   Accelerator: LUT accumulation over groups of ``g`` input spikes (:mod:`toolkit.snn.lut`):
   :math:`(M/g)(1 - (1-\rho_t)^g)` lookups, each one SRAM read and one addition, with
   :math:`\rho_t` the measured input density (inputs assumed independent within a group).
   Inputs that are not binary (the first layer with direct coding, or after average pooling)
   get the same count: the model treats them as spikes, which flatters the accelerator there.
2. **Backward** (the error to the layer below, :math:`W^\top \partial L/\partial X`; none for
   the first layer).  Baseline: ``M`` MACs per step.  Accelerator, dual sparsity:
   :math:`M (1 - z^{in}_t)(1 - z^{out}_t)` MACs, with :math:`z^{in}` the measured fraction of
   exact zeros of this layer's :math:`\partial L/\partial X` (input sparsity) and
   :math:`z^{out}` that of the layer below (output sparsity: an error that meets a zero
   surrogate derivative is never needed; zero :math:`\partial L/\partial X` is a conservative
   stand-in for a zero surrogate).
3. **Weight update** (:math:`\sum_t \partial L/\partial X[t] \otimes S_{in}[t]`).  Baseline:
   ``M`` MACs per step.  Accelerator: LUT accumulation over groups of ``g`` samples of the
   binary input: :math:`(M/g)(1-(1-\rho_t)^g)(1 - (z^{in}_t)^g)` lookups (a group whose
   gradients are all zero is skipped).  Tables are rebuilt per group
   (:math:`2^g - g - 1` additions per table of :math:`2^g` entries, amortized over
   ``batch`` and ``T``).
4. **Memory traffic** (DRAM bytes).  Baseline: activations and gradients are read and written
   densely with ``bytes_per_value`` bytes per number, once per layer and step; weights are
   read once per step for the whole batch (divided by ``batch``).  Accelerator: spikes move as
   bits; gradients move compressed (non-zeros only, plus a 2-byte index each) when that is
   smaller than dense, at each step; weights are read
   once per batch for all ``T`` steps (the tables stay in SRAM).
5. **Excluded** on both sides: the neuron dynamics (a few operations per neuron and step,
   under 1% of the MACs here), batch norm, the loss, and the optimizer.
6. **Time** per phase = max(compute, memory): compute = operations / rate, memory = bytes /
   bandwidth.  The accelerator gets the same operation rate (additions/s) and bandwidth as the
   baseline's MAC rate times its utilization (iso-throughput), so its speed-up comes from
   fewer operations and bytes alone, plus pipelining: with ``pipelined=True`` its three
   engines overlap and the step takes the longest phase, not their sum.
7. **Energy** = operations x energy per operation + bytes x energy per byte (45 nm numbers of
   Horowitz, ISSCC 2014, in :data:`DEFAULT_TABLE`).

None of this is H2Learn's own simulator; the numbers show *where* gains come from, not the
paper's 5.74-10.20x.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._checks import MAX_SIZE, check_choice, check_flag, check_int, check_positive, check_real
from .profile import SparsityProfile

__all__ = ["DEFAULT_TABLE", "PHASES", "CostBreakdown", "h2learn_cost"]

PHASES = ("forward", "backward", "weight update")

#: Per-operation costs (editable: pass ``table={...}`` to override any entry).
DEFAULT_TABLE: dict[str, float] = {
    "mac_pj": 1.5,  # fp16 multiply (1.1 pJ) + add (0.4 pJ), 45 nm (Horowitz 2014)
    "add_pj": 0.4,  # fp16 add
    "sram_byte_pj": 1.25,  # 8 KB SRAM, 10 pJ per 64-bit read
    "dram_byte_pj": 160.0,  # DRAM, about 1.3 nJ per 64-bit access
    "baseline_macs_per_s": 15.7e12,  # V100 peak fp32 FMAs/s... as MACs/s (half its FLOP/s x2)
    "baseline_utilization": 0.5,  # fraction of peak a training GEMM reaches
    "bytes_per_s": 900e9,  # V100 HBM2 bandwidth, used for both
    "index_bytes": 2.0,  # per non-zero of a compressed gradient
}


def _grad_bytes(nonzeros: np.ndarray, size: int, bpv: int, tab: dict[str, float]) -> float:
    """Bytes of a gradient over the steps: compressed (value + index per non-zero) or dense,
    whichever is smaller at each step."""
    compressed = nonzeros * (bpv + tab["index_bytes"])
    return float(np.minimum(compressed, size * bpv).sum())


@dataclass(frozen=True)
class CostBreakdown:
    """Counts and estimates per layer and phase; arrays are ``[layers, 3]`` (phases)."""

    layers: list[str]
    baseline_ops: np.ndarray
    accel_ops: np.ndarray
    baseline_bytes: np.ndarray
    accel_bytes: np.ndarray
    baseline_time: np.ndarray  # seconds per sample
    accel_time: np.ndarray
    baseline_energy: np.ndarray  # joules per sample
    accel_energy: np.ndarray
    pipelined: bool
    table: dict[str, float]

    @property
    def speedup(self) -> float:
        """Baseline time over accelerator time for the whole BPTT step."""
        base = float(self.baseline_time.sum())
        phase = self.accel_time.sum(0)
        accel = float(phase.max()) if self.pipelined else float(phase.sum())
        return base / accel

    @property
    def energy_saving(self) -> float:
        return float(self.baseline_energy.sum() / self.accel_energy.sum())

    @property
    def op_reduction(self) -> np.ndarray:
        """Baseline over accelerator operations, per phase."""
        return self.baseline_ops.sum(0) / np.maximum(self.accel_ops.sum(0), 1e-30)

    def rows(self) -> list[dict[str, Any]]:
        out = []
        for p, phase in enumerate(PHASES):
            out.append(
                {
                    "phase": phase,
                    "baseline ops": float(self.baseline_ops[:, p].sum()),
                    "H2Learn-style ops": float(self.accel_ops[:, p].sum()),
                    "op reduction": float(self.op_reduction[p]),
                    "baseline DRAM bytes": float(self.baseline_bytes[:, p].sum()),
                    "H2Learn-style DRAM bytes": float(self.accel_bytes[:, p].sum()),
                    "baseline µJ": 1e6 * float(self.baseline_energy[:, p].sum()),
                    "H2Learn-style µJ": 1e6 * float(self.accel_energy[:, p].sum()),
                }
            )
        return out


def h2learn_cost(
    profile: SparsityProfile,
    group: int = 4,
    batch: int | None = None,
    bytes_per_value: int = 2,
    pipelined: bool = True,
    table: dict[str, float] | None = None,
    sparsity: str = "zero",
) -> CostBreakdown:
    """Price one BPTT step of the profiled network on a dense baseline and an H2Learn-style
    accelerator (the assumptions are in the module docstring).

    Parameters
    ----------
    profile : SparsityProfile
        From :func:`toolkit.snn.sparsity_profile`.
    group : int
        LUT group size ``g``, 1 to 8.
    batch : int, optional
        Samples sharing one weight read and one set of tables; the profile's batch by default.
    bytes_per_value : int
        Bytes per activation, gradient or weight on the baseline (2 for fp16).
    pipelined : bool
        Overlap the accelerator's forward, backward and update engines.
    table : dict, optional
        Overrides for :data:`DEFAULT_TABLE` entries: finite numbers, positive
        (``index_bytes`` may be 0, ``baseline_utilization`` lies in ``(0, 1]``).
    sparsity : {"zero", "small"}
        Skip exact-zero gradients only, or also those below the profile's threshold (as if
        they were pruned to zero: an approximation of the training, not exact BPTT).

    Returns
    -------
    CostBreakdown

    Examples
    --------
    >>> import torch
    >>> from toolkit.snn import sparsity_profile, spiking_mlp
    >>> net = spiking_mlp((64, 32, 10), steps=4, surrogate="triangle")
    >>> prof = sparsity_profile(net, (torch.rand(32, 1, 8, 8), torch.randint(0, 10, (32,))))
    >>> cost = h2learn_cost(prof, group=4)
    >>> bool(cost.speedup > 1 and cost.energy_saving > 1)
    True
    """
    if not isinstance(profile, SparsityProfile):
        raise TypeError(f"profile must be a SparsityProfile, got {type(profile).__name__}")
    g = check_int("group", group, 1, 8)
    b = check_int("batch", profile.batch if batch is None else batch, 1, MAX_SIZE)
    bpv = check_int("bytes_per_value", bytes_per_value, 1, 8)
    pipelined = check_flag("pipelined", pipelined)
    check_choice("sparsity", sparsity, ("zero", "small"))
    grad_zero = profile.grad_out_zero if sparsity == "zero" else profile.grad_out_small
    tab = dict(DEFAULT_TABLE)
    if table is not None and not isinstance(table, Mapping):
        raise TypeError(f"table must be a dict of overrides, got {type(table).__name__}")
    for key, value in (table or {}).items():
        if key not in tab:
            raise ValueError(f"table has no entry {key!r}; entries: {sorted(tab)}")
        name = f"table[{key!r}]"
        if key == "baseline_utilization":
            tab[key] = check_real(name, value, 0.0, 1.0, lo_open=True)
        else:
            tab[key] = check_positive(name, value, allow_zero=key == "index_bytes")
    steps = profile.steps
    nl = len(profile.layers)
    shape = (nl, len(PHASES))
    b_ops, a_ops, b_bytes, a_bytes = (np.zeros(shape) for _ in range(4))
    a_lut = np.zeros(shape)  # LUT reads (SRAM) among the accelerator's operations

    def zeros(a: np.ndarray) -> np.ndarray:
        return np.nan_to_num(a, nan=0.0)

    for i, layer in enumerate(profile.layers):
        m, nin, nout, nw = layer.macs, layer.in_numel, layer.out_numel, layer.weight_numel
        rho = np.clip(zeros(profile.input_density[i]), 0, 1)
        z_in = np.clip(zeros(grad_zero[i]), 0, 1)
        z_below = np.clip(zeros(grad_zero[i - 1]), 0, 1) if i > 0 else None
        nonzero_group = 1 - (1 - rho) ** g
        build = nw / g * (2**g - g - 1)  # one set of tables, additions
        # Forward.
        b_ops[i, 0] = m * steps
        lookups = (m / g * nonzero_group).sum()
        a_ops[i, 0] = lookups + build / b  # tables built once per batch (weights fixed)
        a_lut[i, 0] = lookups
        b_bytes[i, 0] = steps * ((nin + nout) * bpv + nw * bpv / b)
        a_bytes[i, 0] = steps * (nin + nout) / 8 + nw * bpv / b
        # Backward (to the layer below).
        if z_below is not None:
            b_ops[i, 1] = m * steps
            a_ops[i, 1] = (m * (1 - z_in) * (1 - z_below)).sum()
            b_bytes[i, 1] = steps * ((nin + nout) * bpv + nw * bpv / b)
            a_bytes[i, 1] = (
                _grad_bytes((1 - z_in) * nout, nout, bpv, tab)
                + _grad_bytes((1 - z_below) * nin, nin, bpv, tab)
                + nw * bpv / b
            )
        # Weight update.
        b_ops[i, 2] = m * steps
        wu_lookups = (m / g * nonzero_group * (1 - z_in**g)).sum()
        a_ops[i, 2] = wu_lookups + (build * steps) / b  # tables of g samples' gradients
        a_lut[i, 2] = wu_lookups
        b_bytes[i, 2] = steps * ((nin + nout) * bpv) + 2 * nw * bpv / b
        a_bytes[i, 2] = (
            steps * nin / 8 + _grad_bytes((1 - z_in) * nout, nout, bpv, tab) + 2 * nw * bpv / b
        )

    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):  # checked below
        rate = tab["baseline_macs_per_s"] * tab["baseline_utilization"]
        bw = tab["bytes_per_s"]
        b_time = np.maximum(b_ops / rate, b_bytes / bw)
        a_time = np.maximum(a_ops / rate, a_bytes / bw)
        pj = 1e-12
        b_energy = (b_ops * tab["mac_pj"] + b_bytes * tab["dram_byte_pj"]) * pj
        # Accelerator: additions; LUT reads from SRAM; the backward's MACs stay MACs.
        a_macs = np.zeros(shape)
        a_macs[:, 1] = a_ops[:, 1]
        adds = a_ops - a_macs
        a_energy = (
            adds * tab["add_pj"]
            + a_lut * tab["sram_byte_pj"] * bpv
            + a_macs * tab["mac_pj"]
            + a_bytes * tab["dram_byte_pj"]
        ) * pj
    if not all(np.isfinite(a).all() for a in (b_time, a_time, b_energy, a_energy)):
        raise ValueError(
            f"table entries {table!r} overflow the times or energies to infinity; use rates and "
            "costs within floating-point range"
        )
    return CostBreakdown(
        layers=profile.names,
        baseline_ops=b_ops,
        accel_ops=a_ops,
        baseline_bytes=b_bytes,
        accel_bytes=a_bytes,
        baseline_time=b_time,
        accel_time=a_time,
        baseline_energy=b_energy,
        accel_energy=a_energy,
        pipelined=pipelined,
        table=tab,
    )
