"""Softmax, decomposed into a stabilising shift, exp, sum, reciprocal and a product.

.. math::

    \\mathrm{softmax}(s)_{ij} = E_{ij} \\cdot R_i, \\quad E_{ij} = e^{s_{ij} - c_i}, \\quad
    Z_i = \\textstyle\\sum_j E_{ij}, \\quad R_i = 1 / Z_i,

with the max-shift :math:`c_i = \\max_j u_{ij}` (a *constant*: the row max of the upper bounds
of ``s``, fixed once per bound computation; any constant leaves the softmax unchanged).  It
keeps :math:`E \\in (0, 1]` so exp never overflows, and :math:`Z \\in (0, T]`.  Each piece is
relaxed by its own op (``Shift`` here; :class:`~.exp.Exp`, ``Linear`` for the sum,
:class:`~.reciprocal.Reciprocal`, :class:`~.product.Mul`), and the output is intersected
with its valid range [0, 1].  In the exact forward pass (``Shift.forward``) :math:`c_i` is
the row max of ``s`` itself, so the internal nodes E, Z, R are marked non-comparable.

>>> import torch
>>> op = Shift()
>>> l, u = torch.zeros(1, 2, 3), torch.ones(1, 2, 3)
>>> op.ibp([(l, u)], op.relax([(l, u)]))[1].max()
tensor(0.)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from ._base import Bounds, LinearBounds, Op
from .exp import Exp
from .linear import Linear
from .product import Mul
from .reciprocal import Reciprocal

if TYPE_CHECKING:
    from ..graph import Graph

__all__ = ["Shift", "add_softmax"]


class Shift(Op):
    """:math:`y = x - c` with :math:`c` the row max of the upper bounds (keepdim over -1)."""

    ibp_exact = True

    def forward(self, x: Tensor) -> Tensor:
        return x - x.amax(-1, keepdim=True)

    def relax(self, bnds: Sequence[Bounds]) -> Any:
        c = bnds[0][1].amax(-1, keepdim=True)
        return torch.where(torch.isfinite(c), c, torch.zeros_like(c))

    def ibp(self, bnds: Sequence[Bounds], rel: Any) -> Bounds:
        l, u = bnds[0]
        return l - rel, u - rel

    def backward(self, A: Tensor, bnds: Sequence[Bounds], rel: Any) -> tuple[list[Tensor], Tensor]:
        return [A], -(A * rel.unsqueeze(1)).flatten(2).sum(-1)

    def forward_linear(
        self, lins: Sequence[LinearBounds], bnds: Sequence[Bounds], rel: Any
    ) -> LinearBounds:
        x = lins[0]
        return LinearBounds(x.lw, x.lb - rel, x.uw, x.ub - rel)


def add_softmax(
    g: Graph, x: str, prefix: str, device: torch.device | str | None = None, **flags: Any
) -> str:
    """Append the softmax (over the last dim) of node ``x`` to graph ``g``; return its name.

    ``device``: where its one constant (the summing vector) lives (default: the CPU).
    """
    shape = g.nodes[x].shape
    n = shape[-1]
    ones = torch.ones(n, 1, dtype=torch.float64, device=device)
    s = g.add(f"{prefix}.shift", Shift(), (x,), shape, comparable=False, **flags)
    e = g.add(
        f"{prefix}.exp", Exp(), (s,), shape, comparable=False, valid_range=(0.0, 1.0), **flags
    )
    z = g.add(
        f"{prefix}.sum",
        Linear(ones, None),
        (e,),
        (*shape[:-1], 1),
        comparable=False,
        valid_range=(0.0, float(n)),
        **flags,
    )
    r = g.add(f"{prefix}.recip", Reciprocal(), (z,), (*shape[:-1], 1), comparable=False, **flags)
    return g.add(prefix, Mul(), (e, r), shape, valid_range=(0.0, 1.0), **flags)
