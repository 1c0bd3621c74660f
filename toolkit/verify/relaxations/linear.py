"""Linear operators: exact in every method (no relaxation needed).

* ``Linear(W, b)``: :math:`y = xW + b` on the last dim (``W`` [Din, Dout] or None for a pure
  shift; ``b`` broadcasts to the output shape, e.g. a positional table [T, D]).
* ``Add``: :math:`y = x_1 + x_2` (residuals).
* ``Rearrange``: reshape/permute (head split and merge).
* ``TokenMean``: :math:`y = \\frac1T\\sum_t x[t]` (mean pooling) over dim -2.
* ``Center``: :math:`y = x - \\mathrm{mean}(x)` over the last dim and ``Scale(w, b)``:
  :math:`y = w \\odot x + b` -- the linear maps :math:`(I - \\tfrac1D\\mathbf{1}\\mathbf{1}^\\top)`
  and :math:`\\mathrm{diag}(w)` of LayerNorm in O(D) instead of a dense D x D product
  (same numbers as ``Linear`` with those matrices, up to rounding).

IBP of ``Linear`` uses centre/radius: :math:`y_c = x_c W + b`, :math:`y_r = x_r |W|`.
Backward: :math:`A \\cdot (xW + b) = (A W^\\top) \\cdot x + A \\cdot b`.
Forward: :math:`y^L = W^+{}^\\top x^L + W^-{}^\\top x^U + b` on the linear functions.

>>> import torch
>>> op = Linear(torch.eye(2, dtype=torch.float64) * -1, None)
>>> z = torch.zeros(1, 2, dtype=torch.float64)
>>> op.ibp([(z, z + 1)], None)[0]
tensor([[-1., -1.]], dtype=torch.float64)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from ._base import Bounds, LinearBounds, Op

__all__ = ["Add", "Center", "Linear", "Rearrange", "Scale", "TokenMean"]


def _wmat(w: Tensor, W: Tensor) -> Tensor:
    """(..., Din, n) x (Din, Dout) -> (..., Dout, n)."""
    return torch.matmul(w.transpose(-1, -2), W).transpose(-1, -2)


class Linear(Op):
    def __init__(self, W: Tensor | None, b: Tensor | None) -> None:
        self.W, self.b = W, b
        self.ibp_exact = W is None
        if W is not None:
            self.Wp, self.Wn, self.Wa = W.clamp(min=0), W.clamp(max=0), W.abs()

    def forward(self, x: Tensor) -> Tensor:
        y = x if self.W is None else x @ self.W
        return y if self.b is None else y + self.b

    def ibp(self, bnds: Sequence[Bounds], rel: Any | None = None) -> Bounds:
        l, u = bnds[0]
        if self.W is not None:
            c, r = 0.5 * (l + u), 0.5 * (u - l)
            c, r = c @ self.W, r @ self.Wa
            l, u = c - r, c + r
        if self.b is not None:
            l, u = l + self.b, u + self.b
        return l, u

    def backward(self, A: Tensor, bnds: Sequence[Bounds], rel: Any) -> tuple[list[Tensor], Tensor]:
        Ax = A if self.W is None else A @ self.W.T
        if self.b is None:
            bias = A.new_zeros(A.shape[:2])
        else:
            B, m = A.shape[:2]
            bias = A.reshape(B, m, -1) @ self.b.expand(A.shape[2:]).reshape(-1)
        return [Ax], bias

    def forward_linear(
        self, lins: Sequence[LinearBounds], bnds: Sequence[Bounds], rel: Any
    ) -> LinearBounds:
        x = lins[0]
        if self.W is None:
            lw, lb, uw, ub = x
        else:
            lw = _wmat(x.lw, self.Wp) + _wmat(x.uw, self.Wn)
            uw = _wmat(x.uw, self.Wp) + _wmat(x.lw, self.Wn)
            lb = x.lb @ self.Wp + x.ub @ self.Wn
            ub = x.ub @ self.Wp + x.lb @ self.Wn
        if self.b is not None:
            lb, ub = lb + self.b, ub + self.b
        return LinearBounds(lw, lb, uw, ub)


class Add(Op):
    arity = 2
    ibp_exact = False

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        return x + y

    def ibp(self, bnds: Sequence[Bounds], rel: Any | None = None) -> Bounds:
        (l1, u1), (l2, u2) = bnds
        return l1 + l2, u1 + u2

    def backward(self, A: Tensor, bnds: Sequence[Bounds], rel: Any) -> tuple[list[Tensor], Tensor]:
        return [A, A], A.new_zeros(A.shape[:2])

    def forward_linear(
        self, lins: Sequence[LinearBounds], bnds: Sequence[Bounds], rel: Any
    ) -> LinearBounds:
        x, y = lins
        return LinearBounds(x.lw + y.lw, x.lb + y.lb, x.uw + y.uw, x.ub + y.ub)


class Rearrange(Op):
    """``y = x.reshape(split).permute(perm).reshape(out)`` (shapes without batch)."""

    ibp_exact = True

    def __init__(
        self,
        in_shape: Sequence[int],
        split: Sequence[int],
        perm: Sequence[int],
        out_shape: Sequence[int],
    ) -> None:
        self.in_shape, self.split = tuple(in_shape), tuple(split)
        self.perm, self.out_shape = tuple(perm), tuple(out_shape)
        self.mid = tuple(self.split[p] for p in self.perm)
        self.inv = tuple(sorted(range(len(perm)), key=lambda i: perm[i]))

    def _apply(self, x: Tensor, lead: int, trail: int = 0) -> Tensor:
        pre, post = x.shape[:lead], x.shape[x.dim() - trail :]
        k = len(self.perm)
        x = x.reshape(*pre, *self.split, *post)
        tail = range(lead + k, lead + k + trail)
        x = x.permute(*range(lead), *(lead + p for p in self.perm), *tail)
        return x.reshape(*pre, *self.out_shape, *post)

    def _unapply(self, A: Tensor, lead: int) -> Tensor:
        pre = A.shape[:lead]
        A = A.reshape(*pre, *self.mid)
        A = A.permute(*range(lead), *(lead + p for p in self.inv))
        return A.reshape(*pre, *self.in_shape)

    def forward(self, x: Tensor) -> Tensor:
        return self._apply(x, 1)

    def ibp(self, bnds: Sequence[Bounds], rel: Any | None = None) -> Bounds:
        l, u = bnds[0]
        return self._apply(l, 1), self._apply(u, 1)

    def backward(self, A: Tensor, bnds: Sequence[Bounds], rel: Any) -> tuple[list[Tensor], Tensor]:
        return [self._unapply(A, 2)], A.new_zeros(A.shape[:2])

    def forward_linear(
        self, lins: Sequence[LinearBounds], bnds: Sequence[Bounds], rel: Any
    ) -> LinearBounds:
        x = lins[0]
        return LinearBounds(
            self._apply(x.lw, 1, 1),
            self._apply(x.lb, 1),
            self._apply(x.uw, 1, 1),
            self._apply(x.ub, 1),
        )


class TokenMean(Op):
    """Mean over the token dim: [B, T, D] -> [B, D]."""

    def forward(self, x: Tensor) -> Tensor:
        return x.mean(-2)

    def ibp(self, bnds: Sequence[Bounds], rel: Any | None = None) -> Bounds:
        l, u = bnds[0]
        return l.mean(-2), u.mean(-2)

    def backward(self, A: Tensor, bnds: Sequence[Bounds], rel: Any) -> tuple[list[Tensor], Tensor]:
        T = bnds[0][0].shape[-2]
        Ax = (A / T).unsqueeze(-2).expand(*A.shape[:-1], T, A.shape[-1])
        return [Ax], A.new_zeros(A.shape[:2])

    def forward_linear(
        self, lins: Sequence[LinearBounds], bnds: Sequence[Bounds], rel: Any
    ) -> LinearBounds:
        x = lins[0]
        return LinearBounds(x.lw.mean(-3), x.lb.mean(-2), x.uw.mean(-3), x.ub.mean(-2))


class Center(Op):
    """:math:`y = x - \\bar x` over the last dim (the matrix :math:`C = I - \\tfrac1D 11^\\top`
    is symmetric, so backward is :math:`A C = A - \\bar A`; forward splits C into its
    positive diagonal and negative off-diagonal parts)."""

    def forward(self, x: Tensor) -> Tensor:
        return x - x.mean(-1, keepdim=True)

    def ibp(self, bnds: Sequence[Bounds], rel: Any | None = None) -> Bounds:
        l, u = bnds[0]
        c, r = 0.5 * (l + u), 0.5 * (u - l)
        D = c.shape[-1]
        c = c - c.mean(-1, keepdim=True)
        r = r + (r.sum(-1, keepdim=True) - 2 * r) / D  # r |C|
        return c - r, c + r

    def backward(self, A: Tensor, bnds: Sequence[Bounds], rel: Any) -> tuple[list[Tensor], Tensor]:
        return [A - A.mean(-1, keepdim=True)], A.new_zeros(A.shape[:2])

    def forward_linear(
        self, lins: Sequence[LinearBounds], bnds: Sequence[Bounds], rel: Any
    ) -> LinearBounds:
        x = lins[0]
        D = x.lb.shape[-1]

        def side(a: Tensor, b: Tensor, wa, wb):  # a: coefficient on the own entry, b: the others
            return a - b.mean(-2, keepdim=True) + (b - a) / D, None if wa is None else wa - wb.mean(
                -1, keepdim=True
            ) + (wb - wa) / D

        lw, lb = side(x.lw, x.uw, x.lb, x.ub)
        uw, ub = side(x.uw, x.lw, x.ub, x.lb)
        return LinearBounds(lw, lb, uw, ub)


class Scale(Op):
    """:math:`y = w \\odot x + b` on the last dim (``w``, ``b`` [D] or None)."""

    def __init__(self, w: Tensor, b: Tensor | None) -> None:
        self.w, self.b = w, b

    def forward(self, x: Tensor) -> Tensor:
        y = x * self.w
        return y if self.b is None else y + self.b

    def ibp(self, bnds: Sequence[Bounds], rel: Any | None = None) -> Bounds:
        l, u = bnds[0]
        c, r = 0.5 * (l + u) * self.w, 0.5 * (u - l) * self.w.abs()
        if self.b is not None:
            c = c + self.b
        return c - r, c + r

    def backward(self, A: Tensor, bnds: Sequence[Bounds], rel: Any) -> tuple[list[Tensor], Tensor]:
        if self.b is None:
            bias = A.new_zeros(A.shape[:2])
        else:
            B, m = A.shape[:2]
            bias = A.reshape(B, m, -1) @ self.b.expand(A.shape[2:]).reshape(-1)
        return [A * self.w], bias

    def forward_linear(
        self, lins: Sequence[LinearBounds], bnds: Sequence[Bounds], rel: Any
    ) -> LinearBounds:
        x = lins[0]
        pos = self.w >= 0
        wc = self.w[:, None]
        lw = torch.where(pos[:, None], x.lw, x.uw) * wc
        uw = torch.where(pos[:, None], x.uw, x.lw) * wc
        lb = torch.where(pos, x.lb, x.ub) * self.w
        ub = torch.where(pos, x.ub, x.lb) * self.w
        if self.b is not None:
            lb, ub = lb + self.b, ub + self.b
        return LinearBounds(lw, lb, uw, ub)
