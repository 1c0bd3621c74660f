"""N:M structured pruning masks: the reference path and the CUDA path of :func:`nm_mask`."""

from __future__ import annotations

import functools
import math

import numpy as np
import torch
import torch.nn.functional as F

from .._checks import check_int, check_tensor
from .._dispatch import operation
from .._kernels import TEMPLATE_TYPES, launch, require_cuda_tensor
from .._launch import fast_launch
from ..models._attention import ATTENTION_DTYPES

__all__ = ["MAX_GROUP", "check_nm", "nm_mask"]

#: The largest group size m: one CUDA thread ranks its entry against the whole group.
MAX_GROUP = 32
SUPPORTED_DTYPES = ATTENTION_DTYPES
#: Compile-time bounds on m: a group's keys live in registers, so loops unroll to MAXM.
_GROUP_BOUNDS = (2, 4, 8, 16, 32)
_VEC_GROUPS = (1, 2, 4, 8, 16, 32)
_INSTANCES = tuple(
    f"nm_prune<{TEMPLATE_TYPES[d]}, {b}>" for d in SUPPORTED_DTYPES for b in _GROUP_BOUNDS
) + tuple(f"nm_prune_vec<{TEMPLATE_TYPES[d]}, {m}>" for d in SUPPORTED_DTYPES for m in _VEC_GROUPS)
_VEC_BLOCK = 256


def check_nm(n: object, m: object) -> tuple[int, int]:
    """``(n, m)`` as ints with ``1 <= m <= MAX_GROUP`` and ``1 <= n <= m``.

    >>> check_nm(2, 4)
    (2, 4)
    """
    if type(n) is int and type(m) is int:  # the common case, memoised (per-call overhead)
        return _check_nm_ints(n, m)
    m = check_int("m", m, 1, MAX_GROUP)
    return check_int("n", n, 1, m), m


@functools.lru_cache(maxsize=256)
def _check_nm_ints(n: int, m: int) -> tuple[int, int]:
    m = check_int("m", m, 1, MAX_GROUP)
    return check_int("n", n, 1, m), m


@operation
def _nm_mask_op(scores: torch.Tensor, n: int, m: int) -> torch.Tensor:
    # Pad the tail group with -inf: padding sits after every real entry, so a stable sort
    # ranks it last even against real -inf scores, and a short group keeps min(n, r).
    cols = scores.shape[-1]
    groups = math.ceil(cols / m)
    padded = F.pad(scores, (0, groups * m - cols), value=-math.inf)
    grouped = padded.reshape(*scores.shape[:-1], groups, m)
    order = torch.sort(grouped, dim=-1, descending=True, stable=True).indices
    ranks = torch.empty_like(order).scatter_(
        -1, order, torch.arange(m, device=scores.device).expand_as(order)
    )
    return (ranks < n).reshape(*scores.shape[:-1], groups * m)[..., :cols]


@_nm_mask_op.cuda
def _nm_mask_cuda(
    scores: torch.Tensor, n: int, m: int, out: torch.Tensor | None = None
) -> torch.Tensor:
    scores = scores.contiguous()
    if out is None:
        out = torch.empty(scores.shape, dtype=torch.bool, device=scores.device)
    if out.shape != scores.shape:
        raise ValueError(f"out must have shape {tuple(scores.shape)}, got {tuple(out.shape)}")
    require_cuda_tensor(scores, "scores", SUPPORTED_DTYPES, scores.device)
    require_cuda_tensor(out, "out", (torch.bool,), scores.device)
    if scores.numel() == 0:
        return out
    cols = scores.shape[-1]
    numel = scores.numel()
    if (
        cols % m == 0
        and m in _VEC_GROUPS
        and scores.data_ptr() % 16 == 0
        and out.data_ptr() % 16 == 0
    ):
        # Whole groups, aligned: the vectorised kernel, max(16, m) elements per thread.
        threads = -(-numel // max(16, m))
        fast_launch(
            "nm_prune",
            f"nm_prune_vec<{TEMPLATE_TYPES[scores.dtype]}, {m}>",
            (-(-threads // _VEC_BLOCK),),
            (_VEC_BLOCK,),
            "ppqi",
            (scores.data_ptr(), out.data_ptr(), numel, n),
            scores.device,
            _INSTANCES,
        )
        return out
    rows = numel // cols
    bound = next(b for b in _GROUP_BOUNDS if b >= m)
    launch(
        "nm_prune",
        f"nm_prune<{TEMPLATE_TYPES[scores.dtype]}, {bound}>",
        rows * math.ceil(cols / m),  # one thread per group
        (scores, out, np.int64(rows), np.int64(cols), np.int32(n), np.int32(m)),
        device=scores.device,
        name_expressions=_INSTANCES,
    )
    return out


def nm_mask(scores: torch.Tensor, n: int, m: int, *, backend: str | None = None) -> torch.Tensor:
    r"""Boolean N:M mask: in every group of ``m`` consecutive entries of the last dimension,
    keep the ``n`` largest.

    Groups start at index 0 of the last dimension; a last, shorter group of ``r < m`` entries
    keeps :math:`\min(n, r)`.  Ties go to the lower index, ``NaN`` ranks above every number
    (as :func:`torch.sort` orders it) and ``-0.0 == +0.0``.

    Parameters
    ----------
    scores : torch.Tensor
        Shape ``[..., L]``, float32, float16, bfloat16 or float64, on any device.
    n : int
        Entries kept per group, ``1 <= n <= m``.
    m : int
        Group size, ``1 <= m <= 32``.
    backend : str, optional
        ``"cpu"`` forces the torch reference path, ``"cuda"`` the CUDA kernel; ``None``
        follows :func:`toolkit.use_backend` and ``TOOLKIT_DEVICE``, else the input's device.

    Returns
    -------
    torch.Tensor
        A ``torch.bool`` tensor with the shape and device of ``scores``.

    Raises
    ------
    TypeError
        If ``scores`` is not a tensor of a supported dtype, or ``n``/``m`` is not an int.
    ValueError
        If ``scores`` is a scalar or ``n``, ``m`` are out of range.

    Examples
    --------
    >>> import torch
    >>> from toolkit.attention import nm_mask
    >>> nm_mask(torch.tensor([0.1, 0.9, 0.5, 0.3, 0.7, 0.2]), n=2, m=4).tolist()
    [False, True, True, False, True, True]
    """
    check_tensor("scores", scores, dtypes=SUPPORTED_DTYPES, min_ndim=1)
    n, m = check_nm(n, m)
    return _nm_mask_op(scores, n, m, backend=backend)
