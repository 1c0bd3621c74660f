r"""Accumulation of binary spikes through lookup tables (H2Learn's forward and update engines).

With binary inputs :math:`s \in \{0,1\}^n`, the product :math:`y_o = \sum_i W_{oi} s_i` needs no
multiplications, only additions of the weights whose input spiked.  Cut the inputs into groups
of :math:`g`.  For each group and output, precompute the :math:`2^g` sums of every subset of
the group's :math:`g` weights; then one lookup, indexed by the group's :math:`g` spike bits,
replaces up to :math:`g` additions.  The table is built once per weight matrix and serves
every sample and every time step, so its cost is amortized.

Counting, per product of ``samples`` spike vectors of length ``n`` with a weight ``[m, n]``
(all counts are additions or memory accesses of one number; the expected counts assume
independent spikes of density :math:`\rho`):

* dense: :math:`S n m` additions; reads :math:`S n m` weights and :math:`S n` inputs;
* zero-skipping: :math:`\mathrm{nnz}\, m` additions; reads :math:`\mathrm{nnz}\, m` weights
  and :math:`S n` inputs (each input is read to test it);
* LUT, table build (once): :math:`m \sum_k (2^{g_k} - g_k - 1)` additions (each entry with
  two or more bits set is one addition onto a smaller entry); reads :math:`n m` weights and
  writes :math:`m \sum_k 2^{g_k}` entries;
* LUT, lookups: one addition and one table read per non-zero group and output, plus
  :math:`S \lceil n/g \rceil` index reads.

:math:`g_k` is the size of group :math:`k` (the last may be shorter).  A group whose bits are all
zero is skipped (its entry is 0), which happens with probability :math:`(1-\rho)^{g_k}`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .._checks import (
    MAX_SIZE,
    check_finite_tensor,
    check_flag,
    check_int,
    check_real,
    check_tensor,
)

__all__ = ["LUTCounts", "lut_accumulate", "lut_counts", "lut_table"]

_FLOATS = (torch.float16, torch.float32, torch.float64)


@dataclass(frozen=True)
class LUTCounts:
    """Additions and memory accesses of the three ways to compute ``spikes @ weight.T``.

    Counts are floats: expected values from :func:`lut_counts`, exact ones from
    ``lut_accumulate(..., return_counts=True)``.
    """

    group: int
    samples: float
    dense_adds: float
    dense_reads: float
    skip_adds: float
    skip_reads: float
    lut_build_adds: float
    lut_build_accesses: float
    lut_lookup_adds: float
    lut_lookup_reads: float

    @property
    def lut_adds(self) -> float:
        """Lookups' additions plus the table build (amortized over all ``samples``)."""
        return self.lut_lookup_adds + self.lut_build_adds

    @property
    def lut_accesses(self) -> float:
        return self.lut_lookup_reads + self.lut_build_accesses

    @property
    def add_saving_vs_dense(self) -> float:
        """Dense additions per LUT addition (> 1 is a saving)."""
        return self.dense_adds / max(self.lut_adds, 1.0)

    @property
    def add_saving_vs_skip(self) -> float:
        """Zero-skipping additions per LUT addition."""
        return self.skip_adds / max(self.lut_adds, 1.0)

    @property
    def access_saving_vs_dense(self) -> float:
        return self.dense_reads / max(self.lut_accesses, 1.0)

    @property
    def access_saving_vs_skip(self) -> float:
        return self.skip_reads / max(self.lut_accesses, 1.0)


def _group_sizes(n: int, group: int) -> dict[int, int]:
    """``{size: count}`` of the groups: ``n // group`` full ones and a shorter last one (a
    closed form: a list of every group would take forever for a huge ``n``)."""
    sizes = {group: n // group}
    if n % group:
        sizes[n % group] = sizes.get(n % group, 0) + 1
    return sizes


def _counts(
    n: int, m: int, group: int, samples: float, nnz: float, nonzero_groups: float
) -> LUTCounts:
    sizes = _group_sizes(n, group)
    groups = sum(sizes.values())
    return LUTCounts(
        group=group,
        samples=samples,
        dense_adds=samples * n * m,
        dense_reads=samples * n * m + samples * n,
        skip_adds=nnz * m,
        skip_reads=nnz * m + samples * n,
        lut_build_adds=float(m * sum(c * (2**g - g - 1) for g, c in sizes.items())),
        lut_build_accesses=float(n * m + m * sum(c * 2**g for g, c in sizes.items())),
        lut_lookup_adds=nonzero_groups * m,
        lut_lookup_reads=nonzero_groups * m + samples * groups,
    )


def lut_counts(
    in_features: int,
    out_features: int,
    group: int = 4,
    density: float = 0.1,
    samples: int = 1,
) -> LUTCounts:
    r"""Expected additions and memory accesses of dense, zero-skipping and LUT accumulation.

    Parameters
    ----------
    in_features, out_features : int
        The weight is ``[out_features, in_features]``.
    group : int
        Spike bits per lookup, 1 to 8.
    density : float
        Probability that an input spikes, in ``[0, 1]`` (spikes assumed independent).
    samples : int
        Spike vectors sharing one table (batch times time steps).

    Returns
    -------
    LUTCounts

    Examples
    --------
    >>> c = lut_counts(64, 10, group=4, density=0.3, samples=100)
    >>> c.dense_adds, round(c.skip_adds)
    (64000.0, 19200)
    >>> c.add_saving_vs_dense > c.add_saving_vs_skip > 1
    True
    """
    n = check_int("in_features", in_features, 1, MAX_SIZE)
    m = check_int("out_features", out_features, 1, MAX_SIZE)
    g = check_int("group", group, 1, 8)
    rho = check_real("density", density, 0.0, 1.0)
    s = check_int("samples", samples, 1, MAX_SIZE)
    nonzero = s * sum(c * (1.0 - (1.0 - rho) ** k) for k, c in _group_sizes(n, g).items())
    return _counts(n, m, g, float(s), s * n * rho, nonzero)


def lut_table(weight: torch.Tensor, group: int = 4) -> torch.Tensor:
    """The lookup table ``[out, ceil(in/group), 2**group]``: entry ``p`` of group ``k`` holds
    the sum of the group's weights whose bit is set in ``p`` (bit ``j`` = input
    ``k*group + j``).  Missing inputs of a short last group count as zero weights.

    A NaN or Inf weight makes every entry of its group NaN (entries are products with the
    0/1 bits, and ``0 * inf`` is NaN).

    Examples
    --------
    >>> lut_table(torch.tensor([[1.0, 2.0, 4.0]]), group=2)[0].tolist()
    [[0.0, 1.0, 2.0, 3.0], [0.0, 4.0, 0.0, 4.0]]
    """
    check_tensor("weight", weight, dtypes=_FLOATS, ndim=2, nonempty=True)
    g = check_int("group", group, 1, 8)
    m, n = weight.shape
    groups = math.ceil(n / g)
    w = torch.nn.functional.pad(weight, (0, groups * g - n)).reshape(m, groups, g)
    patterns = torch.arange(2**g, device=weight.device)
    bits = ((patterns[:, None] >> torch.arange(g, device=weight.device)) & 1).to(weight.dtype)
    # Each entry is a sum of at most g weights; for exactness every entry is built from the
    # weights directly (not from other entries), so it rounds like a plain sum would.
    return torch.einsum("mkj,pj->mkp", w, bits)


def lut_accumulate(
    spikes: torch.Tensor,
    weight: torch.Tensor,
    group: int = 4,
    *,
    return_counts: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, LUTCounts]:
    r"""``F.linear(spikes, weight)`` for binary spikes, computed by table lookups.

    The spike bits of each group of ``group`` inputs form an index into :func:`lut_table`; the
    output is the sum of the looked-up entries over the groups (all-zero groups are skipped).
    In float64 with weights whose partial sums are exact (for example multiples of
    :math:`2^{-k}`), the result equals the dense product bit for bit; in general both round
    sums of the same terms and agree to rounding.

    Parameters
    ----------
    spikes : torch.Tensor
        ``[..., in]`` with values in {0, 1} (any real or bool dtype).
    weight : torch.Tensor
        ``[out, in]``, floating.
    group : int
        Bits per lookup, 1 to 8.
    return_counts : bool
        Also return the exact :class:`LUTCounts` for these spikes.

    Returns
    -------
    torch.Tensor or (torch.Tensor, LUTCounts)
        ``[..., out]`` in ``weight``'s dtype.

    Raises
    ------
    ValueError
        Spikes outside {0, 1}, a group outside 1 to 8, or mismatched feature sizes.

    Examples
    --------
    >>> w = torch.tensor([[0.5, -1.0, 2.0, 0.25, 1.0]], dtype=torch.float64)
    >>> s = torch.tensor([[1.0, 0.0, 1.0, 1.0, 1.0]])
    >>> lut_accumulate(s, w, group=2).tolist(), torch.nn.functional.linear(s.double(), w).tolist()
    ([[3.75]], [[3.75]])
    """
    check_tensor("spikes", spikes, min_ndim=1)
    check_finite_tensor("spikes", spikes)
    check_tensor("weight", weight, dtypes=_FLOATS, ndim=2, nonempty=True, device=spikes.device)
    g = check_int("group", group, 1, 8)
    return_counts = check_flag("return_counts", return_counts)
    if spikes.shape[-1] != weight.shape[1]:
        raise ValueError(
            f"spikes' last dimension ({spikes.shape[-1]}) must equal weight's in_features "
            f"({weight.shape[1]})"
        )
    if spikes.is_complex() or not bool(((spikes == 0) | (spikes == 1)).all()):
        bad = spikes[(spikes != 0) & (spikes != 1)].flatten()[:3].tolist()
        raise ValueError(f"spikes must be binary (0 or 1), got values such as {bad}")
    m, n = weight.shape
    groups = math.ceil(n / g)
    table = lut_table(weight, g).permute(1, 2, 0)  # [groups, 2**g, out]
    flat = spikes.reshape(-1, n).to(torch.int64)
    flat = torch.nn.functional.pad(flat, (0, groups * g - n)).reshape(-1, groups, g)
    index = (flat << torch.arange(g, device=flat.device)).sum(-1)  # [S, groups]
    out = torch.zeros(flat.shape[0], m, dtype=weight.dtype, device=weight.device)
    for k in range(groups):  # one lookup per group; zero entries add exact zeros
        out += table[k][index[:, k]]
    out = out.reshape(*spikes.shape[:-1], m)
    if not return_counts:
        return out
    counts = _counts(
        n,
        m,
        g,
        float(flat.shape[0]),
        float(flat.sum()),
        float((index != 0).sum()),
    )
    return out, counts
