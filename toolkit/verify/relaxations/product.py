"""Products of two bounded tensors (McCormick planes) and the square.

For :math:`x \\in [l_x, u_x]`, :math:`y \\in [l_y, u_y]` the McCormick planes are

.. math::

    L_1 = l_y x + l_x y - l_x l_y,\\; L_2 = u_y x + u_x y - u_x u_y \\;\\le\\; xy \\;\\le\\;
    U_1 = u_y x + l_x y - l_x u_y,\\; U_2 = l_y x + u_x y - u_x l_y .

We use the convex combinations :math:`\\lambda L_1 + (1-\\lambda) L_2` and
:math:`\\lambda U_1 + (1-\\lambda) U_2` (default :math:`\\lambda = 1/2`).  With widths
:math:`w_x = u_x - l_x`, :math:`w_y = u_y - l_y`, the gap of the averaged lower plane is
:math:`xy - \\tfrac12(L_1 + L_2) = \\tfrac12[(x - l_x)(y - l_y) + (u_x - x)(u_y - y)]`: its
**worst case** over the box is :math:`w_x w_y / 2` (at the corners :math:`(l_x, l_y)` and
:math:`(u_x, u_y)`), half the :math:`w_x w_y` of a single plane, and its **mean** over the
box is :math:`w_x w_y / 4` (the upper plane is symmetric).  For a matrix product
:math:`z_{ij} = \\sum_k x_{ik} y_{jk}` each term is relaxed; since the x-coefficient of term
(i, j, k) depends only on (j, k) and the y-coefficient only on (i, k), the backward step is
three matrix products (no [T, T, K] tensor):
:math:`A_x = A^+ \\alpha^L_x + A^- \\alpha^U_x`, :math:`A_y = A^{+\\top} \\alpha^L_y + A^{-\\top}
\\alpha^U_y`, bias :math:`\\sum A^+ C^L + A^- C^U` with
:math:`C^L = -(\\lambda l_x l_y^\\top + (1-\\lambda) u_x u_y^\\top)`.

``Square`` (:math:`x^2`, convex) uses tangent-at-midpoint and chord.

>>> import torch
>>> op = MatMul(transpose_b=True)
>>> x = torch.randn(1, 2, 3, dtype=torch.float64)
>>> l, u = op.ibp([(x, x), (x, x)], None)
>>> torch.allclose(l, x @ x.transpose(-1, -2))
True
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from ._base import (
    Bounds,
    LinearBounds,
    Op,
    SmoothElementwise,
    all_finite,
    dot_rows,
    safe_mul,
    sum_to,
)

__all__ = ["MatMul", "Mul", "Square", "mccormick"]


def mccormick(
    lx: Tensor, ux: Tensor, ly: Tensor, uy: Tensor, lam: float = 0.5
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Coefficients of the mixed McCormick planes for elementwise :math:`xy`.

    Returns ``(axL, ayL, cL, axU, ayU, cU)`` with ``axL*x + ayL*y + cL <= x*y <=
    axU*x + ayU*y + cU`` on the box (all broadcast to the common shape).
    """
    axL = lam * ly + (1 - lam) * uy
    ay = lam * lx + (1 - lam) * ux
    cL = -(lam * lx * ly + (1 - lam) * ux * uy)
    axU = lam * uy + (1 - lam) * ly
    cU = -(lam * lx * uy + (1 - lam) * ux * ly)
    return axL, ay, cL, axU, ay, cU


def _pn(t: Tensor) -> Bounds:
    return t.clamp(min=0), t.clamp(max=0)


class Mul(Op):
    """Elementwise :math:`z = x \\odot y` with broadcasting (e.g. [H,T,T] * [H,T,1])."""

    arity = 2
    nonlinear = True

    def __init__(self, lam: float = 0.5) -> None:
        self.lam = lam

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        return x * y

    def relax(self, bnds: Sequence[Bounds]) -> Any:
        (lx, ux), (ly, uy) = bnds
        return mccormick(lx, ux, ly, uy, self.lam)

    def ibp(self, bnds: Sequence[Bounds], rel: Any | None = None) -> Bounds:
        (lx, ux), (ly, uy) = bnds
        c = torch.stack(torch.broadcast_tensors(lx * ly, lx * uy, ux * ly, ux * uy))
        return c.amin(0), c.amax(0)

    def backward(self, A: Tensor, bnds: Sequence[Bounds], rel: Any) -> tuple[list[Tensor], Tensor]:
        (lx, _), (ly, _) = bnds
        sx = (A.shape[0], A.shape[1], *lx.shape[1:])
        sy = (A.shape[0], A.shape[1], *ly.shape[1:])
        axL, ayL, cL, axU, ayU, cU = rel
        if all_finite(*rel):
            An = A.clamp(max=0)
            dx = (axU - axL).unsqueeze(1)
            Ax = A * axL.unsqueeze(1)
            if bool(dx.any()):
                Ax = Ax + An * dx
            Ay = A * ayL.unsqueeze(1)  # ayL == ayU
            bias = dot_rows(A, cL) + dot_rows(An, cU - cL)
            return [sum_to(Ax, sx), sum_to(Ay, sy)], bias
        axL, ayL, cL, axU, ayU, cU = (t.unsqueeze(1) for t in rel)
        Ap, An = _pn(A)
        Ax = sum_to(safe_mul(Ap, axL) + safe_mul(An, axU), sx)
        Ay = sum_to(safe_mul(Ap, ayL) + safe_mul(An, ayU), sy)
        bias = (safe_mul(Ap, cL) + safe_mul(An, cU)).flatten(2).sum(-1)
        return [Ax, Ay], bias

    def forward_linear(
        self, lins: Sequence[LinearBounds], bnds: Sequence[Bounds], rel: Any
    ) -> LinearBounds:
        x, y = lins
        axL, ayL, cL, axU, ayU, cU = rel
        e = lambda t: t.unsqueeze(-1)  # noqa: E731

        def side(a: Tensor, ax_lo, ax_hi, bx_lo, bx_hi):
            p, n = _pn(a)
            return (
                safe_mul(e(p), ax_lo) + safe_mul(e(n), ax_hi),
                safe_mul(p, bx_lo) + safe_mul(n, bx_hi),
            )

        w1, b1 = side(axL, x.lw, x.uw, x.lb, x.ub)
        w2, b2 = side(ayL, y.lw, y.uw, y.lb, y.ub)
        w3, b3 = side(axU, x.uw, x.lw, x.ub, x.lb)
        w4, b4 = side(ayU, y.uw, y.lw, y.ub, y.lb)
        return LinearBounds(w1 + w2, b1 + b2 + cL, w3 + w4, b3 + b4 + cU)


class MatMul(Op):
    """Bilinear :math:`z = x y^\\top` (``transpose_b=True``, e.g. QK^T) or :math:`z = x y` (PV).

    Shapes: x [B, *, T1, K]; y [B, *, T2, K] (transposed) or [B, *, K, T2]; z [B, *, T1, T2].
    """

    arity = 2
    nonlinear = True

    def __init__(self, transpose_b: bool, lam: float = 0.5) -> None:
        self.transpose_b, self.lam = transpose_b, lam

    def _t(self, y: Tensor) -> Tensor:  # to the [.., T2, K] layout
        return y if self.transpose_b else y.transpose(-1, -2)

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        return x @ self._t(y).transpose(-1, -2)

    def relax(self, bnds: Sequence[Bounds]) -> Any:
        (lx, ux), (ly, uy) = bnds
        ly, uy = self._t(ly), self._t(uy)
        lam = self.lam
        tt = lambda t: t.transpose(-1, -2)  # noqa: E731
        axL = lam * ly + (1 - lam) * uy  # [.., T2, K] coefficient of x_ik in term (i,j,k)
        axU = lam * uy + (1 - lam) * ly
        ay = lam * lx + (1 - lam) * ux  # [.., T1, K] coefficient of y_jk
        cL = -(lam * lx @ tt(ly) + (1 - lam) * ux @ tt(uy))  # [.., T1, T2]
        cU = -(lam * lx @ tt(uy) + (1 - lam) * ux @ tt(ly))
        return axL, ay, cL, axU, ay, cU

    def ibp(self, bnds: Sequence[Bounds], rel: Any | None = None) -> Bounds:
        (lx, ux), (ly, uy) = bnds
        ly, uy = self._t(ly).unsqueeze(-3), self._t(uy).unsqueeze(-3)
        lx, ux = lx.unsqueeze(-2), ux.unsqueeze(-2)
        c = torch.stack([lx * ly, lx * uy, ux * ly, ux * uy])
        return c.amin(0).sum(-1), c.amax(0).sum(-1)

    def backward(self, A: Tensor, bnds: Sequence[Bounds], rel: Any) -> tuple[list[Tensor], Tensor]:
        axL, ayL, cL, axU, ayU, cU = (t.unsqueeze(1) for t in rel)
        tt = lambda t: t.transpose(-1, -2)  # noqa: E731
        if all_finite(*rel):
            An = A.clamp(max=0)
            Ax = A @ axL
            dx = axU - axL
            if bool(dx.any()):
                Ax = Ax + An @ dx
            Ay = tt(A) @ ayL  # ayL == ayU
            bias = dot_rows(A, cL[:, 0]) + dot_rows(An, (cU - cL)[:, 0])
        else:
            Ap, An = _pn(A)
            Ax = Ap @ axL + An @ axU
            Ay = tt(Ap) @ ayL + tt(An) @ ayU
            bias = (safe_mul(Ap, cL) + safe_mul(An, cU)).flatten(2).sum(-1)
        if not self.transpose_b:
            Ay = tt(Ay)
        return [Ax, Ay], bias

    def forward_linear(
        self, lins: Sequence[LinearBounds], bnds: Sequence[Bounds], rel: Any
    ) -> LinearBounds:
        x, y = lins
        if not self.transpose_b:
            y = LinearBounds(
                y.lw.transpose(-2, -3),
                y.lb.transpose(-1, -2),
                y.uw.transpose(-2, -3),
                y.ub.transpose(-1, -2),
            )
        axL, ayL, cL, axU, ayU, cU = rel

        def side(ax, ay, xlo, xhi, ylo, yhi):
            (axp, axn), (ayp, ayn) = _pn(ax), _pn(ay)
            w = (
                torch.einsum("...jk,...ikn->...ijn", axp, xlo[0])
                + torch.einsum("...jk,...ikn->...ijn", axn, xhi[0])
                + torch.einsum("...ik,...jkn->...ijn", ayp, ylo[0])
                + torch.einsum("...ik,...jkn->...ijn", ayn, yhi[0])
            )
            b = (
                torch.einsum("...jk,...ik->...ij", axp, xlo[1])
                + torch.einsum("...jk,...ik->...ij", axn, xhi[1])
                + torch.einsum("...ik,...jk->...ij", ayp, ylo[1])
                + torch.einsum("...ik,...jk->...ij", ayn, yhi[1])
            )
            return w, b

        xl, xu, yl, yu = (x.lw, x.lb), (x.uw, x.ub), (y.lw, y.lb), (y.uw, y.ub)
        lw, lb = side(axL, ayL, xl, xu, yl, yu)
        uw, ub = side(axU, ayU, xu, xl, yu, yl)
        return LinearBounds(lw, lb + cL, uw, ub + cU)


class Square(SmoothElementwise):
    """:math:`x^2`: convex; IBP ``[0, max(l^2, u^2)]`` when ``l < 0 < u``."""

    def fn(self, x: Tensor) -> Tensor:
        return x * x

    def df(self, x: Tensor) -> Tensor:
        return 2 * x

    def interval(self, l: Tensor, u: Tensor) -> Bounds:
        lo = torch.where((l < 0) & (u > 0), torch.zeros_like(l), torch.minimum(l * l, u * u))
        return lo, torch.maximum(l * l, u * u)

    def curvature(self, l: Tensor, u: Tensor) -> Bounds:
        t = torch.ones_like(l, dtype=torch.bool)
        return t, ~t
