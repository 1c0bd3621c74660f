"""exp relaxation: convex and increasing.

Lower: tangent at the midpoint :math:`m` (the tangent of least area),
:math:`e^x \\ge e^m (x - m + 1)`; upper: chord through :math:`(l, e^l), (u, e^u)`.
IBP: ``[exp(l), exp(u)]``.  In the softmax the input is shifted so that ``u <= 0``.

>>> import torch
>>> aL, bL, aU, bU = Exp().planes(torch.tensor([-1.0]), torch.tensor([0.0]))
>>> round(float(aU), 4)
0.6321
"""

from __future__ import annotations

import torch
from torch import Tensor

from ._base import Bounds, SmoothElementwise

__all__ = ["Exp"]


class Exp(SmoothElementwise):
    def fn(self, x: Tensor) -> Tensor:
        return torch.exp(x)

    df = fn

    def interval(self, l: Tensor, u: Tensor) -> Bounds:
        return torch.exp(l), torch.exp(u)

    def curvature(self, l: Tensor, u: Tensor) -> Bounds:
        t = torch.ones_like(l, dtype=torch.bool)
        return t, ~t
