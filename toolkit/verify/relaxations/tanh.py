"""tanh relaxation.

tanh is convex on :math:`(-\\infty, 0]` and concave on :math:`[0, \\infty)`.  One-sided
intervals get tangent-at-midpoint + chord; straddling intervals get the best of the chord
and endpoint/midpoint tangent slopes with *exact* offsets (:func:`offset_range`), which is
sound for any slope.  IBP: tanh is increasing, so ``[tanh(l), tanh(u)]``.

>>> import torch
>>> aL, bL, aU, bU = Tanh().planes(torch.tensor([-2.0]), torch.tensor([1.0]))
>>> bool(aL * 0.5 + bL <= torch.tanh(torch.tensor(0.5)) <= aU * 0.5 + bU)
True
"""

from __future__ import annotations

import torch
from torch import Tensor

from ._base import Bounds, SmoothElementwise

__all__ = ["Tanh"]


class Tanh(SmoothElementwise):
    pieces = ((-float("inf"), 0.0), (0.0, float("inf")))

    def fn(self, x: Tensor) -> Tensor:
        return torch.tanh(x)

    def df(self, x: Tensor) -> Tensor:
        return 1 - torch.tanh(x) ** 2

    def interval(self, l: Tensor, u: Tensor) -> Bounds:
        return torch.tanh(l), torch.tanh(u)

    def curvature(self, l: Tensor, u: Tensor) -> Bounds:
        return u <= 0, l >= 0
