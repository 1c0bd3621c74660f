r"""Free probability on moment sequences: cumulants, R- and S-transforms, convolutions.

Conventions. A law :math:`\mu` (the eigenvalue distribution of :math:`JJ^T`) is
given by its moments ``[m_1, ..., m_K]`` with :math:`m_k = \phi((JJ^T)^k)` and
:math:`\phi(A) = \mathbb E\,\mathrm{tr}A/\dim`. All functions work exactly on
sympy input (integers, rationals, symbols) and in floating point on float input
(see :func:`toolkit.isometry.engine._series.coerce`); ``K`` moments in give ``K``
results out.

* Free cumulants :math:`\kappa_n` (moment-cumulant formula): with
  :math:`M(z) = 1 + \sum m_n z^n` and :math:`C(z) = 1 + \sum \kappa_n z^n`,
  :math:`M(z) = C(zM(z))`, equivalently
  :math:`m_n = \sum_{\pi \in NC(n)} \prod_{V\in\pi} \kappa_{|V|}` (non-crossing partitions).
* R-transform :math:`R(z) = \sum_{n\ge 0} \kappa_{n+1} z^n`; it adds under free
  additive convolution :math:`\boxplus`.
* S-transform: :math:`\psi(z) = \sum_{k\ge1} m_k z^k`, :math:`\chi = \psi^{-1}`,
  :math:`S(z) = \chi(z)(1+z)/z`; it multiplies under free multiplicative
  convolution :math:`\boxtimes` (needs :math:`m_1 \ne 0`). To first order
  :math:`S(z) = m_1^{-1}(1 - v z + O(z^2))` with :math:`v = m_2/m_1^2 - 1`, which is
  why :math:`m_1` multiplies and the normalized variance adds along a chain.
* Rectangular chains (Chen et al. 2020, Sec. 4, extended to unequal widths): if
  factor :math:`i` maps width :math:`n_{i-1}` to :math:`n_i` and :math:`\nu_i` is
  the law of :math:`J_iJ_i^T` normalized by :math:`n_i`, the law of the product
  normalized by the last width :math:`n_L` has
  :math:`S(w) = \prod_i S_{\nu_i}(w\, n_L/n_i)`. Hence
  :math:`v = \sum_i (n_L/n_i)\, v_i`.

Source: Nica & Speicher, *Lectures on the Combinatorics of Free Probability*
(2006), Lectures 11-18; Haagerup & Larsen (2000) for R-diagonal sums.

>>> moments_to_cumulants([1, 2, 5, 14])          # Marchenko-Pastur: all cumulants 1
[1, 1, 1, 1]
>>> free_multiplicative_convolution([1, 2, 5], [1, 2, 5])   # Fuss-Catalan 1, 3, 12
[1, 3, 12]
"""

from __future__ import annotations

import cmath
import math
import numbers
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import sympy as sp

from ..._checks import check_int, check_positive
from ._series import (
    coerce,
    finish,
    is_exact,
    num,
    series_mul,
    series_pow,
    series_reverse,
    simplify,
)

__all__ = [
    "cumulants_to_moments",
    "free_additive_convolution",
    "free_multiplicative_convolution",
    "marchenko_pastur_density",
    "marchenko_pastur_moments",
    "moments_from_s_transform",
    "moments_to_cumulants",
    "noncrossing_partitions",
    "r_diagonal_sum",
    "r_transform",
    "s_transform",
    "s_transform_coefficients",
]


def _check_seq(name: str, values: Any) -> list[Any]:
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence | np.ndarray):
        raise TypeError(f"{name} must be a sequence of numbers [m_1, ..., m_K], got {values!r}")
    values = list(values)
    if not values:
        raise ValueError(f"{name} must hold at least one value, got {values!r}")
    for i, v in enumerate(values):
        if isinstance(v, bool) or not isinstance(v, numbers.Number | sp.Basic):
            raise TypeError(f"{name}[{i}] must be a number or a sympy expression, got {v!r}")
        if isinstance(v, sp.Basic):
            bad = v.has(sp.nan, sp.oo, -sp.oo, sp.zoo)
        else:
            bad = not cmath.isfinite(complex(v))  # type: ignore[arg-type]
        if bad:
            raise ValueError(f"{name}[{i}] must be finite, got {name}[{i}]={v!r}")
    return coerce(values)


def _powers_coeff(m: Sequence[Any], n: int, one: Any) -> list[list[Any]]:
    """``table[s][d] = [z^d] M(z)^s`` for s < n, d < n (``M = 1 + sum m_k z^k``)."""
    series = [one] + list(m[: n - 1]) + [one * 0] * max(0, n - 1 - len(m))
    table = [[one] + [one * 0] * (n - 1)]
    for _ in range(1, n):
        table.append(series_mul(table[-1], series, n))
    return table


def moments_to_cumulants(moments: Sequence[Any]) -> list[Any]:
    r"""Free cumulants :math:`\kappa_1, \dots, \kappa_K` of the moments :math:`m_1, \dots, m_K`.

    Uses :math:`\kappa_n = m_n - \sum_{s<n} \kappa_s [z^{n-s}] M(z)^s`.

    Parameters
    ----------
    moments : sequence of numbers or sympy expressions
        :math:`m_1, \dots, m_K` (ints, fractions and sympy values stay exact, floats are
        computed in floating point).

    Returns
    -------
    list
        :math:`\kappa_1, \dots, \kappa_K`.

    Examples
    --------
    >>> moments_to_cumulants([0, 1, 0, 2])   # semicircle: only kappa_2 = 1
    [0, 1, 0, 0]
    """
    m = _check_seq("moments", moments)
    one = m[0] * 0 + 1
    n = len(m)
    table = _powers_coeff(m, n + 1, one)
    kappa: list[Any] = []
    for k in range(1, n + 1):
        val = m[k - 1]
        for s in range(1, k):
            val = val - kappa[s - 1] * table[s][k - s]
        kappa.append(simplify(val))
    return [finish(x) if isinstance(x, sp.Basic) else x for x in kappa]


def cumulants_to_moments(cumulants: Sequence[Any]) -> list[Any]:
    r"""Moments :math:`m_1, \dots, m_K` from the free cumulants :math:`\kappa_1, \dots, \kappa_K`.

    Parameters
    ----------
    cumulants : sequence of numbers or sympy expressions
        :math:`\kappa_1, \dots, \kappa_K`.

    Returns
    -------
    list
        :math:`m_1, \dots, m_K`; the inverse of :func:`moments_to_cumulants`.

    Examples
    --------
    >>> cumulants_to_moments([1, 1, 1])     # free Poisson = Marchenko-Pastur
    [1, 2, 5]
    """
    kappa = _check_seq("cumulants", cumulants)
    one = kappa[0] * 0 + 1
    n = len(kappa)
    m: list[Any] = []
    for k in range(1, n + 1):
        table = _powers_coeff(m, k, one) if k > 1 else [[one]]
        val = kappa[k - 1]
        for s in range(1, k):
            val = val + kappa[s - 1] * table[s][k - s]
        m.append(simplify(val))
    return [finish(x) if isinstance(x, sp.Basic) else x for x in m]


def _z(z: Any, moments: Sequence[Any]) -> sp.Symbol:
    """The transform variable; refuses one that also occurs in ``moments``.

    Sharing it would merge two different quantities into one expression: with a user's
    symbol ``z`` in the moments, ``r_transform([z, 2])`` would read as a polynomial in it.
    """
    if z is None:
        z = sp.Symbol("z")
    elif not isinstance(z, sp.Symbol):
        raise TypeError(f"z must be a sympy Symbol or None, got {z!r} ({type(z).__name__})")
    used = set().union(*(v.free_symbols for v in moments if isinstance(v, sp.Basic)))
    if z in used:
        raise ValueError(
            f"z={z!r} also occurs in the moments {list(moments)!r}; pass another symbol as "
            "z (for example z=sympy.Symbol('w')) so the two are not merged"
        )
    return z


def r_transform(moments: Sequence[Any], z: Any = None) -> sp.Expr:
    r"""The truncated R-transform :math:`R(z) = \sum_{n=0}^{K-1} \kappa_{n+1} z^n`.

    Parameters
    ----------
    moments : sequence of numbers or sympy expressions
        :math:`m_1, \dots, m_K`.
    z : sympy.Symbol, optional
        The variable (default ``Symbol("z")``); it must not occur in ``moments``.

    Returns
    -------
    sympy.Expr
        The polynomial in ``z``.

    Examples
    --------
    >>> r_transform([1, 2, 5])
    z**2 + z + 1
    """
    kappa = moments_to_cumulants(moments)
    z = _z(z, _check_seq("moments", moments))
    return sp.expand(sum(sp.sympify(k) * z**i for i, k in enumerate(kappa)))


def s_transform_coefficients(moments: Sequence[Any]) -> list[Any]:
    r"""Coefficients :math:`s_0, \dots, s_{K-1}` of the truncated S-transform.

    :math:`S(z) = \frac{1+z}{z}\chi(z)` with :math:`\chi` the compositional inverse of
    :math:`\psi(z) = \sum_k m_k z^k`; it needs :math:`m_1 \ne 0` (then :math:`s_0 = 1/m_1`).

    Parameters
    ----------
    moments : sequence of numbers or sympy expressions
        :math:`m_1, \dots, m_K`.

    Returns
    -------
    list
        :math:`s_0, \dots, s_{K-1}`.

    Raises
    ------
    ValueError
        If :math:`m_1 = 0`.

    Examples
    --------
    >>> s_transform_coefficients([1, 2, 5])  # MP: S(z) = 1/(1+z)
    [1, -1, 1]
    """
    m = _check_seq("moments", moments)
    return [finish(c) if isinstance(c, sp.Basic) else c for c in _s_coeffs(m)]


def _s_coeffs(m: Sequence[Any]) -> list[Any]:
    if m[0] == 0:
        raise ValueError(f"the S-transform needs a non-zero first moment, got moments={list(m)!r}")
    k = len(m)
    psi = [m[0] * 0, *m]
    chi = series_reverse(psi, k + 1)
    over_z = chi[1:]  # chi(z)/z, k terms
    one = m[0] * 0 + 1
    return [simplify(c) for c in series_mul(over_z, [one, one], k)]


def _moments_from_s(s: Sequence[Any], k: int) -> list[Any]:
    one = s[0] * 0 + 1
    # chi(z) = z S(z) / (1 + z)
    inv_1pz = [one * (-1) ** i for i in range(k)]
    sz = series_mul(list(s[:k]), inv_1pz, k)
    chi = [one * 0, *sz]
    psi = series_reverse(chi, k + 1)
    return [simplify(c) for c in psi[1:]]


def s_transform(moments: Sequence[Any], z: Any = None) -> sp.Expr:
    r"""The truncated S-transform :math:`\sum_{n<K} s_n z^n` as a sympy expression.

    Parameters
    ----------
    moments : sequence of numbers or sympy expressions
        :math:`m_1, \dots, m_K` with :math:`m_1 \ne 0`.
    z : sympy.Symbol, optional
        The variable (default ``Symbol("z")``); it must not occur in ``moments``.

    Returns
    -------
    sympy.Expr
        See :func:`s_transform_coefficients` for the coefficients.

    Examples
    --------
    >>> s_transform([2, 4])        # point mass at 2: S = 1/2
    1/2
    """
    coeffs = s_transform_coefficients(moments)
    z = _z(z, _check_seq("moments", moments))
    return sp.expand(sum(sp.sympify(c) * z**i for i, c in enumerate(coeffs)))


def moments_from_s_transform(coefficients: Sequence[Any]) -> list[Any]:
    r"""Inverse of :func:`s_transform_coefficients`: ``K`` coefficients give ``K`` moments.

    Parameters
    ----------
    coefficients : sequence of numbers or sympy expressions
        :math:`s_0, \dots, s_{K-1}` with :math:`s_0 = 1/m_1 \ne 0`.

    Returns
    -------
    list
        :math:`m_1, \dots, m_K`.

    Examples
    --------
    >>> moments_from_s_transform([1, -1, 1])
    [1, 2, 5]
    """
    s = _check_seq("coefficients", coefficients)
    if s[0] == 0:
        raise ValueError(f"coefficients[0] = 1/m_1 must be non-zero, got {coefficients!r}")
    return [finish(c) if isinstance(c, sp.Basic) else c for c in _moments_from_s(s, len(s))]


def _check_ratios(ratios: Any, count: int) -> list[Any]:
    if ratios is None:
        return [1] * count
    ratios = list(ratios)
    if len(ratios) != count:
        raise ValueError(f"ratios must have one entry per factor ({count}), got {ratios!r}")
    for r in ratios:
        if not isinstance(r, sp.Basic) and not r > 0:
            raise ValueError(f"ratios must be positive (d_out/d_in), got {ratios!r}")
    return ratios


def free_multiplicative_convolution(*moment_seqs: Sequence[Any], ratios: Any = None) -> list[Any]:
    r"""Moments of :math:`JJ^T` for :math:`J = J_n \cdots J_1` with free factors.

    The result is normalized by the last output width: :math:`S(w) = \prod_i S_i(w\, n_L/n_i)`.

    Parameters
    ----------
    *moment_seqs : sequences of numbers or sympy expressions
        ``moment_seqs[i]`` are the moments of :math:`J_{i+1}J_{i+1}^T` (normalized by its
        output width), in the order the factors are applied.  The shortest sets the order.
    ratios : sequence, optional
        ``ratios[i]`` is :math:`d_\text{out}/d_\text{in}` of factor ``i`` (default all 1,
        i.e. square factors).

    Returns
    -------
    list
        The moments of the product.

    Examples
    --------
    >>> free_multiplicative_convolution([1, 2], ratios=[1])
    [1, 2]
    >>> free_multiplicative_convolution([1, 2, 5], [1, 2, 5])   # two MP laws: Fuss-Catalan
    [1, 3, 12]
    """
    if not moment_seqs:
        raise ValueError("free_multiplicative_convolution needs at least one moment sequence")
    seqs = [_check_seq(f"moment_seqs[{i}]", s) for i, s in enumerate(moment_seqs)]
    ratios = _check_ratios(ratios, len(seqs))
    k = min(len(s) for s in seqs)
    flat = [x for s in seqs for x in s] + list(ratios)
    exact = is_exact(flat)
    seqs = [coerce(s[:k], exact) for s in seqs]
    ratios = coerce(ratios, exact)
    return [finish(c) if isinstance(c, sp.Basic) else c for c in _product(seqs, ratios, k)]


def _product(seqs: list[list[Any]], ratios: list[Any], k: int) -> list[Any]:
    total: list[Any] | None = None
    for seq, r in zip(seqs, ratios):
        s = _s_coeffs(seq[:k])
        if total is None:
            total = s
        else:
            # S_{M_i}(w) = S_{M_{i-1}}(w r_i) S_{nu_i}(w)
            scaled = [c * r**j for j, c in enumerate(total)]
            total = [simplify(c) for c in series_mul(scaled, s, k)]
    if total is None:
        raise ValueError("the product needs at least one moment sequence")
    return _moments_from_s(total, k)


def repeated_product_moments(moments: Sequence[Any], depth: Any) -> list[Any]:
    """Moments of a chain of ``depth`` free copies of a square factor (``depth``: int or symbol)."""
    m = coerce(moments)
    k = len(m)
    s = series_pow(_s_coeffs(m), depth, k)
    return _moments_from_s([simplify(c) for c in s], k)


def free_additive_convolution(*moment_seqs: Sequence[Any]) -> list[Any]:
    r"""Moments of :math:`a_1 + \dots + a_n` for free self-adjoint :math:`a_i` (cumulants add).

    Parameters
    ----------
    *moment_seqs : sequences of numbers or sympy expressions
        The moments of each :math:`a_i`; the shortest sets the order.

    Returns
    -------
    list
        The moments of the sum.

    Examples
    --------
    >>> free_additive_convolution([0, 1], [0, 1])    # two semicircles: variance 2
    [0, 2]
    """
    if not moment_seqs:
        raise ValueError("free_additive_convolution needs at least one moment sequence")
    seqs = [_check_seq(f"moment_seqs[{i}]", s) for i, s in enumerate(moment_seqs)]
    k = min(len(s) for s in seqs)
    exact = is_exact([x for s in seqs for x in s])
    cum = [moments_to_cumulants(coerce(s[:k], exact)) for s in seqs]
    total = [sum(c[i] for c in cum) for i in range(k)]
    return cumulants_to_moments(coerce(total, exact))


def r_diagonal_sum(*moment_seqs: Sequence[Any]) -> list[Any]:
    r"""Moments of :math:`JJ^T` for :math:`J = J_1 + \dots + J_n`, free, all but one R-diagonal.

    The symmetrized singular-value laws add under :math:`\boxplus` (Haagerup & Larsen
    2000): the even moments of the symmetrization are :math:`\alpha_{2k} = m_k`, odd
    ones vanish. Valid when at most one term is not R-diagonal (a term with a
    Gaussian or Haar-orthogonal factor is R-diagonal; the identity is the typical
    exception, as in residual blocks).

    Parameters
    ----------
    *moment_seqs : sequences of numbers or sympy expressions
        The moments of :math:`J_iJ_i^T`; the shortest sets the order.

    Returns
    -------
    list
        The moments of :math:`JJ^T`.

    Examples
    --------
    >>> r_diagonal_sum([1, 1], [1, 2])      # identity + Ginibre: m1 = 2, m2 = 1 + 4 + 2
    [2, 7]
    """
    if not moment_seqs:
        raise ValueError("r_diagonal_sum needs at least one moment sequence")
    seqs = [_check_seq(f"moment_seqs[{i}]", s) for i, s in enumerate(moment_seqs)]
    k = min(len(s) for s in seqs)
    exact = is_exact([x for s in seqs for x in s])
    zero = num(0, exact)
    sym_cum = []
    for s in seqs:
        s = coerce(s[:k], exact)
        sym = [val for m in s for val in (zero, m)]
        sym_cum.append(moments_to_cumulants(sym))
    total = [sum(c[i] for c in sym_cum) for i in range(2 * k)]
    out = cumulants_to_moments(coerce(total, exact))
    return out[1::2]


def noncrossing_partitions(n: int) -> Iterator[list[list[int]]]:
    """All non-crossing partitions of ``{0, ..., n-1}`` (Catalan(n) of them), as block lists.

    Parameters
    ----------
    n : int
        The size of the set, ``>= 0``.

    Returns
    -------
    iterator of list of list of int
        Each partition as a list of blocks.

    Examples
    --------
    >>> sum(1 for _ in noncrossing_partitions(4))
    14
    """
    n = check_int("n", n, 0)

    def rec(items: list[int]) -> Iterator[list[list[int]]]:
        if not items:
            yield []
            return
        first, rest = items[0], items[1:]
        # block of `first` = {first} + subset S of rest; the gaps between consecutive
        # members of the block are partitioned independently (non-crossing).
        for mask in range(1 << len(rest)):
            chosen = [rest[i] for i in range(len(rest)) if mask >> i & 1]
            cuts = [-1] + [rest.index(c) for c in chosen] + [len(rest)]
            gaps = [rest[cuts[i] + 1 : cuts[i + 1]] for i in range(len(cuts) - 1)]
            yield from _combine([first, *chosen], gaps, rec)

    yield from rec(list(range(n)))


def _combine(block, gaps, rec):
    if not gaps:
        yield [block]
        return
    for head in rec(gaps[0]):
        for tail in _combine(block, gaps[1:], rec):
            yield head + tail


def marchenko_pastur_moments(order: int, ratio: Any = 1, scale: Any = 1) -> list[Any]:
    r"""Moments of :math:`WW^T` for :math:`W` of shape ``(m, n)``, entries of variance ``scale/n``.

    :math:`\phi` normalizes by :math:`m`. Free cumulants are
    :math:`\kappa_k = \text{scale}^k \lambda^{k-1}`; the moments are Narayana polynomials
    :math:`m_k = \text{scale}^k \sum_{j=0}^{k-1} \frac{1}{k}\binom{k}{j}\binom{k}{j+1} \lambda^j`.

    Parameters
    ----------
    order : int
        Number of moments, ``>= 1``.
    ratio : number or sympy expression
        :math:`\lambda = m/n`.
    scale : number or sympy expression
        The entry variance times ``n``.

    Returns
    -------
    list
        :math:`m_1, \dots, m_{\text{order}}`.

    Examples
    --------
    >>> marchenko_pastur_moments(4)
    [1, 2, 5, 14]
    """
    order = check_int("order", order, 1)
    check_positive("ratio", ratio, symbolic=True)
    check_positive("scale", scale, symbolic=True)
    exact = is_exact([ratio, scale])
    lam, s = coerce([ratio, scale], exact)
    out = []
    for k in range(1, order + 1):
        total = sum(
            num(math.comb(k, j) * math.comb(k, j + 1) // k, exact) * lam**j for j in range(k)
        )
        out.append(finish(s**k * total) if exact else s**k * total)
    return out


def marchenko_pastur_density(x: Any, ratio: float = 1.0, scale: float = 1.0) -> np.ndarray:
    r"""Continuous part of the Marchenko-Pastur density of :math:`WW^T` (see above).

    :math:`\rho(x) = \sqrt{(x_+ - x)(x - x_-)}/(2\pi \lambda\, \text{scale}\, x)` on
    :math:`[x_-, x_+]`, :math:`x_\pm = \text{scale}(1 \pm \sqrt\lambda)^2`; for
    :math:`\lambda > 1` an atom of mass :math:`1 - 1/\lambda` sits at 0 (not included).

    Parameters
    ----------
    x : float or array_like
        Where to evaluate.
    ratio : float
        :math:`\lambda = m/n > 0`.
    scale : float
        The entry variance times ``n``, ``> 0``.

    Returns
    -------
    numpy.ndarray
        :math:`\rho(x)`, zero outside the support.

    Examples
    --------
    >>> float(marchenko_pastur_density(1.0))  # doctest: +ELLIPSIS
    0.2756...
    """
    x = np.asarray(x, dtype=float)
    lam = float(check_positive("ratio", ratio, symbolic=True))
    s = float(check_positive("scale", scale, symbolic=True))
    lo, hi = s * (1 - math.sqrt(lam)) ** 2, s * (1 + math.sqrt(lam)) ** 2
    inside = (x > lo) & (x < hi)
    out = np.zeros_like(x)
    xi = x[inside]
    out[inside] = np.sqrt((hi - xi) * (xi - lo)) / (2 * math.pi * lam * s * xi)
    return out
