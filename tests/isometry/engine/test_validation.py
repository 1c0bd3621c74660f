"""Regression tests for the bad inputs of issue 10 (items 4 and 7) in the isometry engine.

Each case was an obscure error (``ZeroDivisionError``, ``AttributeError``, "math domain
error") or a silently wrong result before; now it is a clear error naming the argument, or
(for ``repeat``) the same answer computed with bounded work.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import sympy as sp

from toolkit.isometry import (
    BatchNorm,
    Concat,
    Conv2d,
    Linear,
    NetworkDesign,
    Parallel,
    ReLU,
    Residual,
    Scale,
    Serial,
    Tanh,
    gaussian_expectation,
    leaky_relu_slope,
    marchenko_pastur_density,
    marchenko_pastur_moments,
    r_transform,
    repeat,
    s_transform,
    s_transform_coefficients,
    spectral_density,
)
from toolkit.isometry.engine import _series
from toolkit.isometry.engine.spectra import MAX_POINTS

L = sp.Symbol("L", positive=True)


@pytest.mark.parametrize(
    ("call", "exc", "words"),
    [
        # were ZeroDivisionError / AttributeError / "math domain error"
        (lambda: gaussian_expectation(np.cos, 0), ValueError, "q must be > 0"),
        (lambda: gaussian_expectation(np.cos, -1.0), ValueError, "q must be > 0"),
        (lambda: gaussian_expectation(np.cos, math.nan), ValueError, "q must be finite"),
        (lambda: gaussian_expectation(np.cos, sp.Symbol("q")), TypeError, "q must be a number"),
        (lambda: gaussian_expectation("cos", 1.0), TypeError, "fn must be a callable"),
        (lambda: spectral_density(None), TypeError, "block must be a toolkit.isometry Block"),
        (lambda: spectral_density(Scale(0)), ValueError, "point mass"),
        (lambda: spectral_density(Serial([Linear(8, 8), Scale(0)])), ValueError, "point mass"),
        (lambda: spectral_density(Linear(8, 8), num=MAX_POINTS + 1), ValueError, "num"),
        (lambda: spectral_density(Linear(8, 8), x=[0.5, math.nan]), ValueError, "x must be"),
        (lambda: spectral_density(Linear(8, 8), x=np.ones(MAX_POINTS + 1)), ValueError, "x"),
        (lambda: spectral_density(Linear(8, 8), x=["a"]), TypeError, "x must be"),
        # were silently accepted
        (lambda: Serial([Linear(4, 8), Linear(3, 3)]), ValueError, "widths must chain"),
        (lambda: Serial([Linear(4, 8), ReLU(), Linear(3, 3)]), ValueError, "blocks\\[2\\]"),
        (lambda: Serial([Conv2d(4, 8, 3), Conv2d(3, 3, 3)]), ValueError, "channels"),
        (lambda: Parallel([Linear(4, 4), Linear(5, 5)]), ValueError, "share one input"),
        (lambda: Concat([Linear(4, 4), Linear(5, 5)]), ValueError, "share one input"),
        (lambda: Scale(math.nan), ValueError, "factor"),
        (lambda: Scale(math.inf), ValueError, "factor"),
        (lambda: Scale(sp.oo), ValueError, "factor"),
        (lambda: Residual(Linear(4, 4), scale=math.nan), ValueError, "scale"),
        (lambda: Residual(Linear(4, 4), scale=-math.inf), ValueError, "scale"),
        (lambda: BatchNorm(gamma=math.nan), ValueError, "gamma"),
        (lambda: BatchNorm(gamma=sp.zoo), ValueError, "gamma"),
        (lambda: marchenko_pastur_moments(3, ratio=-1), ValueError, "ratio must be > 0"),
        (lambda: marchenko_pastur_moments(3, scale=0), ValueError, "scale must be > 0"),
        (lambda: marchenko_pastur_density(1.0, ratio=math.nan), ValueError, "ratio"),
        (lambda: repeat(Linear(4, 4), sp.I * L), ValueError, "depth must be a real"),
        (lambda: repeat(Linear(4, 4), sp.Symbol("L", complex=True)), ValueError, "real"),
        (lambda: repeat(Linear(4, 4), sp.Symbol("L", imaginary=True)), ValueError, "real"),
        (lambda: repeat(Linear(4, 4), -L), ValueError, "positive"),
        (lambda: leaky_relu_slope(sp.I * L, 1), ValueError, "depth must be a real"),
        (lambda: NetworkDesign(slope=5), ValueError, "NetworkDesign.slope must lie in"),
        (lambda: NetworkDesign(slope=-0.5), ValueError, "NetworkDesign.slope"),
        # merged the user's z with the transform variable
        (lambda: r_transform([sp.Symbol("z"), 2]), ValueError, "z=z also occurs"),
        (lambda: s_transform([sp.Symbol("z"), 2]), ValueError, "z=z also occurs"),
        (lambda: r_transform([1, 2], z="w"), TypeError, "z must be a sympy Symbol"),
        # misleading message ("the series must have zero constant term")
        (lambda: s_transform_coefficients([math.nan, 1]), ValueError, r"moments\[0\] must be"),
        (lambda: s_transform_coefficients([1, math.inf]), ValueError, r"moments\[1\] must be"),
        (lambda: r_transform([1, sp.nan]), ValueError, r"moments\[1\] must be finite"),
        (lambda: r_transform([1, "2"]), TypeError, r"moments\[1\]"),
    ],
)
def test_bad_input_gives_a_clear_error(call, exc, words):
    with pytest.raises(exc, match=words):
        call()


def test_chains_that_do_match_are_still_accepted():
    # widths chain through width-agnostic blocks; an MLP 4 -> 8 -> 3 is fine
    m = Serial([Linear(4, 8, gain=1), ReLU(), Linear(8, 3, gain=1)]).moments()
    assert m.m1 == pytest.approx(0.5)  # g^2 * 1/2 * g^2, normalized by the output width
    assert Residual(Serial([Linear(4, 8), Linear(8, 4)])).ratio == 1
    assert repeat(Linear(4, 4), sp.Symbol("L")).moments().m1 == 1  # plain symbol: allowed


def test_transforms_accept_a_user_z_under_another_variable():
    z, w = sp.symbols("z w")
    # moments [z, 2]: kappa_1 = z, kappa_2 = m_2 - m_1^2 = 2 - z^2
    assert sp.expand(r_transform([z, 2], z=w) - (z + (2 - z**2) * w)) == 0
    # S of a point mass at c is 1/c whatever the variable
    assert s_transform([z, z**2], z=w) == 1 / z


def test_spectral_density_at_the_cap_still_integrates_to_one():
    x, rho = spectral_density(Linear(64, 64), x=np.linspace(1e-3, 4.0, 4000))
    assert abs(np.trapezoid(rho, x) - 1) < 0.02


# ------------------------------------------------------------------ repeat: bounded work
_BLOCKS = [
    Serial([Linear(16, 16, gain=sp.sqrt(2)), ReLU()]),  # exact, q fixed point
    Serial([Linear(16, 16, gain=1), ReLU()]),  # exact, q halves each layer
    Serial([Linear(16, 16, gain=1.3), ReLU()]),  # float, q grows
    Residual(Serial([Linear(16, 16, gain=1), ReLU()]), scale=sp.Rational(1, 3)),
    Serial([Linear(16, 16, gain=1), BatchNorm(gamma=2, beta=1)]),  # q -> gamma^2 + beta^2
    Serial([Linear(16, 16, gain=1.1), Tanh()]),  # moments depend on q: per-layer loop
]


@pytest.mark.parametrize("block", _BLOCKS, ids=lambda b: repr(b)[:40])
def test_repeat_matches_the_layer_by_layer_chain(block):
    depth = 23
    fast, loop = repeat(block, depth), Serial([block] * depth)
    for got, want in zip(fast.moments(order=3).values, loop.moments(order=3).values):
        assert float(got) == pytest.approx(float(want), rel=1e-9)
    assert float(fast.propagate_q(0.7)) == pytest.approx(float(loop.propagate_q(0.7)), rel=1e-9)


def test_repeat_of_a_huge_depth_does_bounded_work(monkeypatch):
    calls = 0
    mul = _series.series_mul

    def counting(*args):
        nonlocal calls
        calls += 1
        return mul(*args)

    monkeypatch.setattr(_series, "series_mul", counting)
    block = Serial([Linear(64, 64, gain=sp.sqrt(2)), ReLU()])
    m = repeat(block, 10**6).moments(order=3)
    # Kaiming ReLU blocks: phi = 1 and each block adds variance 2 (closed form in L)
    closed = repeat(block, L).moments(order=3).subs(L, 10**6)
    assert m.values == closed.values and m.m2 == 2 * 10**6 + 1
    assert calls < 200  # O(log depth) series products, not one per layer
    # q propagation by repeated squaring too: q -> q/2 per block with gain 1
    q = repeat(Serial([Linear(8, 8, gain=1), ReLU()]), 10**6).propagate_q(1)
    assert q == sp.Rational(1, 2**10**6)


def test_repeat_stops_iterating_once_q_reaches_its_fixed_point():
    # tanh with gain 1.05: q settles on a non-zero fixed point; from there on every layer has
    # the same moments, so the chain is composed by repeated squaring
    block = Serial([Linear(16, 16, gain=1.05), Tanh()])
    calls = 0
    moments = block._jacobian_moments

    def counting(order, q):
        nonlocal calls
        calls += 1
        return moments(order, q)

    block._jacobian_moments = counting  # type: ignore[method-assign]
    depth = 1500
    fast = repeat(block, depth).moments(order=3)
    used = calls
    loop = Serial([block] * depth).moments(order=3)
    assert used < depth // 2
    for got, want in zip(fast.values, loop.values):
        assert got == pytest.approx(want, rel=1e-6)
    assert float(repeat(block, depth).propagate_q(1.0)) == pytest.approx(
        float(Serial([block] * depth).propagate_q(1.0)), rel=1e-9
    )


@pytest.mark.parametrize(
    "block", [Linear(8, 8, gain=1.1), Serial([Linear(8, 8, gain=1.1), Tanh()])], ids=repr
)
def test_repeat_out_of_float_range_is_a_clear_error(block):
    # before: ZeroDivisionError from deep inside the series code
    with pytest.raises(ValueError, match="leave the float range"):
        repeat(block, 10**6).moments()
