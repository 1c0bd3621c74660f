"""DSA's prediction step on integer codes: approximate scores and a row-wise top-k mask.

Given the quantized codes of the projected queries and keys, every query row keeps the
``keep`` keys with the largest approximate score

.. math:: \\tilde s_{ij} = \\mathrm{fl}_{32}\\Big(\\sum_t c^Q_{it} c^K_{jt}\\Big)\\, \\sigma^K_j,

where :math:`\\sigma^K_j > 0` dequantizes key ``j`` (the query's own positive scale does not
change the order within its row).  Ties go to the lower key index.  The integer dot product is
exact, so the torch reference and the CUDA kernel (``kernels/dsa_predict.cu``) agree bit for
bit.
"""

from __future__ import annotations

import torch

from .._checks import check_int, check_tensor
from .._dispatch import operation
from .._kernels import require_cuda_tensor
from .._launch import fast_launch
from .masks import _row_topk_op  # ties to the lower index, like the kernel

__all__ = ["MAX_CODE_RANK", "approximate_scores", "predict_topk_mask"]

#: The largest projection rank the kernel holds for one query row.
MAX_CODE_RANK = 128
_CODE_DTYPES = (torch.int8, torch.int16)
_KERNEL_NAME = {torch.int8: "dsa_predict<signed char>", torch.int16: "dsa_predict<short>"}
_SMEM_LIMIT = 200 * 1024  # the scores of a block's rows live in shared memory
_WARPS = 4  # rows a block (one warp each; kMaxWarps in kernels/dsa_predict.cu)


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
    lq, rank = q_codes.shape[-2:]
    lk = k_codes.shape[-2]
    if rank > MAX_CODE_RANK:
        raise ValueError(f"the CUDA path needs a code rank r <= {MAX_CODE_RANK}, got {rank}")
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
        exprs=tuple(_KERNEL_NAME.values()),
        shared_mem=warps * _warp_bytes(lk),
    )
    return out


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
