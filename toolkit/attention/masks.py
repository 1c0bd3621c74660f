"""Masks of the comparison patterns at a given density: the top-k oracle and two static patterns.

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

import torch

from .._checks import check_int, check_real, check_tensor
from .._dispatch import operation
from ..models._attention import ATTENTION_DTYPES

__all__ = ["check_density", "keep_count", "local_mask", "strided_mask", "topk_mask"]

#: The largest size torch can index (int64); larger values are refused, not overflowed.
MAX_SIZE = 2**63 - 1


def check_density(name: str, value: object, *, allow_one: bool = True) -> float:
    """A kept (or dropped) fraction: a real number in ``(0, 1]`` (``(0, 1)`` without
    ``allow_one``), as a float; see :func:`toolkit._checks.check_real`.

    >>> check_density("density", 0.25)
    0.25
    """
    return float(check_real(name, value, 0.0, 1.0, lo_open=True, hi_open=not allow_one))


def keep_count(density: float, length: int) -> int:
    """Entries kept per row of ``length`` at ``density``: round half up, at least 1, at most L.

    Parameters
    ----------
    density : float
        Kept fraction, in ``(0, 1]``.
    length : int
        Row length ``L >= 1``.

    Returns
    -------
    int
        :math:`\\min(L, \\max(1, \\lfloor \\rho L + 1/2 \\rfloor))`.

    Examples
    --------
    >>> keep_count(0.5, 7), keep_count(0.01, 7), keep_count(1.0, 7)
    (4, 1, 7)
    """
    density = check_density("density", density)
    length = check_int("length", length, 1)
    return min(length, max(1, math.floor(density * length + 0.5)))


@operation
def _row_topk_op(scores: torch.Tensor, k: int) -> torch.Tensor:
    # Reference path of the row-wise top-k: a stable descending sort keeps equal scores in
    # index order, so ties go to the lower index; NaN sorts above every number.
    order = torch.sort(scores, dim=-1, descending=True, stable=True).indices
    return torch.zeros(scores.shape, dtype=torch.bool, device=scores.device).scatter_(
        -1, order[..., :k], True
    )


def _one_of(density: float | None, count: int | None, count_name: str) -> None:
    if (density is None) == (count is None):
        raise ValueError(
            f"give exactly one of density or {count_name}, "
            f"got density={density!r}, {count_name}={count!r}"
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

    Parameters
    ----------
    scores : torch.Tensor
        ``[..., L]`` floating tensor (float32, float16, bfloat16 or float64), ``L >= 1``.
    density : float, optional
        Fraction of each row to keep, in ``(0, 1]``.
    k : int, optional
        Entries to keep per row, ``1 <= k <= L``.
    backend : str, optional
        ``"cpu"`` forces the reference path (see :mod:`toolkit._dispatch`).

    Returns
    -------
    torch.Tensor
        Bool tensor of the shape and device of ``scores``.

    Raises
    ------
    TypeError
        If ``scores`` is not a floating tensor, or ``k``/``density`` has the wrong type.
    ValueError
        If both or neither of ``density`` and ``k`` are given, or one is out of range.

    Examples
    --------
    >>> topk_mask(torch.tensor([0.3, 0.9, 0.3, 0.1]), k=2).tolist()
    [True, True, False, False]
    """
    check_tensor("scores", scores, dtypes=ATTENTION_DTYPES, min_ndim=1)
    if scores.shape[-1] < 1:
        raise ValueError(f"scores must have shape [..., L] with L >= 1, got {tuple(scores.shape)}")
    _one_of(density, k, "k")
    L = scores.shape[-1]
    kk = keep_count(density, L) if density is not None else check_int("k", k, 1, L)
    return _row_topk_op(scores, kk, backend=backend)


def _center(lq: int, lk: int) -> torch.Tensor:
    # Key aligned with query i: i itself when Lq == Lk, proportionally placed otherwise.
    return (torch.arange(lq) * lk) // lq


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

    Parameters
    ----------
    lq, lk : int
        Query and key lengths, ``1 <= lq, lk < 2**63``.
    density : float, optional
        Kept fraction in ``(0, 1]``: ``w =`` :func:`keep_count` ``(density, lk)``.
    window : int, optional
        ``w`` itself, ``1 <= w <= lk`` (give exactly one of ``density`` and ``window``).
    device : torch.device or str, optional
        Where to build the mask (default CPU).

    Returns
    -------
    torch.Tensor
        Bool ``[lq, lk]``.

    Examples
    --------
    >>> local_mask(4, 4, window=2).int().tolist()
    [[1, 1, 0, 0], [1, 1, 0, 0], [0, 1, 1, 0], [0, 0, 1, 1]]
    """
    lq, lk = check_int("lq", lq, 1, MAX_SIZE), check_int("lk", lk, 1, MAX_SIZE)
    _one_of(density, window, "window")
    w = keep_count(density, lk) if density is not None else check_int("window", window, 1, lk)
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

    Parameters
    ----------
    lq, lk : int
        Query and key lengths, ``1 <= lq, lk < 2**63``.
    density : float, optional
        Kept fraction in ``(0, 1]``.
    stride : int, optional
        Spacing ``s``, ``1 <= s <= lk`` (give exactly one of ``density`` and ``stride``).
    device : torch.device or str, optional
        Where to build the mask (default CPU).

    Returns
    -------
    torch.Tensor
        Bool ``[lq, lk]``.

    Examples
    --------
    >>> strided_mask(4, 4, stride=2).int().tolist()
    [[1, 0, 1, 0], [0, 1, 0, 1], [1, 0, 1, 0], [0, 1, 0, 1]]
    """
    lq, lk = check_int("lq", lq, 1, MAX_SIZE), check_int("lk", lk, 1, MAX_SIZE)
    _one_of(density, stride, "stride")
    if density is not None:
        k = keep_count(density, lk)
        s = lk // k
    else:
        s = check_int("stride", stride, 1, lk)
        k = lk // s
    cols = (_center(lq, lk)[:, None] + s * torch.arange(k)) % lk
    mask = torch.zeros(lq, lk, dtype=torch.bool).scatter_(1, cols, True)
    return mask.to(device) if device is not None else mask
