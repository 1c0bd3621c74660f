"""Activation moments E[f'(h)^{2k}] and q maps E[f(h)^2] against Monte Carlo and quadrature."""

from __future__ import annotations

import math

import numpy as np
import pytest
import sympy as sp
import torch
from scipy import integrate

from toolkit.isometry import (
    GELU,
    Dropout,
    HardTanh,
    LeakyReLU,
    PReLU,
    ReLU,
    ScaledPReLU,
    SeLU,
    Sigmoid,
    Tanh,
)

CASES = [
    (ReLU(), torch.relu),
    (LeakyReLU(0.2), lambda x: torch.nn.functional.leaky_relu(x, 0.2)),
    (PReLU(0.25, 1.5), lambda x: 1.5 * torch.nn.functional.leaky_relu(x, 0.25)),
    (Tanh(), torch.tanh),
    (HardTanh(-0.5, 1.0), lambda x: torch.clamp(x, -0.5, 1.0)),
    (Sigmoid(), torch.sigmoid),
    (SeLU(), torch.selu),
    (SeLU(1.2, 0.7), lambda x: 1.2 * torch.where(x > 0, x, 0.7 * torch.expm1(x))),
    (GELU(), torch.nn.functional.gelu),
]


@pytest.mark.parametrize(("block", "fn"), CASES, ids=lambda c: type(c).__name__)
@pytest.mark.parametrize("q", [0.3, 1.0, 2.5])
def test_activation_moments_match_monte_carlo_with_autograd(block, fn, q):
    gen = torch.Generator().manual_seed(7)
    h = (math.sqrt(q) * torch.randn(400_000, generator=gen, dtype=torch.float64)).requires_grad_()
    y = fn(h)
    (d,) = torch.autograd.grad(y.sum(), h)
    d2, y2 = (d.detach() ** 2).numpy(), (y.detach() ** 2).numpy()
    theory = block.moments(order=3, q=q)
    for k in range(1, 4):
        sample = d2**k
        se = sample.std() / math.sqrt(sample.size)
        assert float(theory.moment(k)) == pytest.approx(sample.mean(), abs=5 * se + 1e-9)
    se = y2.std() / math.sqrt(y2.size)
    assert float(block.propagate_q(q)) == pytest.approx(y2.mean(), abs=5 * se + 1e-9)


def _quad(fn, q):
    dens = lambda h: fn(h) * math.exp(-h * h / (2 * q)) / math.sqrt(2 * math.pi * q)  # noqa: E731
    return sum(
        integrate.quad(dens, a, b, limit=200)[0]
        for a, b in [(-np.inf, -1), (-1, 0), (0, 1), (1, np.inf)]
    )


@pytest.mark.parametrize("q", [0.2, 1.0, 3.0])
def test_closed_forms_match_adaptive_quadrature(q):
    lam, alpha = 1.1, 1.9
    selu = SeLU(lam, alpha)
    fp = lambda h: lam if h > 0 else lam * alpha * math.exp(h)  # noqa: E731
    f = lambda h: lam * h if h > 0 else lam * alpha * math.expm1(h)  # noqa: E731
    m = selu.moments(order=3, q=q)
    for k in (1, 2, 3):
        assert m.moment(k) == pytest.approx(_quad(lambda h, k=k: fp(h) ** (2 * k), q), rel=1e-9)
    assert selu.propagate_q(q) == pytest.approx(_quad(lambda h: f(h) ** 2, q), rel=1e-9)
    ht = HardTanh(-0.7, 1.3)
    assert ht.moments(q=q).m1 == pytest.approx(_quad(lambda h: float(-0.7 < h < 1.3), q))
    assert ht.propagate_q(q) == pytest.approx(_quad(lambda h: min(max(h, -0.7), 1.3) ** 2, q))
    tanh = Tanh().moments(order=2, q=q)
    assert tanh.m2 == pytest.approx(_quad(lambda h: (1 - math.tanh(h) ** 2) ** 4, q), rel=1e-8)


def test_exact_and_symbolic_closed_forms():
    q = sp.Symbol("q", positive=True)
    assert ReLU().moments(order=4).values == (sp.Rational(1, 2),) * 4
    assert ReLU().propagate_q(q) == q / 2
    a = sp.Symbol("a", positive=True)
    m = LeakyReLU(a).moments(order=2)
    assert sp.simplify(m.m2 - (1 + a**4) / 2) == 0
    sp_m = ScaledPReLU(sp.Rational(1, 3)).moments()
    assert sp_m.m1 == 1 and ScaledPReLU(sp.Rational(1, 3)).propagate_q(q) == q
    assert sp_m.normalized_variance == ((1 - sp.Rational(1, 9)) / (1 + sp.Rational(1, 9))) ** 2
    expr = SeLU(sp.Integer(1), sp.Integer(1)).moments(q=q).m1
    assert float(expr.subs(q, 1.0)) == pytest.approx(SeLU(1.0, 1.0).moments(q=1.0).m1, rel=1e-12)
    assert HardTanh().moments(q=q).m1.has(sp.erf)
    assert Dropout(sp.Rational(1, 4)).moments(order=2).normalized_variance == sp.Rational(1, 3)


def test_quadrature_activations_refuse_symbolic_q():
    with pytest.raises(TypeError, match="numeric q"):
        GELU().propagate_q(sp.Symbol("q", positive=True))
