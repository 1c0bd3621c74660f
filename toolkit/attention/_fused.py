"""The fused CUDA paths of the sparse attention functions (issue 14).

* :func:`fused_nm_attention` runs ``kernels/nm_attention.cu``: N:M attention in one pass
  (flash style, tensor cores), never writing the ``L x L`` scores.
* :func:`fused_nm_attention_grad` is the same with autograd: the forward also saves each
  row's log-sum-exp, and the backward runs ``kernels/nm_attention_bwd.cu`` (FlashAttention-2
  style, recomputing the forward's exact scores and kept set).
* :func:`fused_dsa_attention` runs ``kernels/dsa_attention.cu``: attention on a given pattern
  (DSA's prediction) flash style, on the tensor cores, with the pattern as a packed bitmask
  (:func:`pack_keep_bits`); the tile loop, softmax and ``P V`` are the N:M forward's.
* :func:`sparse_dsa_attention` runs ``kernels/dsa_sparse.cu``: attention on DSA's predicted
  entries only (exact scores at the kept keys, softmax over them, sparse ``P V``), gathering
  each query's kept keys; it also takes float32 and masks.

The ``*_supported`` checks say when the kernels take an input; otherwise the caller takes
the reference path, which gives the same results within the dtype's tolerance.
"""

from __future__ import annotations

import math

import torch

from .._checks import check_tensor
from .._dispatch import operation
from .._kernels import TEMPLATE_TYPES, require_cuda_tensor
from .._launch import fast_launch

__all__ = [
    "dsa_fused_supported",
    "fused_dsa_attention",
    "fused_nm_attention",
    "fused_nm_attention_backward",
    "fused_nm_attention_grad",
    "fused_supported",
    "pack_keep_bits",
    "sparse_dsa_attention",
    "sparse_supported",
]

FUSED_DTYPES = (torch.float16, torch.bfloat16)
FUSED_HEAD_DIMS = (64, 128)
#: The N:M kernels also take the small head dims of small models (the same tile code).
NM_HEAD_DIMS = (16, 32, 64, 128)
_FUSED_GROUPS = (1, 2, 4, 8, 16, 32)
_BM = 64  # queries per block
_THREADS = 128


def _needs_grad(*tensors: torch.Tensor | None) -> bool:
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def fused_supported(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, m: int, return_probs: bool, attn_mask
) -> bool:
    """Whether the fused N:M kernels take these (already checked) inputs.

    Autograd on ``q``, ``k``, ``v`` is supported (:func:`fused_nm_attention_grad`); a float
    mask that requires grad is not (the kernels compute no mask gradient).
    """
    return q.is_cuda and _fused_takes(q, k, v, m, return_probs, attn_mask)


def _fused_takes(q, k, v, m: int, return_probs: bool, attn_mask) -> bool:
    """:func:`fused_supported` apart from the device (testable on the CPU)."""
    return (
        q.dtype in FUSED_DTYPES
        and q.shape[-1] in NM_HEAD_DIMS
        and v.shape[-1] == q.shape[-1]
        and q.shape[:-2] == k.shape[:-2] == v.shape[:-2]
        and m in _FUSED_GROUPS
        and not return_probs
        and q.shape[-2] > 0
        and k.shape[-2] > 0
        and q.numel() > 0
        and not _needs_grad(attn_mask)
    )


def _mask_args(attn_mask: torch.Tensor | None, lead: tuple[int, ...], lq: int, lk: int):
    """(mask tensor or None, kind, heads, strides b/h/q/k) for the kernels' mask argument."""
    if attn_mask is None:
        return None, 0, 1, (0, 0, 0, 0)
    mask = attn_mask.detach()
    if mask.dtype == torch.bool:
        mask, kind = mask.view(torch.uint8), 1
    else:
        mask, kind = mask.to(torch.float32), 2
    heads = lead[-1] if lead else 1
    batch = math.prod(lead[:-1]) if len(lead) > 1 else 1
    # A view when the broadcast dimensions allow it (the usual [B, 1, 1, L] or [L, L]).
    mask = mask.expand(*lead, lq, lk).reshape(batch, heads, lq, lk)
    return mask, kind, heads, tuple(int(s) for s in mask.stride())


def fused_nm_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    n: int,
    m: int,
    scale: float,
    attn_mask: torch.Tensor | None = None,
    out: torch.Tensor | None = None,
    lse: torch.Tensor | None = None,
) -> torch.Tensor:
    """N:M attention through ``kernels/nm_attention.cu`` (inputs as :func:`fused_supported`).

    With ``lse`` (float32, ``q.shape[:-1]``, contiguous) the kernel also writes each row's
    log-sum-exp over its kept scores (+inf for a row with none finite), for the backward.
    """
    q, k, v = q.contiguous(), k.contiguous(), v.contiguous()
    lead, (lq, d), lk = q.shape[:-2], q.shape[-2:], k.shape[-2]
    if out is None:
        out = torch.empty(q.shape, dtype=q.dtype, device=q.device)
    if out.shape != q.shape:
        raise ValueError(f"out must have shape {tuple(q.shape)}, got {tuple(out.shape)}")
    for name, t in (("q", q), ("k", k), ("v", v), ("out", out)):
        require_cuda_tensor(t, name, (q.dtype,), q.device)
    if lse is not None:
        if lse.shape != q.shape[:-1]:
            raise ValueError(f"lse must have shape {tuple(q.shape[:-1])}, got {tuple(lse.shape)}")
        require_cuda_tensor(lse, "lse", (torch.float32,), q.device)
    mask, kind, heads, strides = _mask_args(attn_mask, tuple(lead), lq, lk)
    rows = math.prod(lead) if lead else 1
    name = f"nm_attention_fwd<{TEMPLATE_TYPES[q.dtype]}, {d}, {m}>"
    smem = 2 * (d + 8) * (_BM + 4 * 64)  # Q tile + two stages of K and V tiles, padded rows
    fast_launch(
        "nm_attention",
        name,
        (-(-lq // _BM), rows),
        (_THREADS,),
        "pppppiiifpiiqqqq",
        (
            q.data_ptr(),
            k.data_ptr(),
            v.data_ptr(),
            out.data_ptr(),
            lse.data_ptr() if lse is not None else 0,
            lq,
            lk,
            n,
            scale,
            mask.data_ptr() if mask is not None else 0,
            kind,
            heads,
            *strides,
        ),
        q.device,
        (name,),
        shared_mem=smem,
    )
    return out


def fused_nm_attention_backward(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    out: torch.Tensor,
    lse: torch.Tensor,
    dout: torch.Tensor,
    n: int,
    m: int,
    scale: float,
    attn_mask: torch.Tensor | None = None,
    dk: torch.Tensor | None = None,
    dv: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(dq, dk, dv)`` through ``kernels/nm_attention_bwd.cu``.

    ``q``, ``k``, ``v``, ``out`` and ``lse`` are the forward's (contiguous) inputs, output and
    log-sum-exp (:func:`fused_nm_attention` with ``lse``); ``dout`` is the gradient of ``out``;
    ``dk``, ``dv`` optional contiguous output buffers.  The pre-pass
    ``delta = rowsum(dout * out)`` and the final cast of the float32 ``dq`` accumulator are
    torch operations.
    """
    q, k, v, out, dout = (t.contiguous() for t in (q, k, v, out, dout))
    lead, (lq, d), lk = q.shape[:-2], q.shape[-2:], k.shape[-2]
    for name, t in (("q", q), ("k", k), ("v", v), ("out", out), ("dout", dout)):
        require_cuda_tensor(t, name, (q.dtype,), q.device)
    if out.shape != q.shape or dout.shape != q.shape:
        raise ValueError(f"out and dout must have shape {tuple(q.shape)}")
    if lse.shape != q.shape[:-1]:
        raise ValueError(f"lse must have shape {tuple(q.shape[:-1])}, got {tuple(lse.shape)}")
    require_cuda_tensor(lse, "lse", (torch.float32,), q.device)
    lse = lse.contiguous()
    delta = (dout.float() * out.float()).sum(-1)
    dq_acc = torch.zeros(q.shape, dtype=torch.float32, device=q.device)
    if dk is None:
        dk = torch.empty(k.shape, dtype=k.dtype, device=k.device)
    if dv is None:
        dv = torch.empty(v.shape, dtype=v.dtype, device=v.device)
    for name, t in (("dk", dk), ("dv", dv)):
        if t.shape != k.shape:
            raise ValueError(f"{name} must have shape {tuple(k.shape)}, got {tuple(t.shape)}")
        require_cuda_tensor(t, name, (q.dtype,), q.device)
    mask, kind, heads, strides = _mask_args(attn_mask, tuple(lead), lq, lk)
    rows = math.prod(lead) if lead else 1
    name = f"nm_attention_bwd<{TEMPLATE_TYPES[q.dtype]}, {d}, {m}>"
    # K, V, Q, dO tiles (padded rows) and the P, dS tiles (64 x 72)
    smem = 2 * (4 * 64 * (d + 8) + 2 * _BM * 72)
    fast_launch(
        "nm_attention_bwd",
        name,
        (-(-lk // 64), rows),
        (_THREADS,),
        "pppppppppiiifpiiqqqq",
        (
            q.data_ptr(),
            k.data_ptr(),
            v.data_ptr(),
            dout.data_ptr(),
            lse.data_ptr(),
            delta.data_ptr(),
            dq_acc.data_ptr(),
            dk.data_ptr(),
            dv.data_ptr(),
            lq,
            lk,
            n,
            scale,
            mask.data_ptr() if mask is not None else 0,
            kind,
            heads,
            *strides,
        ),
        q.device,
        (name,),
        shared_mem=smem,
    )
    return dq_acc.to(q.dtype), dk, dv


class _FusedNMAttention(torch.autograd.Function):
    """The fused forward (saving the log-sum-exp) and the fused backward."""

    @staticmethod
    def forward(ctx, q, k, v, n, m, scale, attn_mask):
        q, k, v = q.contiguous(), k.contiguous(), v.contiguous()
        lse = torch.empty(q.shape[:-1], dtype=torch.float32, device=q.device)
        out = fused_nm_attention(q, k, v, n, m, scale, attn_mask, lse=lse)
        mask = None if attn_mask is None else attn_mask.detach()
        ctx.save_for_backward(q, k, v, out, lse, mask)
        ctx.nm = (n, m, scale)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, dout):
        q, k, v, out, lse, mask = ctx.saved_tensors
        n, m, scale = ctx.nm
        dq, dk, dv = fused_nm_attention_backward(q, k, v, out, lse, dout, n, m, scale, mask)
        return dq, dk, dv, None, None, None, None


def fused_nm_attention_grad(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    n: int,
    m: int,
    scale: float,
    attn_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """:func:`fused_nm_attention` with autograd through the fused backward kernel.

    Gradients flow to ``q``, ``k`` and ``v`` (not to ``attn_mask``; :func:`fused_supported`
    sends a mask that requires grad to the reference path).  Not twice differentiable.
    """
    return _FusedNMAttention.apply(q, k, v, n, m, scale, attn_mask)


SPARSE_DTYPES = (torch.float16, torch.bfloat16, torch.float32)
_SPARSE_ROWS = 4  # query rows (warps) per block


def sparse_supported(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    keep: torch.Tensor,
    return_probs: bool,
    attn_mask,
) -> bool:
    """Whether the sparse DSA kernel takes these (already checked) inputs."""
    lead = q.shape[:-2]
    return (
        q.is_cuda
        and q.dtype in SPARSE_DTYPES
        and q.shape[-1] in FUSED_HEAD_DIMS
        and v.shape[-1] == q.shape[-1]
        and lead == k.shape[:-2] == v.shape[:-2]
        and keep.shape == (*lead, q.shape[-2], k.shape[-2])
        and keep.dtype == torch.bool
        and not return_probs
        and q.numel() > 0
        and k.shape[-2] > 0
        and not _needs_grad(q, k, v, attn_mask)
    )


def sparse_dsa_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    keep: torch.Tensor,
    scale: float,
    attn_mask: torch.Tensor | None = None,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """Attention on the kept entries only, through ``kernels/dsa_sparse.cu``."""
    q, k, v, keep = q.contiguous(), k.contiguous(), v.contiguous(), keep.contiguous()
    lead, (lq, d), lk = q.shape[:-2], q.shape[-2:], k.shape[-2]
    if out is None:
        out = torch.empty(q.shape, dtype=q.dtype, device=q.device)
    if out.shape != q.shape:
        raise ValueError(f"out must have shape {tuple(q.shape)}, got {tuple(out.shape)}")
    for name, t in (("q", q), ("k", k), ("v", v), ("out", out)):
        require_cuda_tensor(t, name, (q.dtype,), q.device)
    require_cuda_tensor(keep, "keep", (torch.bool,), q.device)
    mask, kind, heads, strides = _mask_args(attn_mask, tuple(lead), lq, lk)
    rows = (math.prod(lead) if lead else 1) * lq
    name = f"dsa_sparse_attention<{TEMPLATE_TYPES[q.dtype]}, {d}>"
    fast_launch(
        "dsa_sparse",
        name,
        (-(-rows // _SPARSE_ROWS),),
        (32 * _SPARSE_ROWS,),
        "pppppqiifpiiqqqq",
        (
            q.data_ptr(),
            k.data_ptr(),
            v.data_ptr(),
            keep.data_ptr(),
            out.data_ptr(),
            rows,
            lq,
            lk,
            scale,
            mask.data_ptr() if mask is not None else 0,
            kind,
            heads,
            *strides,
        ),
        q.device,
        (name,),
    )
    return out


_WORD = 32  # keys per pattern word
_PACK_BLOCK = 256
_PACK_MAX_BLOCKS = 132 * 16


@operation
def _pack_keep_bits_op(keep: torch.Tensor) -> torch.Tensor:
    # Reference path: each word is the sum of its kept keys' powers of two, in int64, then
    # wrapped to int32 (bit 31 set -> negative).
    lk, words = keep.shape[-1], -(-keep.shape[-1] // _WORD)
    x = torch.nn.functional.pad(keep.to(torch.int64), (0, words * _WORD - lk))
    x = x.view(*keep.shape[:-1], words, _WORD)
    w = (x << torch.arange(_WORD, device=keep.device)).sum(-1)
    return torch.where(w >= 2**31, w - 2**32, w).to(torch.int32)


@_pack_keep_bits_op.cuda
def _pack_keep_bits_cuda(keep: torch.Tensor) -> torch.Tensor:
    keep = keep.contiguous()
    lk, words = keep.shape[-1], -(-keep.shape[-1] // _WORD)
    bits = torch.empty((*keep.shape[:-1], words), dtype=torch.int32, device=keep.device)
    if bits.numel() == 0:
        return bits
    rows = bits.numel() // words
    if lk % _WORD == 0 and keep.data_ptr() % 16 == 0:
        chunks = keep.numel() // 16
        grid = min(-(-chunks // _PACK_BLOCK), _PACK_MAX_BLOCKS)
        fast_launch(
            "dsa_attention",
            "dsa_pack_bits32",
            (grid,),
            (_PACK_BLOCK,),
            "ppq",
            (keep.data_ptr(), bits.data_ptr(), chunks),
            keep.device,
            ("dsa_pack_bits32",),
        )
    else:
        grid = min(-(-bits.numel() // (_PACK_BLOCK // 32)), _PACK_MAX_BLOCKS)
        fast_launch(
            "dsa_attention",
            "dsa_pack_bits",
            (grid,),
            (_PACK_BLOCK,),
            "ppqii",
            (keep.data_ptr(), bits.data_ptr(), rows, lk, words),
            keep.device,
            ("dsa_pack_bits",),
        )
    return bits


def pack_keep_bits(keep: torch.Tensor) -> torch.Tensor:
    """A boolean pattern ``[..., Lq, Lk]`` as the packed bitmask of the fused DSA kernel.

    Parameters
    ----------
    keep : torch.Tensor
        Bool ``[..., Lq, Lk]``, True = key kept for that query.

    Returns
    -------
    torch.Tensor
        int32 ``[..., Lq, ceil(Lk / 32)]`` on ``keep``'s device: bit ``j % 32`` of word
        ``j // 32`` of row ``i`` is 1 iff ``keep[..., i, j]`` (bits past ``Lk`` are 0).
        On CUDA a kernel (``kernels/dsa_attention.cu``), elsewhere torch.

    Raises
    ------
    TypeError
        If ``keep`` is not a bool tensor.
    ValueError
        If it has fewer than 2 dimensions.

    Examples
    --------
    >>> keep = torch.zeros(1, 40, dtype=torch.bool)
    >>> keep[0, [0, 3, 31, 33]] = True
    >>> pack_keep_bits(keep).tolist()  # 1 + 8 + 2**31 wraps to int32, then key 33 -> bit 1
    [[-2147483639, 2]]
    """
    check_tensor("keep", keep, dtypes=(torch.bool,), min_ndim=2)
    return _pack_keep_bits_op(keep)


def dsa_fused_supported(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    keep: torch.Tensor | None,
    return_probs: bool,
    attn_mask,
) -> bool:
    """Whether the fused DSA kernel takes these (already checked) inputs: CUDA, fp16/bf16,
    head dim 16-128 with ``dv == d``, equal leading shapes, a pattern (when given) of shape
    ``[..., Lq, Lk]``, no mask, no probabilities, no autograd."""
    return q.is_cuda and _dsa_fused_takes(q, k, v, keep, return_probs, attn_mask)


def _dsa_fused_takes(q, k, v, keep, return_probs: bool, attn_mask) -> bool:
    """:func:`dsa_fused_supported` apart from the device (testable on the CPU)."""
    lead = q.shape[:-2]
    return (
        q.dtype in FUSED_DTYPES
        and q.shape[-1] in NM_HEAD_DIMS
        and v.shape[-1] == q.shape[-1]
        and lead == k.shape[:-2] == v.shape[:-2]
        and (keep is None or keep.shape == (*lead, q.shape[-2], k.shape[-2]))
        and attn_mask is None
        and not return_probs
        and q.shape[-2] > 0
        and k.shape[-2] > 0
        and q.numel() > 0
        and not _needs_grad(q, k, v)
    )


def fused_dsa_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    bits: torch.Tensor,
    scale: float,
    out: torch.Tensor | None = None,
    skip: bool = True,
    pairs: bool = False,
) -> torch.Tensor:
    """Attention on a packed pattern through ``kernels/dsa_attention.cu``.

    ``q``, ``k``, ``v`` as :func:`dsa_fused_supported`; ``bits`` the pattern as int32
    ``[..., Lq, ceil(Lk / 32)]`` (:func:`pack_keep_bits`; bits past ``Lk`` are ignored).
    ``skip`` (the default) lets a warp skip a key tile in which its 16 queries keep nothing;
    False is for measuring what the check costs.  ``pairs`` takes the softmax variant with one
    exponential per pair of columns unless both are kept (meant for sparse patterns; with
    ``skip`` only).
    """
    if not q.is_cuda:
        raise ValueError(f"q must be a CUDA tensor, got one on {q.device}")
    q, k, v, bits = q.contiguous(), k.contiguous(), v.contiguous(), bits.contiguous()
    lead, (lq, d), lk = q.shape[:-2], q.shape[-2:], k.shape[-2]
    words = -(-lk // _WORD)
    if bits.shape != (*lead, lq, words):
        raise ValueError(
            f"bits must have shape {(*lead, lq, words)} (ceil(Lk / 32) words a row), "
            f"got {tuple(bits.shape)}"
        )
    if out is None:
        out = torch.empty(q.shape, dtype=q.dtype, device=q.device)
    if out.shape != q.shape:
        raise ValueError(f"out must have shape {tuple(q.shape)}, got {tuple(out.shape)}")
    for name, t in (("q", q), ("k", k), ("v", v), ("out", out)):
        require_cuda_tensor(t, name, FUSED_DTYPES if name == "q" else (q.dtype,), q.device)
    require_cuda_tensor(bits, "bits", (torch.int32,), q.device)
    if d not in NM_HEAD_DIMS or v.shape[-1] != d or k.shape[-1] != d:
        raise ValueError(f"head dims must be equal and in {NM_HEAD_DIMS}, got {d}")
    rows = math.prod(lead) if lead else 1
    if rows == 0 or lq == 0:
        return out
    if lk == 0:
        return out.zero_()
    if pairs and not skip:
        raise ValueError("pairs=True needs skip=True (the kernel instances built)")
    flags = ", ".join("true" if f else "false" for f in (skip, pairs))
    name = f"dsa_attention_fwd<{TEMPLATE_TYPES[q.dtype]}, {d}, {flags}>"
    # Q tile + two stages of K and V tiles (padded rows) + two stages of 64 x 2 pattern words
    smem = 2 * (d + 8) * (_BM + 4 * 64) + 2 * _BM * 2 * 4
    fast_launch(
        "dsa_attention",
        name,
        (-(-lq // _BM), rows),
        (_THREADS,),
        "pppppiiif",
        (
            q.data_ptr(),
            k.data_ptr(),
            v.data_ptr(),
            bits.data_ptr(),
            out.data_ptr(),
            lq,
            lk,
            words,
            scale,
        ),
        q.device,
        (name,),
        shared_mem=smem,
    )
    return out
