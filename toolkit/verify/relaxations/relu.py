"""ReLU relaxation (CROWN's adaptive lower slope).

On ``[l, u]`` with ``l < 0 < u``: upper chord :math:`y \\le \\frac{u}{u-l}(x - l)`, lower
:math:`y \\ge \\alpha x` with :math:`\\alpha = 1` if :math:`u \\ge -l` else 0 (adaptive, Zhang
et al. 2018); ``alpha`` may be given instead (alpha-CROWN style, any value in [0, 1] is
sound).  Stable neurons are exact.

>>> import torch
>>> aL, bL, aU, bU = ReLU().planes(torch.tensor([-1.0]), torch.tensor([3.0]))
>>> float(aL), float(aU), float(bU)
(1.0, 0.75, 0.75)
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ._base import Bounds, Elementwise, Planes

__all__ = ["ReLU"]


class ReLU(Elementwise):
    def __init__(self, alpha: float | None = None) -> None:
        self.alpha = alpha

    def fn(self, x: Tensor) -> Tensor:
        return torch.relu(x)

    def interval(self, l: Tensor, u: Tensor) -> Bounds:
        return torch.relu(l), torch.relu(u)

    def planes(self, l: Tensor, u: Tensor) -> Planes:
        act, dead = l >= 0, u <= 0
        w = torch.where(u > l, u - l, torch.ones_like(u))
        aU = torch.where(act, 1.0, torch.where(dead, 0.0, u / w))
        bU = torch.where(act | dead, 0.0, -aU * l)
        if self.alpha is None:
            mid = (u >= -l).to(l.dtype)
        else:
            mid = torch.as_tensor(self.alpha, dtype=l.dtype).clamp(0, 1).expand_as(l)
        aL = torch.where(act, 1.0, torch.where(dead, 0.0, mid))
        return aL, torch.zeros_like(l), aU, bU

    def planes_at(self, tL: Tensor, tU: Tensor, l: Tensor, u: Tensor) -> Planes:
        """Lower slope ``tL`` through the origin on a crossing interval; upper: the chord."""
        aL, bL, aU, bU = self.planes(l, u)
        crossing = (l < 0) & (u > 0)
        return torch.where(crossing, tL, aL), bL, aU, bU

    def free_sides(self, l: Tensor, u: Tensor) -> Bounds:
        crossing = (l < 0) & (u > 0)
        return crossing, torch.zeros_like(crossing)

    def initial_points(self, rel: Any, l: Tensor, u: Tensor) -> Bounds:
        return rel[0].clamp(0, 1), torch.zeros_like(l)
