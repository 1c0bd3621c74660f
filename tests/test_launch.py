"""The lean launch's argument packing (toolkit/_launch.py), checked without a GPU."""

from __future__ import annotations

import ctypes
import threading

import numpy as np

from toolkit._launch import _param_block


def test_argument_values_are_reused_per_thread_and_address_themselves():
    values, params = _param_block("pqidf")
    assert _param_block("pqidf")[0] is values  # built once per thread and signature
    for v, a in zip(values, (np.uint64(2**40), np.int64(-3), np.int32(7), 0.25, 1.5)):
        v.value = a
    assert [v.value for v in values] == [2**40, -3, 7, 0.25, 1.5]
    assert [params[i] for i in range(5)] == [ctypes.addressof(v) for v in values]
    other = []
    thread = threading.Thread(target=lambda: other.append(_param_block("pqidf")[0]))
    thread.start()
    thread.join()
    assert other[0] is not values  # another thread (the autograd engine's) gets its own
