"""Every relaxation checked pointwise on a dense grid of its interval (the reference is f)."""

from __future__ import annotations

import math

import pytest
import torch

from toolkit.verify.relaxations import (
    GELU,
    Exp,
    MatMul,
    Mul,
    Reciprocal,
    ReLU,
    Rsqrt,
    Sqrt,
    Square,
    Tanh,
    mccormick,
    offset_range,
)

F64 = torch.float64
TOL = 1e-10


def _intervals(kind: str, n: int, gen, lo=-8.0, hi=8.0):
    """n random intervals: 'neg', 'pos', 'straddle', 'any', 'tiny', 'wide'."""
    a = torch.rand(n, generator=gen, dtype=F64)
    b = torch.rand(n, generator=gen, dtype=F64)
    if kind == "neg":
        l, u = -hi * torch.maximum(a, b), -hi * torch.minimum(a, b)
    elif kind == "pos":
        l, u = hi * torch.minimum(a, b), hi * torch.maximum(a, b)
    elif kind == "straddle":
        l, u = -hi * a - 1e-3, hi * b + 1e-3
    elif kind == "tiny":
        l = lo + (hi - lo) * a
        u = l + 1e-7 * b
    elif kind == "wide":
        l, u = -60 * a - 1, 60 * b + 1
    else:
        x, y = lo + (hi - lo) * a, lo + (hi - lo) * b
        l, u = torch.minimum(x, y), torch.maximum(x, y)
    return l, u


ACTS = [
    (ReLU(), lambda x: torch.relu(x), None),
    (Tanh(), torch.tanh, None),
    (GELU(), lambda x: torch.nn.functional.gelu(x), None),
    (Exp(), torch.exp, (-30.0, 3.0)),
    (Square(), lambda x: x * x, None),
    (Reciprocal(), lambda x: 1 / x, (1e-3, 20.0)),
    (Sqrt(), torch.sqrt, (0.0, 50.0)),
    (Rsqrt(), torch.rsqrt, (1e-4, 50.0)),
]


def _domain_intervals(dom, kind, n, gen):
    if dom is None:
        return _intervals(kind, n, gen)
    lo, hi = dom
    a, b = torch.rand(n, generator=gen, dtype=F64), torch.rand(n, generator=gen, dtype=F64)
    if kind == "tiny":
        l = lo + (hi - lo) * a
        return l, l + 1e-7 * b
    if kind == "wide":
        return torch.full((n,), lo, dtype=F64) + 1e-12, torch.full((n,), hi, dtype=F64)
    x, y = lo + (hi - lo) * a**3, lo + (hi - lo) * b  # skew towards lo (curvature)
    return torch.minimum(x, y), torch.maximum(x, y)


@pytest.mark.parametrize(
    "op,f,dom",
    ACTS,
    ids=lambda v: type(v).__name__ if not callable(v) or hasattr(v, "relax") else "",
)
@pytest.mark.parametrize("kind", ["neg", "pos", "straddle", "any", "tiny", "wide"])
def test_planes_and_interval_on_dense_grid(op, f, dom, kind):
    gen = torch.Generator().manual_seed(hash(kind) % 1000)
    l, u = _domain_intervals(dom, kind, 200, gen)
    aL, bL, aU, bU = op.relax([(l, u)])
    il, iu = op.interval(l, u)
    t = torch.linspace(0, 1, 2001, dtype=F64)[:, None]
    x = l + (u - l) * t  # [2001, 200], includes both endpoints
    fx = f(x)
    scale = 1 + fx.abs()
    assert (aL * x + bL <= fx + TOL * scale).all(), "lower plane above f"
    assert (fx <= aU * x + bU + TOL * scale).all(), "upper plane below f"
    assert (il <= fx.amin(0) + TOL * scale.amin(0)).all()
    assert (fx.amax(0) <= iu + TOL * scale.amax(0)).all()
    # the interval is not absurdly loose: it is attained up to grid resolution
    assert ((fx.amin(0) - il) <= 1e-3 * (1 + il.abs()) + 1e-2 * (fx.amax(0) - fx.amin(0))).all()


@pytest.mark.parametrize("op,f,dom", ACTS[1:3], ids=["tanh", "gelu"])
def test_offset_range_matches_brute_force(op, f, dom):
    gen = torch.Generator().manual_seed(0)
    l, u = _intervals("any", 300, gen)
    a = torch.randn(300, generator=gen, dtype=F64)
    mn, mx = offset_range(op.fn, op.df, op.pieces, a, l, u)
    x = l + (u - l) * torch.linspace(0, 1, 20001, dtype=F64)[:, None]
    h = f(x) - a * x
    assert torch.allclose(mn, h.amin(0), atol=1e-7) and (mn <= h.amin(0) + 1e-12).all()
    assert torch.allclose(mx, h.amax(0), atol=1e-7) and (mx >= h.amax(0) - 1e-12).all()


def test_relaxations_are_reasonably_tight():
    """Convex f: tangent + chord meet f at the midpoint / endpoints (not just any valid plane)."""
    l, u = torch.tensor([-1.0], dtype=F64), torch.tensor([0.5], dtype=F64)
    aL, bL, aU, bU = Exp().relax([(l, u)])
    m = (l + u) / 2
    assert torch.allclose(aL * m + bL, torch.exp(m), atol=1e-9)
    assert torch.allclose(aU * u + bU, torch.exp(u), atol=1e-9)


def test_degenerate_and_infinite_intervals_stay_sound():
    op = Tanh()
    l = torch.tensor([0.3, -math.inf, 2.0], dtype=F64)
    u = torch.tensor([0.3, 1.0, math.inf], dtype=F64)
    aL, bL, aU, bU = op.relax([(l, u)])
    assert torch.isfinite(aL).all() and torch.isfinite(aU).all()
    assert bL[0] <= math.tanh(0.3) <= bU[0] and bL[1] <= -1 + 1e-12 and bU[2] >= 1 - 1e-12


@pytest.mark.parametrize("lam", [0.0, 0.5, 1.0, 0.3])
def test_mccormick_product_sound(lam):
    gen = torch.Generator().manual_seed(1)
    lx, ux = _intervals("any", 500, gen)
    ly, uy = _intervals("any", 500, gen)
    axL, ayL, cL, axU, ayU, cU = mccormick(lx, ux, ly, uy, lam)
    t = torch.rand(400, 500, generator=gen, dtype=F64)
    s = torch.rand(400, 500, generator=gen, dtype=F64)
    t[:4], s[:4] = torch.tensor([0.0, 0, 1, 1])[:, None], torch.tensor([0.0, 1, 0, 1])[:, None]
    x, y = lx + (ux - lx) * t, ly + (uy - ly) * s
    assert (axL * x + ayL * y + cL <= x * y + 1e-9).all()
    assert (x * y <= axU * x + ayU * y + cU + 1e-9).all()


def _box(shape, gen):
    c = torch.randn(shape, generator=gen, dtype=F64)
    r = torch.rand(shape, generator=gen, dtype=F64)
    return c - r, c + r


@pytest.mark.parametrize(
    "op,xs,ys",
    [
        (MatMul(True), (2, 3, 4), (2, 5, 4)),
        (MatMul(False), (2, 3, 4), (2, 4, 5)),
        (Mul(), (2, 3, 4), (2, 3, 1)),
        (Mul(0.2), (2, 3, 4), (2, 1, 4)),
    ],
)
def test_product_ops_backward_forward_ibp_sound(op, xs, ys):
    """CROWN step, forward step and IBP of products vs random points in the boxes."""
    gen = torch.Generator().manual_seed(2)
    (lx, ux), (ly, uy) = _box((1, *xs), gen), _box((1, *ys), gen)
    bnds = [(lx, ux), (ly, uy)]
    rel = op.relax(bnds)
    zl, zu = op.ibp(bnds, rel)
    out_shape = op.forward(lx, ly).shape
    A = torch.randn(1, 3, *out_shape[1:], generator=gen, dtype=F64)
    (Ax, Ay), bias = op.backward(A, bnds, rel)
    n = 2000
    x = lx + (ux - lx) * torch.rand(n, *xs, generator=gen, dtype=F64)
    y = ly + (uy - ly) * torch.rand(n, *ys, generator=gen, dtype=F64)
    z = op.forward(x, y)  # [n, *out]
    assert (zl <= z + 1e-9).all() and (z <= zu + 1e-9).all()
    lhs = torch.einsum("mk,nk->nm", A[0].reshape(3, -1), z.reshape(n, -1))
    rhs = (
        torch.einsum("mk,nk->nm", Ax[0].reshape(3, -1), x.reshape(n, -1))
        + torch.einsum("mk,nk->nm", Ay[0].reshape(3, -1), y.reshape(n, -1))
        + bias[0]
    )
    assert (rhs <= lhs + 1e-9).all()
    # forward step with identity linear bounds of x and y (n = x.numel + y.numel)
    from toolkit.verify.relaxations import LinearBounds

    nx, ny = lx.numel(), ly.numel()
    ex = torch.eye(nx + ny, dtype=F64)
    wx = ex[:nx].reshape(1, *xs, nx + ny)
    wy = ex[nx:].reshape(1, *ys, nx + ny)
    zero_x, zero_y = torch.zeros_like(lx), torch.zeros_like(ly)
    lin = op.forward_linear(
        [LinearBounds(wx, zero_x, wx, zero_x), LinearBounds(wy, zero_y, wy, zero_y)], bnds, rel
    )
    v = torch.cat([x.reshape(n, -1), y.reshape(n, -1)], 1)  # [n, nx+ny]
    flat = lambda w: w.reshape(-1, nx + ny)  # noqa: E731
    lo = v @ flat(lin.lw).T + lin.lb.reshape(-1)
    hi = v @ flat(lin.uw).T + lin.ub.reshape(-1)
    assert (lo <= z.reshape(n, -1) + 1e-9).all() and (z.reshape(n, -1) <= hi + 1e-9).all()
