"""Square-root family: :math:`\\sqrt{x}` (concave) and :math:`x^{-1/2}` (convex) on x >= 0.

* ``Sqrt``: lower chord, upper tangent at the midpoint; ``l < 0`` is clamped to 0 (the
  input is assumed nonnegative, e.g. a variance).
* ``Rsqrt``: lower tangent at the midpoint, upper chord; used by the standard LayerNorm on
  ``var + eps >= eps > 0`` (one convex op is tighter than sqrt followed by reciprocal).

>>> import torch
>>> aL, bL, aU, bU = Sqrt().planes(torch.tensor([1.0]), torch.tensor([4.0]))
>>> round(float(aL), 4), round(float(bL), 4)
(0.3333, 0.6667)
"""

from __future__ import annotations

import torch
from torch import Tensor

from ._base import Bounds, PositiveConvexElementwise, SmoothElementwise

__all__ = ["Rsqrt", "Sqrt"]

_TINY = 1e-300


class Sqrt(SmoothElementwise):
    def fn(self, x: Tensor) -> Tensor:
        return torch.sqrt(x)

    def df(self, x: Tensor) -> Tensor:
        return 0.5 / torch.sqrt(x)

    def interval(self, l: Tensor, u: Tensor) -> Bounds:
        l = l.clamp(min=0)
        return torch.sqrt(l), torch.sqrt(torch.maximum(u, l))

    def input_interval(self, l: Tensor, u: Tensor) -> Bounds:
        l = l.clamp(min=0)
        return l, torch.maximum(u, l)

    def curvature(self, l: Tensor, u: Tensor) -> Bounds:
        t = torch.ones_like(l, dtype=torch.bool)
        return ~t, t


class Rsqrt(PositiveConvexElementwise):
    def fn(self, x: Tensor) -> Tensor:
        return torch.rsqrt(x)

    def df(self, x: Tensor) -> Tensor:
        return -0.5 * x**-1.5

    def interval(self, l: Tensor, u: Tensor) -> Bounds:
        l, u = self.input_interval(l, u)
        return torch.rsqrt(u), torch.rsqrt(l)
