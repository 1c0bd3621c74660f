"""Forward statistics with a mean: Gaussian maps against quadrature, component rules, chains."""

import math

import numpy as np
import pytest
import sympy as sp
from scipy import integrate, stats

from toolkit.isometry import (
    GELU,
    AvgPool,
    BatchNorm,
    Concat,
    Dropout,
    ForwardStats,
    HardTanh,
    Identity,
    LeakyReLU,
    Linear,
    Parallel,
    PReLU,
    ReLU,
    Residual,
    Scale,
    SecondMomentNorm,
    SeLU,
    Serial,
    Sigmoid,
    Tanh,
    WeightNorm,
    WeightStandardization,
    profile,
    repeat,
)


def _expect(fn, mean, var, points=None):
    """E fn(h), h ~ N(mean, var): adaptive quadrature split at the kinks for a scalar ``mean``,
    a fine composite Simpson rule (``points`` nodes) per entry of an array ``mean``.

    Both are independent of the engine's Gauss-Legendre panels and Gauss-Hermite nodes.
    """
    sd = math.sqrt(var)
    if points is None:
        kinks = [k for k in (-1.0, -0.5, 0.0, 1.0, 2.0) if abs(k - mean) < 14 * sd]
        val, _ = integrate.quad(
            lambda h: float(fn(np.array([h]))[0]) * stats.norm.pdf(h, mean, sd),
            mean - 14 * sd,
            mean + 14 * sd,
            points=kinks,
            limit=200,
            epsabs=1e-13,
            epsrel=1e-12,
        )
        return val
    z = np.linspace(-14.0, 14.0, points)
    h = np.asarray(mean, dtype=float)[..., None] + sd * z
    return integrate.simpson(fn(h) * stats.norm.pdf(z), x=z, axis=-1)


def _unit_kernel(fn, s):
    """E_mu[(E_z fn(mu + sqrt(v) z))^2], mu ~ N(mean, c - mean^2): 160-point Gauss-Hermite
    outside, the fine Simpson rule inside."""
    v, spread = s.q - s.c, s.c - s.mean**2
    u, w = np.polynomial.hermite_e.hermegauss(160)
    inner = _expect(fn, s.mean + math.sqrt(spread) * u, v, points=40_001)
    return float(np.sum(w * inner**2) / math.sqrt(2 * math.pi))


def test_relu_of_a_zero_mean_input_has_the_half_normal_mean_exactly():
    q = sp.Symbol("q", positive=True)
    out = ReLU().propagate_stats(q)
    assert sp.simplify(out.mean - sp.sqrt(q) / sp.sqrt(2 * sp.pi)) == 0  # sigma / sqrt(2 pi)
    assert out.q == q / 2
    assert sp.simplify(out.c - q / (2 * sp.pi)) == 0  # every unit has the same mean


@pytest.mark.parametrize("act", [ReLU(), LeakyReLU(0.2), PReLU(0.3, 1.7)], ids=repr)
@pytest.mark.parametrize("mean,q", [(0.8, 2.0), (-1.1, 1.5), (2.5, 6.5)])
def test_rectified_gaussian_formulas_match_quadrature(act, mean, q):
    s = ForwardStats(q, c=mean**2, mean=mean)  # every unit has this mean
    out = act.propagate_stats(s)
    var = q - mean**2
    assert out.mean == pytest.approx(_expect(act._f, mean, var), rel=1e-9)
    assert out.q == pytest.approx(_expect(lambda h: act._f(h) ** 2, mean, var), rel=1e-9)
    assert out.c == pytest.approx(out.mean**2, rel=1e-12)
    m = act.moments(order=2, q=s)
    for k, mk in enumerate(m.values, start=1):
        want = _expect(lambda h, k=k: act._fprime(h) ** (2 * k), mean, var)
        assert float(mk) == pytest.approx(want, rel=1e-7)


@pytest.mark.parametrize("act", [ReLU(), LeakyReLU(0.3)], ids=repr)
def test_arc_cosine_kernel_of_spread_zero_mean_units_matches_quadrature(act):
    s = ForwardStats(2.0, c=0.7, mean=0.0)  # per-unit means N(0, 0.7), variance 1.3
    out = act.propagate_stats(s)
    assert out.c == pytest.approx(_unit_kernel(act._f, s), rel=1e-6)
    assert out.q == pytest.approx(act.propagate_q(2.0), rel=1e-12)  # the marginal is N(0, q)


@pytest.mark.parametrize(
    "act",
    [ReLU(), LeakyReLU(0.1), Tanh(), GELU(), Sigmoid(), SeLU(), HardTanh(-0.5, 2)],
    ids=repr,
)
def test_activation_with_spread_nonzero_means_matches_nested_quadrature(act):
    s = ForwardStats(1.8, c=0.9, mean=0.6)
    out = act.propagate_stats(s)
    var = s.q - s.mean**2
    # (the kinks of the piecewise activations sit inside quadrature panels here: ~1e-6)
    assert out.mean == pytest.approx(_expect(act._f, s.mean, var), rel=1e-5, abs=1e-12)
    assert out.q == pytest.approx(_expect(lambda h: act._f(h) ** 2, s.mean, var), rel=1e-5)
    assert out.c == pytest.approx(_unit_kernel(act._f, s), rel=1e-5)
    assert out.mean**2 <= out.c <= out.q


@pytest.mark.parametrize("act", [SeLU(), HardTanh(-0.5, 2), Sigmoid(), GELU()], ids=repr)
def test_zero_mean_output_means_match_quadrature(act):
    out = act.propagate_stats(1.3)
    assert float(out.mean) == pytest.approx(_expect(act._f, 0.0, 1.3), rel=1e-9, abs=1e-14)
    assert float(out.c) == pytest.approx(float(out.mean) ** 2, rel=1e-9, abs=1e-14)


def test_zero_mean_inputs_give_the_earlier_results_exactly():
    q = sp.Rational(3, 2)
    for block in [
        ReLU(),
        LeakyReLU(sp.Rational(1, 4)),
        HardTanh(),
        Linear(8, 8, gain=2),
        BatchNorm(gamma=2, beta=sp.Rational(1, 3)),
        SecondMomentNorm(),
        Dropout(sp.Rational(1, 2)),
        AvgPool(2),
        Scale(3),
    ]:
        assert block.propagate_q(q) == block._propagate_q(q), block
        assert block.moments(3, q).values == tuple(block._jacobian_moments(3, q)), block
    assert HardTanh().propagate_stats(q).mean == 0


def test_weight_layers_kill_the_mean_but_keep_its_square():
    s = ForwardStats(3.0, c=2.0, mean=1.2)
    out = Linear(16, 16, gain=2).propagate_stats(s)
    assert (out.q, out.c, out.mean) == (12.0, 8.0, 0)
    out = WeightNorm(16, 16, gain=2).propagate_stats(s)
    assert (out.q, out.c, out.mean) == (12.0, 8.0, 0)
    # centred rows: W x = W (x - mean), so the common mean is gone from q and c
    out = WeightStandardization(16, 16, gain=2).propagate_stats(s)
    assert out.q == pytest.approx(4 * (3.0 - 1.44)) and out.c == pytest.approx(4 * (2.0 - 1.44))


def test_batch_norm_divides_by_the_variance_not_the_second_moment():
    s = ForwardStats(sp.Integer(5), c=sp.Integer(4), mean=sp.Integer(0))
    assert BatchNorm().moments(2, s).values == (1, 1)  # 1 / (q - c) = 1
    assert BatchNorm(gamma=3).moments(1, s).m1 == 9
    out = BatchNorm(gamma=2, beta=sp.Rational(1, 2)).propagate_stats(s)
    assert (out.q, out.c, out.mean) == (sp.Rational(17, 4), sp.Rational(1, 4), sp.Rational(1, 2))
    with pytest.raises(ValueError, match="zero variance"):
        BatchNorm().moments(q=ForwardStats(2.0, 2.0, 0.0))


@pytest.mark.parametrize("batch", [8, 16, 64])
def test_finite_batch_moments_match_the_inverse_chi_square(batch):
    # per-unit batch variance of a Gaussian input: sigma^2 chi2_{B-1} / B; the batch
    # Jacobian (gamma / sigma_hat) P has rank B - 2 of B
    v = 2.5
    bn = BatchNorm(gamma=1.5, batch=batch)
    m = bn.moments(order=3, q=ForwardStats(v + 1.0, c=1.0, mean=0.0))
    chi = stats.chi2(batch - 1)
    for k, mk in enumerate(m.values, start=1):
        want = (batch - 2) / batch * chi.expect(lambda t, k=k: (1.5**2 * batch / (v * t)) ** k)
        assert float(mk) == pytest.approx(want, rel=1e-7)
    assert float(m.m1) == pytest.approx(1.5**2 * (batch - 2) / ((batch - 3) * v))
    eps = BatchNorm(eps=0.3, batch=batch).moments(order=1, q=v).m1
    ref = (batch - 2) / batch * chi.expect(lambda t: 1 / (v * t / batch + 0.3))
    assert eps == pytest.approx(ref, rel=1e-7)
    with pytest.raises(ValueError, match="batch"):
        BatchNorm(batch=5).moments(order=2)


def test_second_moment_norm_with_spread_means_averages_over_units():
    s = ForwardStats(2.0, c=1.2, mean=0.5)
    v = s.q - s.c
    m = SecondMomentNorm(gamma=1.3).moments(order=2, q=s)
    want = _expect(lambda mu: 1.3**2 / (v + mu**2), s.mean, s.c - s.mean**2)
    assert m.m1 == pytest.approx(want, rel=1e-8)
    out = SecondMomentNorm(gamma=1.3).propagate_stats(s)
    assert out.q == pytest.approx(1.3**2, rel=1e-12)  # eps = 0: every unit is normalized
    assert out.mean == pytest.approx(
        _expect(lambda mu: 1.3 * mu / np.sqrt(v + mu**2), s.mean, s.c - s.mean**2), rel=1e-8
    )


def test_residual_and_parallel_add_the_cross_term_of_the_means():
    relu_branch = Serial([Linear(32, 32, gain=1), BatchNorm(), ReLU()])
    a = 1 / math.sqrt(2 * math.pi)  # the branch's mean
    s = ForwardStats(3.0, c=1.0, mean=0.8)
    out = Residual(relu_branch, scale=0.5).propagate_stats(s)
    assert out.mean == pytest.approx(0.8 + 0.5 * a)
    assert out.q == pytest.approx(3.0 + 0.25 * 0.5 + 2 * 0.5 * 0.8 * a)
    assert out.c == pytest.approx(1.0 + 0.25 * a**2 + 2 * 0.5 * 0.8 * a)
    par = Parallel([Identity(), relu_branch]).propagate_stats(s)
    assert par.q == pytest.approx(3.0 + 0.5 + 2 * 0.8 * a)
    cat = Concat([relu_branch, Linear(32, 32, gain=1)]).propagate_stats(s)
    assert cat.q == pytest.approx((0.5 + 3.0) / 2) and cat.mean == pytest.approx(a / 2)


def test_scale_dropout_and_pooling_move_the_mean_as_documented():
    s = ForwardStats(3.0, c=1.0, mean=0.5)
    out = Scale(-2).propagate_stats(s)
    assert (out.q, out.c, out.mean) == (12.0, 4.0, -1.0)
    out = Dropout(0.5).propagate_stats(s)
    assert (out.q, out.c, out.mean) == (6.0, 1.0, 0.5)
    out = AvgPool(2).propagate_stats(s)
    assert (out.q, out.c, out.mean) == (1.0 + 2.0 / 4, 1.0, 0.5)


def _residual_bn(width=64, batch=None):
    return Residual(Serial([Linear(width, width, gain=2**0.5), BatchNorm(batch=batch), ReLU()]))


def test_residual_relu_batch_norm_chain_has_the_closed_form():
    # stream after l blocks: mean l/sqrt(2 pi), c = mean^2, variance 1 + l (1/2 - 1/(2 pi)),
    # so block l has m1 = 1 + 1/(2 (1 + l (1/2 - 1/(2 pi))))
    depth = 12
    prof = profile(Serial([_residual_bn()] * depth))
    ell = np.arange(depth)
    var = 1 + ell * (0.5 - 1 / (2 * np.pi))
    np.testing.assert_allclose(prof.mean_in, ell / np.sqrt(2 * np.pi), rtol=1e-12)
    np.testing.assert_allclose(prof.c_in, ell**2 / (2 * np.pi), rtol=1e-12)
    np.testing.assert_allclose(prof.q_in - prof.c_in, var, rtol=1e-12)
    np.testing.assert_allclose(prof.m1, 1 + 1 / (2 * var), rtol=1e-12)
    np.testing.assert_allclose(prof.cumulative_m1, np.cumprod(1 + 1 / (2 * var)), rtol=1e-10)


def test_repeat_carries_the_mean_like_the_serial_chain():
    block = _residual_bn(batch=16)
    for depth in (1, 5):
        fast, slow = repeat(block, depth), Serial([block] * depth)
        a, b = fast.propagate_stats(1.0), slow.propagate_stats(1.0)
        assert (a.q, a.c, a.mean) == pytest.approx((b.q, b.c, b.mean), rel=1e-12)
        np.testing.assert_allclose(
            fast.moments(order=3).values, slow.moments(order=3).values, rtol=1e-10
        )
    with pytest.raises(ValueError, match="symbolic depth"):
        repeat(block, sp.Symbol("L", positive=True)).propagate_stats(1.0)
    # the stream's q grows quadratically once the ReLU mean accumulates (before: linearly)
    relu = Residual(Serial([Linear(8, 8, gain=1), ReLU()]))
    assert repeat(relu, 3).propagate_q(1.0) == pytest.approx(
        Serial([relu] * 3).propagate_q(1.0), rel=1e-12
    )


@pytest.mark.parametrize(
    "kwargs,words",
    [
        (dict(q=1.0, c=2.0), "c <= q"),
        (dict(q=1.0, c=0.25, mean=0.6), "mean\\*\\*2 <= c"),
        (dict(q=-1.0), "q must"),
        (dict(q=1.0, c=-0.1), "c must"),
        (dict(q=1.0, mean=float("nan")), "mean"),
        (dict(q="1"), "q must"),
    ],
)
def test_forward_stats_reject_impossible_values(kwargs, words):
    with pytest.raises((TypeError, ValueError), match=words):
        ForwardStats(**kwargs)
