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

import torch

from ._base import SmoothElementwise

__all__ = ["Reciprocal"]

_TINY = 1e-300


class Reciprocal(SmoothElementwise):
    def fn(self, x):
        return 1.0 / x

    def df(self, x):
        return -1.0 / (x * x)

    def interval(self, l, u):
        l = l.clamp(min=_TINY)
        u = torch.maximum(u, l)
        return 1.0 / u, 1.0 / l

    def relax(self, bnds):
        l, u = bnds[0]
        l = l.clamp(min=_TINY)
        return super().relax([(l, torch.maximum(u, l))])

    def curvature(self, l, u):
        t = torch.ones_like(l, dtype=torch.bool)
        return t, ~t
