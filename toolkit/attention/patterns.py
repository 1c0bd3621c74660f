"""Comparison patterns at a given density: the top-k oracle and two static patterns.

* :func:`topk_mask` -- the *oracle*: in every row keep the ``k`` largest true scores (what
  DSA tries to predict; ties to the lower index, like :func:`~toolkit.attention.nm_mask`).
* :func:`local_mask` -- a sliding window of ``window`` consecutive keys around the query.
* :func:`strided_mask` -- ``k`` keys spaced ``stride`` apart, starting at the query's key.

Densities become per-row counts with :func:`keep_count`:
:math:`k = \\min(L, \\max(1, \\lfloor \\rho L + 1/2 \\rfloor))` (round half up, at least 1).
The static patterns keep exactly the same number of keys in every row, so comparisons at
"equal density" are exact.
"""

from __future__ import annotations

import math
from numbers import Real

import torch

from .._checks import check_int as _check_int
from .._dispatch import operation

__all__ = ["keep_count", "local_mask", "strided_mask", "topk_mask"]


def _check_density(name: str, value: object, closed_right: bool = True) -> float:
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value):
        raise TypeError(f"{name} must be a finite real number, got {value!r}")
    ok = 0 < value <= 1 if closed_right else 0 < value < 1
    if not ok:
        interval = "(0, 1]" if closed_right else "(0, 1)"
        raise ValueError(f"{name} must lie in {interval}, got {name}={value}")
    return float(value)


def keep_count(density: float, length: int) -> int:
    """Entries kept per row of ``length`` at ``density``: round half up, at least 1, at most L.

    >>> keep_count(0.5, 7), keep_count(0.01, 7), keep_count(1.0, 7)
    (4, 1, 7)
    """
    density = _check_density("density", density)
    length = _check_int("length", length, 1)
    return min(length, max(1, math.floor(density * length + 0.5)))


@operation
def _row_topk_op(scores: torch.Tensor, k: int) -> torch.Tensor:
    # Reference path of the row-wise top-k: a stable descending sort keeps equal scores in
    # index order, so ties go to the lower index; NaN sorts above every number.
    order = torch.sort(scores, dim=-1, descending=True, stable=True).indices
    return torch.zeros(scores.shape, dtype=torch.bool, device=scores.device).scatter_(
        -1, order[..., :k], True
    )


def topk_mask(
    scores: torch.Tensor,
    density: float | None = None,
    k: int | None = None,
    *,
    backend: str | None = None,
) -> torch.Tensor:
    r"""Row-wise top-k of ``scores`` (the oracle pattern): keep the ``k`` largest per row.

    Give exactly one of ``density`` (:math:`k =` :func:`keep_count` ``(density, L)``) or ``k``.
    Ties go to the lower index and NaN ranks above every number, as in ``nm_mask``; a row
    with fewer than ``k`` finite scores keeps some :math:`-\infty` entries (harmless: they get
    zero probability).

    Args:
        scores: ``[..., L]`` floating tensor.
        density: fraction of each row to keep, in ``(0, 1]``.
        k: entries to keep per row, ``1 <= k <= L``.
        backend: ``"cpu"`` forces the reference path (see :mod:`toolkit._dispatch`).

    Returns:
        bool tensor of the shape and device of ``scores``.

    Example:
        >>> topk_mask(torch.tensor([0.3, 0.9, 0.3, 0.1]), k=2).tolist()
        [True, True, False, False]
    """
    if not isinstance(scores, torch.Tensor) or not scores.is_floating_point():
        raise TypeError(f"scores must be a floating torch.Tensor, got {scores!r:.60}")
    if scores.dim() < 1 or scores.shape[-1] < 1:
        raise ValueError(f"scores must have shape [..., L] with L >= 1, got {tuple(scores.shape)}")
    if (density is None) == (k is None):
        raise ValueError(f"give exactly one of density or k, got density={density!r}, k={k!r}")
    L = scores.shape[-1]
    kk = keep_count(density, L) if k is None else _check_int("k", k, 1, L)
    return _row_topk_op(scores, kk, backend=backend)


def _center(lq: int, lk: int) -> torch.Tensor:
    # Key aligned with query i: i itself when Lq == Lk, proportionally placed otherwise.
    return (torch.arange(lq) * lk) // lq


def _pattern_args(lq, lk, density, count, count_name):
    lq = _check_int("lq", lq, 1)
    lk = _check_int("lk", lk, 1)
    if (density is None) == (count is None):
        raise ValueError(
            f"give exactly one of density or {count_name}, "
            f"got density={density!r}, {count_name}={count!r}"
        )
    return lq, lk


def local_mask(
    lq: int,
    lk: int,
    density: float | None = None,
    window: int | None = None,
    *,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    r"""Sliding-window pattern: query ``i`` keeps ``window`` consecutive keys around key
    :math:`c_i = \lfloor i L_k / L_q \rfloor` (``= i`` for self-attention).

    The window starts at :math:`\text{clip}(c_i - \lfloor w/2 \rfloor, 0, L_k - w)`, so it
    is centred where possible and shifted inside at the ends: every row keeps exactly ``w``.

    Args:
        lq, lk: query and key lengths.
        density: kept fraction, ``w =`` :func:`keep_count` ``(density, lk)``; or
        window: ``w`` itself, ``1 <= w <= lk``.
        device: where to build the mask (default CPU).

    Returns:
        bool ``[lq, lk]``.

    Example:
        >>> local_mask(4, 4, window=2).int().tolist()
        [[1, 1, 0, 0], [1, 1, 0, 0], [0, 1, 1, 0], [0, 0, 1, 1]]
    """
    lq, lk = _pattern_args(lq, lk, density, window, "window")
    w = keep_count(density, lk) if window is None else _check_int("window", window, 1, lk)
    start = (_center(lq, lk) - w // 2).clamp(0, lk - w)
    j = torch.arange(lk)
    mask = (j >= start[:, None]) & (j < start[:, None] + w)
    return mask.to(device) if device is not None else mask


def strided_mask(
    lq: int,
    lk: int,
    density: float | None = None,
    stride: int | None = None,
    *,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    r"""Strided pattern: query ``i`` keeps keys :math:`(c_i + t\,s) \bmod L_k`,
    :math:`t = 0, \dots, k-1`, with :math:`c_i = \lfloor i L_k / L_q \rfloor`.

    With ``density``: :math:`k =` :func:`keep_count` ``(density, lk)`` and
    :math:`s = \lfloor L_k / k \rfloor`; with ``stride``: :math:`s` given and
    :math:`k = \lfloor L_k / s \rfloor`.  As :math:`k s \le L_k` the keys are distinct, so
    every row keeps exactly ``k`` (including its own key :math:`c_i`).

    Args:
        lq, lk: query and key lengths.
        density: kept fraction in ``(0, 1]``; or
        stride: spacing ``s``, ``1 <= s <= lk``.
        device: where to build the mask (default CPU).

    Returns:
        bool ``[lq, lk]``.

    Example:
        >>> strided_mask(4, 4, stride=2).int().tolist()
        [[1, 0, 1, 0], [0, 1, 0, 1], [1, 0, 1, 0], [0, 1, 0, 1]]
    """
    lq, lk = _pattern_args(lq, lk, density, stride, "stride")
    if stride is None:
        k = keep_count(density, lk)
        s = lk // k
    else:
        s = _check_int("stride", stride, 1, lk)
        k = lk // s
    cols = (_center(lq, lk)[:, None] + s * torch.arange(k)) % lk
    mask = torch.zeros(lq, lk, dtype=torch.bool).scatter_(1, cols, True)
    return mask.to(device) if device is not None else mask
