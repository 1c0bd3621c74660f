"""Components and composition rules against Monte Carlo Jacobians and closed forms."""

from __future__ import annotations

import math

import numpy as np
import pytest
import sympy as sp
import torch
import torch.nn.functional as F

from toolkit.isometry import (
    AvgPool,
    BatchNorm,
    Concat,
    Conv2d,
    Dropout,
    Identity,
    LeakyReLU,
    Linear,
    Moments,
    Parallel,
    ReLU,
    Residual,
    Scale,
    SecondMomentNorm,
    Serial,
    Tanh,
    WeightNorm,
    WeightStandardization,
    profile,
    repeat,
)


def _gauss(rng, n_out, n_in, gain=1.0):
    return rng.standard_normal((n_out, n_in)) * gain / math.sqrt(n_in)


def _haar(rng, n):
    q, r = np.linalg.qr(rng.standard_normal((n, n)))
    return q * np.sign(np.diag(r))


def _moments_of(jacobians, order):
    """phi((JJ^T)^k), normalized by the output dimension, averaged over samples."""
    out = np.zeros(order)
    for j in jacobians:
        a = j @ j.T
        p = np.eye(a.shape[0])
        for k in range(order):
            p = p @ a
            out[k] += np.trace(p) / a.shape[0]
    return out / len(jacobians)


def _relu_mask(rng, n):
    return np.diag((rng.random(n) < 0.5).astype(float))


# ----------------------------------------------------------------------------- weights
def test_square_gaussian_layer_is_marchenko_pastur_catalan():
    m = Linear(64, 64, gain=1).moments(order=6)
    assert m.values == tuple(math.comb(2 * k, k) // (k + 1) for k in range(1, 7))
    g = sp.Symbol("g", positive=True)
    mg = Linear(64, 64, gain=g).moments(order=3)
    assert [
        sp.simplify(v - c * g ** (2 * k)) for k, v, c in zip((1, 2, 3), mg.values, (1, 2, 5))
    ] == [0, 0, 0]


@pytest.mark.parametrize(("n_in", "n_out"), [(200, 400), (400, 200)])
def test_rectangular_gaussian_layer_matches_monte_carlo(n_in, n_out):
    rng = np.random.default_rng(0)
    gain = 1.3
    theory = Linear(n_in, n_out, gain=gain).moments(order=3)
    mc = _moments_of([_gauss(rng, n_out, n_in, gain) for _ in range(4)], 3)
    np.testing.assert_allclose(theory.values, mc, rtol=0.03)
    # fan-out independent first moment and MP variance g^4 * fan_out/fan_in
    assert theory.m1 == pytest.approx(gain**2)
    assert theory.variance == pytest.approx(gain**4 * n_out / n_in)


@pytest.mark.parametrize(("n_in", "n_out"), [(100, 100), (100, 60), (60, 100)])
def test_orthogonal_layer_matches_torch_init(n_in, n_out):
    w = torch.empty(n_out, n_in, dtype=torch.float64)
    torch.nn.init.orthogonal_(w, gain=1.5, generator=torch.Generator().manual_seed(0))
    mc = _moments_of([w.numpy()], 3)
    theory = Linear(n_in, n_out, init="orthogonal", gain=1.5).moments(order=3)
    np.testing.assert_allclose(theory.values, mc, rtol=1e-10)
    if n_out <= n_in:
        assert theory.variance == pytest.approx(0.0, abs=1e-12)


def _conv_jacobian(weight, size):
    c_in = weight.shape[1]
    n = c_in * size * size
    basis = torch.eye(n, dtype=torch.float64).reshape(n, c_in, size, size)
    pad = weight.shape[-1] // 2
    out = F.conv2d(F.pad(basis, (pad, pad, pad, pad), mode="circular"), weight)
    return out.reshape(n, -1).T.numpy()


@pytest.mark.parametrize(
    ("init", "c_in", "c_out"),
    [
        ("gaussian", 32, 32),
        ("gaussian", 32, 16),
        ("orthogonal", 32, 32),
        ("orthogonal", 32, 16),
        ("delta_orthogonal", 16, 8),
    ],
)
def test_conv2d_matches_explicit_jacobian(init, c_in, c_out):
    gen = torch.Generator().manual_seed(1)
    size, gain = 6, 1.2
    jacs = []
    for _ in range(3):
        w = torch.zeros(c_out, c_in, 3, 3, dtype=torch.float64)
        if init == "gaussian":
            w.normal_(0, gain / math.sqrt(c_in * 9), generator=gen)
        elif init == "orthogonal":
            torch.nn.init.orthogonal_(w, gain=gain, generator=gen)
        else:
            torch.nn.init.orthogonal_(w[:, :, 1, 1], gain=gain, generator=gen)
        jacs.append(_conv_jacobian(w, size))
    mc = _moments_of(jacs, 2)
    theory = Conv2d(c_in, c_out, 3, init=init, gain=gain).moments()
    tol = 1e-9 if init == "delta_orthogonal" else 0.04
    assert theory.m1 == pytest.approx(mc[0], rel=tol)
    # the normalized variance is insensitive to the sampled overall weight scale
    mc_nv = mc[1] / mc[0] ** 2 - 1
    assert theory.normalized_variance == pytest.approx(mc_nv, rel=tol, abs=1e-9)
    if init == "orthogonal" and c_in == c_out:  # distinguishable from the Gaussian value 1
        assert theory.normalized_variance == pytest.approx(1 - 1 / 9)
        assert abs(mc_nv - 1) > 3 * abs(mc_nv - theory.normalized_variance)


def test_weight_standardization_matches_monte_carlo():
    rng = np.random.default_rng(2)
    c_in, c_out, k, gain = 40, 30, 3, 1.4
    jacs = []
    for _ in range(3):
        w = rng.standard_normal((c_out, c_in * k * k))
        w = (w - w.mean(1, keepdims=True)) / w.std(1, keepdims=True)
        w = gain * w / math.sqrt(c_in * k * k)
        # every row has norm exactly gain: m1 = g^2 for every draw
        np.testing.assert_allclose((w * w).sum(1), gain**2)
        jacs.append(_conv_jacobian(torch.from_numpy(w.reshape(c_out, c_in, k, k)), 5))
    theory = WeightStandardization(c_in, c_out, kernel_size=k, gain=gain).moments()
    mc = _moments_of(jacs, 2)
    assert mc[0] == pytest.approx(gain**2, rel=1e-10)
    np.testing.assert_allclose(theory.values, mc, rtol=0.05)
    assert WeightNorm(c_in, c_out, k, gain).moments().values == pytest.approx(theory.values)
    unscaled = WeightStandardization(c_in, c_out, kernel_size=k, gain=1, scaled=False).moments()
    assert unscaled.m1 == c_in * k * k


@pytest.mark.parametrize(("kernel", "stride"), [(2, 2), (2, 1), (3, 2), (3, 1)])
def test_avgpool_matches_explicit_jacobian(kernel, stride):
    size = 12
    n = size * size
    basis = torch.eye(n, dtype=torch.float64).reshape(n, 1, size, size)
    padded = F.pad(basis, (0, kernel - 1, 0, kernel - 1), mode="circular")
    out = F.avg_pool2d(padded, kernel, stride)
    j = out.reshape(n, -1).T.numpy()
    theory = AvgPool(kernel, stride).moments(order=3)
    np.testing.assert_allclose([float(v) for v in theory.values], _moments_of([j], 3), rtol=1e-10)
    assert AvgPool(kernel, stride).ratio == sp.Rational(j.shape[0], j.shape[1])


# ----------------------------------------------------------------------------- composition
def test_relu_with_kaiming_gaussian_init_keeps_m1_one_at_every_depth():
    block = repeat(Serial([Linear(128, 128, gain=math.sqrt(2)), ReLU()]), 12)
    p = profile(block)
    np.testing.assert_allclose(p.m1, 1.0, rtol=1e-12)
    np.testing.assert_allclose(p.cumulative_m1, 1.0, rtol=1e-12)
    np.testing.assert_allclose(p.q_out, 1.0, rtol=1e-12)  # q = 2 * q/2
    # per block: MP variance 1 + ReLU variance 1; they add along the chain
    np.testing.assert_allclose(p.variance, 2.0, rtol=1e-12)
    np.testing.assert_allclose(p.cumulative_variance, 2.0 * p.depth, rtol=1e-12)
    assert len(profile(block, flatten=True)) == 24


def test_serial_relu_chain_matches_monte_carlo():
    rng = np.random.default_rng(3)
    n, depth, samples = 400, 3, 6
    ratios = []
    for _ in range(samples):
        j = np.eye(n)
        for _ in range(depth):
            j = _relu_mask(rng, n) @ _gauss(rng, n, n, math.sqrt(2)) @ j
        m = _moments_of([j], 3)
        ratios.append([m[0], m[1] / m[0] ** 2, m[2] / m[0] ** 3])
    mc = np.mean(ratios, axis=0)
    theory = repeat(Serial([Linear(n, n, gain=math.sqrt(2)), ReLU()]), depth).moments(order=3)
    assert theory.values == pytest.approx((1, 7, 67))  # 1 + 2L; free cumulant algebra
    # m_k / m_1^k do not depend on the sampled overall scale; ~3 standard errors
    assert mc[0] == pytest.approx(1, rel=0.1)
    assert mc[1] == pytest.approx(7, rel=0.04)
    assert mc[2] == pytest.approx(67, rel=0.08)


def test_orthogonal_chain_has_zero_variance_and_leaky_relu_adds_its_own():
    net = repeat(Serial([Linear(50, 50, init="orthogonal", gain=1), Identity()]), 7)
    m = net.moments(order=4)
    assert m.values == (1, 1, 1, 1) and m.variance == 0
    a = sp.Rational(1, 3)
    per = ((1 - a**2) / (1 + a**2)) ** 2
    leaky = repeat(Serial([Linear(50, 50, init="orthogonal"), LeakyReLU(a)]), 5)
    assert leaky.moments().normalized_variance == pytest.approx(float(5 * per))


def test_residual_block_matches_monte_carlo_and_closed_form():
    rng = np.random.default_rng(4)
    n, s = 300, 0.6
    branch = Serial([Linear(n, n, gain=1.0), ReLU(), Linear(n, n, gain=1.0)])
    theory = Residual(branch, scale=s).moments(order=3)
    jacs = [
        np.eye(n) + s * _gauss(rng, n, n) @ _relu_mask(rng, n) @ _gauss(rng, n, n) for _ in range(3)
    ]
    np.testing.assert_allclose(theory.values, _moments_of(jacs, 3), rtol=0.03)
    b = branch.moments()
    assert theory.m1 == pytest.approx(1 + s**2 * b.m1)
    assert theory.variance == pytest.approx(2 * s**2 * b.m1 + s**4 * b.variance)
    assert Residual(branch, scale=s).propagate_q(2.0) == pytest.approx(2.0 + s**2 * 2.0 * 0.5)


def test_parallel_and_concat_match_monte_carlo():
    rng = np.random.default_rng(5)
    n = 240
    par = Parallel([Identity(), Linear(n, n, gain=0.7), Serial([Linear(n, n), ReLU()])])
    jacs = [
        np.eye(n) + _gauss(rng, n, n, 0.7) + _relu_mask(rng, n) @ _gauss(rng, n, n)
        for _ in range(3)
    ]
    np.testing.assert_allclose(par.moments(order=3).values, _moments_of(jacs, 3), rtol=0.04)
    assert par.moments().m1 == pytest.approx(1 + 0.49 + 0.5)  # cross terms vanish
    cat = Concat([Linear(n, n // 2, gain=1.5), Serial([Linear(n, n), ReLU()])])
    jacs = [
        np.vstack([_gauss(rng, n // 2, n, 1.5), _relu_mask(rng, n) @ _gauss(rng, n, n)])
        for _ in range(3)
    ]
    np.testing.assert_allclose(cat.moments(order=3).values, _moments_of(jacs, 3), rtol=0.04)
    assert cat.ratio == sp.Rational(3, 2)


def test_symbolic_depth_matches_numeric_depth():
    L, g = sp.symbols("L g", positive=True)
    a = sp.Rational(1, 5)
    block = Serial([Linear(32, 32, gain=g), LeakyReLU(a)])
    sym = repeat(block, L).moments(order=3)
    assert sp.simplify(sym.m1 - (g**2 * (1 + a**2) / 2) ** L) == 0
    for depth, gain in [(1, 1.1), (3, 1.4), (6, 0.9)]:
        numeric = repeat(Serial([Linear(32, 32, gain=gain), LeakyReLU(0.2)]), depth).moments(3)
        got = [float(v.subs({L: depth, g: gain})) for v in sym.values]
        np.testing.assert_allclose(got, numeric.values, rtol=1e-10)
    q = sp.Symbol("q", positive=True)
    assert sp.simplify(repeat(block, L).propagate_q(q) - q * (g**2 * (1 + a**2) / 2) ** L) == 0
    res = repeat(Residual(Linear(8, 8, gain=1), scale=g), L).propagate_q(q)
    assert sp.simplify(res - q * (1 + g**2) ** L) == 0


def test_symbolic_depth_with_q_dependent_block_needs_fixed_point():
    L = sp.Symbol("L", positive=True)
    block = Serial([Linear(16, 16, gain=1.5), Tanh()])
    with pytest.raises(ValueError, match="fixed point"):
        repeat(block, L).moments(q=1.0)
    q = 1.0
    for _ in range(400):
        q = block.propagate_q(q)
    sym = repeat(block, L).moments(q=q)
    num = repeat(block, 4).moments(q=q)
    assert float(sym.m2.subs(L, 4)) == pytest.approx(num.m2, rel=1e-8)


def test_normalization_cancels_the_scale_and_dropout_matches_monte_carlo():
    for gain in (0.3, 1.0, 4.0):
        m = Serial([Linear(64, 64, gain=gain), BatchNorm()]).moments()
        assert m.m1 == pytest.approx(1.0) and m.variance == pytest.approx(1.0)
    q = sp.Symbol("q", positive=True)
    assert SecondMomentNorm(gamma=2).moments(q=q).m1 == 4 / q
    assert (
        BatchNorm(gamma=2, beta=1, eps=sp.Rational(1, 10)).propagate_q(q)
        == 4 * q / (q + sp.Rational(1, 10)) + 1
    )
    rng = np.random.default_rng(6)
    p = 0.3
    masks = [np.diag((rng.random(800) > p) / (1 - p)) for _ in range(3)]
    np.testing.assert_allclose(Dropout(p).moments(3).values, _moments_of(masks, 3), rtol=0.03)
    assert Scale(-2).moments(2).values == (4, 16)


# ----------------------------------------------------------------------------- Moments
def test_moments_object_behaviour():
    m = Linear(10, 10, gain=sp.Rational(3, 2)).moments(order=3)
    assert float(m) == 2.25 and m.m1 == sp.Rational(9, 4)
    assert m.moment(3) == 5 * sp.Rational(9, 4) ** 3
    assert m.normalized_variance == 1
    assert "variance" in repr(m) and r"\phi(JJ^T)" in m._repr_latex_()
    assert m.free_cumulants() == (sp.Rational(9, 4), sp.Rational(81, 16), sp.Rational(729, 64))
    with pytest.raises(ValueError, match="order"):
        m.moment(4)
    fm = Linear(10, 10).moments()
    assert isinstance(fm.m1, float) and isinstance(fm.variance, float)
    assert Moments(0.5, 0.3).variance == pytest.approx(0.05)
    g = sp.Symbol("g")
    assert Moments(g, g**2).subs(g, 2).values == (2, 4)


# ----------------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    ("call", "exc", "words"),
    [
        (lambda: Linear(10, 10, gain=-1.0), ValueError, "gain"),
        (lambda: Linear(10, 10, init="xavier"), ValueError, "init"),
        (lambda: Linear(0, 10), ValueError, "fan_in"),
        (lambda: Linear(10.5, 10), TypeError, "fan_in"),
        (lambda: Conv2d(4, 4, 3, init="nope"), ValueError, "init"),
        (lambda: Linear(10, 10).moments(q=0), ValueError, "q"),
        (lambda: Linear(10, 10).moments(q=-1.0), ValueError, "q"),
        (lambda: Linear(10, 10).moments(order=0), ValueError, "order"),
        (lambda: repeat(ReLU(), 0), ValueError, "depth"),
        (lambda: repeat(ReLU(), 2.5), TypeError, "depth"),
        (lambda: repeat(Linear(10, 20), 3), ValueError, "width"),
        (lambda: LeakyReLU(1.5), ValueError, "slope"),
        (lambda: LeakyReLU(-0.1), ValueError, "slope"),
        (lambda: Dropout(1.0), ValueError, "p"),
        (lambda: Serial([]), ValueError, "blocks"),
        (lambda: Serial([Linear(3, 3), "relu"]), TypeError, "blocks"),
        (lambda: Parallel([ReLU(), Identity()]), ValueError, "R-diagonal"),
        (lambda: Parallel([Linear(4, 4), Linear(4, 8)]), ValueError, "ratio"),
        (lambda: Residual(ReLU()), ValueError, "branch"),
        (lambda: Residual(Linear(4, 8)), ValueError, "width"),
        (lambda: Tanh().moments(q=sp.Symbol("q")), TypeError, "numeric q"),
        (lambda: profile(repeat(ReLU(), sp.Symbol("L"))), TypeError, "depth"),
    ],
)
def test_bad_arguments_raise_clear_errors(call, exc, words):
    with pytest.raises(exc, match=words):
        call()
