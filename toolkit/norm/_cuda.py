"""The CUDA path of :func:`toolkit.norm.sampled_batch_norm`: fused kernels from
``kernels/bn_sampling.cu`` wrapped in an autograd function.

Forward: a reduction over the sampled data only, a per-channel finalize, one normalizing pass.
Backward: one reduction over every datum (the weight and bias gradients need it anyway), a
per-channel finalize, one elementwise pass that adds the statistics' terms to sampled data.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np
import torch

from .._kernels import TEMPLATE_TYPES, launch, require_cuda_tensor
from .functional import Sample, _sampled_norm_op

__all__ = ["CUDA_DTYPES"]

CUDA_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)
_BLOCK = 256
_KERNEL_NAMES = (
    "bn_sample_stats<{t}, 1>",
    "bn_sample_stats<{t}, 4>",
    "bn_stats_finalize<{t}>",
    "bn_normalize<{t}, 1>",
    "bn_normalize<{t}, 4>",
    "bn_backward_reduce<{t}, 1>",
    "bn_backward_reduce<{t}, 4>",
    "bn_backward_finalize<{t}>",
    "bn_backward_dx<{t}, 1>",
    "bn_backward_dx<{t}, 4>",
)
_INSTANCES = tuple(name.format(t=TEMPLATE_TYPES[d]) for d in CUDA_DTYPES for name in _KERNEL_NAMES)


def _stat_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


@functools.cache
def _sm_count(device: torch.device) -> int:
    return int(torch.cuda.get_device_properties(device).multi_processor_count)


def _splits(channels: int, work: int, device: torch.device) -> int:
    """Blocks per channel: enough for ~8 blocks (2048 threads) per SM, each thread with at
    least one unrolled trip of 16 data."""
    sms = _sm_count(device)
    wanted = math.ceil(8 * sms / channels)
    return max(1, min(wanted, math.ceil(work / (16 * _BLOCK))))


def _vec(*tensors: torch.Tensor, plane: int) -> int:
    aligned = all(t.data_ptr() % (4 * t.element_size()) == 0 for t in tensors)
    return 4 if plane % 4 == 0 and aligned else 1


def _elementwise_grid(packs: int, device: torch.device) -> int:
    sms = _sm_count(device)
    return max(1, min(math.ceil(packs / _BLOCK), 32 * sms))


def _sample_index(
    sample: Sample, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """int32 ``rows`` and, per batch row, ``h0``, ``w0`` (``h0 = -1`` for rows outside the
    sample), built in NumPy (torch's indexing ops on small CPU tensors cost tens of us each)
    and sent in one copy."""
    n = sample.shape[0]
    rows = sample.rows.cpu().numpy()
    k = rows.shape[0]
    index = np.empty(k + 2 * n, dtype=np.int32)
    index[:k] = rows
    index[k : k + n] = -1
    index[k + n :] = 0
    if sample.whole_rows:
        index[k + rows] = 0
    else:
        starts = sample.starts.cpu().numpy()
        index[k + rows] = starts[:, 0]
        index[k + n + rows] = starts[:, 1]
    on_device = torch.from_numpy(index).to(device, non_blocking=True)
    return on_device[:k], on_device[k : k + n], on_device[k + n :]


def _forward(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor,
    sample: Sample,
    eps: float,
    center: bool,
    out: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Launch the forward kernels; ``x`` contiguous ``[N, C, H, W]``.  Returns ``y`` (written
    into ``out`` when given), ``stats`` (rows mean, var, invstd, scale, shift), ``rows`` and
    ``h0``, ``w0``."""
    device = x.device
    c, h, w = x.shape[1:]
    t = TEMPLATE_TYPES[x.dtype]
    sdt = _stat_dtype(x.dtype)
    if x.shape[0] * h * w >= 2**31:
        raise ValueError(f"x has {x.shape[0] * h * w} data per channel; the kernels take < 2^31")
    rows, h0, w0 = _sample_index(sample, device)
    ph, pw = sample.patch
    k = int(rows.numel())
    splits = _splits(c, sample.count, device)
    partial = torch.empty(2 * c * splits, dtype=torch.float64, device=device)
    stats = torch.empty(5, c, dtype=sdt, device=device)
    y = torch.empty_like(x) if out is None else out
    if y.shape != x.shape:
        raise ValueError(f"out must have shape {tuple(x.shape)}, got {tuple(y.shape)}")
    for name, tensor, dtypes in (
        ("x", x, CUDA_DTYPES),
        ("out", y, (x.dtype,)),
        ("weight", weight, (sdt,)),
        ("bias", bias, (sdt,)),
        ("rows", rows, (torch.int32,)),
        ("h0", h0, (torch.int32,)),
        ("w0", w0, (torch.int32,)),
    ):
        require_cuda_tensor(tensor, name, dtypes, device)
    i32 = np.int32
    # Whole rows are read as packs of 4; windows take the kernel's scalar path.
    svec = _vec(x, plane=h * w) if sample.whole_rows else 1
    launch(
        "bn_sampling",
        f"bn_sample_stats<{t}, {svec}>",
        0,
        (x, rows, h0, w0, partial, i32(c), i32(h), i32(w), i32(k), i32(ph), i32(pw),
         i32(splits), i32(center)),
        device=device,
        name_expressions=_INSTANCES,
        block=_BLOCK,
        grid=c * splits,
    )  # fmt: skip
    launch(
        "bn_sampling",
        f"bn_stats_finalize<{t}>",
        c,
        (x, rows, h0, w0, partial, weight, bias, stats, i32(c), i32(h), i32(w), i32(splits),
         np.int64(sample.count), np.float64(eps), i32(center)),
        device=device,
        name_expressions=_INSTANCES,
        block=_BLOCK,
    )  # fmt: skip
    vec = _vec(x, y, plane=h * w)
    packs = x.numel() // vec
    launch(
        "bn_sampling",
        f"bn_normalize<{t}, {vec}>",
        0,
        (x, y, stats, np.int64(packs), i32(c), np.int64(h * w)),
        device=device,
        name_expressions=_INSTANCES,
        block=_BLOCK,
        grid=_elementwise_grid(packs, device),
    )
    return y, stats, rows, h0, w0


def _backward(
    dy: torch.Tensor,
    x: torch.Tensor,
    weight: torch.Tensor,
    stats: torch.Tensor,
    h0: torch.Tensor,
    w0: torch.Tensor,
    sample: Sample,
    center: bool,
    out: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``dx`` (written into ``out`` when given), ``grad_weight``, ``grad_bias`` (the last two in
    the statistics' dtype)."""
    device = x.device
    n, c, h, w = x.shape
    t = TEMPLATE_TYPES[x.dtype]
    dy = dy.contiguous()
    require_cuda_tensor(dy, "grad_output", (x.dtype,), device)
    splits = _splits(c, n * h * w, device)
    partial = torch.empty(2 * c * splits, dtype=torch.float64, device=device)
    coef = torch.empty(5, c, dtype=stats.dtype, device=device)
    dx = torch.empty_like(x) if out is None else out
    if dx.shape != x.shape:
        raise ValueError(f"out must have shape {tuple(x.shape)}, got {tuple(dx.shape)}")
    require_cuda_tensor(dx, "out", (x.dtype,), device)
    i32 = np.int32
    rvec = _vec(dy, x, plane=h * w)
    launch(
        "bn_sampling",
        f"bn_backward_reduce<{t}, {rvec}>",
        0,
        (dy, x, stats, partial, i32(n), i32(c), np.int64(h * w), i32(splits)),
        device=device,
        name_expressions=_INSTANCES,
        block=_BLOCK,
        grid=c * splits,
    )
    launch(
        "bn_sampling",
        f"bn_backward_finalize<{t}>",
        c,
        (partial, stats, weight, coef, i32(c), i32(splits), np.int64(sample.count), i32(center)),
        device=device,
        name_expressions=_INSTANCES,
        block=_BLOCK,
    )
    vec = _vec(dy, x, dx, plane=h * w)
    packs = x.numel() // vec
    ph, pw = sample.patch
    launch(
        "bn_sampling",
        f"bn_backward_dx<{t}, {vec}>",
        0,
        (dy, x, dx, stats, coef, h0, w0, np.int64(packs), i32(c), i32(h), i32(w), i32(ph),
         i32(pw), i32(sample.whole_rows)),
        device=device,
        name_expressions=_INSTANCES,
        block=_BLOCK,
        grid=_elementwise_grid(packs, device),
    )  # fmt: skip
    return dx, coef[0], coef[1]


class _SampledNormFunction(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any,
        x4: torch.Tensor,
        weight: torch.Tensor | None,
        bias: torch.Tensor | None,
        sample: Sample,
        eps: float,
        center: bool,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        # Inputs keep requires_grad inside forward, and DLPack refuses to export such tensors.
        x4 = x4.detach()
        c = x4.shape[1]
        sdt = _stat_dtype(x4.dtype)
        gamma = torch.ones(c, dtype=sdt, device=x4.device) if weight is None else weight
        beta = torch.zeros(c, dtype=sdt, device=x4.device) if bias is None else bias
        gamma = gamma.detach().to(sdt).contiguous()  # no-ops (no copies) in the usual case
        beta = beta.detach().to(sdt).contiguous()
        y, stats, _, h0, w0 = _forward(x4, gamma, beta, sample, eps, center)
        ctx.save_for_backward(x4, gamma, stats, h0, w0)
        ctx.sample, ctx.center = sample, center
        ctx.param_dtypes = (
            None if weight is None else weight.dtype,
            None if bias is None else bias.dtype,
        )
        mean, var = stats[0].clone(), stats[1].clone()
        ctx.mark_non_differentiable(mean, var)
        return y, mean, var

    @staticmethod
    def backward(ctx: Any, dy: torch.Tensor, _dmean: Any, _dvar: Any) -> tuple[Any, ...]:
        x4, gamma, stats, h0, w0 = ctx.saved_tensors
        dx, gw, gb = _backward(dy.detach(), x4, gamma, stats, h0, w0, ctx.sample, ctx.center)
        wdt, bdt = ctx.param_dtypes
        grad_w = gw.to(wdt) if wdt is not None and ctx.needs_input_grad[1] else None
        grad_b = gb.to(bdt) if bdt is not None and ctx.needs_input_grad[2] else None
        return dx, grad_w, grad_b, None, None, None


@_sampled_norm_op.cuda
def _sampled_norm_cuda(
    x: torch.Tensor,
    weight: torch.Tensor | None,
    bias: torch.Tensor | None,
    sample: Sample,
    eps: float,
    center: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    if x.dtype not in CUDA_DTYPES:
        raise TypeError(f"x must have dtype in {list(CUDA_DTYPES)}, got {x.dtype}")
    n, h, w = sample.shape
    x4 = x.contiguous() if x.dim() == 4 else x.reshape(n, x.shape[1], h, w).contiguous()
    y, mean, var = _SampledNormFunction.apply(x4, weight, bias, sample, eps, center)
    return (y if x.dim() == 4 else y.reshape(x.shape)), mean, var
