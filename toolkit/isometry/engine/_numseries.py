r"""Float power-series moment algebra on numpy arrays (fast path of :mod:`.free` for floats).

Internal helper of :mod:`toolkit.isometry.engine.spectra`: the same formulas as
:func:`toolkit.isometry.free_multiplicative_convolution` and
:func:`toolkit.isometry.r_diagonal_sum`, for float moments only, with
series reversion by Lagrange inversion: if :math:`f(z) = \sum_{j\ge1} a_j z^j` and
:math:`\varphi(z) = z/f(z)`, the inverse :math:`g = f^{-1}` has
:math:`g_n = \frac1n [z^{n-1}]\,\varphi(z)^n`. A series is an array ``a`` with
``a[j]`` the coefficient of :math:`z^j`.
"""

from __future__ import annotations

import numpy as np


def mul(a: np.ndarray, b: np.ndarray, n: int) -> np.ndarray:
    """Product of two series, ``n`` terms."""
    return np.convolve(a[:n], b[:n])[:n]


def inv(a: np.ndarray, n: int) -> np.ndarray:
    """Reciprocal :math:`1/a(z)` (needs :math:`a_0 \\ne 0`), ``n`` terms."""
    a = np.concatenate([a[:n], np.zeros(max(0, n - len(a)))])
    b = np.zeros(n)
    b[0] = 1 / a[0]
    for k in range(1, n):
        b[k] = -b[0] * np.dot(a[1 : k + 1], b[k - 1 :: -1])
    return b


def reverse(a: np.ndarray, n: int) -> np.ndarray:
    """Compositional inverse of :math:`a_1 z + a_2 z^2 + \\dots` (``a[0] = 0``), ``n`` terms."""
    phi = inv(np.asarray(a, dtype=float)[1:], n)
    out, power = np.zeros(n), np.ones(1)
    for k in range(1, n):
        power = mul(power, phi, n)
        out[k] = power[k - 1] / k
    return out


def power(a: np.ndarray, e: int, n: int) -> np.ndarray:
    """Non-negative integer power of a series, ``n`` terms."""
    out, base = np.zeros(n), np.asarray(a, dtype=float)[:n]
    out[0] = 1.0
    while e:
        if e & 1:
            out = mul(out, base, n)
        e >>= 1
        if e:
            base = mul(base, base, n)
    return out


def s_coeffs(m: np.ndarray) -> np.ndarray:
    """S-transform coefficients ``[s_0 .. s_{k-1}]`` of the moments ``[m_1 .. m_k]``."""
    k = len(m)
    chi = reverse(np.concatenate([[0.0], m]), k + 1)
    return mul(chi[1:], np.array([1.0, 1.0]), k)


def moments_from_s(s: np.ndarray, k: int) -> np.ndarray:
    """Inverse of :func:`s_coeffs`: :math:`\\chi(z) = zS(z)/(1+z)`, :math:`\\psi = \\chi^{-1}`."""
    sz = mul(s, (-1.0) ** np.arange(k), k)
    return reverse(np.concatenate([[0.0], sz]), k + 1)[1:]


def _cumulants(m: np.ndarray) -> np.ndarray:
    """Free cumulants: with :math:`f(z) = zM(z)`, :math:`C(w) = w/f^{-1}(w)`."""
    n = len(m) + 1
    h = reverse(np.concatenate([[0.0, 1.0], m]), n + 1)
    return inv(h[1:], n)[1:]


def _from_cumulants(kappa: np.ndarray) -> np.ndarray:
    """Moments from free cumulants: :math:`zM(z)` is the inverse of :math:`w/C(w)`."""
    n = len(kappa) + 1
    h = inv(np.concatenate([[1.0], kappa]), n)
    return reverse(np.concatenate([[0.0], h]), n + 1)[2:]


def r_diagonal_sum(seqs: list[np.ndarray]) -> np.ndarray:
    """Moments of :math:`JJ^T` for a free sum of R-diagonal terms (symmetrized laws add)."""
    k = min(len(s) for s in seqs)
    total = np.zeros(2 * k)
    for s in seqs:
        sym = np.zeros(2 * k)
        sym[1::2] = s[:k]
        total = total + _cumulants(sym)
    return _from_cumulants(total)[1::2]


def gauss_rule(values: np.ndarray, weights: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    r"""``n``-point Gauss rule of the discrete measure :math:`\sum_j w_j\delta_{v_j}` (``w > 0``).

    Lanczos on :math:`\mathrm{diag}(v)` from :math:`\sqrt{w/\sum w}` (with full
    reorthogonalization) gives the Jacobi matrix :math:`T`; its eigenvalues are the nodes
    and the squared first components of its eigenvectors times :math:`\sum w` the weights.
    The rule keeps the moments :math:`0 \dots 2n-1`, so
    :math:`\sum_j w_j u/(1 - v_j u)` is replaced by its :math:`[n-1/n]` Padé approximant in
    :math:`u`. Measures with at most ``n`` atoms are returned unchanged.
    """
    v, w = np.asarray(values, dtype=float), np.asarray(weights, dtype=float)
    if v.size <= n:
        return v, w
    total = float(w.sum())
    basis = np.zeros((n, v.size))
    alpha, beta = np.zeros(n), np.zeros(n)
    basis[0] = np.sqrt(w / total)
    for k in range(n):
        r = v * basis[k]
        alpha[k] = basis[k] @ r
        r -= basis[: k + 1].T @ (basis[: k + 1] @ r)  # Gram-Schmidt against all (twice)
        r -= basis[: k + 1].T @ (basis[: k + 1] @ r)
        beta[k] = np.linalg.norm(r)
        if k + 1 == n or beta[k] <= 1e-13 * max(1.0, float(np.abs(v).max())):
            n = k + 1
            break
        basis[k + 1] = r / beta[k]
    jacobi = np.diag(alpha[:n]) + np.diag(beta[: n - 1], 1) + np.diag(beta[: n - 1], -1)
    nodes, vectors = np.linalg.eigh(jacobi)
    return nodes, total * vectors[0] ** 2
