"""The float series of ``_numseries`` against the exact (rational) series of ``_series``.

Inputs are random rationals, so the exact side is free of round-off; the float side must
agree to a relative 1e-10.  The composite operations (S-transform, free cumulants,
R-diagonal sums) are checked against :mod:`toolkit.isometry.engine.free`, which builds them
from the exact series, and the Gauss rule against the moments of the measure it compresses.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import sympy as sp

from toolkit.isometry.engine import _numseries as ns
from toolkit.isometry.engine import free
from toolkit.isometry.engine._series import series_inv, series_mul, series_pow, series_reverse

N = 9
RTOL = 1e-10


def _rationals(rng: np.random.Generator, n: int, lo: int = -9, hi: int = 9) -> list[Fraction]:
    return [Fraction(int(rng.integers(lo, hi + 1)), int(rng.integers(1, 7))) for _ in range(n)]


def _floats(exact: list) -> np.ndarray:
    return np.array([float(v) for v in exact])


def _close(got: np.ndarray, want: list) -> None:
    want_f = _floats(want)
    scale = max(1.0, float(np.abs(want_f).max()))
    np.testing.assert_allclose(got, want_f, rtol=RTOL, atol=RTOL * scale)


def _atom_moments(rng: np.random.Generator, k: int) -> list[Fraction]:
    """Moments m_1..m_k of a random discrete law with rational atoms in (0, 3]: a valid law."""
    atoms = [Fraction(int(rng.integers(1, 13)), 4) for _ in range(4)]
    weights = [Fraction(int(rng.integers(1, 5))) for _ in range(4)]
    total = sum(weights)
    return [sum(w * a**j for a, w in zip(atoms, weights)) / total for j in range(1, k + 1)]


@pytest.mark.parametrize("seed", range(4))
def test_mul_inv_power_match_the_exact_series(seed: int) -> None:
    rng = np.random.default_rng(seed)
    a, b = _rationals(rng, N), _rationals(rng, N)
    a[0] = Fraction(int(rng.integers(1, 5)), int(rng.integers(1, 4)))  # invertible
    _close(ns.mul(_floats(a), _floats(b), N), series_mul(a, b, N))
    _close(ns.inv(_floats(a), N), series_inv(a, N))
    for e in (0, 1, 2, 5):
        _close(ns.power(_floats(a), e, N), series_pow(a, e, N))


@pytest.mark.parametrize("seed", range(4))
def test_reverse_matches_the_exact_series_and_inverts(seed: int) -> None:
    rng = np.random.default_rng(seed)
    a = [Fraction(0), Fraction(int(rng.integers(1, 5)), 2), *_rationals(rng, N - 2)]
    got = ns.reverse(_floats(a), N)
    _close(got, series_reverse(a, N))
    # and it is an inverse: a(g(z)) = z up to z^(N-1)
    composed = np.zeros(N)
    g_pow = np.zeros(N)
    g_pow[0] = 1.0
    for coeff in _floats(a):
        composed += coeff * g_pow
        g_pow = ns.mul(g_pow, got, N)
    np.testing.assert_allclose(composed, np.eye(N)[1], atol=1e-9)


@pytest.mark.parametrize("seed", range(3))
def test_s_transform_and_back_match_free(seed: int) -> None:
    rng = np.random.default_rng(seed)
    m = _atom_moments(rng, 6)
    s = ns.s_coeffs(_floats(m))
    _close(s, free.s_transform_coefficients(m))
    _close(ns.moments_from_s(s, len(s)), free.moments_from_s_transform(free._s_coeffs(m)))
    np.testing.assert_allclose(ns.moments_from_s(s, len(s)), _floats(m), rtol=1e-9)


@pytest.mark.parametrize("seed", range(3))
def test_free_cumulants_match_free(seed: int) -> None:
    rng = np.random.default_rng(seed)
    m = _atom_moments(rng, 7)
    kappa = ns._cumulants(_floats(m))
    _close(kappa, free.moments_to_cumulants(m))
    _close(ns._from_cumulants(kappa), free.cumulants_to_moments(free.moments_to_cumulants(m)))


@pytest.mark.parametrize("seed", range(3))
def test_r_diagonal_sum_matches_free(seed: int) -> None:
    rng = np.random.default_rng(seed)
    seqs = [_atom_moments(rng, 5) for _ in range(3)]
    _close(ns.r_diagonal_sum([_floats(s) for s in seqs]), free.r_diagonal_sum(*seqs))


def test_marchenko_pastur_through_both_paths() -> None:
    # free multiplicative convolution of two MP laws by the float S-transform product
    mp = free.marchenko_pastur_moments(6)
    s = ns.mul(ns.s_coeffs(_floats(mp)), ns.s_coeffs(_floats(mp)), 6)
    exact = free.free_multiplicative_convolution(mp, mp)
    _close(ns.moments_from_s(s, 6), exact)
    assert exact[:3] == [1, 3, 12]  # Fuss-Catalan numbers of order 3
    assert all(isinstance(v, sp.Integer) for v in exact)


@pytest.mark.parametrize("n", [1, 3, 6])
def test_gauss_rule_keeps_the_first_2n_moments(n: int) -> None:
    rng = np.random.default_rng(n)
    values, weights = rng.uniform(0, 4, 200), rng.uniform(0.1, 1, 200)
    nodes, w = ns.gauss_rule(values, weights, n)
    assert nodes.shape == w.shape == (n,) and np.all(w > 0)
    for j in range(2 * n):
        want = float(np.sum(weights * values**j))
        assert float(np.sum(w * nodes**j)) == pytest.approx(want, rel=1e-8)


def test_gauss_rule_leaves_small_measures_alone() -> None:
    v, w = np.array([0.5, 2.0]), np.array([1.0, 3.0])
    nodes, weights = ns.gauss_rule(v, w, 4)
    np.testing.assert_array_equal(nodes, v)
    np.testing.assert_array_equal(weights, w)
