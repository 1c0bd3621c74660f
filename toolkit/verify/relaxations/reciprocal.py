"""Reciprocal relaxation :math:`f(x) = 1/x` on :math:`x > 0` (convex, decreasing).

Lower: tangent at the midpoint; upper: chord :math:`1/l + 1/u - x/(l u)`.  The input is
assumed positive (the softmax denominator is a sum of exponentials); a lower bound
``l <= 0`` is replaced by ``tiny`` (sound for a positive input) and, if the interval then is
useless, the planes fall back to the interval ``[1/u, inf)``.

>>> import torch
>>> aL, bL, aU, bU = Reciprocal().planes(torch.tensor([1.0]), torch.tensor([2.0]))
>>> float(aU), float(bU)
(-0.5, 1.5)
"""

from __future__ import annotations

from torch import Tensor

from ._base import Bounds, PositiveConvexElementwise

__all__ = ["Reciprocal"]


class Reciprocal(PositiveConvexElementwise):
    def fn(self, x: Tensor) -> Tensor:
        return 1.0 / x

    def df(self, x: Tensor) -> Tensor:
        return -1.0 / (x * x)

    def interval(self, l: Tensor, u: Tensor) -> Bounds:
        l, u = self.input_interval(l, u)
        return 1.0 / u, 1.0 / l
