"""Shared machinery of the operator relaxations.

Every operator of the verification graph is an :class:`Op`.  Given bounds on its inputs it
knows

* ``forward(*xs)``: the exact value (batched, leading dim B);
* ``relax(bnds)``: the data of its relaxation (linear planes, constants), computed once
  per bound computation from the input intervals ``bnds = [(l, u), ...]``;
* ``ibp(bnds, rel)``: an output interval (interval bound propagation);
* ``backward(A, bnds, rel)``: for a linear function ``A . y`` of its output (A of shape
  [B, m, *out]) matrices ``A_i`` and a bias ``c`` [B, m] with
  :math:`A\\cdot y \\ge \\sum_i A_i \\cdot x_i + c` for all inputs in the bounds (CROWN step);
* ``forward_linear(lins, bnds, rel)``: linear lower/upper functions of the perturbation
  ``delta`` (:class:`LinearBounds`, weights [B, *shape, n]) given those of the inputs.

Elementwise nonlinear functions get planes :math:`a_L x + b_L \\le f(x) \\le a_U x + b_U`
on ``[l, u]``.  :func:`offset_range` gives the *exact* min and max of ``f(x) - a x`` over
``[l, u]`` for any slope ``a`` (endpoints plus the stationary points, found by bisection on
each piece where ``f'`` is monotone), so any choice of slopes yields sound planes; the
slopes are picked among chord and tangents by the area between plane and curve.
Products with 0 * inf are guarded by :func:`safe_mul`, and NaNs propagate (the engine turns
a NaN bound into an infinite one), so non-finite intermediate bounds stay sound.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import torch
from torch import Tensor

#: (lower, upper) of one node
Bounds = tuple[Tensor, Tensor]
#: (aL, bL, aU, bU): a lower and an upper plane per element
Planes = tuple[Tensor, Tensor, Tensor, Tensor]

__all__ = [
    "SLACK",
    "Elementwise",
    "LinearBounds",
    "Op",
    "SmoothElementwise",
    "all_finite",
    "bisect",
    "chord_slope",
    "convex_planes",
    "dot_rows",
    "general_planes",
    "offset_range",
    "safe_mul",
    "sum_to",
    "usable_interval",
]

#: relative safety margin added to every plane bias (float64 rounding is ~1e-16)
SLACK = 1e-12


class LinearBounds(NamedTuple):
    """``lw . delta + lb <= node <= uw . delta + ub``; lw, uw [B, *shape, n], lb, ub [B, *shape]."""

    lw: Tensor
    lb: Tensor
    uw: Tensor
    ub: Tensor


def safe_mul(a: Tensor, b: Tensor) -> Tensor:
    """``a * b`` with ``0 * inf = 0`` (where ``a == 0``); NaN in ``a`` still propagates."""
    return torch.where(a == 0, a.new_zeros(()), a * b)


def all_finite(*ts: Tensor) -> bool:
    return all(bool(torch.isfinite(t).all()) for t in ts)


def dot_rows(A: Tensor, c: Tensor) -> Tensor:
    """Per-row :math:`\\sum A \\odot c`: A [B, m, *shape], c [B, *shape'] -> [B, m]."""
    B, m = A.shape[:2]
    c = c.expand(B, *A.shape[2:]).reshape(B, -1, 1)
    return (A.reshape(B, m, -1) @ c)[..., 0]


def lower_step(A: Tensor, aL: Tensor, bL: Tensor, aU: Tensor, bU: Tensor) -> tuple[Tensor, Tensor]:
    """Elementwise CROWN step: ``A^+ aL + A^- aU`` and bias ``A^+ . bL + A^- . bU``.

    Coefficients [B, *shape] (broadcast over the rows of A [B, m, *shape]).  Uses
    :math:`A^+ = A - A^-` to save work when everything is finite.
    """
    if all_finite(aL, aU, bL, bU):
        An = A.clamp(max=0)
        da = (aU - aL).unsqueeze(1)
        Ax = A * aL.unsqueeze(1)
        if bool(da.any()):
            Ax = Ax + An * da
        return Ax, dot_rows(A, bL) + dot_rows(An, bU - bL)
    aL, aU, bL, bU = (t.unsqueeze(1) for t in (aL, aU, bL, bU))
    Ap, An = A.clamp(min=0), A.clamp(max=0)
    Ax = safe_mul(Ap, aL) + safe_mul(An, aU)
    bias = (safe_mul(Ap, bL) + safe_mul(An, bU)).flatten(2).sum(-1)
    return Ax, bias


def sum_to(t: Tensor, shape: tuple[int, ...]) -> Tensor:
    """Sum a broadcast tensor back to ``shape`` (same number of dims or fewer, right-aligned)."""
    extra = t.dim() - len(shape)
    if extra:
        t = t.sum(tuple(range(extra)))
    dims = tuple(i for i, s in enumerate(shape) if s == 1 and t.shape[i] != 1)
    return t.sum(dims, keepdim=True) if dims else t


class Op:
    """Base class; see the module docstring for the protocol."""

    arity = 1
    #: True when IBP of this op is exact given exact input intervals (no need for CROWN bounds)
    ibp_exact = False
    #: True for ops whose relaxation depends on input bounds (their inputs need bounds)
    nonlinear = False

    def forward(self, *xs: Any, **kw: Any) -> Tensor:
        raise NotImplementedError

    def relax(self, bnds: Sequence[Bounds]) -> Any:
        return None

    def ibp(self, bnds: Sequence[Bounds], rel: Any) -> Bounds:
        raise NotImplementedError

    def backward(self, A: Tensor, bnds: Sequence[Bounds], rel: Any) -> tuple[list[Tensor], Tensor]:
        raise NotImplementedError

    def forward_linear(
        self, lins: Sequence[LinearBounds], bnds: Sequence[Bounds], rel: Any
    ) -> LinearBounds:
        raise NotImplementedError

    def __repr__(self) -> str:
        return type(self).__name__


def bisect(g: Callable[[Tensor], Tensor], lo: Tensor, hi: Tensor, iters: int = 64) -> Tensor:
    """Root of ``g`` (monotone on each [lo, hi], with a sign change) by vectorised bisection."""
    slo = g(lo) > 0
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        same = (g(mid) > 0) == slo
        lo = torch.where(same, mid, lo)
        hi = torch.where(same, hi, mid)
    return 0.5 * (lo + hi)


def _shifted(df: Callable[[Tensor], Tensor], a: Tensor, x: Tensor) -> Tensor:
    return df(x) - a


def offset_range(
    f: Callable[[Tensor], Tensor],
    df: Callable[[Tensor], Tensor],
    pieces: Any,
    a: Tensor,
    l: Tensor,
    u: Tensor,
) -> Bounds:
    """Exact ``(min, max)`` of ``h(x) = f(x) - a x`` over ``x in [l, u]`` (elementwise).

    ``pieces``: list of ``(p0, p1)`` (floats, may be infinite) covering the domain, on each
    of which ``f'`` is monotone, so ``h' = f' - a`` has at most one root there.
    """
    xs = [l, u]
    for p0, p1 in pieces:
        lo = l.clamp(min=p0)
        hi = u.clamp(max=p1)
        ok = lo < hi
        lo = torch.where(ok, lo, l)
        hi = torch.where(ok, hi, l)
        with torch.no_grad():  # the extremes' locations carry no gradient (envelope theorem)
            ad = a.detach()
            has = ok & ((df(lo) - ad) * (df(hi) - ad) <= 0)
            r = bisect(functools.partial(_shifted, df, ad), lo, hi) if bool(has.any()) else None
        if r is not None:
            xs.append(torch.where(has, r, l))
    h = torch.stack([f(x) - a * x for x in xs])
    return h.amin(0), h.amax(0)


def chord_slope(f: Callable[[Tensor], Tensor], l: Tensor, u: Tensor) -> Tensor:
    """``(f(u) - f(l)) / (u - l)``; where ``u == l`` the result is meaningless (finite)."""
    w = u - l
    return (f(u) - f(l)) / torch.where(w > 0, w, 1.0)


def usable_interval(l: Tensor, u: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``(good, l', u')``: ``good`` where [l, u] is finite and non-degenerate; elsewhere l', u'
    are the dummy interval (1, 2), which lies in every op's domain (its planes get discarded)."""
    good = torch.isfinite(l) & torch.isfinite(u) & (u > l)
    return good, torch.where(good, l, 1.0), torch.where(good, u, 2.0)


def convex_planes(
    f: Callable[[Tensor], Tensor],
    df: Callable[[Tensor], Tensor],
    l: Tensor,
    u: Tensor,
    convex: bool = True,
) -> Planes:
    """Tangent at the midpoint and chord; for concave ``f`` the roles swap."""
    mid = 0.5 * (l + u)
    at = df(mid)
    bt = f(mid) - at * mid
    ac = torch.where(u > l, chord_slope(f, l, u), at)
    bc = f(l) - ac * l
    return (at, bt, ac, bc) if convex else (ac, bc, at, bt)


def general_planes(
    f: Callable[[Tensor], Tensor], df: Callable[[Tensor], Tensor], pieces: Any, l: Tensor, u: Tensor
) -> Planes:
    """Best of candidate slopes {chord, f'(l), f'(u), f'(mid)} with exact offsets.

    Lower plane maximises its mean over [l, u], upper plane minimises it (i.e. minimal area
    between plane and curve among the candidates).
    """
    mid = 0.5 * (l + u)
    cands = [chord_slope(f, l, u), df(l), df(u), df(mid)]
    best: list[Tensor] = []
    for a in cands:
        lo, hi = offset_range(f, df, pieces, a, l, u)
        sl, su = a * mid + lo, a * mid + hi
        if not best:
            best = [a, lo, sl, a, hi, su]
            continue
        bl = sl > best[2]
        bu = su < best[5]
        best = [
            torch.where(bl, a, best[0]),
            torch.where(bl, lo, best[1]),
            torch.where(bl, sl, best[2]),
            torch.where(bu, a, best[3]),
            torch.where(bu, hi, best[4]),
            torch.where(bu, su, best[5]),
        ]
    return best[0], best[1], best[3], best[4]


class Elementwise(Op):
    """Elementwise nonlinear op ``y = f(x)`` relaxed by planes (aL, bL, aU, bU) per element."""

    nonlinear = True

    def fn(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def interval(self, l: Tensor, u: Tensor) -> Bounds:
        """Exact range of f over [l, u] (IBP)."""
        raise NotImplementedError

    def planes(self, l: Tensor, u: Tensor) -> Planes:
        """(aL, bL, aU, bU) for finite l < u."""
        raise NotImplementedError

    def planes_at(self, tL: Tensor, tU: Tensor, l: Tensor, u: Tensor) -> Planes:
        """Sound planes (aL, bL, aU, bU) chosen by parameters ``t`` in [0, 1] (alpha-CROWN)."""
        raise NotImplementedError

    def free_sides(self, l: Tensor, u: Tensor) -> Bounds:
        """Masks (lower, upper): where a plane is worth optimising (alpha-CROWN).

        A convex piece's best upper plane is its chord whatever the objective, so only its
        lower plane is free (and the other way round for a concave piece).
        """
        raise NotImplementedError

    def initial_points(self, rel: Any, l: Tensor, u: Tensor) -> Bounds:
        """``(tL, tU)`` for which :meth:`planes_at` gives (about) the planes of ``rel``."""
        raise NotImplementedError

    def input_interval(self, l: Tensor, u: Tensor) -> Bounds:
        """The input bounds the planes are built on (ops with a restricted domain clamp)."""
        return l, u

    def forward(self, x: Tensor) -> Tensor:
        return self.fn(x)

    def ibp(self, bnds: Sequence[Bounds], rel: Any | None = None) -> Bounds:
        return self.interval(*bnds[0])

    def relax(self, bnds: Sequence[Bounds], points: Sequence[Tensor] | None = None) -> Any:
        """Planes with degenerate/non-finite intervals handled and a safety slack added.

        ``points=(tL, tU)`` (alpha-CROWN) takes the planes of :meth:`planes_at` instead of
        the default choice of :meth:`planes`.
        """
        l, u = self.input_interval(*bnds[0])
        il, iu = self.interval(l, u)
        good, gl, gu = usable_interval(l, u)
        zero = torch.zeros_like(l)
        if bool(good.any()):
            if points is None:
                aL, bL, aU, bU = self.planes(gl, gu)
            else:
                tL, tU = points
                aL, bL, aU, bU = self.planes_at(tL, tU, gl, gu)
        else:
            aL = bL = aU = bU = zero
        aL, aU = torch.where(good, aL, zero), torch.where(good, aU, zero)
        bL, bU = torch.where(good, bL, il), torch.where(good, bU, iu)
        bad = ~(torch.isfinite(aL) & torch.isfinite(bL))
        aL, bL = torch.where(bad & good, zero, aL), torch.where(bad & good, il, bL)
        bad = ~(torch.isfinite(aU) & torch.isfinite(bU))
        aU, bU = torch.where(bad & good, zero, aU), torch.where(bad & good, iu, bU)
        r = torch.where(good, torch.maximum(l.abs(), u.abs()), zero)
        bL = bL - SLACK * (1 + bL.abs() + aL.abs() * r)
        bU = bU + SLACK * (1 + bU.abs() + aU.abs() * r)
        return aL, bL, aU, bU

    def backward(self, A: Tensor, bnds: Sequence[Bounds], rel: Any) -> tuple[list[Tensor], Tensor]:
        aL, bL, aU, bU = rel
        Ax, bias = lower_step(A, aL, bL, aU, bU)
        return [Ax], bias

    def forward_linear(
        self, lins: Sequence[LinearBounds], bnds: Sequence[Bounds], rel: Any
    ) -> LinearBounds:
        x = lins[0]
        aL, bL, aU, bU = rel
        aLp, aLn, aUp, aUn = aL.clamp(min=0), aL.clamp(max=0), aU.clamp(min=0), aU.clamp(max=0)
        e = lambda t: t.unsqueeze(-1)  # noqa: E731
        lw = safe_mul(e(aLp), x.lw) + safe_mul(e(aLn), x.uw)
        lb = safe_mul(aLp, x.lb) + safe_mul(aLn, x.ub) + bL
        uw = safe_mul(e(aUp), x.uw) + safe_mul(e(aUn), x.lw)
        ub = safe_mul(aUp, x.ub) + safe_mul(aUn, x.lb) + bU
        return LinearBounds(lw, lb, uw, ub)


class SmoothElementwise(Elementwise):
    """Smooth f with known convexity: subclasses set ``pieces`` and ``curvature(l, u)``.

    ``curvature`` returns two masks (convex on [l, u], concave on [l, u]); elsewhere
    :func:`general_planes` is used.
    """

    pieces: tuple = ((-float("inf"), float("inf")),)

    def df(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def curvature(self, l: Tensor, u: Tensor) -> Bounds:
        raise NotImplementedError

    def free_sides(self, l: Tensor, u: Tensor) -> Bounds:
        vex, cave = self.curvature(l, u)
        return ~cave, ~vex

    def _slope_range(self, l: Tensor, u: Tensor) -> Bounds:
        """Slopes worth trying on a mixed piece: the derivative at both ends and the chord."""
        s = torch.stack([self.df(l), self.df(u), chord_slope(self.fn, l, u)])
        lo, hi = s.amin(0), s.amax(0)
        ok = torch.isfinite(lo) & torch.isfinite(hi)
        return torch.where(ok, lo, 0.0), torch.where(ok, hi - lo, 0.0)

    def planes_at(self, tL: Tensor, tU: Tensor, l: Tensor, u: Tensor) -> Planes:
        """On a convex (concave) piece the lower (upper) plane is the tangent at
        ``l + t (u - l)``; on a mixed piece the slope is ``lo + t (hi - lo)`` over
        :meth:`_slope_range`, with exact offsets (:func:`offset_range`).  The other side
        is the chord (exact there, and never used where it would not be: see
        :meth:`free_sides`)."""
        vex, cave = self.curvature(l, u)
        w = u - l
        ac = chord_slope(self.fn, l, u)
        bc = self.fn(l) - ac * l
        aL, bL, aU, bU = ac, bc, ac, bc

        def tangent(t: Tensor) -> Bounds:
            x = l + w * t
            a = self.df(x)
            return a, self.fn(x) - a * x

        a, b = tangent(tL)
        aL, bL = torch.where(vex, a, aL), torch.where(vex, b, bL)
        a, b = tangent(tU)
        aU, bU = torch.where(cave, a, aU), torch.where(cave, b, bU)
        mixed = ~(vex | cave)
        if bool(mixed.any()):
            lo, span = self._slope_range(l[mixed], u[mixed])
            for t, low in ((tL, True), (tU, False)):
                a = lo + span * t[mixed]
                off = offset_range(self.fn, self.df, self.pieces, a, l[mixed], u[mixed])
                if low:
                    aL, bL = aL.index_put((mixed,), a), bL.index_put((mixed,), off[0])
                else:
                    aU, bU = aU.index_put((mixed,), a), bU.index_put((mixed,), off[1])
        return aL, bL, aU, bU

    def initial_points(self, rel: Any, l: Tensor, u: Tensor) -> Bounds:
        vex, cave = self.curvature(l, u)
        tL = torch.full_like(l, 0.5)  # CROWN's tangent is at the midpoint
        tU = tL.clone()
        mixed = ~(vex | cave)
        if bool(mixed.any()):
            lo, span = self._slope_range(l[mixed], u[mixed])
            safe = torch.where(span > 0, span, 1.0)
            tL[mixed] = ((rel[0][mixed] - lo) / safe).clamp(0, 1)
            tU[mixed] = ((rel[2][mixed] - lo) / safe).clamp(0, 1)
        return tL, tU

    def planes(self, l: Tensor, u: Tensor) -> Planes:
        vex, cave = self.curvature(l, u)
        out = list(convex_planes(self.fn, self.df, l, u, True))
        if bool(cave.any()):
            cc = convex_planes(self.fn, self.df, l, u, False)
            out = [torch.where(cave, c, o) for c, o in zip(cc, out)]
        mixed = ~(vex | cave)
        if bool(mixed.any()):
            g = general_planes(self.fn, self.df, self.pieces, l[mixed], u[mixed])
            for o, gi in zip(out, g):
                o[mixed] = gi
        return out[0], out[1], out[2], out[3]


class PositiveConvexElementwise(SmoothElementwise):
    """A convex function defined for ``x > 0`` only (``1/x``, ``1/sqrt(x)``).

    Its input is positive by construction (a sum of exponentials, a variance plus eps), so a
    lower bound ``l <= 0`` is replaced by ``tiny``: sound for that input, and it keeps the
    planes finite.
    """

    tiny = 1e-300

    def input_interval(self, l: Tensor, u: Tensor) -> Bounds:
        l = l.clamp(min=self.tiny)
        return l, torch.maximum(u, l)

    def curvature(self, l: Tensor, u: Tensor) -> Bounds:
        convex = torch.ones_like(l, dtype=torch.bool)
        return convex, ~convex
