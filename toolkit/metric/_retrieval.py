"""Row-wise k nearest neighbours: the reference path and the CUDA path of ``retrieval_topk``."""

from __future__ import annotations

import torch

from .._dispatch import operation
from .._kernels import TEMPLATE_TYPES, require_cuda_tensor
from .._launch import fast_launch

__all__ = ["MAX_K", "_topk_op"]

#: The largest k of the CUDA path: each lane keeps a sorted list of up to 32 in registers.
MAX_K = 32
#: Queries per block of the reference path: bounds its memory to ``block x M`` distances.
_BLOCK = 1024
#: Bytes of the CUDA path's Gram chunk (queries x references products): 512 MiB, about 0.4 %
#: of an H200, enough rows per chunk (2048 at M = 65536, float32) to keep the selection kernel
#: at memory bandwidth.
_CHUNK_BYTES = 512 * 2**20
_DTYPES = (torch.float32, torch.float64)
_LIST_BOUNDS = (8, 16, 32)  # the candidate list lengths L the kernel is compiled for
_INSTANCES = tuple(
    f"{f}<{TEMPLATE_TYPES[d]}, {b}>"
    for f in ("retrieval_select", "retrieval_select_columns")
    for d in _DTYPES
    for b in _LIST_BOUNDS
)
_ROWS_PER_BLOCK = 8  # WARPS in kernels/retrieval_topk.cu
_SPLIT = 4  # SPLIT in kernels/retrieval_topk.cu
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


def _list_length(k: int) -> int:
    """Candidates per query: the shortest compiled length holding ``min(2 k, MAX_K)``.

    The kernel selects this many by the Gram key and returns the best ``k`` of them by exact
    distance, so near-ties at the k-th place are ranked exactly, not by the GEMM's rounding.
    """
    return next(b for b in _LIST_BOUNDS if b >= min(2 * k, MAX_K))


def _chunk_plan(
    n: int, m: int, itemsize: int, budget: int, symmetric: bool = False
) -> tuple[int, int]:
    """``(rows, ld)``: queries per Gram chunk and the longest row stride, in elements.

    ``ld`` rounds ``m`` up to a multiple of 4 so that every row starts 16-byte aligned (the
    kernel's vector loads); ``rows * ld * itemsize`` stays within ``budget`` (at least 1 row).
    ``symmetric`` (leave-one-out: each chunk multiplies only the columns from its first row
    on) caps a chunk at ``n / 8`` rows, so the GEMMs do about ``(1 + 1/8) / 2`` of the full
    product, and at a multiple of 4 rows (at least 4), so that chunks start aligned.
    """
    ld = -(-m // 4) * 4
    rows = max(1, min(n, budget // (ld * itemsize)))
    if symmetric:
        rows = max(4, min(rows, -(-n // 8)) // 4 * 4)
    return min(rows, n), ld


@_topk_op.cuda
def _topk_cuda(
    queries: torch.Tensor,
    references: torch.Tensor,
    k: int,
    exclude_self: bool,
    out: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    # Per chunk of queries: a cuBLAS GEMM gives q . r (full fp32/fp64: torch's matmul precision
    # flags apply, IEEE by default, as in torch.cdist), then one pass of retrieval_select
    # selects by ||r||^2 - 2 q . r and re-ranks its candidates by exact distance.  A set
    # against itself multiplies only the upper triangle; retrieval_select_columns hands each
    # chunk's columns to the later queries through a running candidate list (the "state").
    if k > MAX_K:
        return _topk_op.reference(queries, references, k, exclude_self)
    q, r = queries.contiguous(), references.contiguous()
    device = q.device
    require_cuda_tensor(q, "queries", _DTYPES, device)
    require_cuda_tensor(r, "references", (q.dtype,), device)
    if q.dim() != 2:
        raise ValueError(f"queries must have shape (N, D), got {tuple(q.shape)}")
    n, d = q.shape
    m = r.shape[0]
    if r.dim() != 2 or r.shape[1] != d:
        raise ValueError(f"references must have shape (M, {d}), got {tuple(r.shape)}")
    if max(n, m, d) >= _INT32_MAX:
        raise ValueError(f"sizes must fit 32-bit rows and columns, got n={n}, m={m}, d={d}")
    if exclude_self and n > m:
        raise ValueError(f"leaving one out needs n <= m, got n={n}, m={m}")
    if not 1 <= k <= m - (1 if exclude_self else 0):
        raise ValueError(f"k must satisfy 1 <= k <= {m - int(exclude_self)}, got k={k}")
    if out is None:
        dist = torch.empty(n, k, dtype=q.dtype, device=device)
        idx = torch.empty(n, k, dtype=torch.int64, device=device)
    else:
        dist, idx = out
        for name, t, dtype in (("out[0]", dist, q.dtype), ("out[1]", idx, torch.int64)):
            require_cuda_tensor(t, name, (dtype,), device)
            if t.shape != (n, k):
                raise ValueError(f"{name} must have shape ({n}, {k}), got {tuple(t.shape)}")
    if n == 0:
        return dist, idx
    symmetric = exclude_self and q.data_ptr() == r.data_ptr() and q.shape == r.shape
    length = _list_length(k)
    rows, ld = _chunk_plan(n, m, q.element_size(), _CHUNK_BYTES, symmetric)
    flat = torch.empty(rows * ld, dtype=q.dtype, device=device)
    sq_norms = r.square().sum(1)
    state = (0, 0)  # null pointers: no running lists
    if symmetric:
        state_key = torch.full((n, length), torch.inf, dtype=q.dtype, device=device)
        state_idx = torch.full((n, length), _INT32_MAX, dtype=torch.int32, device=device)
        state = (state_key.data_ptr(), state_idx.data_ptr())
    kind = TEMPLATE_TYPES[q.dtype]
    for start in range(0, n, rows):
        stop = min(n, start + rows)
        col0 = start if symmetric else 0
        ncols = m - col0
        stride = -(-ncols // 4) * 4
        # row stride `stride`, not ncols: torch hands it to cuBLAS as ldc, no copy
        chunk = flat[: (stop - start) * stride].view(stop - start, stride)[:, :ncols]
        torch.mm(q[start:stop], r[col0:].t(), out=chunk)
        fast_launch(
            "retrieval_topk",
            f"retrieval_select<{kind}, {length}>",
            (-(-(stop - start) // _ROWS_PER_BLOCK),),
            (32 * _ROWS_PER_BLOCK,),
            "pqiipppppppiiiiii",
            (
                chunk.data_ptr(),
                stride,
                col0,
                ncols,
                sq_norms.data_ptr(),
                q.data_ptr(),
                r.data_ptr(),
                *state,
                dist.data_ptr(),
                idx.data_ptr(),
                stop - start,
                start,
                m,
                d,
                k,
                int(exclude_self),
            ),
            device,
            _INSTANCES,
        )
        if symmetric and stop < n:  # the columns past the chunk's rows, for later queries
            fast_launch(
                "retrieval_topk",
                f"retrieval_select_columns<{kind}, {length}>",
                (-(-(ncols - (stop - start)) // 32),),
                (32 * _SPLIT,),
                "pqiiipppi",
                (
                    chunk.data_ptr(),
                    stride,
                    col0,
                    stop - start,
                    ncols,
                    sq_norms.data_ptr(),
                    *state,
                    stop - start,
                ),
                device,
                _INSTANCES,
            )
    return dist, idx
