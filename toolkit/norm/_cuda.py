"""The CUDA path of the sampled normalizations: fused kernels from ``kernels/bn_sampling.cu``
wrapped in one autograd function.

Forward: a reduction over the sampled data only, a per-channel finalize (which also updates
the running statistics), one normalizing pass.  Backward: one reduction over every datum (the
weight and bias gradients need it anyway), a per-channel finalize, one elementwise pass that
adds the statistics' terms to sampled data.

The layers are host-bound when issuing them costs more than the kernels take, so the per-call
work here is kept small: kernels go through the driver launch of :mod:`toolkit._launch`, what
depends only on the shape is computed once (:func:`_plan`), the layers draw their sample on
the device (:func:`draw_index`, no host-to-device copy and no synchronisation), and the
running statistics are updated inside the finalize kernel.
"""

from __future__ import annotations

import functools
import math
from typing import Any, NamedTuple

import numpy as np
import torch

from .._backend import active_backend, gpu_available
from .._kernels import TEMPLATE_TYPES, require_cuda_tensor
from .._launch import Launcher
from .functional import Sample, _sampled_norm_op

__all__ = ["CUDA_DTYPES"]

CUDA_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)
_BLOCK = 256
_FINALIZE_BLOCK = 512
_INDEX_BLOCK = 256
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
_INSTANCES = (
    *(name.format(t=TEMPLATE_TYPES[d]) for d in CUDA_DTYPES for name in _KERNEL_NAMES),
    "bn_build_index",
)


def _stat_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


@functools.cache
def _sm_count(device: torch.device) -> int:
    return int(torch.cuda.get_device_properties(device).multi_processor_count)


@functools.cache
def _gpu_ready() -> bool:
    return gpu_available()


#: Launchers by (kernel, device index), made at a kernel's first launch on a device.
_LAUNCHERS: dict[tuple[str, int], tuple[Launcher, int]] = {}
# torch's own getter without torch.cuda.current_device's lazy-init check (a CUDA tensor exists)
_current_device = getattr(torch._C, "_cuda_getDevice", torch.cuda.current_device)
_raw_stream = getattr(torch._C, "_cuda_getCurrentRawStream", None)


def _stream(index: int) -> int:
    if _raw_stream is not None:
        return int(_raw_stream(index))
    return int(torch.cuda.current_stream(index).cuda_stream)


def _launch(function: str, grid: int, block: int, sig: str, args: tuple, device: Any) -> None:
    """Launch ``function`` of bn_sampling.cu.  Every signature lists its pointers first; those
    arguments are tensors (their data pointers), ``(tensor, offset)`` (the pointer ``offset``
    elements in: no view to build) or None (a null pointer)."""
    # torch.device("cuda") has no index: it means the current device
    index = _current_device() if device.index is None else device.index
    entry = _LAUNCHERS.get((function, index))
    if entry is None:
        entry = (Launcher("bn_sampling", function, sig, index, _INSTANCES), sig.count("p"))
        _LAUNCHERS[(function, index)] = entry
    launcher, pointers = entry
    values = list(args)
    for i in range(pointers):
        a = values[i]
        if a is None:
            values[i] = 0
        elif type(a) is tuple:
            values[i] = a[0].data_ptr() + a[1] * a[0].element_size()
        else:
            values[i] = a.data_ptr()
    if index == _current_device():
        launcher(grid, block, values, _stream(index))
    else:
        with torch.cuda.device(index):
            launcher(grid, block, values, _stream(index))


def _splits(channels: int, work: int, sms: int) -> int:
    """Blocks per channel: enough for ~8 blocks (2048 threads) per SM, each thread with at
    least one unrolled trip of 16 data."""
    wanted = math.ceil(8 * sms / channels)
    return max(1, min(wanted, math.ceil(work / (16 * _BLOCK))))


def _elementwise_grid(packs: int, sms: int) -> int:
    return max(1, min(math.ceil(packs / _BLOCK), 32 * sms))


class _Plan(NamedTuple):
    """What a launch needs that depends only on the shape, dtype, device and sample geometry."""

    stats: tuple[str, str]  # kernel names for VEC = 1 and 4
    finalize: str
    normalize: tuple[str, str]
    reduce: tuple[str, str]
    bfinalize: str
    dx: tuple[str, str]
    sdt: torch.dtype
    split_fwd: int
    split_bwd: int
    grid1: int  # elementwise grids for VEC = 1 and 4
    grid4: int
    plane4: bool  # H * W % 4 == 0
    align: int  # bytes for the pack loads
    numel: int


@functools.lru_cache(maxsize=512)
def _plan(shape: tuple[int, ...], dtype: torch.dtype, device: torch.device, count: int) -> _Plan:
    n, c, h, w = shape
    if n * h * w >= 2**31:
        raise ValueError(f"x has {n * h * w} data per channel; the kernels take < 2^31")
    t = TEMPLATE_TYPES[dtype]
    sms = _sm_count(device)
    numel = n * c * h * w
    return _Plan(
        (f"bn_sample_stats<{t}, 1>", f"bn_sample_stats<{t}, 4>"),
        f"bn_stats_finalize<{t}>",
        (f"bn_normalize<{t}, 1>", f"bn_normalize<{t}, 4>"),
        (f"bn_backward_reduce<{t}, 1>", f"bn_backward_reduce<{t}, 4>"),
        f"bn_backward_finalize<{t}>",
        (f"bn_backward_dx<{t}, 1>", f"bn_backward_dx<{t}, 4>"),
        _stat_dtype(dtype),
        _splits(c, count, sms),
        _splits(c, n * h * w, sms),
        _elementwise_grid(numel, sms),
        _elementwise_grid(numel // 4, sms),
        (h * w) % 4 == 0,
        4 * dtype.itemsize,
        numel,
    )


def _vec(plan: _Plan, *tensors: torch.Tensor) -> bool:
    """Whether the kernels may load packs of 4 (VEC = 4) from every one of ``tensors``."""
    if not plan.plane4:
        return False
    align = plan.align
    for t in tensors:
        if t.data_ptr() % align:
            return False
    return True


class Geometry(NamedTuple):
    """The sample's shape as the kernels see it: ``k`` rows, a ``ph x pw`` window in each,
    ``m = k * ph * pw`` data per channel; ``whole`` when the window is the map."""

    k: int
    ph: int
    pw: int
    m: int
    whole: bool


#: Running statistics for the finalize kernel: running mean (None for SMN), running variance
#: (second moment for SMN), num_batches_tracked (or None), momentum (-1 for None: a
#: cumulative average) and whether the variance goes in unbiased.
Running = tuple[torch.Tensor | None, torch.Tensor, torch.Tensor | None, float, bool]


def _sample_index(sample: Sample, device: torch.device) -> torch.Tensor:
    """int32 ``rows`` [k], then per batch row ``h0`` [N] (-1 outside the sample) and ``w0``
    [N], from a host-side :class:`Sample` (the functional API), built in NumPy and sent in one
    copy."""
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
    return torch.from_numpy(index).to(device, non_blocking=True)


#: Rows up to which bn_build_index draws the subset itself (BN_HASH_ROWS in the kernel).
HASH_ROWS = 4096


def draw_index(
    shape: tuple[int, int, int],
    k: int,
    picks: int,
    tail: int,
    windows: tuple[int, int, int, int] | None,
    seed: int,
    call: int,
    device: torch.device,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Draw a sample on the device and build its int32 index (as :func:`_sample_index`).

    The rows are ``picks`` of the first ``R = N - tail`` rows, at random, plus the last
    ``tail`` rows; ``k = N`` takes every row.  The random choice is a pure function of
    ``(seed, call)`` (see ``bn_build_index``; :func:`hashed_rows` recomputes it on the host),
    except for ``R > HASH_ROWS``, where a device ``randperm`` on ``generator`` picks them.  With
    ``windows = (hrange, hmult, wrange, wmult)`` each row gets a window corner from the same
    hash."""
    n = shape[0]
    index = torch.empty(k + 2 * n, dtype=torch.int32, device=device)
    subset = k < n
    perm = None
    if subset and picks and n - tail > HASH_ROWS:
        if generator is None:
            raise ValueError(f"a generator is needed to draw from {n - tail} > {HASH_ROWS} rows")
        perm = torch.randperm(n - tail, device=device, generator=generator)
    hr, hm, wr, wm = (1, 0, 1, 0) if windows is None else windows
    _launch(
        "bn_build_index", 1, _INDEX_BLOCK, "ppiiiiiqqiqiqi",
        (perm, index, n, int(subset), picks, tail, k, seed, call, int(windows is not None),
         hr, hm, wr, wm),
        device,
    )  # fmt: skip
    return index


_MASK64 = (1 << 64) - 1


def _mix(z: int) -> int:
    z = (z + 0x9E3779B97F4A7C15) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


def hashed_draw(seed: int, call: int, j: int) -> int:
    """The kernel's ``bn_draw(seed, call, j)`` on the host (a 64-bit integer)."""
    return _mix(int(seed) ^ _mix(((int(call) << 32) + int(j)) & _MASK64))


def hashed_rows(n: int, picks: int, tail: int, seed: int, call: int) -> list[int]:
    """The rows ``bn_build_index`` samples without a permutation, recomputed on the host."""
    real = n - tail
    keys = sorted((hashed_draw(seed, call, i), i) for i in range(real))
    return sorted(i for _, i in keys[:picks]) + list(range(real, n))


def index_sample(index: torch.Tensor, geo: Geometry, shape: tuple[int, int, int]) -> Sample:
    """The :class:`Sample` a device index describes (its tensors on the index's device)."""
    n, k = shape[0], geo.k
    rows = index[:k].long()
    starts = torch.stack((index[k : k + n][rows], index[k + n :][rows]), 1).long()
    return Sample(rows, starts, (geo.ph, geo.pw), shape)


def _forward_index(
    x: torch.Tensor,
    weight: torch.Tensor | None,
    bias: torch.Tensor | None,
    index: torch.Tensor,
    geo: Geometry,
    eps: float,
    center: bool,
    running: Running | None = None,
    out: torch.Tensor | None = None,
    plan: _Plan | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Launch the forward kernels on a checked, contiguous ``[N, C, H, W]`` ``x``; returns
    ``y`` (written into ``out`` when given) and ``stats`` (rows mean, var, invstd, scale,
    shift, in the statistics' dtype).  ``plan``: ``x``'s :func:`_plan`, when known."""
    device = x.device
    n, c, h, w = x.shape
    if plan is None:
        plan = _plan(x.shape, x.dtype, device, geo.m)
    k = geo.k
    rows, h0, w0 = index, (index, k), (index, k + n)
    work = torch.empty(2 * c * plan.split_fwd, dtype=torch.float64, device=device)
    stats = torch.empty(5, c, dtype=plan.sdt, device=device)
    y = torch.empty_like(x) if out is None else out
    # Whole rows are read as packs of 4; windows take the kernel's scalar path.
    svec = _vec(plan, x) if geo.whole else False
    _launch(
        plan.stats[svec], c * plan.split_fwd, _BLOCK, "pppppiiiiiiii",
        (x, rows, h0, w0, work, c, h, w, k, geo.ph, geo.pw, plan.split_fwd, int(center)),
        device,
    )  # fmt: skip
    rm, rv, nbt, momentum, unbias = (None, None, None, 0.0, False) if running is None else running
    _launch(
        plan.finalize, 1, _FINALIZE_BLOCK, "pppppppppppiiiiqddii",
        (x, rows, h0, w0, work, weight, bias, stats, rm, rv, nbt, c, h, w, plan.split_fwd,
         geo.m, eps, momentum, int(center), int(unbias)),
        device,
    )  # fmt: skip
    vec = _vec(plan, x, y)
    _launch(
        plan.normalize[vec], plan.grid4 if vec else plan.grid1, _BLOCK, "pppqiq",
        (x, y, stats, plan.numel // 4 if vec else plan.numel, c, h * w), device,
    )  # fmt: skip
    return y, stats


def _backward_index(
    dy: torch.Tensor,
    x: torch.Tensor,
    weight: torch.Tensor | None,
    stats: torch.Tensor,
    h0: Any,
    w0: Any,
    geo: Geometry,
    center: bool,
    out: torch.Tensor | None = None,
    plan: _Plan | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``dx`` (written into ``out`` when given), ``grad_weight``, ``grad_bias`` (the last two
    in the statistics' dtype); ``dy`` contiguous like ``x``; ``h0``, ``w0`` tensors or
    ``(index, offset)`` pairs."""
    device = x.device
    n, c, h, w = x.shape
    if plan is None:
        plan = _plan(x.shape, x.dtype, device, geo.m)
    work = torch.empty(2 * c * plan.split_bwd, dtype=torch.float64, device=device)
    coef = torch.empty(5, c, dtype=stats.dtype, device=device)
    dx = torch.empty_like(x) if out is None else out
    rvec = _vec(plan, dy, x)
    _launch(
        plan.reduce[rvec], c * plan.split_bwd, _BLOCK, "ppppiiqi",
        (dy, x, stats, work, n, c, h * w, plan.split_bwd), device,
    )  # fmt: skip
    _launch(
        plan.bfinalize, math.ceil(c / _BLOCK), _BLOCK, "ppppiiqi",
        (work, stats, weight, coef, c, plan.split_bwd, geo.m, int(center)), device,
    )  # fmt: skip
    vec = _vec(plan, dy, x, dx)
    _launch(
        plan.dx[vec], plan.grid4 if vec else plan.grid1, _BLOCK, "pppppppqiiiiii",
        (dy, x, dx, stats, coef, h0, w0, plan.numel // 4 if vec else plan.numel, c, h, w,
         geo.ph, geo.pw,
         int(geo.whole)),
        device,
    )  # fmt: skip
    return dx, coef[0], coef[1]


def _geometry(sample: Sample) -> Geometry:
    k = int(sample.rows.numel())
    return Geometry(k, sample.patch[0], sample.patch[1], sample.count, sample.whole_rows)


def _check_launch(
    x: torch.Tensor,
    weight: torch.Tensor | None,
    bias: torch.Tensor | None,
    out: torch.Tensor | None,
) -> None:
    device = x.device
    sdt = _stat_dtype(x.dtype)
    require_cuda_tensor(x, "x", CUDA_DTYPES, device)
    for name, tensor, dtypes in (("weight", weight, (sdt,)), ("bias", bias, (sdt,))):
        if tensor is not None:
            require_cuda_tensor(tensor, name, dtypes, device)
    if out is not None:
        if out.shape != x.shape:
            raise ValueError(f"out must have shape {tuple(x.shape)}, got {tuple(out.shape)}")
        require_cuda_tensor(out, "out", (x.dtype,), device)


def _forward(
    x: torch.Tensor,
    weight: torch.Tensor | None,
    bias: torch.Tensor | None,
    sample: Sample,
    eps: float,
    center: bool,
    out: torch.Tensor | None = None,
    running: Running | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The forward kernels for a host-side :class:`Sample` (checked here; ``x`` contiguous
    ``[N, C, H, W]``).  Returns ``y``, ``stats``, ``rows``, ``h0``, ``w0``."""
    _check_launch(x, weight, bias, out)
    geo = _geometry(sample)
    index = _sample_index(sample, x.device)
    y, stats = _forward_index(x, weight, bias, index, geo, eps, center, running, out)
    n, k = x.shape[0], geo.k
    return y, stats, index[:k], index[k : k + n], index[k + n :]


def _backward(
    dy: torch.Tensor,
    x: torch.Tensor,
    weight: torch.Tensor | None,
    stats: torch.Tensor,
    h0: torch.Tensor,
    w0: torch.Tensor,
    sample: Sample,
    center: bool,
    out: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The backward kernels for a host-side :class:`Sample` (arguments checked here)."""
    _check_launch(x, weight, None, out)
    dy = dy.contiguous()
    require_cuda_tensor(dy, "grad_output", (x.dtype,), x.device)
    return _backward_index(dy, x, weight, stats, h0, w0, _geometry(sample), center, out)


class _SampledNormFunction(torch.autograd.Function):
    """``y`` from a contiguous ``[N, C, H, W]`` ``x4`` and a device index; ``stats`` goes to
    the list ``sink`` rather than out as a second, non-differentiable output (the statistics'
    gradient flows through ``y``; one output is less autograd work per call)."""

    @staticmethod
    def forward(
        ctx: Any,
        x4: torch.Tensor,
        weight: torch.Tensor | None,
        bias: torch.Tensor | None,
        index: torch.Tensor,
        geo: Geometry,
        eps: float,
        center: bool,
        running: Running | None,
        sink: list,
    ) -> torch.Tensor:
        sdt = torch.float64 if x4.dtype == torch.float64 else torch.float32
        # The kernels read the parameters' data only (grad mode is off here: no detach
        # needed); parameters in another dtype (a model cast with .half()) go to the
        # statistics' dtype.
        gamma, beta = weight, bias
        if gamma is not None and (gamma.dtype != sdt or not gamma.is_contiguous()):
            gamma = gamma.to(sdt).contiguous()
        if beta is not None and (beta.dtype != sdt or not beta.is_contiguous()):
            beta = beta.to(sdt).contiguous()
        plan = _plan(x4.shape, x4.dtype, x4.device, geo.m)
        y, stats = _forward_index(x4, gamma, beta, index, geo, eps, center, running, None, plan)
        ctx.save_for_backward(x4, gamma, stats, index)
        ctx.geo, ctx.center, ctx.plan = geo, center, plan
        ctx.param_dtypes = (
            None if weight is None else weight.dtype,
            None if bias is None else bias.dtype,
        )
        sink.append(stats)
        return y

    @staticmethod
    def backward(ctx: Any, dy: torch.Tensor) -> tuple[Any, ...]:
        x4, gamma, stats, index = ctx.saved_tensors
        geo = ctx.geo
        n, k = x4.shape[0], geo.k
        if not dy.is_contiguous():
            dy = dy.contiguous()
        dx, gw, gb = _backward_index(
            dy, x4, gamma, stats, (index, k), (index, k + n), geo, ctx.center, None, ctx.plan
        )
        wdt, bdt = ctx.param_dtypes
        grad_w = None
        if wdt is not None and ctx.needs_input_grad[1]:
            grad_w = gw if gw.dtype == wdt else gw.to(wdt)
        grad_b = None
        if bdt is not None and ctx.needs_input_grad[2]:
            grad_b = gb if gb.dtype == bdt else gb.to(bdt)
        return dx, grad_w, grad_b, None, None, None, None, None, None


def layer_path(x: torch.Tensor) -> bool:
    """Whether a layer's forward on ``x`` takes the fused kernels (the same choice as
    :func:`toolkit.norm.sampled_batch_norm`: ``use_backend`` and ``TOOLKIT_DEVICE`` hold)."""
    # resolve_backend's rule for a CUDA tensor once the GPU is known usable, without its
    # repeated availability checks: only the backend choice in force can turn it down.
    return x.is_cuda and x.dtype in CUDA_DTYPES and _gpu_ready() and active_backend() != "cpu"


def layer_forward(
    x: torch.Tensor,
    weight: torch.Tensor | None,
    bias: torch.Tensor | None,
    index: torch.Tensor,
    geo: Geometry,
    eps: float,
    center: bool,
    running: Running | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """A layer's training forward: ``y`` shaped like ``x`` and ``stats``.  The layer has
    checked ``x`` (floating, ``[N, C, ...]``, its channel count) and drawn ``index`` for it;
    ``weight``, ``bias`` and the running buffers are its own (on ``x``'s device)."""
    shape = x.shape
    if x.dim() == 4:
        x4 = x if x.is_contiguous() else x.contiguous()
    else:
        n, c = shape[0], shape[1]
        x4 = x.reshape(n, c, 1, shape[2] if x.dim() == 3 else 1)
        if not x4.is_contiguous():
            x4 = x4.contiguous()
    sink: list[torch.Tensor] = []
    y = _SampledNormFunction.apply(x4, weight, bias, index, geo, eps, center, running, sink)
    return (y if x.dim() == 4 else y.reshape(shape)), sink[0]


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
    index = _sample_index(sample, x.device)
    sink: list[torch.Tensor] = []
    y = _SampledNormFunction.apply(
        x4, weight, bias, index, _geometry(sample), eps, center, None, sink
    )
    stats = sink[0]
    # clones: stats is saved for the backward, and the caller may modify mean/var in place
    return (y if x.dim() == 4 else y.reshape(x.shape)), stats[0].clone(), stats[1].clone()
