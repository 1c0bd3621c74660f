"""Every op's CROWN step and forward step vs random points (inputs with loose linear bounds)."""

from __future__ import annotations

import pytest
import torch

from toolkit.verify.relaxations import (
    GELU,
    Add,
    Center,
    Exp,
    Linear,
    LinearBounds,
    MatMul,
    Mul,
    Rearrange,
    ReLU,
    Scale,
    Shift,
    Tanh,
    TokenMean,
)

F64 = torch.float64
N_DELTA = 5


def _input(shape, gen, pos=False):
    """x = W d + b + t (V d + s), d in [-1, 1]^n, t in [0, 1], V d + s >= 0 on the box.

    Lower linear bound W d + b and upper (W + V) d + b + s have different weights.
    """
    W = torch.randn(1, *shape, N_DELTA, generator=gen, dtype=F64)
    V = torch.randn(1, *shape, N_DELTA, generator=gen, dtype=F64)
    b = torch.randn(1, *shape, generator=gen, dtype=F64) + (4.0 if pos else 0.0)
    s = V.abs().sum(-1) + torch.rand(1, *shape, generator=gen, dtype=F64)
    lin = LinearBounds(W, b, W + V, b + s)
    return lin, (b - W.abs().sum(-1), b + s + (W + V).abs().sum(-1)), (W, V, b, s)


def _sample(params, d, noise):
    W, V, b, s = params
    return (W * d).sum(-1) + b + noise * ((V * d).sum(-1) + s)


OPS = [
    (Linear(torch.randn(4, 3, dtype=F64), torch.randn(3, dtype=F64)), [(2, 4)]),
    (Add(), [(2, 4), (2, 4)]),
    (Rearrange((2, 4), (2, 2, 2), (1, 0, 2), (2, 2, 2)), [(2, 4)]),
    (TokenMean(), [(3, 4)]),
    (Center(), [(2, 4)]),
    (Scale(torch.tensor([1.5, -2.0, 0.0, 0.5], dtype=F64), torch.randn(4, dtype=F64)), [(2, 4)]),
    (Shift(), [(2, 3)]),
    (ReLU(), [(2, 4)]),
    (Tanh(), [(2, 4)]),
    (GELU(), [(2, 4)]),
    (Exp(), [(2, 4)]),
    (Mul(), [(2, 3), (2, 1)]),
    (MatMul(True), [(2, 3), (4, 3)]),
    (MatMul(False), [(2, 3), (3, 4)]),
]


@pytest.mark.parametrize("op,shapes", OPS, ids=[type(o).__name__ for o, _ in OPS])
def test_op_backward_and_forward_steps_are_sound(op, shapes):
    gen = torch.Generator().manual_seed(len(shapes) * 7 + len(str(op)))
    ins = [_input(s, gen) for s in shapes]
    lins = [i[0] for i in ins]
    bnds = [i[1] for i in ins]
    rel = op.relax(bnds)
    n = 4000
    d = 2 * torch.rand(n, 1, 1, N_DELTA, generator=gen, dtype=F64) - 1
    xs = []
    for (_, _, params), s in zip(ins, shapes):
        noise = torch.rand(n, 1, *s, generator=gen, dtype=F64)
        dd = d.reshape(n, 1, *([1] * len(s)), N_DELTA)
        xs.append(_sample(params, dd, noise))
    xs = [x.reshape(n, *x.shape[2:]) for x in xs]
    y = op.forward(*xs)  # [n, *out]
    if isinstance(op, Shift):  # the bound-time shift is a constant, not the row max
        y = xs[0] - rel[0]
    yl, yu = op.ibp(bnds, rel)
    assert (yl <= y + 1e-9).all() and (y <= yu + 1e-9).all()
    # forward step
    out = op.forward_linear(lins, bnds, rel)
    dflat = d.reshape(n, *([1] * (y.dim() - 1)), N_DELTA)
    lo = (out.lw * dflat).sum(-1) + out.lb
    hi = (out.uw * dflat).sum(-1) + out.ub
    assert (lo <= y + 1e-9).all() and (y <= hi + 1e-9).all()
    # backward step
    A = torch.randn(1, 3, *y.shape[1:], generator=gen, dtype=F64)
    As, bias = op.backward(A, bnds, rel)
    lhs = torch.einsum("mk,nk->nm", A[0].reshape(3, -1), y.reshape(n, -1))
    rhs = bias[0] + sum(
        torch.einsum("mk,nk->nm", Ai[0].reshape(3, -1), x.reshape(n, -1)) for Ai, x in zip(As, xs)
    )
    assert (rhs <= lhs + 1e-9).all()


def test_center_and_scale_equal_their_dense_linear():
    gen = torch.Generator().manual_seed(5)
    w = torch.tensor([1.5, -2.0, 0.0, 0.5], dtype=F64)
    b = torch.randn(4, generator=gen, dtype=F64)
    C = torch.eye(4, dtype=F64) - 0.25
    for op, dense in ((Center(), Linear(C, None)), (Scale(w, b), Linear(torch.diag(w), b))):
        lin, bnd, _ = _input((2, 4), gen)
        for a, d in zip(op.ibp([bnd], None), dense.ibp([bnd], None)):
            assert torch.allclose(a, d, atol=1e-12)
        for a, d in zip(
            op.forward_linear([lin], [bnd], None), dense.forward_linear([lin], [bnd], None)
        ):
            assert torch.allclose(a, d, atol=1e-12)
        A = torch.randn(1, 3, 2, 4, generator=gen, dtype=F64)
        (a,), ba = op.backward(A, [bnd], None)
        (d,), bd = dense.backward(A, [bnd], None)
        assert torch.allclose(a, d, atol=1e-12) and torch.allclose(ba, bd, atol=1e-12)


def test_bounds_crossed_by_rounding_are_reordered():
    from toolkit.verify.propagate import _uncross

    l = torch.tensor([1.0, 0.0, -2.0], dtype=torch.float64)
    u = torch.tensor([1.0 - 1e-15, 1.0, -2.0], dtype=torch.float64)
    lo, hi = _uncross(l, u)
    assert torch.equal(lo, torch.tensor([1.0 - 1e-15, 0.0, -2.0], dtype=torch.float64))
    assert torch.equal(hi, torch.tensor([1.0, 1.0, -2.0], dtype=torch.float64))
