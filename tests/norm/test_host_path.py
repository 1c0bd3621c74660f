"""The lean launch of the norm kernels, checked without a GPU: what reaches ``cuLaunchKernel``.

``toolkit._launch.Launcher`` packs a launch's arguments into 8-byte slots with one
``struct.pack_into``; here the driver entry point is replaced by a recorder that reads the
slots back through the parameter array the driver would get, and compares them with the
arguments given (decoded independently with ctypes).  ``toolkit.norm._cuda._launch`` turns
tensors, ``(tensor, offset)`` pairs and None into pointers; checked against ``data_ptr()``.
"""

from __future__ import annotations

import ctypes
import threading

import pytest
import torch

import toolkit._launch as tl
import toolkit.norm._cuda as cu

_DECODE = {
    "p": ctypes.c_uint64,
    "q": ctypes.c_int64,
    "i": ctypes.c_int32,
    "f": ctypes.c_float,
    "d": ctypes.c_double,
}


class _Recorder:
    """Stands in for cuLaunchKernel (ctypes) or CuPy's launchKernel (params as an address)."""

    def __init__(self, sig: str) -> None:
        self.sig = sig
        self.calls: list[tuple] = []

    def __call__(self, handle, gx, gy, gz, bx, by, bz, shared, stream, params, extra):
        if isinstance(params, int):  # CuPy's binding gets the array's address
            params = ctypes.cast(params, ctypes.POINTER(ctypes.c_void_p))
        values = [
            ctypes.cast(params[j], ctypes.POINTER(_DECODE[kind])).contents.value
            for j, kind in enumerate(self.sig)
        ]
        self.calls.append((handle, (gx, gy, gz), (bx, by, bz), shared, stream, values))
        return 0


@pytest.mark.parametrize("cython", [False, True])
def test_launcher_passes_every_argument_in_its_slot(monkeypatch, cython):
    sig = "ppqifdi"
    recorder = _Recorder(sig)
    monkeypatch.setattr(tl, "_kernel", lambda *a: (object(), 1234))
    monkeypatch.setattr(tl, "_driver", lambda: None if cython else recorder)
    monkeypatch.setattr(tl, "_cupy_driver_launch", lambda: recorder if cython else None)
    launcher = tl.Launcher("bn_sampling", "k", sig, 0)
    args = [2**40 + 8, 0, -(2**35), -7, 0.1, 1e300, 2**31 - 1]
    launcher(13, 256, args, 99)
    launcher(1, 32, [5, 6, 7, -1, 2.5, -0.0, 0], 0)
    (h, g, b, shared, stream, values), second = recorder.calls
    assert (h, g, b, shared, stream) == (1234, (13, 1, 1), (256, 1, 1), 0, 99)
    assert values[:4] == args[:4] and values[5:] == args[5:]
    assert values[4] == pytest.approx(0.1, rel=1e-7)  # float32
    assert second[-1] == [5, 6, 7, -1, 2.5, -0.0, 0] and second[1] == (1, 1, 1)
    # another thread (the autograd engine's) packs into its own slots
    other = []
    thread = threading.Thread(target=lambda: other.append(launcher._slots()[0]))
    thread.start()
    thread.join()
    assert other[0] is not launcher.local.slots[0]


def test_launcher_refuses_a_wrong_argument_count(monkeypatch):
    monkeypatch.setattr(tl, "_kernel", lambda *a: (object(), 1))
    monkeypatch.setattr(tl, "_driver", lambda: _Recorder("pi"))
    monkeypatch.setattr(tl, "_cupy_driver_launch", lambda: None)
    with pytest.raises(Exception, match="pack_into expected 2 items"):
        tl.Launcher("bn_sampling", "k", "pi", 0)(1, 1, [1], 0)


def test_norm_launch_turns_tensors_into_pointers(monkeypatch):
    seen = []

    class FakeLauncher:
        def __init__(self, module, function, sig, index, exprs):
            assert module == "bn_sampling" and exprs == cu._INSTANCES

        def __call__(self, grid, block, values, stream):
            seen.append((grid, block, values, stream))

    monkeypatch.setattr(cu, "Launcher", FakeLauncher)
    monkeypatch.setattr(cu, "_LAUNCHERS", {})
    monkeypatch.setattr(cu, "_current_device", lambda: None)  # CPU tensors: device index None
    monkeypatch.setattr(cu, "_stream", lambda index: 77)
    x = torch.zeros(4, 3, dtype=torch.float16)
    index = torch.zeros(10, dtype=torch.int32)
    cu._launch("bn_build_index", 3, 64, "pppiq", (x, (index, 6), None, 5, 2**40), x.device)
    grid, block, values, stream = seen[0]
    assert (grid, block, stream) == (3, 64, 77)
    assert values == [x.data_ptr(), index.data_ptr() + 24, 0, 5, 2**40]
