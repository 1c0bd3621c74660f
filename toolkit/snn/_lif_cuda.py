"""The CUDA path of :func:`toolkit.snn.lif_multistep`: the fused kernels of ``kernels/lif.cu``
wrapped in a :class:`torch.autograd.Function`.

A forward+backward on a million neurons moves a few hundred microseconds' worth of memory, so the
host cost per call is what separates this path from SpikingJelly's: the arguments are checked
once, where the call enters (:func:`lif_cuda`), the outputs are allocated here and so need no
second check, and the kernels go out through the lean driver launch (:mod:`toolkit._launch`).
The public launchers :func:`lif_forward_kernel` and :func:`lif_backward_kernel` keep their full
checks for callers that bring their own buffers."""

from __future__ import annotations

import functools
import math
from typing import TYPE_CHECKING

import numpy as np
import torch

from .._checks import check_flag
from .._kernels import TEMPLATE_TYPES, grid_size, require_cuda_tensor
from .._launch import fast_launch

if TYPE_CHECKING:
    from .neuron import LIFParams

__all__ = ["lif_backward_kernel", "lif_cuda", "lif_forward_kernel"]

SUPPORTED_DTYPES = (torch.float16, torch.float32, torch.float64)
_SURROGATE_IDS = {"atan": 0, "sigmoid": 1, "rectangular": 2, "triangle": 3}
#: Sequence lengths up to which the backward keeps the replayed potentials in registers.
_REGISTER_T = (8, 16, 32)
_BLOCK = 256
# Launch signatures (see toolkit._launch): the pointers, n, T, five doubles, four int flags.
_SCALARS_SIG = "qiddddd" + "iiii"
_FORWARD_SIG = "p" * 5 + _SCALARS_SIG
_BACKWARD_SIG = "p" * 8 + _SCALARS_SIG


def _forward_name(dtype: torch.dtype) -> str:
    return f"lif_forward<{TEMPLATE_TYPES[dtype]}>"


def _register_steps(steps: int) -> int:
    """The backward variant for ``steps``: the smallest register array that holds them, else 0
    (the scratch variant)."""
    return next((m for m in _REGISTER_T if m >= steps), 0)


# The bits of the specialised backward's OPTS template argument (kernels/lif.cu, Options).
_HARD, _DETACH, _DECAY_INPUT, _TRACE, _AHEAD = 1, 2, 4, 8, 16
#: Register sizes whose specialised backward (without a trace gradient) loads each chunk of
#: dL/dS a chunk ahead.  None: on the H200 (benchmarks/snn.py --kernels, RESULTS session 20)
#: the plain form was as fast or faster at every T in both dtypes (T = 16 float32: 104 against
#: 123 us; T = 32: 156 against 174 us).  The ahead form stays selectable for the benchmark.
_AHEAD_MAXT: tuple[int, ...] = ()
#: The most blocks a one-dimensional grid may have: the specialised backward's grid is exact.
_MAX_GRID = 2**31 - 1


def _backward_options(p: LIFParams, trace: bool, ahead: bool = False) -> int:
    """The OPTS template argument of ``lif_backward_fixed`` for ``p`` and a call with (or
    without) a trace gradient; ``ahead`` (dL/dS loaded a chunk ahead) only without one."""
    opts = _HARD * p.hard + _DETACH * p.detach_reset + _DECAY_INPUT * p.decay_input
    if trace:
        return opts + _TRACE
    return opts + _AHEAD * ahead


@functools.lru_cache(maxsize=256)
def _backward_name(
    dtype: torch.dtype,
    steps: int,
    p: LIFParams,
    trace: bool,
    n: int,
    specialised: bool = True,
    ahead: bool | None = None,
) -> str:
    """The backward instance for a call.

    float and half with ``steps`` <= 32 take ``lif_backward_fixed``: the surrogate, the reset,
    detach_reset, decay_input and the presence of a trace gradient fixed at compile time, one
    thread per neuron (``n`` must fit one grid); ``ahead`` None follows ``_AHEAD_MAXT``.
    Everything else, and ``specialised=False`` (the benchmarks' comparison), takes the general
    ``lif_backward``, which reads the options at run time; its float and half register paths
    still fix the surrogate."""
    maxt = _register_steps(steps)
    ctype = TEMPLATE_TYPES[dtype]
    if not maxt or dtype == torch.float64:
        return f"lif_backward<{ctype}, {maxt}>"
    kind = _SURROGATE_IDS[p.surrogate]
    if specialised and grid_size(n, _BLOCK) <= _MAX_GRID:
        opts = _backward_options(p, trace, maxt in _AHEAD_MAXT if ahead is None else ahead)
        return f"lif_backward_fixed<{ctype}, {maxt}, {kind}, {opts}>"
    return f"lif_backward<{ctype}, {maxt}, {kind}>"


@functools.lru_cache(maxsize=64)
def _scalars(p: LIFParams, v_start: float) -> tuple:
    # Cached: a training loop calls with the same few parameter sets, and these ten objects
    # are a measurable part of a call's host time.
    return (
        np.float64(0.0 if math.isinf(p.tau) else 1.0 / p.tau),
        np.float64(p.v_threshold),
        np.float64(p.v_rest),
        np.float64(v_start),
        np.float64(p.alpha),
        np.int32(p.hard),
        np.int32(p.decay_input),
        np.int32(p.detach_reset),
        np.int32(_SURROGATE_IDS[p.surrogate]),
    )


def _launch(function: str, n: int, sig: str, args: tuple, device: torch.device) -> None:
    """Launch ``function`` of ``kernels/lif.cu`` (compiling only that instance, once per device)
    with one thread per neuron; tensors travel as raw pointers, None as a null pointer."""
    raw = tuple(
        a.data_ptr() if isinstance(a, torch.Tensor) else (0 if a is None else a) for a in args
    )
    block = (_BLOCK,)
    fast_launch("lif", function, (grid_size(n, _BLOCK),), block, sig, raw, device, (function,))


def lif_forward_kernel(
    x: torch.Tensor,
    v0: torch.Tensor | None,
    v_start: float,
    p: LIFParams,
    spikes: torch.Tensor,
    bits: torch.Tensor,
    v_seq: torch.Tensor | None = None,
) -> None:
    """Launch ``lif_forward`` on ``x`` ``[T, n]`` into preallocated outputs (validated here)."""
    dev = x.device
    require_cuda_tensor(x, "x", SUPPORTED_DTYPES, dev)
    steps, n = x.shape
    require_cuda_tensor(spikes, "spikes", (x.dtype,), dev)
    require_cuda_tensor(bits, "bits", (torch.uint8,), dev)
    if spikes.shape != x.shape or bits.shape != ((steps + 7) // 8, n):
        raise ValueError(
            f"spikes must be {tuple(x.shape)} and bits {((steps + 7) // 8, n)}, "
            f"got {tuple(spikes.shape)} and {tuple(bits.shape)}"
        )
    for name, t in (("v0", v0), ("v_seq", v_seq)):
        if t is not None:
            require_cuda_tensor(t, name, (x.dtype,), dev)
    if v0 is not None and v0.numel() != n:
        raise ValueError(f"v0 must hold {n} values, got shape {tuple(v0.shape)}")
    if v_seq is not None and v_seq.shape != x.shape:
        raise ValueError(f"v_seq must be {tuple(x.shape)}, got {tuple(v_seq.shape)}")
    _launch_forward(x, v0, v_start, p, spikes, bits, v_seq)


def _launch_forward(x, v0, v_start, p, spikes, bits, v_seq) -> None:
    steps, n = x.shape
    if n == 0:
        return
    args = (x, v0, spikes, v_seq, bits, n, steps, *_scalars(p, v_start))
    _launch(_forward_name(x.dtype), n, _FORWARD_SIG, args, x.device)


def lif_backward_kernel(
    x: torch.Tensor,
    v0: torch.Tensor | None,
    v_start: float,
    p: LIFParams,
    bits: torch.Tensor,
    grad_s: torch.Tensor,
    grad_v: torch.Tensor | None,
    grad_x: torch.Tensor,
    grad_v0: torch.Tensor | None = None,
    *,
    specialised: bool = True,
) -> None:
    """Launch the backward (replay + adjoint recurrence) into preallocated gradients.

    ``specialised=False`` launches the general kernel, which reads every option at run time,
    instead of the instance compiled for these options (same results; for comparisons)."""
    specialised = check_flag("specialised", specialised)
    dev = x.device
    require_cuda_tensor(x, "x", SUPPORTED_DTYPES, dev)
    n = x.shape[1]
    require_cuda_tensor(bits, "bits", (torch.uint8,), dev)
    for name, t in (("grad_s", grad_s), ("grad_x", grad_x), ("grad_v", grad_v)):
        if t is not None:
            require_cuda_tensor(t, name, (x.dtype,), dev)
            if t.shape != x.shape:
                raise ValueError(f"{name} must be {tuple(x.shape)}, got {tuple(t.shape)}")
    for name, t in (("v0", v0), ("grad_v0", grad_v0)):
        if t is not None:
            require_cuda_tensor(t, name, (x.dtype,), dev)
            if t.numel() != n:
                raise ValueError(f"{name} must hold {n} values, got shape {tuple(t.shape)}")
    _launch_backward(x, v0, v_start, p, bits, grad_s, grad_v, grad_x, grad_v0, specialised)


def _launch_backward(
    x, v0, v_start, p, bits, grad_s, grad_v, grad_x, grad_v0, specialised=True, instance=None
) -> None:
    """The launch behind :func:`lif_backward_kernel` (arguments already checked); ``instance``
    overrides the kernel's name (benchmarks/snn.py times the forms side by side)."""
    steps, n = x.shape
    if n == 0:
        return
    scratch = None
    if _register_steps(steps) == 0:
        work = torch.float64 if x.dtype == torch.float64 else torch.float32
        scratch = torch.empty((steps, n), dtype=work, device=x.device)
    args = (x, v0, bits, grad_s, grad_v, grad_x, grad_v0, scratch, n, steps)
    _launch(
        instance or _backward_name(x.dtype, steps, p, grad_v is not None, n, specialised),
        n,
        _BACKWARD_SIG,
        (*args, *_scalars(p, v_start)),
        x.device,
    )


class _LIFFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, v0, v_start, p, membrane):
        steps, n = x.shape
        spikes = torch.empty_like(x)
        bits = torch.empty(((steps + 7) // 8, n), dtype=torch.uint8, device=x.device)
        v_seq = torch.empty_like(x) if membrane else None
        _launch_forward(x, v0, v_start, p, spikes, bits, v_seq)
        ctx.save_for_backward(x, v0, bits)
        ctx.v_start, ctx.p = v_start, p
        return spikes, (v_seq if membrane else x.new_empty(0))

    @staticmethod
    def backward(ctx, grad_s, grad_v):
        x, v0, bits = ctx.saved_tensors
        grad_s = torch.zeros_like(x) if grad_s is None else grad_s.contiguous()
        grad_v = None if grad_v is None or grad_v.numel() == 0 else grad_v.contiguous()
        grad_x = torch.empty_like(x)
        need_v0 = v0 is not None and ctx.needs_input_grad[1]
        grad_v0 = torch.empty_like(v0) if need_v0 else None
        _launch_backward(x, v0, ctx.v_start, ctx.p, bits, grad_s, grad_v, grad_x, grad_v0)
        return grad_x, grad_v0, None, None, None


def lif_cuda(
    x_seq: torch.Tensor,
    v0: torch.Tensor | None,
    v_start: float,
    p: LIFParams,
    membrane: bool,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The fused path: same arguments and results as the reference ``_lif_op``."""
    shape = x_seq.shape
    x = x_seq.contiguous().view(shape[0], -1)
    v = None
    if v0 is not None:
        v = v0.to(x.dtype).expand(shape[1:]).contiguous().view(-1)
    spikes, v_seq = _LIFFunction.apply(x, v, v_start, p, membrane)
    return spikes.view(shape), (v_seq.view(shape) if membrane else None)
