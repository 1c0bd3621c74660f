"""A lean kernel launch, for kernels so short that Python overhead is the cost to beat.

:func:`toolkit._kernels.launch` enters CuPy's device and stream contexts and converts every
argument on each call: tens of microseconds, more than ``nm_mask`` takes on a million
elements.  Here the kernel handle is cached and the launch goes straight to the driver
(``cuLaunchKernel`` through ctypes, on torch's current raw stream); where that is not possible
(no ``libcuda`` found, a CuPy without the kernel's handle) it falls back to CuPy's own call.
Arguments must already be validated (shapes, dtypes, devices, contiguity, alignment) by the
caller, as for :func:`~toolkit._kernels.launch`.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import struct
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from ._backend import _require_cupy
from ._kernels import DEFAULT_OPTIONS, KernelError, load_module

__all__ = ["Launcher", "fast_launch"]

#: Argument kinds of a launch signature: pointer, int64, int32, float32, float64.
_CTYPES: dict[str, Any] = {
    "p": ctypes.c_uint64,
    "q": ctypes.c_int64,
    "i": ctypes.c_int32,
    "f": ctypes.c_float,
    "d": ctypes.c_double,
}
_NUMPY: dict[str, Any] = {
    "p": np.uint64,
    "q": np.int64,
    "i": np.int32,
    "f": np.float32,
    "d": np.float64,
}


@functools.cache
def _kernel(module: str, function: str, device: int, exprs: tuple[str, ...]) -> tuple[Any, Any]:
    """The CuPy function and its driver handle (None where CuPy does not expose it)."""
    kernel = load_module(module, exprs, DEFAULT_OPTIONS, device).get_function(function)
    return kernel, getattr(getattr(kernel, "kernel", None), "ptr", None)


_params = threading.local()


def _param_block(sig: str) -> tuple[list[Any], Any]:
    """This thread's ctypes argument values for ``sig`` and the array of their addresses.

    Reused from call to call (building them costs more than the launch); one set per thread,
    because the autograd engine launches backward kernels from its own threads.
    """
    blocks = getattr(_params, "blocks", None)
    if blocks is None:
        blocks = _params.blocks = {}
    block = blocks.get(sig)
    if block is None:
        values = [_CTYPES[kind]() for kind in sig]
        block = blocks[sig] = (
            values,
            (ctypes.c_void_p * len(values))(*map(ctypes.addressof, values)),
        )
    return block


@functools.cache
def _driver() -> Any:
    """libcuda's cuLaunchKernel, or None."""
    name = ctypes.util.find_library("cuda") or "libcuda.so.1"
    try:
        lib = ctypes.CDLL(name)
    except OSError:
        return None
    fn = lib.cuLaunchKernel
    fn.restype = ctypes.c_int
    # CUfunction, grid x/y/z, block x/y/z, shared bytes, stream, kernel params, extra
    argtypes: list[Any] = [ctypes.c_void_p, *[ctypes.c_uint] * 7, ctypes.c_void_p]
    fn.argtypes = [*argtypes, ctypes.POINTER(ctypes.c_void_p), ctypes.c_void_p]
    return fn


def _raw_stream(device: int) -> int:
    getter = getattr(torch._C, "_cuda_getCurrentRawStream", None)
    if getter is not None:
        return int(getter(device))
    return int(torch.cuda.current_stream(device).cuda_stream)


def _cupy_launch(kernel, grid, block, args, sig: str, index: int, shared_mem: int) -> None:
    cupy = _require_cupy()
    stream = cupy.cuda.ExternalStream(_raw_stream(index), index)
    converted = tuple(_NUMPY[kind](a) for kind, a in zip(sig, args, strict=True))
    with cupy.cuda.Device(index), stream:
        kernel(grid, block, converted, shared_mem=shared_mem)


def fast_launch(
    module: str,
    function: str,
    grid: tuple[int, ...],
    block: tuple[int, ...],
    sig: str,
    args: Sequence[Any],
    device: torch.device,
    exprs: Sequence[str] = (),
    shared_mem: int = 0,
) -> None:
    """Launch ``function`` of ``kernels/<module>.cu`` on torch's current stream of ``device``.

    ``sig`` gives each argument's C type, one letter each: ``p`` a pointer (pass
    ``tensor.data_ptr()`` or 0), ``q`` int64, ``i`` int32, ``f`` float32, ``d`` float64;
    ``args`` are plain Python (or numpy) numbers.

    Raises
    ------
    KernelError
        If compiling or launching fails.
    """
    index = device.index if device.index is not None else torch.cuda.current_device()
    kernel, handle = _kernel(module, function, index, tuple(exprs))
    if shared_mem > 48 * 1024 and kernel.max_dynamic_shared_size_bytes < shared_mem:
        kernel.max_dynamic_shared_size_bytes = shared_mem
    launch = _driver()
    if launch is None or handle is None or index != torch.cuda.current_device():
        cupy = _require_cupy()
        try:
            _cupy_launch(kernel, grid, block, args, sig, index, shared_mem)
        except (cupy.cuda.driver.CUDADriverError, cupy.cuda.runtime.CUDARuntimeError) as exc:
            msg = f"launching {function} from kernels/{module}.cu failed: {exc}"
            raise KernelError(msg) from exc
        return
    if len(args) != len(sig):
        raise ValueError(f"{function}: {len(args)} arguments for the signature {sig!r}")
    values, params = _param_block(sig)
    for value, a in zip(values, args, strict=True):
        value.value = a
    g = (*grid, 1, 1)
    b = (*block, 1, 1)
    status = launch(
        handle, g[0], g[1], g[2], b[0], b[1], b[2], shared_mem, _raw_stream(index), params, None
    )
    if status != 0:
        raise KernelError(
            f"launching {function} from kernels/{module}.cu failed: CUresult {status}"
        )


#: Each argument's 8-byte slot for struct: pointer, int64, int32, float32, float64.
_SLOTS: dict[str, str] = {"p": "Q", "q": "q", "i": "i4x", "f": "f4x", "d": "d"}


@functools.cache
def _cupy_driver_launch() -> Any:
    """CuPy's ``cuLaunchKernel`` binding (a Cython function: several times cheaper to call
    than the ctypes one), or None."""
    try:
        from cupy.cuda import driver
    except Exception:  # no usable CuPy: the ctypes entry point serves
        return None
    return getattr(driver, "launchKernel", None)


class Launcher:
    """One kernel of ``kernels/<module>.cu`` on device ``index``, resolved once, for callers
    that launch it many times with a 1-d grid (about a third of :func:`fast_launch`'s host
    time per launch).

    A call packs all arguments with one ``struct.pack_into`` into 8-byte slots (one set per
    thread, reused: the driver copies them at the launch) and calls ``cuLaunchKernel``
    (through CuPy's Cython binding where there is one, else through ctypes) on
    ``stream`` (a raw ``cudaStream_t``, e.g. ``torch.cuda.current_stream().cuda_stream``).  The
    caller gives plain ints and floats in ``sig`` order (pointers as ``data_ptr()`` ints, 0 for
    null), has validated them, and has made device ``index`` the current CUDA device.  Without
    the driver entry point or the kernel's handle it falls back to CuPy as :func:`fast_launch`.
    """

    __slots__ = ("cylaunch", "driver", "function", "handle", "index", "kernel", "local",
                 "module", "pack", "sig")  # fmt: skip

    def __init__(
        self, module: str, function: str, sig: str, index: int, exprs: Sequence[str] = ()
    ) -> None:
        self.module, self.function, self.sig, self.index = module, function, sig, index
        self.kernel, self.handle = _kernel(module, function, index, tuple(exprs))
        self.driver = _driver()
        self.cylaunch = _cupy_driver_launch()
        self.pack = struct.Struct("=" + "".join(_SLOTS[kind] for kind in sig)).pack_into
        self.local = threading.local()

    def _slots(self) -> tuple[Any, Any, int]:
        """This thread's argument slots, their address array and its address."""
        n = len(self.sig)
        buffer = (ctypes.c_uint64 * n)()
        base = ctypes.addressof(buffer)
        params = (ctypes.c_void_p * n)(*(base + 8 * j for j in range(n)))
        slots = self.local.slots = (buffer, params, ctypes.addressof(params))
        return slots

    def __call__(self, grid: int, block: int, args: Sequence[Any], stream: int) -> None:
        """Launch on ``grid`` blocks of ``block`` threads.

        Raises
        ------
        KernelError
            If the launch fails.
        """
        if self.handle is None or (self.driver is None and self.cylaunch is None):
            if len(args) != len(self.sig):
                raise ValueError(f"{self.function}: {len(args)} arguments for {self.sig!r}")
            cupy = _require_cupy()
            try:
                _cupy_launch(self.kernel, (grid,), (block,), args, self.sig, self.index, 0)
            except (cupy.cuda.driver.CUDADriverError, cupy.cuda.runtime.CUDARuntimeError) as exc:
                msg = f"launching {self.function} from kernels/{self.module}.cu failed: {exc}"
                raise KernelError(msg) from exc
            return
        slots = getattr(self.local, "slots", None)
        if slots is None:
            slots = self._slots()
        self.pack(slots[0], 0, *args)
        if self.cylaunch is not None:
            try:
                self.cylaunch(self.handle, grid, 1, 1, block, 1, 1, 0, stream, slots[2], 0)
            except Exception as exc:  # CuPy's CUDADriverError
                msg = f"launching {self.function} from kernels/{self.module}.cu failed: {exc}"
                raise KernelError(msg) from exc
            return
        status = self.driver(self.handle, grid, 1, 1, block, 1, 1, 0, stream, slots[1], None)
        if status != 0:
            raise KernelError(
                f"launching {self.function} from kernels/{self.module}.cu failed: CUresult {status}"
            )
