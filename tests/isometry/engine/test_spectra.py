"""spectral_density: Marchenko-Pastur closed form, normalization, Monte Carlo eigenvalues."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from toolkit.isometry import (
    Concat,
    Linear,
    NetworkDesign,
    ReLU,
    Residual,
    Serial,
    Tanh,
    design_block,
    marchenko_pastur_density,
    sample_spectrum,
    spectral_density,
)


def _trapz(y, x):
    return float(np.sum(0.5 * (y[1:] + y[:-1]) * np.diff(x)))


def _gauss(rng, n_out, n_in, gain=1.0):
    return rng.standard_normal((n_out, n_in)) * gain / math.sqrt(n_in)


def _eigs(jacobians):
    return np.concatenate([np.linalg.eigvalsh(j @ j.T) for j in jacobians])


def _cdf_distance(x, rho, eigs):
    """Max distance between the integrated density and the empirical CDF (on the grid)."""
    cdf = np.concatenate([[0.0], np.cumsum(0.5 * (rho[1:] + rho[:-1]) * np.diff(x))])
    emp = np.searchsorted(np.sort(eigs), x, side="right") / eigs.size
    zero_mass = np.mean(eigs < x[0])
    return float(np.max(np.abs(cdf + zero_mass - emp)))


@pytest.mark.parametrize(("ratio", "gain"), [(1.0, 1.0), (0.5, 1.3), (0.25, 0.8)])
def test_gaussian_layer_density_matches_marchenko_pastur(ratio, gain):
    n_in = 400
    layer = Linear(n_in, int(n_in * ratio), gain=gain)
    x, rho = spectral_density(layer, num=600)
    assert x.shape == rho.shape == (600,)
    assert _trapz(rho, x) == pytest.approx(1.0, abs=0.01)
    exact = marchenko_pastur_density(x, ratio, gain**2)
    lo, hi = gain**2 * (1 - math.sqrt(ratio)) ** 2, gain**2 * (1 + math.sqrt(ratio)) ** 2
    # the smoothing (eta ~ 1% of x) rounds the square-root edges; compare away from them
    away = (np.abs(x - lo) > 0.05 * hi) & (np.abs(x - hi) > 0.05 * hi) & (x > 0.05 * hi)
    np.testing.assert_allclose(rho[away], exact[away], atol=0.01 * exact.max())
    assert _trapz(rho * x, x) == pytest.approx(gain**2, rel=0.01)
    assert _trapz(rho * x * x, x) == pytest.approx(gain**4 * (1 + ratio), rel=0.01)


def test_expanding_layer_misses_its_zero_atom():
    x, rho = spectral_density(Linear(100, 200, gain=1.0), num=400)
    # mass 1/2 sits at 0; only the Lorentzian tail of that atom (width eta) shows up
    assert _trapz(rho, x) == pytest.approx(0.5, abs=0.03)
    assert _trapz(rho * x, x) == pytest.approx(1.0, rel=0.01)


@pytest.mark.parametrize("case", ["two_gaussian", "relu", "tanh_orthogonal", "residual"])
def test_density_matches_monte_carlo_eigenvalues(case):
    rng = np.random.default_rng(11)
    n, samples = 300, 3
    if case == "two_gaussian":
        block = Serial([Linear(n, n, gain=1.0), Linear(n, n, gain=1.0)])
        jacs = [_gauss(rng, n, n) @ _gauss(rng, n, n) for _ in range(samples)]
    elif case == "relu":
        block = Serial([Linear(n, n, gain=math.sqrt(2)), ReLU(), Linear(n, n, gain=1.0)])
        jacs = [
            _gauss(rng, n, n) @ np.diag(rng.random(n) < 0.5) @ _gauss(rng, n, n, 2**0.5)
            for _ in range(samples)
        ]
    elif case == "tanh_orthogonal":
        q = 2.0
        block = Serial([Tanh(), Linear(n, n, init="orthogonal", gain=1.0), Tanh()])
        q2 = Serial([Tanh(), Linear(n, n, init="orthogonal", gain=1.0)]).propagate_q(q)
        jacs = []
        for _ in range(samples):
            d1 = 1 - np.tanh(rng.standard_normal(n) * math.sqrt(q)) ** 2
            d2 = 1 - np.tanh(rng.standard_normal(n) * math.sqrt(q2)) ** 2
            o, r = np.linalg.qr(rng.standard_normal((n, n)))
            jacs.append(np.diag(d2) @ (o * np.sign(np.diag(r))) @ np.diag(d1))
    else:
        block = Residual(Serial([Linear(n, n), ReLU(), Linear(n, n)]), scale=0.7)
        jacs = [
            np.eye(n) + 0.7 * _gauss(rng, n, n) @ np.diag(rng.random(n) < 0.5) @ _gauss(rng, n, n)
            for _ in range(samples)
        ]
    q = 2.0 if case == "tanh_orthogonal" else 1.0
    x, rho = spectral_density(block, q=q, num=500)
    eigs = _eigs(jacs)
    assert _cdf_distance(x, rho, eigs) < 0.04
    theory = block.moments(order=2, q=q)
    m_density = [_trapz(rho * x**k, x) for k in (1, 2)]
    np.testing.assert_allclose(m_density, theory.values, rtol=0.03)
    np.testing.assert_allclose(m_density, [np.mean(eigs), np.mean(eigs**2)], rtol=0.08)


def test_density_arguments():
    x = np.linspace(0.1, 3.5, 50)
    got_x, rho = spectral_density(Linear(50, 50, gain=1.0), x=x, eta=1e-4)
    assert np.array_equal(got_x, x)
    np.testing.assert_allclose(rho, marchenko_pastur_density(x), atol=2e-3)
    with pytest.raises(ValueError, match="q"):
        spectral_density(Linear(5, 5), q=0.0)
    with pytest.raises(ValueError, match="num"):
        spectral_density(Linear(5, 5), num=1)
    with pytest.raises(ValueError, match="eta"):
        spectral_density(Linear(5, 5), eta=-1.0)
    with pytest.raises(NotImplementedError, match="Concat"):
        spectral_density(Concat([Linear(5, 5), Linear(5, 5)]))


@pytest.mark.slow  # ~7 s: 32 blocks sampled on the CPU
def test_deep_tanh_residual_chain_matches_monte_carlo():
    design = NetworkDesign(
        "residual", width=64, depth=32, activation="tanh", gain=1.0, residual_scale=0.3
    )
    x, rho = spectral_density(design_block(design), num=400)
    eigs = sample_spectrum(design, samples=4, seed=3).ravel()
    assert _cdf_distance(x, rho, eigs) < 0.04
    theory = design_block(design).moments(order=1).m1
    assert _trapz(rho * x, x) == pytest.approx(theory, rel=0.03)


_SWEEP = [
    # (architecture, activation, init, normalization, gain, depth, residual_scale)
    ("residual", "tanh", "gaussian", "none", 1.0, 32, 0.3),
    ("residual", "relu", "gaussian", "batchnorm", 1.0, 32, 0.3),
    ("residual", "gelu", "orthogonal", "none", 2**0.5, 8, 1.0),
    ("residual", "linear", "orthogonal", "none", 1.0, 64, 1.0),
    ("mlp", "tanh", "orthogonal", "none", 1.0, 8, 1.0),
    ("mlp", "gelu", "gaussian", "none", 2**0.5, 32, 1.0),
    ("mlp", "leaky_relu", "orthogonal", "none", 2**0.5, 64, 1.0),
    ("cnn", "selu", "orthogonal", "batchnorm", 1.0, 32, 1.0),
    ("cnn", "relu", "gaussian", "none", 2**0.5, 1, 1.0),
]


@pytest.mark.parametrize("case", _SWEEP, ids=lambda c: "-".join(map(str, c[:4] + c[5:])))
def test_design_sweep_densities_are_finite_and_consistent(case):
    arch, act, init, norm, gain, depth, scale = case
    design = NetworkDesign(
        arch,
        width=128,
        depth=depth,
        activation=act,
        init=init,
        normalization=norm,
        gain=gain,
        residual_scale=scale,
    )
    block = design_block(design)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no fallback was needed, nothing interpolated
        x, rho = spectral_density(block, num=240)
    assert np.all(np.isfinite(rho)) and np.all(rho >= 0)
    mass = _trapz(rho, x)
    assert 0 < mass <= 1.01
    if mass > 0.97:  # the support is resolved on the grid: the first moment must agree
        assert _trapz(rho * x, x) == pytest.approx(float(block.moments(order=1).m1), rel=0.03)
