"""Design rules: SeLU parameters and the leaky-ReLU slope, checked independently."""

from __future__ import annotations

import math

import numpy as np
import pytest
import sympy as sp
from scipy import integrate

from toolkit.isometry import (
    LeakyReLU,
    Linear,
    SeLU,
    Serial,
    leaky_relu_slope,
    repeat,
    selu_parameters,
)


def _expect(fn, q):
    dens = lambda h: fn(h) * math.exp(-h * h / (2 * q)) / math.sqrt(2 * math.pi * q)  # noqa: E731
    return integrate.quad(dens, -np.inf, 0, limit=200)[0] + integrate.quad(dens, 0, np.inf)[0]


@pytest.mark.parametrize(
    ("epsilon", "gain", "q"),
    [(0.0716, 1.0, 1.0), (0.03, 1.0, 1.0), (0.1, 1.2, 1.0), (0.05, 1.0, 2.0), (0.0, 1.0, 1.0)],
)
def test_selu_parameters_satisfy_both_conditions(epsilon, gain, q):
    lam, alpha = selu_parameters(epsilon, gain=gain, q=q)
    fprime = lambda h: lam if h > 0 else lam * alpha * math.exp(h)  # noqa: E731
    f = lambda h: lam * h if h > 0 else lam * alpha * math.expm1(h)  # noqa: E731
    # (1) phi(JJ^T) of Linear(gain) -> SeLU equals 1 + epsilon
    assert gain**2 * _expect(lambda h: fprime(h) ** 2, q) == pytest.approx(1 + epsilon, rel=1e-8)
    # (2) the pre-activation second moment q is a fixed point
    assert gain**2 * _expect(lambda h: f(h) ** 2, q) == pytest.approx(q, rel=1e-8)
    # and the block engine agrees
    block = Serial([SeLU(lam, alpha), Linear(64, 64, gain=gain)])
    assert block.propagate_q(q) == pytest.approx(q, rel=1e-10)
    assert block.moments(q=q).m1 == pytest.approx(1 + epsilon, rel=1e-10)


def test_selu_parameters_recover_klambauer_constants_and_exact_path():
    m1 = SeLU().moments(q=1.0).m1  # epsilon of the original SeLU at q = 1
    lam, alpha = selu_parameters(m1 - 1)
    assert lam == pytest.approx(1.0507009873554805, rel=1e-6)
    assert alpha == pytest.approx(1.6732632423543772, rel=1e-6)
    lam_e, alpha_e = selu_parameters(sp.Rational(1, 20), gain=1, q=1)
    assert isinstance(lam_e, sp.Expr) and lam_e.has(sp.erf)
    lam_f, alpha_f = selu_parameters(0.05)
    assert float(lam_e) == pytest.approx(lam_f) and float(alpha_e) == pytest.approx(alpha_f)


@pytest.mark.parametrize(("depth", "target"), [(10, 1.0), (50, 0.5), (4, 4.0), (7, 0.0)])
def test_leaky_relu_slope_reaches_target_variance(depth, target):
    slope, gain = leaky_relu_slope(depth, target)
    assert 0 <= slope <= 1
    # independent check with explicit random matrices is in the next test; here the engine
    net = repeat(Serial([Linear(64, 64, init="orthogonal", gain=gain), LeakyReLU(slope)]), depth)
    m = net.moments()
    assert m.m1 == pytest.approx(1.0, rel=1e-12)
    assert m.normalized_variance == pytest.approx(target, abs=1e-10)


def test_leaky_relu_slope_against_monte_carlo():
    rng = np.random.default_rng(0)
    depth, target, n = 4, 1.0, 300
    slope, gain = leaky_relu_slope(depth, target)
    ratios = []
    for _ in range(4):
        j = np.eye(n)
        for _ in range(depth):
            o, r = np.linalg.qr(rng.standard_normal((n, n)))
            o = o * np.sign(np.diag(r))
            d = np.where(rng.random(n) < 0.5, 1.0, slope)
            j = d[:, None] * (gain * o) @ j
        a = j @ j.T
        m1, m2 = np.trace(a) / n, np.trace(a @ a) / n
        ratios.append((m1, m2 / m1**2 - 1))
    m1, nv = np.mean(ratios, axis=0)
    assert m1 == pytest.approx(1.0, rel=0.05)
    assert nv == pytest.approx(target, rel=0.1)


def test_application_errors():
    with pytest.raises(ValueError, match="epsilon"):
        selu_parameters(0.5)
    with pytest.raises(ValueError, match="epsilon"):
        selu_parameters(-0.01)
    with pytest.raises(ValueError, match="gain"):
        selu_parameters(0.05, gain=-1.0)
    with pytest.raises(ValueError, match="target_variance"):
        leaky_relu_slope(3, 5.0)
    with pytest.raises(ValueError, match="target_variance"):
        leaky_relu_slope(3, -1.0)
    with pytest.raises(ValueError, match="depth"):
        leaky_relu_slope(0, 0.1)
    with pytest.raises(TypeError, match="depth"):
        leaky_relu_slope(2.5, 0.1)
