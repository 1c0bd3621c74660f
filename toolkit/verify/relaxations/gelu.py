"""GELU relaxation, :math:`f(x) = x\\,\\Phi(x)` (exact, erf-based GELU).

:math:`f''(x) = \\varphi(x)(2 - x^2)`: convex on :math:`[-\\sqrt2, \\sqrt2]`, concave outside,
so ``f'`` is monotone on the three pieces split at :math:`\\pm\\sqrt2`.  Intervals inside
one piece get tangent + chord; others get the best candidate slope with exact offsets.
IBP: ``f`` decreases up to its minimum :math:`x^* \\approx -0.7518` and increases after, so
the max is at an endpoint and the min is ``f(x*)`` when ``x*`` lies in [l, u].

>>> import torch
>>> GELU().interval(torch.tensor([-2.0]), torch.tensor([1.0]))[0] < -0.16
tensor([True])
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ._base import SLACK, Bounds, SmoothElementwise, bisect

__all__ = ["GELU"]

_R2 = math.sqrt(2.0)


def _gelu(x: Tensor) -> Tensor:
    return x * 0.5 * (1 + torch.erf(x / _R2))


def _dgelu(x: Tensor) -> Tensor:
    return 0.5 * (1 + torch.erf(x / _R2)) + x * torch.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)


_XMIN = float(
    bisect(
        _dgelu,
        torch.tensor([-_R2], dtype=torch.float64),
        torch.tensor([0.0], dtype=torch.float64),
        80,
    )[0]
)
_FMIN = float(_gelu(torch.tensor(_XMIN, dtype=torch.float64))) - SLACK


class GELU(SmoothElementwise):
    pieces = ((-float("inf"), -_R2), (-_R2, _R2), (_R2, float("inf")))

    def fn(self, x: Tensor) -> Tensor:
        return _gelu(x)

    def df(self, x: Tensor) -> Tensor:
        return _dgelu(x)

    def interval(self, l: Tensor, u: Tensor) -> Bounds:
        fl, fu = _gelu(l), _gelu(u)
        inside = (l <= _XMIN) & (u >= _XMIN)
        lo = torch.where(inside, torch.full_like(fl, _FMIN), torch.minimum(fl, fu))
        return lo, torch.maximum(fl, fu)

    def curvature(self, l: Tensor, u: Tensor) -> Bounds:
        vex = (l >= -_R2) & (u <= _R2)
        cave = (u <= -_R2) | (l >= _R2)
        return vex, cave
