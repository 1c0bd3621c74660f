"""Free-probability engine: cumulants, transforms, convolutions vs independent references."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import sympy as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from toolkit.isometry import (
    cumulants_to_moments,
    free_additive_convolution,
    free_multiplicative_convolution,
    marchenko_pastur_moments,
    moments_from_s_transform,
    moments_to_cumulants,
    noncrossing_partitions,
    r_diagonal_sum,
    r_transform,
    s_transform,
    s_transform_coefficients,
)


# ----------------------------------------------------------------- independent references
def _set_partitions(items):
    if not items:
        yield []
        return
    first, rest = items[0], items[1:]
    for part in _set_partitions(rest):
        for i in range(len(part)):
            yield [*part[:i], [first, *part[i]], *part[i + 1 :]]
        yield [[first], *part]


def _crossing(part):
    for a, b in itertools.permutations(part, 2):
        for i, j in itertools.combinations(sorted(a), 2):
            for k, l in itertools.combinations(sorted(b), 2):
                if i < k < j < l:
                    return True
    return False


def _moments_by_partitions(kappa):
    """m_n = sum over non-crossing partitions (brute force over all set partitions)."""
    out = []
    for n in range(1, len(kappa) + 1):
        total = 0
        for part in _set_partitions(list(range(n))):
            if not _crossing(part):
                total += math.prod(kappa[len(b) - 1] for b in part)
        out.append(total)
    return out


def _mc_moments(mats, order):
    eig = np.concatenate([np.linalg.eigvalsh(m) for m in mats])
    return [float(np.mean(eig**k)) for k in range(1, order + 1)]


def _gauss(rng, n_out, n_in, var=1.0):
    return rng.standard_normal((n_out, n_in)) * math.sqrt(var / n_in)


def _haar(rng, n):
    q, r = np.linalg.qr(rng.standard_normal((n, n)))
    return q * np.sign(np.diag(r))


# ----------------------------------------------------------------------------- cumulants
def test_noncrossing_partitions_are_counted_by_catalan_and_are_noncrossing():
    for n in range(7):
        parts = list(noncrossing_partitions(n))
        assert len(parts) == math.comb(2 * n, n) // (n + 1)
        assert all(not _crossing(p) for p in parts)
        assert len({tuple(map(tuple, p)) for p in parts}) == len(parts)


def test_marchenko_pastur_is_free_poisson_all_cumulants_equal():
    # Catalan numbers are the moments of the square MP law; its free cumulants are all 1.
    catalan = [math.comb(2 * k, k) // (k + 1) for k in range(1, 9)]
    assert marchenko_pastur_moments(8) == catalan
    assert moments_to_cumulants(catalan) == [1] * 8
    lam, s = sp.symbols("lambda s", positive=True)
    kappa = moments_to_cumulants(marchenko_pastur_moments(5, lam, s))
    assert all(sp.simplify(k - s ** (i + 1) * lam**i) == 0 for i, k in enumerate(kappa))


@settings(max_examples=40, deadline=None)
@given(st.lists(st.fractions(min_value=-3, max_value=3, max_denominator=7), min_size=1, max_size=6))
def test_cumulant_round_trip_and_partition_formula(kappa):
    kappa = [sp.Rational(k.numerator, k.denominator) for k in kappa]
    m = cumulants_to_moments(kappa)
    assert all(isinstance(x, sp.Rational) for x in m)
    assert m == _moments_by_partitions(kappa)
    assert moments_to_cumulants(m) == kappa


@settings(max_examples=30, deadline=None)
@given(st.lists(st.floats(min_value=-2, max_value=2), min_size=1, max_size=8))
def test_cumulant_round_trip_floats(m):
    back = cumulants_to_moments(moments_to_cumulants(m))
    assert all(isinstance(x, float) for x in back)
    np.testing.assert_allclose(back, m, atol=1e-9 * (1 + max(abs(v) for v in m)) ** 8)


def test_r_transform_of_semicircle_and_mp():
    z = sp.Symbol("z")
    semicircle = [0, 1, 0, 2, 0, 5]
    assert sp.expand(r_transform(semicircle, z) - z) == 0  # R(z) = z
    assert r_transform([1, 2, 5, 14], z) == 1 + z + z**2 + z**3  # R = 1/(1-z), truncated


# ----------------------------------------------------------------------------- S-transform
def test_s_transform_known_laws_and_inverse():
    z = sp.Symbol("z")
    # MP with ratio lam, scale s: S(z) = 1/(s (1 + lam z))
    lam, s = sp.symbols("lam s", positive=True)
    got = s_transform(marchenko_pastur_moments(4, lam, s), z)
    want = sp.series(1 / (s * (1 + lam * z)), z, 0, 4).removeO()
    assert sp.simplify(got - want) == 0
    # point mass at a: S = 1/a
    a = sp.Symbol("a", positive=True)
    assert sp.simplify(s_transform([a, a**2, a**3]) - 1 / a) == 0
    coeffs = s_transform_coefficients([2, 7, 30, 150])
    assert moments_from_s_transform(coeffs) == [2, 7, 30, 150]
    with pytest.raises(ValueError, match="non-zero first moment"):
        s_transform_coefficients([0, 1])


def test_free_product_of_square_ginibre_gives_fuss_catalan():
    # Moments of (W_L...W_1)(...)^T are the Fuss-Catalan numbers binom((L+1)k, k)/(Lk+1).
    mp = marchenko_pastur_moments(5)
    for depth in (2, 3):
        got = free_multiplicative_convolution(*[mp] * depth)
        want = [math.comb((depth + 1) * k, k) // (depth * k + 1) for k in range(1, 6)]
        assert got == want


def test_free_product_two_mp_matches_monte_carlo_rectangular():
    rng = np.random.default_rng(0)
    n0, n1, n2 = 300, 600, 200
    mats = []
    for _ in range(4):
        j = _gauss(rng, n2, n1, 1.5) @ _gauss(rng, n1, n0, 0.7)
        mats.append(j @ j.T)
    mc = _mc_moments(mats, 3)
    theory = free_multiplicative_convolution(
        marchenko_pastur_moments(3, 2.0, 0.7),
        marchenko_pastur_moments(3, 1 / 3, 1.5),
        ratios=[2.0, 1 / 3],
    )
    np.testing.assert_allclose(theory, mc, rtol=0.04)
    # closed form of the normalized variance along a rectangular chain: sum_i n_L/n_i * v_i
    assert theory[1] / theory[0] ** 2 - 1 == pytest.approx(n2 / n1 * 2.0 + 1 / 3, rel=1e-12)


def test_free_product_with_deterministic_diagonal_matches_haar_rotation():
    rng = np.random.default_rng(1)
    n = 400
    d = np.diag(np.repeat([0.5, 2.0, 3.0], [n // 2, n // 4, n - n // 2 - n // 4]))
    atoms = np.diag(d)
    law = [float(np.mean(atoms**k)) for k in range(1, 5)]
    mats = []
    for _ in range(3):
        u = _haar(rng, n)
        b = u @ d @ u.T  # free from d asymptotically
        mats.append(np.sqrt(d) @ b @ np.sqrt(d))
    np.testing.assert_allclose(
        free_multiplicative_convolution(law, law), _mc_moments(mats, 4), rtol=0.02
    )


# ----------------------------------------------------------------------------- additive
def test_free_additive_convolution_semicircles_and_free_poisson():
    assert free_additive_convolution([0, 1, 0, 2], [0, 1, 0, 2]) == [0, 2, 0, 8]
    # free Poisson laws with the same jump add their rates: kappa_k = rate
    a = cumulants_to_moments([sp.Rational(1, 2)] * 4)
    b = cumulants_to_moments([sp.Rational(3, 2)] * 4)
    assert free_additive_convolution(a, b) == cumulants_to_moments([2] * 4)


def test_free_additive_convolution_matches_monte_carlo():
    rng = np.random.default_rng(2)
    n = 500
    d = np.diag(np.where(np.arange(n) < n // 3, 2.0, -1.0))
    law = [float(np.mean(np.diag(d) ** k)) for k in range(1, 5)]
    mats = []
    for _ in range(3):
        w = _gauss(rng, n, n, 1.0)
        mats.append(d + w @ w.T)  # Wishart is free from d
    got = free_additive_convolution(law, marchenko_pastur_moments(4))
    np.testing.assert_allclose(got, _mc_moments(mats, 4), rtol=0.03)


def test_r_diagonal_sum_identity_plus_ginibre_matches_monte_carlo():
    rng = np.random.default_rng(3)
    n = 400
    s = 0.8
    mats = []
    for _ in range(3):
        j = np.eye(n) + s * _gauss(rng, n, n)
        mats.append(j @ j.T)
    got = r_diagonal_sum(
        [1.0] * 4, [s ** (2 * k) * c for k, c in enumerate(marchenko_pastur_moments(4), start=1)]
    )
    np.testing.assert_allclose(got, _mc_moments(mats, 4), rtol=0.03)
    # closed forms: m1 = 1 + s^2, var = 2 s^2 m1_b + s^4 var_b
    assert got[0] == pytest.approx(1 + s**2)
    assert got[1] - got[0] ** 2 == pytest.approx(2 * s**2 + s**4)


def test_r_diagonal_sum_of_two_gaussians_is_gaussian():
    g1 = marchenko_pastur_moments(4, 1, sp.Rational(1, 3))
    g2 = marchenko_pastur_moments(4, 1, sp.Rational(2, 3))
    assert r_diagonal_sum(g1, g2) == marchenko_pastur_moments(4)


def test_bad_inputs_raise_with_argument_names():
    with pytest.raises(TypeError, match="moments"):
        moments_to_cumulants(3)
    with pytest.raises(ValueError, match="moments"):
        moments_to_cumulants([])
    with pytest.raises(ValueError, match="ratios"):
        free_multiplicative_convolution([1, 2], ratios=[1, 2])
    with pytest.raises(ValueError, match="ratios"):
        free_multiplicative_convolution([1, 2], ratios=[-1])
    with pytest.raises(ValueError, match="order"):
        marchenko_pastur_moments(0)
