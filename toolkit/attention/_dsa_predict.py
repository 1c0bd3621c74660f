"""DSA's prediction step on integer codes: approximate scores and a row-wise top-k mask.

Given the quantized codes of the projected queries and keys, every query row keeps the
``keep`` keys with the largest approximate score

.. math:: \\tilde s_{ij} = \\mathrm{fl}_{32}\\Big(\\sum_t c^Q_{it} c^K_{jt}\\Big)\\, \\sigma^K_j,

where :math:`\\sigma^K_j > 0` dequantizes key ``j`` (the query's own positive scale does not
change the order within its row).  Ties go to the lower key index.  The integer dot product is
exact, so the torch reference and the CUDA kernels (``kernels/dsa_predict.cu``) agree bit for
bit.

:func:`predict_topk_bits` gives the same selection as a packed bitmask (bit ``j % 32`` of int32
word ``j // 32``), the form the fused sparse attention kernel reads; :func:`pack_bits` and
:func:`unpack_bits` convert between the two forms.
"""

from __future__ import annotations

import functools

import torch

from .._checks import check_int, check_tensor
from .._dispatch import operation
from .._kernels import TEMPLATE_TYPES, require_cuda_tensor
from .._launch import fast_launch
from .masks import _row_topk_op  # ties to the lower index, like the kernel

__all__ = [
    "MAX_CODE_RANK",
    "approximate_scores",
    "pack_bits",
    "predict_topk_bits",
    "predict_topk_mask",
    "unpack_bits",
]

#: The largest projection rank the kernel holds for one query row.
MAX_CODE_RANK = 128
_CODE_DTYPES = (torch.int8, torch.int16)
_KERNEL_NAME = {torch.int8: "dsa_predict<signed char>", torch.int16: "dsa_predict<short>"}
_BITS_KERNEL_NAME = {
    torch.int8: "dsa_predict_bits<signed char>",
    torch.int16: "dsa_predict_bits<short>",
}
_MMA_KERNEL_NAME = "dsa_predict_bits_mma<signed char>"
_CODES_INPUTS = (torch.float16, torch.bfloat16, torch.float32)
_CODES_KERNEL_NAME = {
    (x, c): f"dsa_codes<{TEMPLATE_TYPES[x]}, {'signed char' if c == torch.int8 else 'short'}>"
    for x in _CODES_INPUTS
    for c in _CODE_DTYPES
}
_CODES_MAX_D = 256  # the row a warp of dsa_codes holds (8 inputs a lane)
_EXPRS = (
    *_KERNEL_NAME.values(),
    *_BITS_KERNEL_NAME.values(),
    _MMA_KERNEL_NAME,
    *_CODES_KERNEL_NAME.values(),
)
#: int8 scores on tensor cores (dsa_predict_bits_mma) where they fit, else dp4a.
_USE_TENSOR_CORES = True
#: The bits kernels' candidate filter (kernels/dsa_predict.cu, select_row): rank only the
#: scores above a sampled threshold where it applies; False forces the full selection.
_FILTER = True
_MMA_GROUPS = (16, 8)  # query rows a group of dsa_predict_bits_mma (the mma's M is 16)
_SMEM_LIMIT = 200 * 1024  # the scores of a block's rows live in shared memory
_WARPS = 4  # rows a block (one warp each; kMaxWarps in kernels/dsa_predict.cu)
_BITS_WARP_CHOICES = (16, 8, 4, 2, 1)  # warps a block of dsa_predict_bits (<= 512 threads)
_BITS_WARP_SCRATCH = 4 * 256 + 8 * 64  # a warp's bucket counters and kCand candidates
_BITS_MAX_WARPS_PER_SM = 32  # 64 registers a thread (ptxas -v) leave room for 32 warps
_BITS_BLOCKS_PER_SLOT = 4  # blocks per resident block slot: a few waves balance the tail


def _warp_bytes(lk: int) -> int:
    """Dynamic shared memory a row's warp takes: its ``lk`` float32 scores (the kernel's
    bucket counters and candidates, 6 KB a block, are static)."""
    return 4 * lk


def _check(q_codes: object, k_codes: object, k_scale: object, keep: object) -> int:
    qc = check_tensor("q_codes", q_codes, dtypes=_CODE_DTYPES, min_ndim=2)
    kc = check_tensor("k_codes", k_codes, dtypes=(qc.dtype,), ndim=qc.dim(), device=qc.device)
    ks = check_tensor("k_scale", k_scale, dtypes=(torch.float32,), device=qc.device)
    if qc.shape[:-2] != kc.shape[:-2] or qc.shape[-1] != kc.shape[-1]:
        raise ValueError(
            f"q_codes {tuple(qc.shape)} and k_codes {tuple(kc.shape)} "
            "must share leading dimensions and the code rank r"
        )
    if ks.shape != kc.shape[:-1]:
        raise ValueError(f"k_scale must have shape {tuple(kc.shape[:-1])}, got {tuple(ks.shape)}")
    return check_int("keep", keep, 1, kc.shape[-2])


def approximate_scores(
    q_codes: torch.Tensor, k_codes: torch.Tensor, k_scale: torch.Tensor
) -> torch.Tensor:
    """The float32 ranking scores ``fl32(q_codes . k_codes) * k_scale`` ``[..., Lq, Lk]``."""
    # float64 holds every int16 dot product exactly; the product with the scale is then
    # rounded once to float32, as the kernel does.
    dots = torch.matmul(q_codes.double(), k_codes.double().transpose(-1, -2))
    return dots.float() * k_scale.unsqueeze(-2)


@operation
def _predict_op(q_codes, k_codes, k_scale, keep: int) -> torch.Tensor:
    return _row_topk_op(approximate_scores(q_codes, k_codes, k_scale), keep, backend="cpu")


@_predict_op.cuda
def _predict_cuda(q_codes, k_codes, k_scale, keep: int, out=None) -> torch.Tensor:
    # The bits kernels read each slice's keys once per tile of rows instead of once per row
    # and write 32x fewer bytes; unpacking costs one elementwise pass.  Where their shared
    # memory does not fit, the row-wise kernel.
    mma = _mma_plan(q_codes, k_codes) if _USE_TENSOR_CORES else None
    plan = _bits_plan(q_codes, k_codes)
    if mma is None and plan is None:
        return _predict_cuda_rowwise(q_codes, k_codes, k_scale, keep, out=out)
    shape = (*q_codes.shape[:-1], k_codes.shape[-2])
    if out is not None and out.shape != shape:
        raise ValueError(f"out must have shape {shape}, got {tuple(out.shape)}")
    mask = unpack_bits(_bits_cuda(q_codes, k_codes, k_scale, keep), shape[-1])
    if out is None:
        return mask
    require_cuda_tensor(out, "out", (torch.bool,), q_codes.device)
    return out.copy_(mask)


def _predict_cuda_rowwise(q_codes, k_codes, k_scale, keep: int, out=None) -> torch.Tensor:
    """The bool mask from ``dsa_predict`` (one warp a row, keys read from global memory)."""
    lq, rank = q_codes.shape[-2:]
    lk = k_codes.shape[-2]
    _check_rank(q_codes)
    if _warp_bytes(lk) > _SMEM_LIMIT:
        raise ValueError(
            f"the CUDA path holds one row's keys in shared memory: Lk <= "
            f"{_SMEM_LIMIT // 4}, got {lk}"
        )
    q_codes, k_codes, k_scale = (t.contiguous() for t in (q_codes, k_codes, k_scale))
    shape = (*q_codes.shape[:-1], lk)
    if out is None:
        out = torch.empty(shape, dtype=torch.bool, device=q_codes.device)
    if out.shape != shape:
        raise ValueError(f"out must have shape {shape}, got {tuple(out.shape)}")
    device = q_codes.device
    for name, t, dtypes in (
        ("q_codes", q_codes, _CODE_DTYPES),
        ("k_codes", k_codes, _CODE_DTYPES),
        ("k_scale", k_scale, (torch.float32,)),
        ("out", out, (torch.bool,)),
    ):
        require_cuda_tensor(t, name, dtypes, device)
    rows = q_codes.numel() // max(rank, 1)
    if rows == 0 or lk == 0:
        return out
    warps = min(_WARPS, _SMEM_LIMIT // _warp_bytes(lk))
    name = _KERNEL_NAME[q_codes.dtype]
    fast_launch(
        "dsa_predict",
        name,
        (-(-rows // warps),),
        (32 * warps,),
        "ppppqiiii",
        (
            q_codes.data_ptr(),
            k_codes.data_ptr(),
            k_scale.data_ptr(),
            out.data_ptr(),
            rows,
            lq,
            lk,
            rank,
            keep,
        ),
        device,
        exprs=_EXPRS,
        shared_mem=warps * _warp_bytes(lk),
    )
    return out


def codes_supported(x: torch.Tensor, rank: int) -> bool:
    """Whether :func:`dsa_codes_cuda` takes ``x`` ``[..., d]`` with a rank-``rank`` projection."""
    return (
        x.is_cuda
        and x.dtype in _CODES_INPUTS
        and 1 <= x.shape[-1] <= _CODES_MAX_D
        and 1 <= rank <= MAX_CODE_RANK
    )


def dsa_codes_cuda(
    x: torch.Tensor, proj: torch.Tensor, bits: int, bad: torch.Tensor, index: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """DSA's codes and scales of ``x @ proj`` in one kernel (``dsa_codes`` in
    ``kernels/dsa_predict.cu``; the rule of ``dsa.py``'s quantization), for inputs
    :func:`codes_supported` takes.  ``proj`` is float32 ``[d, r]`` on ``x``'s device; the
    number of rows with a NaN or infinite projection is added to int32 ``bad[index]``."""
    x, proj = x.contiguous(), proj.contiguous()
    d, rank = x.shape[-1], proj.shape[-1]
    code_dtype = torch.int8 if bits <= 8 else torch.int16
    codes = torch.empty((*x.shape[:-1], rank), dtype=code_dtype, device=x.device)
    scale = torch.empty(x.shape[:-1], dtype=torch.float32, device=x.device)
    require_cuda_tensor(proj, "proj", (torch.float32,), x.device)
    require_cuda_tensor(bad, "bad", (torch.int32,), x.device)
    if proj.shape[0] != d or not 0 <= index < bad.numel():
        raise ValueError(f"proj {tuple(proj.shape)} must be [d={d}, r], index within bad")
    rows = x.numel() // d
    if rows == 0:
        return codes, scale
    warps = 8
    fast_launch(
        "dsa_predict",
        _CODES_KERNEL_NAME[(x.dtype, code_dtype)],
        (-(-rows // warps),),
        (32 * warps,),
        "pppppqiii",
        (
            x.data_ptr(),
            proj.data_ptr(),
            codes.data_ptr(),
            scale.data_ptr(),
            bad.data_ptr() + 4 * index,
            rows,
            d,
            rank,
            bits,
        ),
        x.device,
        exprs=_EXPRS,
    )
    return codes, scale


def pack_bits(mask: torch.Tensor) -> torch.Tensor:
    """Pack a boolean mask ``[..., L]`` into int32 words ``[..., ceil(L / 32)]``.

    Bit ``j % 32`` of word ``j // 32`` is ``mask[..., j]``; the bits past ``L`` are 0.

    Parameters
    ----------
    mask : torch.Tensor
        A ``torch.bool`` tensor with at least one dimension.

    Returns
    -------
    torch.Tensor
        ``torch.int32`` words, on ``mask``'s device.

    Raises
    ------
    TypeError
        If ``mask`` is not a boolean tensor.

    Examples
    --------
    >>> import torch
    >>> pack_bits(torch.tensor([True, False, True])).tolist()
    [5]
    >>> pack_bits(torch.ones(33, dtype=torch.bool)).tolist()
    [-1, 1]
    """
    mask = check_tensor("mask", mask, dtypes=(torch.bool,), min_ndim=1)
    length = mask.shape[-1]
    words = -(-length // 32)
    padded = torch.nn.functional.pad(mask.to(torch.int64), (0, 32 * words - length))
    weights = torch.ones((), dtype=torch.int64, device=mask.device) << torch.arange(
        32, device=mask.device
    )
    packed = (padded.reshape(*mask.shape[:-1], words, 32) * weights).sum(-1)
    # Words are unsigned 32-bit patterns; int32 holds the same bits.
    return torch.where(packed >= 2**31, packed - 2**32, packed).to(torch.int32)


def unpack_bits(bits: torch.Tensor, lk: int) -> torch.Tensor:
    """The boolean mask ``[..., lk]`` of packed words ``[..., ceil(lk / 32)]``.

    The inverse of :func:`pack_bits`: entry ``j`` is bit ``j % 32`` of word ``j // 32``.

    Parameters
    ----------
    bits : torch.Tensor
        ``torch.int32`` words with at least one dimension.
    lk : int
        The mask's last dimension; ``bits.shape[-1]`` must be ``ceil(lk / 32)``.

    Returns
    -------
    torch.Tensor
        A ``torch.bool`` mask on ``bits``' device.

    Raises
    ------
    TypeError
        If ``bits`` is not an int32 tensor or ``lk`` not an int.
    ValueError
        If ``lk`` does not match the number of words.

    Examples
    --------
    >>> import torch
    >>> unpack_bits(torch.tensor([5], dtype=torch.int32), 3).tolist()
    [True, False, True]
    """
    bits = check_tensor("bits", bits, dtypes=(torch.int32,), min_ndim=1)
    lk = check_int("lk", lk, 0)
    words = bits.shape[-1]
    if -(-lk // 32) != words:
        raise ValueError(f"lk must satisfy ceil(lk / 32) == bits.shape[-1] == {words}, got lk={lk}")
    # Byte b of a word holds bits 8b .. 8b + 7: little-endian, as on every CUDA device and
    # on the CPUs torch supports.  Unpacking bytes keeps the temporaries at the mask's size.
    as_bytes = bits.contiguous().view(torch.uint8)
    shifts = torch.arange(8, dtype=torch.uint8, device=bits.device)
    unpacked = (as_bytes.unsqueeze(-1) >> shifts) & 1
    return unpacked.reshape(*bits.shape[:-1], 32 * words)[..., :lk].bool()


@operation
def _bits_op(q_codes, k_codes, k_scale, keep: int) -> torch.Tensor:
    return pack_bits(_predict_op.reference(q_codes, k_codes, k_scale, keep))


@functools.cache
def _device_limits(index: int) -> tuple[int, int, int]:
    """Multiprocessors, shared memory a block may opt into, and shared memory a
    multiprocessor holds (H100/H200 values where torch does not report them)."""
    props = torch.cuda.get_device_properties(index)
    return (
        int(props.multi_processor_count),
        int(getattr(props, "shared_memory_per_block_optin", 227 * 1024)),
        int(getattr(props, "shared_memory_per_multiprocessor", 228 * 1024)),
    )


def _bits_smem(warps: int, lk: int, rank: int, dtype: torch.dtype) -> int:
    """Dynamic shared memory of ``dsa_predict_bits`` (its layout comment): per warp the
    scores and scratch, the key scales, then 16-byte aligned key codes."""
    head = warps * (4 * lk + _BITS_WARP_SCRATCH) + 4 * lk
    keys = lk * 4 * (-(-rank // 4)) if dtype == torch.int8 else lk * 2 * rank
    return -(-head // 16) * 16 + keys


def _pick_block(
    q_codes: torch.Tensor, smem_of, warp_choices, multiple_of
) -> tuple[int, int, int, int] | None:
    """``(warps, rows_per_block, blocks_per_slice, smem)``: the block size with the most
    resident warps per multiprocessor (``smem_of(warps)`` bytes of shared memory a block), rows
    a block a multiple of ``multiple_of`` and about four waves of blocks; None where no choice
    fits."""
    lq, rank = q_codes.shape[-2:]
    index = q_codes.device.index
    sms, optin, per_sm = _device_limits(index if index is not None else torch.cuda.current_device())
    best = None
    for warps in warp_choices:
        smem = smem_of(warps)
        if smem > optin:
            continue
        blocks = min(per_sm // (smem + 1024), _BITS_MAX_WARPS_PER_SM // warps)
        if blocks >= 1 and (best is None or blocks * warps > best[1] * best[0]):
            best = (warps, blocks, smem)
    if best is None:
        return None
    warps, blocks, smem = best
    rows = q_codes.numel() // max(rank, 1)
    step = max(warps, multiple_of)
    target = -(-rows // (_BITS_BLOCKS_PER_SLOT * sms * blocks))  # rows a block for ~4 waves
    per_block = min(-(-max(target, 1) // step) * step, -(-max(lq, 1) // step) * step)
    return warps, per_block, -(-max(lq, 1) // per_block), smem


def _check_rank(q_codes: torch.Tensor) -> None:
    rank = q_codes.shape[-1]
    if rank > MAX_CODE_RANK:
        raise ValueError(f"the CUDA path needs a code rank r <= {MAX_CODE_RANK}, got {rank}")


def _bits_plan(q_codes: torch.Tensor, k_codes: torch.Tensor) -> tuple[int, int, int] | None:
    """``(warps, rows_per_block, blocks_per_slice)`` for ``dsa_predict_bits``, or None where
    even one warp's shared memory does not fit."""
    _check_rank(q_codes)
    lk, rank = k_codes.shape[-2], q_codes.shape[-1]
    picked = _pick_block(
        q_codes, lambda w: _bits_smem(w, lk, rank, q_codes.dtype), _BITS_WARP_CHOICES, 1
    )
    return None if picked is None else picked[:3]


def _mma_smem(group: int, warps: int, lk: int, rank: int) -> int:
    """Dynamic shared memory of ``dsa_predict_bits_mma`` (its layout comment)."""
    stride = -(-lk // 32) * 32 + 8  # a score row, padded against bank conflicts
    head = 4 * group * stride + warps * _BITS_WARP_SCRATCH + 4 * lk
    return -(-head // 16) * 16 + 8 * (-(-lk // 8)) * 4 * 4 * (-(-rank // 16))


def _mma_plan(q_codes: torch.Tensor, k_codes: torch.Tensor) -> tuple[int, int, int, int] | None:
    """``(warps, rows_per_block, blocks_per_slice, group)`` for ``dsa_predict_bits_mma``
    (int8 codes): the largest row group that fits, or None."""
    _check_rank(q_codes)
    if q_codes.dtype != torch.int8:
        return None
    lk, rank = k_codes.shape[-2], q_codes.shape[-1]
    for group in _MMA_GROUPS:
        choices = tuple(w for w in _BITS_WARP_CHOICES if w <= group)
        picked = _pick_block(q_codes, lambda w, g=group: _mma_smem(g, w, lk, rank), choices, group)
        if picked is not None:
            return (*picked[:3], group)
    return None


def _aligned(t: torch.Tensor) -> torch.Tensor:
    """``t`` contiguous with a 16-byte aligned start (the kernel's vector loads need it)."""
    t = t.contiguous()
    return t if t.data_ptr() % 16 == 0 else t.clone()


def _bits_out(q_codes: torch.Tensor, lk: int, out) -> torch.Tensor:
    """The int32 ``[..., Lq, ceil(Lk / 32)]`` output: ``out`` checked, or a new tensor."""
    shape = (*q_codes.shape[:-1], -(-lk // 32))
    if out is None:
        return torch.empty(shape, dtype=torch.int32, device=q_codes.device)
    if out.shape != shape:
        raise ValueError(f"out must have shape {shape}, got {tuple(out.shape)}")
    require_cuda_tensor(out, "out", (torch.int32,), q_codes.device)
    return out


def _bits_launch(
    q_codes, k_codes, k_scale, keep: int, plan, out=None, filter: bool | None = None
) -> torch.Tensor:
    """Run ``dsa_predict_bits`` with ``plan`` from :func:`_bits_plan`; ``filter`` (default
    ``_FILTER``) enables the candidate filter."""
    warps, per_block, per_slice = plan
    lq, rank = q_codes.shape[-2:]
    lk = k_codes.shape[-2]
    q_codes, k_codes, k_scale = (_aligned(t) for t in (q_codes, k_codes, k_scale))
    out = _bits_out(q_codes, lk, out)
    device = q_codes.device
    for name, t, dtypes in (
        ("q_codes", q_codes, _CODE_DTYPES),
        ("k_codes", k_codes, (q_codes.dtype,)),
        ("k_scale", k_scale, (torch.float32,)),
    ):
        require_cuda_tensor(t, name, dtypes, device)
    slices = q_codes.numel() // max(lq * rank, 1)
    if slices == 0 or lq == 0 or lk == 0:
        return out
    fast_launch(
        "dsa_predict",
        _BITS_KERNEL_NAME[q_codes.dtype],
        (slices * per_slice,),
        (32 * warps,),
        "ppppiiiiiii",
        (
            q_codes.data_ptr(),
            k_codes.data_ptr(),
            k_scale.data_ptr(),
            out.data_ptr(),
            lq,
            lk,
            rank,
            keep,
            per_block,
            per_slice,
            int(_FILTER if filter is None else filter),
        ),
        device,
        exprs=_EXPRS,
        shared_mem=_bits_smem(warps, lk, rank, q_codes.dtype),
    )
    return out


def _mma_launch(
    q_codes, k_codes, k_scale, keep: int, plan, out=None, filter: bool | None = None
) -> torch.Tensor:
    """Run ``dsa_predict_bits_mma`` with ``plan`` from :func:`_mma_plan`; ``filter`` as for
    :func:`_bits_launch`."""
    warps, per_block, per_slice, group = plan
    lq, rank = q_codes.shape[-2:]
    lk = k_codes.shape[-2]
    q_codes, k_codes, k_scale = (_aligned(t) for t in (q_codes, k_codes, k_scale))
    out = _bits_out(q_codes, lk, out)
    device = q_codes.device
    for name, t, dtypes in (
        ("q_codes", q_codes, (torch.int8,)),
        ("k_codes", k_codes, (torch.int8,)),
        ("k_scale", k_scale, (torch.float32,)),
    ):
        require_cuda_tensor(t, name, dtypes, device)
    slices = q_codes.numel() // max(lq * rank, 1)
    if slices == 0 or lq == 0 or lk == 0:
        return out
    fast_launch(
        "dsa_predict",
        _MMA_KERNEL_NAME,
        (slices * per_slice,),
        (32 * warps,),
        "ppppiiiiiiii",
        (
            q_codes.data_ptr(),
            k_codes.data_ptr(),
            k_scale.data_ptr(),
            out.data_ptr(),
            lq,
            lk,
            rank,
            keep,
            per_block,
            per_slice,
            group,
            int(_FILTER if filter is None else filter),
        ),
        device,
        exprs=_EXPRS,
        shared_mem=_mma_smem(group, warps, lk, rank),
    )
    return out


@_bits_op.cuda
def _bits_cuda(q_codes, k_codes, k_scale, keep: int, out=None) -> torch.Tensor:
    # Tensor-core scores where they fit (int8), else dp4a / int16 loops with the keys in
    # shared memory, else the row-wise kernel.
    mma = _mma_plan(q_codes, k_codes) if _USE_TENSOR_CORES else None
    if mma is not None:
        return _mma_launch(q_codes, k_codes, k_scale, keep, mma, out=out)
    plan = _bits_plan(q_codes, k_codes)
    if plan is None:  # the slice's keys do not fit in shared memory: the row-wise kernel
        bits = pack_bits(_predict_cuda_rowwise(q_codes, k_codes, k_scale, keep))
        return bits if out is None else out.copy_(bits)
    return _bits_launch(q_codes, k_codes, k_scale, keep, plan, out=out)


def predict_topk_bits(
    q_codes: torch.Tensor,
    k_codes: torch.Tensor,
    k_scale: torch.Tensor,
    keep: int,
    *,
    backend: str | None = None,
) -> torch.Tensor:
    """:func:`predict_topk_mask`'s selection as a packed bitmask.

    Parameters
    ----------
    q_codes, k_codes, k_scale, keep, backend
        As for :func:`predict_topk_mask`.

    Returns
    -------
    torch.Tensor
        ``torch.int32`` words ``[..., Lq, ceil(Lk / 32)]``: bit ``j % 32`` of word ``j // 32``
        of row ``i`` is 1 iff key ``j`` is kept for query ``i``; bits past ``Lk`` are 0.
        :func:`unpack_bits` gives the boolean mask.

    Raises
    ------
    TypeError, ValueError
        As for :func:`predict_topk_mask`.

    Examples
    --------
    >>> import torch
    >>> q = torch.tensor([[[1, 0], [0, 1]]], dtype=torch.int8)
    >>> k = torch.tensor([[[3, 0], [0, 2], [1, 1]]], dtype=torch.int8)
    >>> predict_topk_bits(q, k, torch.ones(1, 3), keep=2).tolist()
    [[[5], [6]]]
    """
    keep = _check(q_codes, k_codes, k_scale, keep)
    return _bits_op(q_codes, k_codes, k_scale, keep, backend=backend)


def predict_topk_mask(
    q_codes: torch.Tensor,
    k_codes: torch.Tensor,
    k_scale: torch.Tensor,
    keep: int,
    *,
    backend: str | None = None,
) -> torch.Tensor:
    """Row-wise top-``keep`` mask of the approximate scores of integer codes.

    Parameters
    ----------
    q_codes : torch.Tensor
        ``[..., Lq, r]`` int8 or int16 codes of the projected queries.
    k_codes : torch.Tensor
        ``[..., Lk, r]`` codes of the projected keys (same dtype).
    k_scale : torch.Tensor
        ``[..., Lk]`` float32 positive dequantization scale of each key.
    keep : int
        Keys kept per query row, ``1 <= keep <= Lk``.
    backend : str, optional
        ``"cpu"``/``"cuda"`` forces a path; ``None`` follows the input's device.

    Returns
    -------
    torch.Tensor
        A ``torch.bool`` mask ``[..., Lq, Lk]`` with exactly ``keep`` True per row.

    Examples
    --------
    >>> import torch
    >>> q = torch.tensor([[[1, 0], [0, 1]]], dtype=torch.int8)
    >>> k = torch.tensor([[[3, 0], [0, 2], [1, 1]]], dtype=torch.int8)
    >>> predict_topk_mask(q, k, torch.ones(1, 3), keep=1).int().tolist()
    [[[1, 0, 0], [0, 1, 0]]]
    """
    keep = _check(q_codes, k_codes, k_scale, keep)
    return _predict_op(q_codes, k_codes, k_scale, keep, backend=backend)
