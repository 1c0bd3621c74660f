"""Optimised slopes (alpha-CROWN, Xu et al., ICLR 2021) for the final back-substitution.

CROWN fixes one lower and one upper plane per neuron of every elementwise op
(:class:`~toolkit.verify.relaxations.Elementwise`) before it knows which linear function of
the output it will bound.  Any slope gives a sound plane once its offset is the exact
:math:`\\min_{x\\in[l,u]} f(x) - a x` (a tangent of a convex piece is one), so the bound
:math:`\\underline{c}(a) = \\min_\\delta A\\,\\mathrm{relaxed}(\\delta)` is a lower bound
for **every** slope vector ``a``, and can be maximised by gradient ascent:

.. math::

    a_{k+1} = \\Pi_{[a_{lo}, a_{hi}]}\\big(a_k + \\eta\\,\\mathrm{Adam}(\\nabla_a
    \\underline{c}(a_k))\\big), \\qquad \\text{result} = \\max_k \\underline{c}(a_k).

The planes start at CROWN's choice and the best iterate is kept, so the result is never
looser than CROWN.  Only the sides of a plane that can gain are free (a convex piece's best
upper plane is its chord whatever the objective): a convex piece's lower plane is the
tangent at :math:`l + t(u - l)`, a mixed piece's slope runs over the derivatives at both
ends and the chord, a ReLU's lower slope is ``t`` itself; ``t in [0, 1]``.  Intermediate
bounds stay CROWN's; the lower (rows of ``A``) and upper (rows of ``-A``) bounds are
optimised separately, each with one plane per neuron shared by its rows.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from .relaxations import Elementwise
from .relaxations._base import usable_interval

if TYPE_CHECKING:
    from .propagate import Propagator

__all__ = ["optimize_lower"]


class _Slopes:
    """The free planes of one elementwise node: parameters ``t`` in [0, 1] per element and
    side (:meth:`~toolkit.verify.relaxations.Elementwise.planes_at`)."""

    def __init__(self, op: Elementwise, bnds: list[tuple[Tensor, Tensor]], rel: Any) -> None:
        self.op, self.bnds, self.crown = op, bnds, rel
        ok, l, u = usable_interval(*op.input_interval(*bnds[0]))
        free_l, free_u = op.free_sides(l, u)
        self.free = (free_l & ok, free_u & ok)
        self.t = [t.detach().clone().requires_grad_(True) for t in op.initial_points(rel, l, u)]

    def any_free(self) -> bool:
        return bool(self.free[0].any() or self.free[1].any())

    def rel(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        aL, bL, aU, bU = self.op.relax(self.bnds, points=self.t)
        cL, dL, cU, dU = self.crown  # CROWN's planes where a side is not free
        fl, fu = self.free
        return (
            torch.where(fl, aL, cL),
            torch.where(fl, bL, dL),
            torch.where(fu, aU, cU),
            torch.where(fu, bU, dU),
        )

    def clamp_(self) -> None:
        with torch.no_grad():
            for t in self.t:
                t.clamp_(0, 1)


def optimize_lower(
    prop: Propagator, start: str, A: Tensor, init: Tensor, steps: int = 20, lr: float = 0.25
) -> Tensor:
    """Best lower bound [B, m] of ``A . node(start)`` over ``steps`` slope updates.

    ``prop``: a :class:`~toolkit.verify.propagate.Propagator` that has run (its bounds and
    CROWN relaxations are fixed); ``init``: the CROWN bound, returned where nothing beats it.
    """
    best = init.detach().clone()
    nodes = prop.g.ancestors(start)
    slopes = {}
    for name in nodes:
        op = prop.nodes[name].op
        if isinstance(op, Elementwise):
            s = _Slopes(op, prop._in_bnds(prop.nodes[name]), prop.rels[name])
            if s.any_free():
                slopes[name] = s
    if not slopes or steps <= 0:
        return best
    params = [t for s in slopes.values() for t in s.t]
    opt = torch.optim.Adam(params, lr=lr)
    with torch.enable_grad():
        for _ in range(steps):
            rels = {name: s.rel() for name, s in slopes.items()}
            val = prop.backward(start, A, stop_attention=False, rels=rels)
            finite = torch.isfinite(val)
            best = torch.where(finite, torch.fmax(best, val.detach()), best)
            objective = torch.where(finite, val, torch.zeros_like(val)).sum()
            if not objective.requires_grad:
                break
            opt.zero_grad()
            (-objective).backward()
            opt.step()
            for s in slopes.values():
                s.clamp_()
        # the last update is evaluated too
        with torch.no_grad():
            val = prop.backward(
                start, A, stop_attention=False, rels={name: s.rel() for name, s in slopes.items()}
            )
    return torch.where(torch.isfinite(val), torch.fmax(best, val), best)
