r"""Numerical eigenvalue density of :math:`JJ^T` from the free-probability transforms.

Every block describes the law of its :math:`JJ^T` as a small tree of *numeric laws*:

* :class:`MPLaw` -- Marchenko-Pastur (Gaussian weights), closed-form S-transform
  :math:`S(y) = 1/(s(1 + \lambda y))`;
* :class:`AtomLaw` -- a discrete law :math:`\sum_j p_j \delta_{a_j}` (orthogonal
  weights: one atom; activations: the law of :math:`f'(h)^2`, :math:`h\sim N(0,q)`,
  through Gauss-Hermite atoms);
* :class:`ProductLaw` -- a serial chain (free multiplicative convolution with the
  width ratios, :math:`S(w) = \prod_i S_i(w\,n_L/n_i)`);
* :class:`SumLaw` -- a sum of free branches, all but one R-diagonal: the
  symmetrized singular-value laws add, :math:`\tilde\mu = \boxplus_i \tilde\mu_i`.

**Products.** With :math:`\psi(u) = \sum_k m_k u^k` and :math:`w = \psi(1/z)`, the
Cauchy transform is :math:`G(z) = (1+w)/z` and :math:`w` solves
:math:`z\, \frac{w}{1+w} \prod_i S_i(c_i w)^{n_i} = 1`. For an atom factor,
:math:`S(y) = u(1+y)/y` with :math:`\psi(u) = y` solved by an inner Newton
iteration. **Sums.** With :math:`\tilde G_i(\zeta) = \sum_j p_j\, \zeta/(\zeta^2 - a_j)` and
subordination :math:`\tilde G(\zeta) = \tilde G_i(\omega_i)`,
:math:`\sum_i \omega_i = \zeta + (n-1)/\tilde G(\zeta)`; then
:math:`G(z) = \tilde G(\sqrt z)/\sqrt z`.

Both are solved by one joint, vectorized Newton iteration over all grid points and
all unknowns of the law tree (:mod:`._subordination`): a sum inside a product (residual
blocks) enters through the S-transform of its own subordination problem, a product
inside a sum through its Cauchy transform, so nothing is quantized. The iteration is
continued from a large :math:`\eta` (where :math:`w \approx m_1/z`) down to the target
:math:`\eta`, which selects the physical branch. The density is
:math:`-\mathrm{Im}\,G/\pi`. Neighbouring factors whose laws agree to a relative
``2e-3`` are merged into one factor with their mean law (error second order in the
spread).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from . import _numseries as _ns
from . import _subordination as _sub
from . import free
from ._checks import check_int, check_positive

__all__ = ["AtomLaw", "MPLaw", "ProductLaw", "SumLaw", "spectral_density"]

_MOMENT_ORDER = 16


class MPLaw:
    """Marchenko-Pastur law of ``W W^T``: ratio ``lam = d_out/d_in``, scale ``s`` (= gain^2)."""

    def __init__(self, scale: float, ratio: float) -> None:
        self.scale, self.ratio = float(scale), float(ratio)

    def key(self) -> tuple:
        return ("mp", self.scale, self.ratio)

    def moments(self, k: int) -> list[float]:
        return free.marchenko_pastur_moments(k, self.ratio, self.scale)


class AtomLaw:
    """Discrete law ``sum_j weights[j] * delta(values[j])`` (weights sum to 1)."""

    def __init__(self, values: Any, weights: Any) -> None:
        v = np.asarray(values, dtype=float).ravel()
        p = np.asarray(weights, dtype=float).ravel()
        if v.shape != p.shape or v.size == 0:
            raise ValueError("AtomLaw needs values and weights of the same non-zero length")
        order = np.argsort(v)
        v, p = v[order], p[order]
        # merge (nearly) equal atoms
        keep = np.concatenate([[True], np.diff(v) > 1e-12 * max(1.0, float(np.abs(v).max()))])
        idx = np.cumsum(keep) - 1
        self.values = v[keep]
        self.weights = np.bincount(idx, weights=p)
        self.weights = self.weights / self.weights.sum()

    def key(self) -> tuple:
        return ("atoms", tuple(np.round(self.values, 12)), tuple(np.round(self.weights, 12)))

    def moments(self, k: int) -> list[float]:
        powers = self.values[None, :] ** np.arange(1, k + 1)[:, None]
        return (powers @ self.weights).tolist()


class ProductLaw:
    """Serial chain: ``items`` = [(law, ratio d_out/d_in), ...] in application order."""

    def __init__(self, items: list[tuple[Any, float]]) -> None:
        flat: list[tuple[Any, float]] = []
        for law, ratio in items:
            if isinstance(law, ProductLaw):
                flat.extend(law.items)
            else:
                flat.append((law, float(ratio)))
        self.items = flat

    @property
    def ratio(self) -> float:
        return float(np.prod([r for _, r in self.items]))

    def key(self) -> tuple:
        return ("product", tuple((law.key(), r) for law, r in self.items))

    def factors(self) -> list[tuple[Any, float, int]]:
        """Grouped ``(law, c = n_L/n_i, multiplicity)``."""
        ratios = np.array([r for _, r in self.items])
        after = np.concatenate([np.cumprod(ratios[::-1])[::-1][1:], [1.0]])
        groups: dict[tuple, list] = {}
        for (law, _), c in zip(self.items, after):
            key = (law.key(), round(float(c), 12))
            if key in groups:
                groups[key][2] += 1
            else:
                groups[key] = [law, float(c), 1]
        return [tuple(g) for g in groups.values()]

    def moments(self, k: int) -> list[float]:
        total = None
        for law, c, mult in self.factors():
            s = _ns.s_coeffs(np.asarray(law.moments(k), dtype=float))
            s = _ns.power(s, mult, k) * c ** np.arange(k)
            total = s if total is None else _ns.mul(total, s, k)
        return _ns.moments_from_s(total, k).tolist()


class SumLaw:
    """Sum of free branches (all but one R-diagonal), each a law of its ``J J^T``."""

    def __init__(self, terms: list[Any]) -> None:
        self.terms = list(terms)

    def key(self) -> tuple:
        return ("sum", tuple(t.key() for t in self.terms))

    def moments(self, k: int) -> list[float]:
        return _ns.r_diagonal_sum([np.asarray(t.moments(k), float) for t in self.terms]).tolist()


# --------------------------------------------------------------------------- helpers
def _upper_edge(law: Any) -> float:
    if isinstance(law, AtomLaw):
        return float(law.values.max())
    if isinstance(law, MPLaw):
        return law.scale * (1 + math.sqrt(law.ratio)) ** 2
    m = law.moments(_MOMENT_ORDER)
    return 1.5 * max(abs(m[-1]), 1e-300) ** (1.0 / _MOMENT_ORDER)


#: relative spread up to which neighbouring factor laws of equal shape are merged
_MERGE_TOL = 2e-3


def _close(a: Any, b: Any) -> bool:
    """Same tree shape, equal MP laws and ratios, atoms within ``_MERGE_TOL`` (relative)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, MPLaw):
        return a.key() == b.key()
    if isinstance(a, AtomLaw):
        if a.values.shape != b.values.shape or not np.allclose(a.weights, b.weights, 0, 1e-9):
            return False
        scale = max(float(np.abs(a.values).max()), float(np.abs(b.values).max()), 1e-300)
        return float(np.abs(a.values - b.values).max()) <= _MERGE_TOL * scale
    if isinstance(a, ProductLaw):
        return len(a.items) == len(b.items) and all(
            ra == rb and _close(la, lb) for (la, ra), (lb, rb) in zip(a.items, b.items)
        )
    return len(a.terms) == len(b.terms) and all(map(_close, a.terms, b.terms))


def _mean(laws: list, mults: list[int]) -> Any:
    r"""Leafwise average of :func:`_close` laws, weighted by their multiplicities.

    Moving the atoms of each copy to the weighted mean changes :math:`\sum_i m_i \log
    S_i` only to second order in the spread (the first-order terms cancel).
    """
    first = laws[0]
    if len(laws) == 1 or isinstance(first, MPLaw):
        return first
    if isinstance(first, AtomLaw):
        m = np.asarray(mults, dtype=float)[:, None]
        values = np.sum(m * np.array([law.values for law in laws]), axis=0) / m.sum()
        return AtomLaw(values, first.weights)
    if isinstance(first, ProductLaw):
        return ProductLaw(
            [(_mean([law.items[i][0] for law in laws], mults), r)
             for i, (_, r) in enumerate(first.items)]
        )
    return SumLaw([_mean([law.terms[i] for law in laws], mults) for i in range(len(first.terms))])


def _merged_factors(chain: ProductLaw) -> list[tuple[Any, float, int]]:
    """``chain.factors()`` with neighbouring nearly-equal laws merged (see :func:`_mean`)."""
    groups: list[list] = []
    for law, c, mult in chain.factors():
        for g in groups:
            if g[1] == c and _close(g[0][0], law):
                g[0].append(law)
                g[2].append(mult)
                break
        else:
            groups.append([[law], c, [mult]])
    return [(_mean(laws, mults), c, sum(mults)) for laws, c, mults in groups]


def _chain_node(law: Any) -> _sub.Product:
    """Solver node of a product chain (a lone MP / atom / sum law is a chain of one)."""
    chain = law if isinstance(law, ProductLaw) else ProductLaw([(law, 1.0)])
    mp, bern, general, sums, const, m1 = [], [], [], [], 0.0, 1.0
    for law, c, mult in _merged_factors(chain):
        m1 *= law.moments(1)[0] ** mult
        if isinstance(law, MPLaw):
            mp.append((law.scale, law.ratio, c, mult))
        elif isinstance(law, SumLaw):
            sums.append((_sum_node(law), law.moments(1)[0], c, mult))
        elif np.count_nonzero(law.values) > 1:
            general.append((law.values, law.weights, c, mult))
        else:
            nz = law.values != 0
            a, p = float(law.values[nz][0]), float(law.weights[nz][0])
            if p > 1 - 1e-14:  # S = 1/a, a constant
                const -= mult * math.log(a)
            else:
                bern.append((a, p, c, mult))
    return _sub.Product(mp, bern, general, sums, const, m1)


def _sum_node(law: SumLaw) -> _sub.Sum:
    """Solver node of a free sum; nested sums are flattened (their symmetrized laws add)."""
    atoms, products, stack = [], [], list(law.terms)
    while stack:
        term = stack.pop()
        if isinstance(term, SumLaw):
            stack.extend(term.terms)
        elif isinstance(term, AtomLaw):
            atoms.append(term)
        else:
            products.append(_chain_node(term))
    return _sub.Sum(atoms, products)


def _density(law: Any, x: np.ndarray, eta: Any, top: float) -> np.ndarray:
    r""":math:`-\mathrm{Im}\,G(x + i\eta)/\pi`, clipped at 0 (see the module docstring)."""
    eta = np.broadcast_to(np.asarray(eta, dtype=float), x.shape)
    if isinstance(law, SumLaw):
        node = _sum_node(law)
        _sub.solve(node, x, eta, 2 * top + 1, half=True)
        g = node.g / np.sqrt(x + 1j * eta)
    else:
        node = _chain_node(law)
        _sub.solve(node, x, eta, 2 * top + 1, half=False)
        g = np.exp(node.l) / (x + 1j * eta)
    return np.maximum(-g.imag / np.pi, 0.0)


def spectral_density(
    block: Any, q: float = 1.0, num: int = 512, x: Any = None, eta: float | None = None
) -> tuple[np.ndarray, np.ndarray]:
    r"""Eigenvalue density of :math:`JJ^T` for ``block`` at input second moment ``q``.

    Returns ``(x, density)`` numpy arrays. The default grid has ``num`` points on
    :math:`(0, x_\max]`, denser near 0 (:math:`x = x_\max t^2`), where
    :math:`x_\max` bounds the support (estimated from the 16th moment). ``eta`` is
    the imaginary part used for :math:`z = x + i\eta` (default
    :math:`\min(10^{-2}x, 10^{-3}x_\max)`, relative near 0);
    it smooths the density on that scale. Atoms are not resolved: they appear
    as Lorentzians of width ``eta`` (e.g. the zero eigenvalues of an expanding layer,
    mass :math:`1 - n_\text{in}/n_\text{out}`, or of ReLU masks, mass 1/2). Deep
    products concentrate mass near 0 like :math:`x^{-L/(L+1)}`, which no grid
    resolves; use :meth:`Block.moments` for exact moments.

    >>> from toolkit.isometry import Linear
    >>> x, rho = spectral_density(Linear(64, 64), num=400)
    >>> bool(abs(np.trapezoid(rho, x) - 1) < 0.02)
    True
    """
    check_positive("q", q)
    num = check_int("num", num, 8)
    law = block._spectral_law(float(q))
    top = _upper_edge(law)
    if x is None:
        x = top * np.linspace(0, 1, num + 1)[1:] ** 2
    else:
        x = np.asarray(x, dtype=float)
        if x.ndim != 1 or x.size == 0:
            raise ValueError(f"x must be a non-empty 1-D array, got shape {x.shape}")
    if eta is None:
        # relative smoothing near 0, where products have 1/sqrt(x)-type singularities
        eta = np.clip(1e-2 * np.abs(x), 1e-9 * top, 1e-3 * top)
    else:
        eta = float(check_positive("eta", eta))
    return x, _density(law, x, eta, max(top, float(np.max(np.abs(x)))))
