"""A counting allocator for CPU tests: the peak bytes of tensor storage alive during a call.

Every tensor that an aten op returns inside :class:`PeakCounter` is counted once per
storage (views share it) until the last such tensor is garbage collected.  Storage made by
one kernel for its own scratch space is not seen, so this is a lower bound on what the
process allocates; the bound engine's memory is its tensors, which it sees.
"""

from __future__ import annotations

import weakref
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten


class PeakCounter(TorchDispatchMode):
    """``with PeakCounter() as pc: ...`` then ``pc.peak`` (bytes)."""

    def __init__(self) -> None:
        super().__init__()
        self.refs: dict[int, list[int]] = {}  # data_ptr -> [bytes, live tensors]
        self.current = 0
        self.peak = 0

    def _free(self, key: int) -> None:
        entry = self.refs.get(key)
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] == 0:
            self.current -= entry[0]
            del self.refs[key]

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor) and t.device.type != "meta":
                storage = t.untyped_storage()
                key, size = storage.data_ptr(), storage.nbytes()
                if size == 0:
                    continue
                if key not in self.refs:
                    self.refs[key] = [size, 0]
                    self.current += size
                    self.peak = max(self.peak, self.current)
                self.refs[key][1] += 1
                weakref.finalize(t, self._free, key)
        return out
