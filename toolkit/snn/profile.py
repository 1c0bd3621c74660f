r"""H2Learn's characterization of BPTT: spike density forward, dual sparsity backward.

For every synapse layer ``l`` (a ``Linear`` or ``Conv2d`` followed by LIF neurons, or the
readout) and every time step ``t``, one forward and backward pass on a batch measures:

* ``input_density``: the fraction of non-zero entries of the synapse's input (spikes from the
  previous layer, or the encoded input).  The forward and the weight update touch only these.
* ``spike_density``: the fraction of the layer's neurons that fire (NaN for the readout).
* ``grad_in_zero`` / ``grad_in_small``: for the neurons' backward, the gradient flowing in,
  :math:`\partial L/\partial S[t]` (from the layer above): the fraction of exact zeros, and of
  entries with :math:`|g| \le` ``threshold`` :math:`\cdot \max |g|` of that layer and step.
* ``grad_out_zero`` / ``grad_out_small``: the gradient flowing out of the neurons,
  :math:`\partial L/\partial X[t]` at their input (into the synapse's backward and its weight
  update; for the readout, the gradient at its output).  The
  surrogate makes it sparse: with ``rectangular`` or ``triangle``, neurons far from threshold
  pass exact zeros.
* ``weight_grad_zero`` / ``weight_grad_small``: the same fractions for the weight update
  :math:`\partial L/\partial W` of the batch (one number per layer).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .._checks import MAX_SIZE, check_real
from .network import SpikingNet, TimeDistributed, _check_inputs, _check_labels
from .neuron import LIFNeuron

__all__ = ["LayerInfo", "SparsityProfile", "sparsity_profile"]


@dataclass(frozen=True)
class LayerInfo:
    """A synapse layer: its name, kind and size per sample and time step."""

    name: str
    kind: str  # "linear" or "conv"
    macs: int  # multiply-accumulates of the dense synapse per sample and step
    in_numel: int  # input entries per sample and step
    out_numel: int  # output entries per sample and step
    weight_numel: int
    fan_in: int  # inputs accumulated into one output (in_features, or C_in * k * k)
    spiking: bool  # followed by LIF neurons (False for a non-spiking readout)


@dataclass
class SparsityProfile:
    """Per layer (rows) and time step (columns) sparsity of one BPTT step; see the module."""

    layers: list[LayerInfo]
    steps: int
    batch: int
    threshold: float
    input_density: np.ndarray
    spike_density: np.ndarray
    grad_in_zero: np.ndarray
    grad_in_small: np.ndarray
    grad_out_zero: np.ndarray
    grad_out_small: np.ndarray
    weight_grad_zero: np.ndarray
    weight_grad_small: np.ndarray
    loss: float = float("nan")
    extra: dict = field(default_factory=dict)

    @property
    def names(self) -> list[str]:
        return [layer.name for layer in self.layers]

    def summary(self) -> list[dict]:
        """One row per layer: the time-averaged fractions."""
        rows = []
        for i, layer in enumerate(self.layers):
            rows.append(
                {
                    "layer": layer.name,
                    "MACs/sample/step": layer.macs,
                    "input density": _mean(self.input_density[i]),
                    "spike density": _mean(self.spike_density[i]),
                    "dL/dS zeros": _mean(self.grad_in_zero[i]),
                    "dL/dS small": _mean(self.grad_in_small[i]),
                    "dL/dX zeros": _mean(self.grad_out_zero[i]),
                    "dL/dX small": _mean(self.grad_out_small[i]),
                    "dL/dW zeros": float(self.weight_grad_zero[i]),
                }
            )
        return rows


def _mean(a: np.ndarray) -> float:
    return float(np.mean(a[~np.isnan(a)])) if np.any(~np.isnan(a)) else float("nan")


def _fractions(g: torch.Tensor, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Per time step: fraction of exact zeros and of |g| <= threshold * max|g| (per step)."""
    a = g.detach().abs().flatten(1).double()
    zero = (a == 0).double().mean(1)
    peak = a.amax(1, keepdim=True)
    small = (a <= threshold * peak).double().mean(1)
    return zero.cpu().numpy(), small.cpu().numpy()


def _describe(module: nn.Module, name: str, x: torch.Tensor, y: torch.Tensor) -> LayerInfo:
    in_numel, out_numel = x[0, 0].numel(), y[0, 0].numel()
    if isinstance(module, nn.Linear):
        fan_in, kind = module.in_features, "linear"
    else:
        assert isinstance(module, nn.Conv2d)
        kh, kw = module.kernel_size
        fan_in, kind = module.in_channels // module.groups * kh * kw, "conv"
    return LayerInfo(
        name=name,
        kind=kind,
        macs=out_numel * fan_in,
        in_numel=in_numel,
        out_numel=out_numel,
        weight_numel=module.weight.numel(),
        fan_in=fan_in,
        spiking=False,
    )


def sparsity_profile(
    model: SpikingNet,
    batch: tuple[torch.Tensor, torch.Tensor],
    threshold: float = 1e-3,
) -> SparsityProfile:
    """Measure forward spike density and backward dual sparsity, per layer and time step.

    Runs one forward and backward pass of the cross-entropy on ``batch`` with hooks on the
    synapses and the neurons (the model's parameters' ``.grad`` are left as they were).

    Parameters
    ----------
    model : SpikingNet
        A network from :func:`spiking_mlp` or :func:`spiking_cnn` (trained, typically).
    batch : (x, y)
        Inputs ``[B, ...]`` and labels ``[B]``.
    threshold : float
        "Small" gradients: :math:`|g| \\le` ``threshold`` times the largest :math:`|g|` of
        the same layer and step, in ``[0, 1)``.

    Returns
    -------
    SparsityProfile

    Examples
    --------
    >>> from toolkit.snn.network import spiking_mlp
    >>> net = spiking_mlp((64, 32, 10), steps=4, surrogate="triangle")
    >>> prof = sparsity_profile(net, (torch.rand(16, 1, 8, 8), torch.randint(0, 10, (16,))))
    >>> prof.names, prof.spike_density.shape
    (['fc1', 'fc2'], (2, 4))
    """
    if not isinstance(model, SpikingNet):
        raise TypeError(f"model must be a SpikingNet, got {type(model).__name__}")
    threshold = check_real("threshold", threshold, 0.0, 1.0, hi_open=True)
    if not isinstance(batch, (tuple, list)) or len(batch) != 2:
        raise TypeError(f"batch must be a pair (x, y) of tensors, got {type(batch).__name__}")
    x, y = batch
    _check_inputs("batch[0]", x)
    _check_labels("batch[1]", y, "batch[0]", x, model.classes() or MAX_SIZE)
    device = next(model.parameters()).device
    x, y = x.to(device), y.to(device)
    body = list(model.body)
    synapses = [
        (i, m.module)
        for i, m in enumerate(body)
        if isinstance(m, TimeDistributed) and isinstance(m.module, (nn.Linear, nn.Conv2d))
    ]
    records: dict[int, dict] = {i: {} for i, _ in synapses}
    # The neurons that follow each synapse (before the next synapse).
    neuron_of: dict[int, int] = {}
    for k, (i, _) in enumerate(synapses):
        stop = synapses[k + 1][0] if k + 1 < len(synapses) else len(body)
        for j in range(i + 1, stop):
            if isinstance(body[j], LIFNeuron):
                neuron_of[j] = i
                break
    handles = []

    def synapse_hook(i):
        def hook(module, inputs, output):
            inp = inputs[0]
            records[i]["input"] = (inp.detach() != 0).flatten(2).double().mean((1, 2))
            records[i]["shapes"] = (inp, output)
            if output.requires_grad and i not in neuron_of.values():  # the readout
                output.register_hook(lambda g: records[i].__setitem__("grad_out", g))

        return hook

    def neuron_hook(i):
        def hook(module, inputs, output):
            records[i]["spikes"] = output.detach().flatten(2).double().mean((1, 2))
            if output.requires_grad:
                output.register_hook(lambda g: records[i].__setitem__("grad_in", g))
            # dL/dX at the neurons' input: after a batch norm, not the synapse's output.
            if inputs[0].requires_grad:
                inputs[0].register_hook(lambda g: records[i].__setitem__("grad_out", g))

        return hook

    for i, _ in synapses:
        handles.append(body[i].register_forward_hook(synapse_hook(i)))
    for j, i in neuron_of.items():
        handles.append(body[j].register_forward_hook(neuron_hook(i)))
    params = [m.weight for _, m in synapses]
    try:
        with torch.enable_grad():
            loss = F.cross_entropy(model(x), y)
            weight_grads = torch.autograd.grad(loss, params)
    finally:
        for h in handles:
            h.remove()

    steps, nl = model.steps, len(synapses)
    nan = np.full((nl, steps), np.nan)
    arrays = {k: nan.copy() for k in ("inp", "spk", "giz", "gis", "goz", "gos")}
    wz, ws = np.zeros(nl), np.zeros(nl)
    layers = []
    counter = {"linear": 0, "conv": 0}
    for k, (i, module) in enumerate(synapses):
        rec = records[i]
        info = _describe(module, "", *rec["shapes"])
        counter[info.kind] += 1
        prefix = "fc" if info.kind == "linear" else "conv"
        spiking = "spikes" in rec
        layers.append(
            LayerInfo(
                **{**info.__dict__, "name": f"{prefix}{counter[info.kind]}", "spiking": spiking}
            )
        )
        arrays["inp"][k] = rec["input"].cpu().numpy()
        if spiking:
            arrays["spk"][k] = rec["spikes"].cpu().numpy()
        if "grad_in" in rec:
            arrays["giz"][k], arrays["gis"][k] = _fractions(rec["grad_in"], threshold)
        if "grad_out" in rec:
            arrays["goz"][k], arrays["gos"][k] = _fractions(rec["grad_out"], threshold)
        gw = weight_grads[k].detach().abs().double()
        wz[k] = float((gw == 0).double().mean())
        ws[k] = float((gw <= threshold * gw.max()).double().mean())
    return SparsityProfile(
        layers=layers,
        steps=steps,
        batch=int(x.shape[0]),
        threshold=threshold,
        input_density=arrays["inp"],
        spike_density=arrays["spk"],
        grad_in_zero=arrays["giz"],
        grad_in_small=arrays["gis"],
        grad_out_zero=arrays["goz"],
        grad_out_small=arrays["gos"],
        weight_grad_zero=wz,
        weight_grad_small=ws,
        loss=float(loss.detach()),
    )
