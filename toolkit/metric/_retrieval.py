"""Row-wise k nearest neighbours: the reference path and the CUDA path of ``retrieval_topk``."""

from __future__ import annotations

import math

import numpy as np
import torch

from .._dispatch import operation
from .._kernels import TEMPLATE_TYPES, launch, require_cuda_tensor

__all__ = ["MAX_K", "_topk_op"]

#: The largest k of the CUDA path: each lane keeps a sorted list of up to 32 in registers.
MAX_K = 32
#: Queries per block of the reference path: bounds its memory to ``block x M`` distances.
_BLOCK = 1024
_DTYPES = (torch.float32, torch.float64)
_K_BOUNDS = (8, 16, 32)
_INSTANCES = tuple(f"retrieval_topk<{TEMPLATE_TYPES[d]}, {b}>" for d in _DTYPES for b in _K_BOUNDS)
_QUERIES_PER_BLOCK = 8  # WARPS in kernels/retrieval_topk.cu
_INT32_MAX = 2**31 - 1


@operation
def _topk_op(
    queries: torch.Tensor, references: torch.Tensor, k: int, exclude_self: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    values, indices = [], []
    for start in range(0, queries.shape[0], _BLOCK):
        q = queries[start : start + _BLOCK]
        # Differences, not the ||q||^2 + ||r||^2 - 2 q.r expansion: exact small distances.
        d = torch.cdist(q, references, compute_mode="donot_use_mm_for_euclid_dist")
        if exclude_self:
            rows = torch.arange(q.shape[0], device=q.device)
            d[rows, start + rows] = torch.inf
        # A stable sort fixes the order of tied distances: the lower reference index first.
        v, i = torch.sort(d, dim=1, stable=True)
        values.append(v[:, :k])
        indices.append(i[:, :k])
    return torch.cat(values), torch.cat(indices)


@_topk_op.cuda
def _topk_cuda(
    queries: torch.Tensor,
    references: torch.Tensor,
    k: int,
    exclude_self: bool,
    out: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    if k > MAX_K:
        return _topk_op.reference(queries, references, k, exclude_self)
    q, r = queries.contiguous(), references.contiguous()
    device = q.device
    require_cuda_tensor(q, "queries", _DTYPES, device)
    require_cuda_tensor(r, "references", (q.dtype,), device)
    n, d = q.shape
    m = r.shape[0]
    if r.dim() != 2 or r.shape[1] != d:
        raise ValueError(f"references must have shape (M, {d}), got {tuple(r.shape)}")
    if max(n, m, d) > _INT32_MAX or n * k > 2**62:
        raise ValueError(f"sizes must fit 32-bit rows and columns, got n={n}, m={m}, d={d}")
    if not 1 <= k <= m - (1 if exclude_self else 0):
        raise ValueError(f"k must satisfy 1 <= k <= {m - int(exclude_self)}, got k={k}")
    if out is None:
        dist = torch.empty(n, k, dtype=q.dtype, device=device)
        idx = torch.empty(n, k, dtype=torch.int64, device=device)
    else:
        dist, idx = out
        for name, t, dtype in (("out[0]", dist, q.dtype), ("out[1]", idx, torch.int64)):
            if t.shape != (n, k):
                raise ValueError(f"{name} must have shape ({n}, {k}), got {tuple(t.shape)}")
            require_cuda_tensor(t, name, (dtype,), device)
    if n == 0:
        return dist, idx
    bound = next(b for b in _K_BOUNDS if b >= k)
    launch(
        "retrieval_topk",
        f"retrieval_topk<{TEMPLATE_TYPES[q.dtype]}, {bound}>",
        n,
        (
            q,
            r,
            dist,
            idx,
            np.int32(n),
            np.int32(m),
            np.int32(d),
            np.int32(k),
            np.int32(bool(exclude_self)),
        ),
        device=device,
        name_expressions=_INSTANCES,
        block=32 * _QUERIES_PER_BLOCK,
        grid=math.ceil(n / _QUERIES_PER_BLOCK),
    )
    return dist, idx
