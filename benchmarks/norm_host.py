"""The host path of the norm layers' CUDA fast path, measured on the CPU (no GPU needed).

Run from the repository root:  PYTHONPATH=. python benchmarks/norm_host.py [--profile NAME]

The layers take their CUDA path (toolkit.norm._cuda) on small CPU tensors, with every kernel
launch going through the real :class:`toolkit._launch.Launcher` down to a ctypes call of a
no-op C function compiled here with the signature of ``cuLaunchKernel`` (so the ctypes call's
own cost is counted); ``--cython``: a Python no-op in place of CuPy's Cython
``launchKernel``, which the Launcher takes on a GPU host where CuPy provides it.  Where no C
compiler is found, a Python no-op stands in for the driver call.  Nothing is computed on the
data, so the numbers are the host microseconds of one forward + backward (``y = layer(x);
y.backward(dy)``, ``x`` requiring grad): this thread's CPU time (``time.thread_time``, so that
other processes on a shared machine count less), the fastest of many short blocks.  The
float16 column runs layers cast with ``.to(float16)`` (half parameters, converted per call).
``--profile NAME`` prints the cProfile of one variant.

What the CPU cannot show: the CUDA caching allocator's cost (close to the CPU allocator's for
small tensors), the autograd engine's hand-off to its CUDA device thread, and the real
driver's launch latency (~2-4 us per launch on an H200 host).  The nn.BatchNorm2d row is the
CPU kernel path, printed for scale only (cuDNN's host path is measured on the GPU by
``benchmarks/norm.py --profile``).
"""

from __future__ import annotations

import argparse
import cProfile
import ctypes
import pstats
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import toolkit._launch as tl
import toolkit.norm._cuda as cu
from toolkit.norm import (
    BatchSamplingBN2d,
    FeatureSamplingBN2d,
    SecondMomentNorm2d,
)

VARIANTS = {
    "fused-bn": lambda c: BatchSamplingBN2d(c, sample_ratio=1.0, seed=0),
    "bs-1/4": lambda c: BatchSamplingBN2d(c, sample_ratio=0.25, seed=0),
    "fs-1/4": lambda c: FeatureSamplingBN2d(c, patch_ratio=0.25, seed=0),
    "smn": lambda c: SecondMomentNorm2d(c),
    "cpu nn.BatchNorm2d": lambda c: nn.BatchNorm2d(c),
    "bare autograd.Function": lambda c: _Bare(c),
}


class _BareFunction(torch.autograd.Function):
    """The floor of any autograd layer: outputs allocated, nothing computed or launched."""

    @staticmethod
    def forward(ctx, x, weight, bias):
        ctx.save_for_backward(x, weight)
        return torch.empty_like(x)

    @staticmethod
    def backward(ctx, dy):
        x, weight = ctx.saved_tensors
        return torch.empty_like(x), torch.empty_like(weight), torch.empty_like(weight)


class _Bare(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(c))
        self.bias = nn.Parameter(torch.zeros(c))

    def forward(self, x):
        return _BareFunction.apply(x, self.weight, self.bias)


_NOOP_C = """
int cuLaunchKernel(void *f, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by,
                   unsigned bz, unsigned shared, void *stream, void **params, void **extra)
{ return 0; }
"""


def _noop_driver():
    """A ctypes no-op with cuLaunchKernel's signature, or a Python no-op without a compiler."""
    tmp = Path(tempfile.mkdtemp())
    (tmp / "noop.c").write_text(_NOOP_C)
    try:
        subprocess.run(
            ["cc", "-O2", "-shared", "-fPIC", "-o", str(tmp / "noop.so"), str(tmp / "noop.c")],
            check=True,
            capture_output=True,
        )
        fn = ctypes.CDLL(str(tmp / "noop.so")).cuLaunchKernel
    except (OSError, subprocess.CalledProcessError):
        return (lambda *args: 0), "python no-op"
    fn.restype = ctypes.c_int
    argtypes = [ctypes.c_void_p, *[ctypes.c_uint] * 7, ctypes.c_void_p]
    fn.argtypes = [*argtypes, ctypes.POINTER(ctypes.c_void_p), ctypes.c_void_p]
    return fn, "ctypes no-op"


class _FakeKernel:
    max_dynamic_shared_size_bytes = 0


def install_stubs(cython: bool = False) -> str:
    """Route the layers' CUDA path to the no-op driver on CPU tensors; returns its kind.

    ``cython``: stand a Python no-op in for CuPy's Cython ``launchKernel`` (which
    :class:`toolkit._launch.Launcher` calls where CuPy provides it; a Cython call with int
    arguments costs about what a Python no-op call does), else the ctypes path runs."""
    driver, kind = _noop_driver()
    tl._driver = lambda: driver
    if cython:
        tl._cupy_driver_launch = lambda: lambda *args: None
        kind = "python no-op in place of CuPy's Cython launchKernel"
    else:
        tl._cupy_driver_launch = lambda: None
    tl._kernel = lambda module, function, device, exprs: (_FakeKernel, 1)
    tl._raw_stream = lambda device: 0
    torch.cuda.current_device = lambda: 0
    # CPU tensors' device index is None: the norm path then sees the current device
    cu._current_device = lambda: None
    cu._stream = lambda index: 0
    cu._sm_count = lambda device: 132
    cu.layer_path = lambda x: x.dtype in cu.CUDA_DTYPES
    cu._plan.cache_clear()
    return kind


def _step(layer, x, dy):
    y = layer(x)
    y.backward(dy)


def time_variant(name: str, shape, dtype, calls: int, blocks: int) -> float:
    """Fastest of ``blocks`` timing blocks: the mean host us per forward + backward (the
    fastest block, because other processes share this machine's cores)."""
    layer = VARIANTS[name](shape[1]).to(dtype)
    x = torch.randn(shape, dtype=dtype).requires_grad_()
    dy = torch.randn(shape, dtype=dtype)
    for _ in range(20):
        _step(layer, x, dy)
    per = []
    for _ in range(blocks):
        t0 = time.thread_time()
        for _ in range(calls):
            _step(layer, x, dy)
        per.append((time.thread_time() - t0) / calls * 1e6)
    return min(per)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--blocks", type=int, default=150)
    parser.add_argument("--profile", default=None, help="cProfile one variant, e.g. bs-1/4")
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument(
        "--cython", action="store_true", help="the launch as through CuPy's Cython binding"
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    kind = install_stubs(args.cython)
    shape = (8, 16, 4, 4)
    print(f"host us per forward + backward, {shape}, driver call = {kind}")
    print("| variant | float32 | float16 |")
    print("| --- | ---: | ---: |")
    for name in VARIANTS:
        cells = [time_variant(name, shape, dt, args.calls, args.blocks) for dt in
                 (torch.float32, torch.float16)]  # fmt: skip
        print(f"| {name} | {cells[0]:.1f} | {cells[1]:.1f} |", flush=True)
    if args.profile:
        layer = VARIANTS[args.profile](shape[1])
        x = torch.randn(shape).requires_grad_()
        dy = torch.randn(shape)
        for _ in range(20):
            _step(layer, x, dy)
        prof = cProfile.Profile()
        prof.enable()
        for _ in range(2000):
            _step(layer, x, dy)
        prof.disable()
        pstats.Stats(prof).sort_stats("tottime").print_stats(args.top)


if __name__ == "__main__":
    main()
