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
inside a sum through its Cauchy transform, so nothing is quantized. Sum factors of equal
tree shape (e.g. the ``L`` residual blocks of a chain, whose tanh laws differ) are solved
as one batch of arrays. The iteration is continued from a large :math:`\eta` (where
:math:`w \approx m_1/z`) down to the target :math:`\eta` with per-point step control,
which selects the physical branch. The density is :math:`-\mathrm{Im}\,G/\pi`.

Neighbouring factors whose laws agree to a relative ``2e-3`` are merged into one factor
with their mean law (error second order in the spread). Problems with many activation
atoms are continued with each activation law replaced by its 12-point Gauss rule (same
moments up to order 23) and then polished by Newton steps with the exact laws, so the
result is that of the exact laws. The law is normalized to :math:`m_1 = 1` before the
solve (exploding or vanishing chains stay in floating-point range).

**Guards.** A grid point fails if a Newton step is non-finite, the continuation stalls,
the polish does not converge, or the density is negative beyond rounding. Failed points
are retried with the exact laws and smaller continuation steps, then at 4x the
:math:`\eta` (with a :class:`RuntimeWarning`); points that still fail are interpolated
from their neighbours (:class:`RuntimeWarning`), and a :class:`RuntimeError` is raised
if more than a tenth of the grid fails. The result is never NaN or negative.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from typing import Any

import numpy as np

from ..._checks import check_int, check_positive
from . import _numseries as _ns
from . import _subordination as _sub
from . import free

__all__ = ["AtomLaw", "MPLaw", "ProductLaw", "SumLaw", "spectral_density"]

_MOMENT_ORDER = 16
#: The most points one :func:`spectral_density` call evaluates (``num`` or ``len(x)``).
MAX_POINTS = 100_000


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
        self.items: list[tuple[Any, float]] = flat

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
        total: np.ndarray | None = None
        for law, c, mult in self.factors():
            if isinstance(law, AtomLaw) and law.values.size == 1:  # constant: S = 1/a
                s = np.zeros(k)
                s[0] = 1 / float(law.values[0])
            else:
                s = _ns.s_coeffs(np.asarray(law.moments(k), dtype=float))
            s = _ns.power(s, mult, k) * c ** np.arange(k)
            total = s if total is None else _ns.mul(total, s, k)
        if total is None:
            raise ValueError("a ProductLaw needs at least one factor")
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
        if a.values.shape != b.values.shape or np.abs(a.weights - b.weights).max() > 1e-9:
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
            [
                (_mean([law.items[i][0] for law in laws], mults), r)
                for i, (_, r) in enumerate(first.items)
            ]
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


def _chain_spec(law: Any) -> _sub.ProductSpec:
    """Solver spec of a product chain (a lone MP / atom / sum law is a chain of one)."""
    chain = law if isinstance(law, ProductLaw) else ProductLaw([(law, 1.0)])
    spec = _sub.ProductSpec()
    for law, c, mult in _merged_factors(chain):
        spec.m1 *= law.moments(1)[0] ** mult
        if isinstance(law, MPLaw):  # S(y) = 1/(s (1 + lam y))
            spec.mp.append((law.ratio * c, mult))
            spec.const -= mult * math.log(law.scale)
        elif isinstance(law, SumLaw):
            spec.sums.append((_sum_spec(law), law.moments(1)[0], c, mult))
        elif np.count_nonzero(law.values) > 1:
            nz = law.values != 0
            spec.general.append((law.values[nz], (law.weights * law.values)[nz], c, mult))
        else:
            nz = law.values != 0
            a, p = float(law.values[nz][0]), float(law.weights[nz][0])
            spec.const -= mult * math.log(a)  # S = u (1+y)/y with psi(u) = p a u/(1 - a u)
            if p <= 1 - 1e-14:  # otherwise S = 1/a, a constant
                spec.bern.append((a, p, c, mult))
    spec.sums.sort(key=lambda f: f[0].sig())
    return spec


def _sum_spec(law: SumLaw) -> _sub.SumSpec:
    """Solver spec of a free sum; nested sums are flattened (their symmetrized laws add)."""
    spec, stack = _sub.SumSpec(), list(law.terms)
    while stack:
        term = stack.pop()
        if isinstance(term, SumLaw):
            stack.extend(term.terms)
        elif isinstance(term, AtomLaw):
            spec.atoms.append((term.values, term.weights))
        else:
            spec.products.append(_chain_spec(term))
    spec.products.sort(key=_sub.ProductSpec.sig)
    return spec


#: Gauss nodes per activation law in the continuation solve of large problems, and the
#: total number of activation atoms above which that solve is compressed
_GAUSS_NODES, _COMPRESS_ATOMS = 12, 256


def _atoms(spec: Any) -> int:
    if isinstance(spec, _sub.SumSpec):
        return sum(_atoms(p) for p in spec.products)
    return sum(f[0].size for f in spec.general) + sum(_atoms(f[0]) for f in spec.sums)


def _compressed(spec: Any) -> Any:
    """``spec`` with every activation law replaced by its Gauss rule (:func:`._numseries.
    gauss_rule`, ``_GAUSS_NODES`` nodes); the tree shape (and so the solver state) is kept."""
    if isinstance(spec, _sub.SumSpec):
        return _sub.SumSpec(spec.atoms, [_compressed(p) for p in spec.products])
    general = [(*_ns.gauss_rule(a, pa, _GAUSS_NODES), c, m) for a, pa, c, m in spec.general]
    sums = [(_compressed(f[0]), *f[1:]) for f in spec.sums]
    return dataclasses.replace(spec, general=general, sums=sums)


def _attempt(
    spec: Any,
    x: np.ndarray,
    eta: np.ndarray,
    top: float,
    compress: bool = True,
    start: float = 2.0,
    **kw: Any,
) -> tuple:
    r"""One continuation solve: :math:`-\mathrm{Im}\,G/\pi` and the points that passed.

    Large problems (more than ``_COMPRESS_ATOMS`` activation atoms) are continued with
    Gauss-compressed activation laws and then polished by Newton steps with the exact
    laws from that solution. A point fails if the solver flags it (non-finite or stalled
    steps), if the polish does not converge, or if the density is non-finite or negative
    beyond rounding (a non-physical branch).
    """
    half = isinstance(spec, _sub.SumSpec)
    z = x + 1j * eta
    logz = np.log(z)[None] * (0.5 if half else 1.0)
    coarse = _compressed(spec) if compress and _atoms(spec) > _COMPRESS_ATOMS else None
    node = _sub.build([coarse or spec])
    with np.errstate(all="ignore"):
        ok = _sub.solve(node, x, eta, start * top + 1, half, **kw)
        if coarse is not None:
            fine = _sub.build([spec])
            fine.start(logz)
            for mine, solved in zip(_sub.state(fine), _sub.state(node)):
                mine[...] = solved
            idx = np.flatnonzero(ok)
            size = _sub.newton(fine, idx, logz[:, idx], np.full(idx.size, 1e-10), 12, 0.1)
            ok[idx[~(size <= _sub._ACCEPT)]] = False
            node = fine
        g = _sub.root_g(node, np.arange(x.size), z)
        rho = -g.imag / np.pi
        ok &= np.isfinite(rho) & (rho >= -1e-9 * np.abs(g))
    return np.where(ok, np.maximum(rho, 0.0), np.nan), ok


#: fallbacks for points that fail: exact laws, a start further out (``top`` is an estimate),
#: smaller continuation steps, then a larger eta
_RETRIES: tuple[dict[str, Any], ...] = (
    {"start": 20.0},
    {"compress": False, "start": 20.0},
    {"compress": False, "start": 20.0, "h0": 0.2, "h_max": 0.5, "rounds": 400},
    {"compress": False, "start": 20.0, "h0": 0.2, "h_max": 0.5, "rounds": 400, "eta_factor": 4.0},
)


def _density(law: Any, x: np.ndarray, eta: Any, top: float) -> np.ndarray:
    r""":math:`-\mathrm{Im}\,G(x + i\eta)/\pi`, clipped at 0, never NaN (see the module
    docstring). Points that fail are retried (:data:`_RETRIES`); a point solved only at
    a larger :math:`\eta` or, failing that, interpolated from its neighbours raises a
    :class:`RuntimeWarning`; a :class:`RuntimeError` if more than a tenth fail."""
    eta = np.broadcast_to(np.asarray(eta, dtype=float), x.shape).copy()
    spec = _sum_spec(law) if isinstance(law, SumLaw) else _chain_spec(law)
    rho, ok = _attempt(spec, x, eta, top)
    smoothed = 0
    seen, big = [], _atoms(spec) > _COMPRESS_ATOMS
    for kw in _RETRIES:
        bad = np.flatnonzero(~ok)
        kw = dict(kw, compress=kw.get("compress", True) and big)
        if bad.size == 0:
            break
        if kw in seen:  # the same solve again
            continue
        seen.append(kw)
        factor = kw.pop("eta_factor", 1.0)
        rho[bad], ok[bad] = _attempt(spec, x[bad], factor * eta[bad], top, **kw)
        smoothed += int(np.count_nonzero(ok[bad])) if factor != 1 else 0
    if smoothed:
        warnings.warn(
            f"spectral_density: {smoothed} point(s) solved only at 4x the smoothing eta",
            RuntimeWarning,
            stacklevel=3,
        )
    bad = ~ok
    if bad.any():
        if bad.sum() > 0.1 * x.size:
            raise RuntimeError(
                f"spectral_density: the subordination solve failed at "
                f"{int(bad.sum())} of {x.size} points"
            )
        order = np.argsort(x)
        good = order[ok[order]]
        rho[bad] = np.interp(x[bad], x[good], rho[good])
        warnings.warn(
            f"spectral_density: {int(bad.sum())} point(s) could not be solved and "
            "were interpolated from their neighbours",
            RuntimeWarning,
            stacklevel=3,
        )
    return rho


def spectral_density(
    block: Any, q: float = 1.0, num: int = 512, x: Any = None, eta: float | None = None
) -> tuple[np.ndarray, np.ndarray]:
    r"""Eigenvalue density of :math:`JJ^T` for ``block`` at input second moment ``q``.

    Atoms are not resolved: they appear as Lorentzians of width ``eta`` (e.g. the zero
    eigenvalues of an expanding layer, mass :math:`1 - n_\text{in}/n_\text{out}`, or of ReLU
    masks, mass 1/2). Deep products concentrate mass near 0 like :math:`x^{-L/(L+1)}`, which
    no grid resolves; use :meth:`Block.moments` for exact moments.

    Parameters
    ----------
    block : Block
        Any block with numeric parameters.
    q : float
        Second moment of the block's input, ``> 0``.
    num : int
        Points of the default grid, ``8 <= num <=`` :data:`MAX_POINTS` (100000: each point
        costs tens of microseconds, so the cap keeps one call to seconds): :math:`(0, x_\max]`,
        denser near 0 (:math:`x = x_\max t^2`), where :math:`x_\max` bounds the support
        (estimated from the 16th moment).
    x : array_like, optional
        Evaluate at these finite points instead of the default grid (at most
        :data:`MAX_POINTS`).
    eta : float, optional
        Imaginary part of :math:`z = x + i\eta`, which smooths the density on that scale
        (default :math:`\min(10^{-2}x, 10^{-3}x_\max)`, relative near 0).

    Returns
    -------
    x, density : numpy.ndarray
        The grid and the density on it.

    Raises
    ------
    TypeError, ValueError
        For a non-block ``block``, ``q``, ``num``, ``x`` or ``eta`` out of range, and for a
        block whose Jacobian is zero (``Scale(0)``: a point mass has no density).

    Examples
    --------
    >>> from toolkit.isometry import Linear
    >>> x, rho = spectral_density(Linear(64, 64), num=400)
    >>> bool(abs(np.trapezoid(rho, x) - 1) < 0.02)
    True
    """
    from .blocks import _check_block  # (blocks builds on this module's laws)

    block = _check_block("block", block)
    check_positive("q", q)
    num = check_int("num", num, 8, MAX_POINTS)
    try:
        law = block._spectral_law(float(q))
    except OverflowError as err:
        raise ValueError(
            f"spectral_density: the input second moment q overflows along {block!r} "
            f"(start q={q}); the chain explodes, lower the gain or the depth"
        ) from err
    # solve for JJ^T / scale (m_1 = 1): exploding or vanishing chains stay in range
    scale = 1.0
    if isinstance(law, ProductLaw):
        firsts = [(f.moments(1)[0], mult) for f, _, mult in law.factors()]
    else:
        # (a chain's own m1 may underflow to 0 while no factor is zero, so check factors)
        firsts = [(law.moments(1)[0], 1)]
    if any(m1 <= 0 for m1, _ in firsts):
        raise ValueError(
            f"spectral_density: the Jacobian of {block!r} is zero (a factor such as "
            "Scale(0) has m1 = 0), so JJ^T has all its eigenvalues at 0: a point mass, "
            "not a density"
        )
    if isinstance(law, ProductLaw):
        scale = math.exp(sum(mult * math.log(m1) for m1, mult in firsts))
        law = ProductLaw([*law.items, (AtomLaw([1 / scale], [1.0]), 1.0)])
    top = _upper_edge(law)
    if x is None:
        x = scale * top * np.linspace(0, 1, num + 1)[1:] ** 2
    else:
        try:
            x = np.asarray(x, dtype=float)
        except (TypeError, ValueError) as err:
            raise TypeError(f"x must be an array of real numbers, got {x!r}") from err
        if x.ndim != 1 or x.size == 0 or x.size > MAX_POINTS:
            raise ValueError(
                f"x must be a 1-D array of 1 to {MAX_POINTS} points, got shape {x.shape}"
            )
        if not np.all(np.isfinite(x)):
            raise ValueError("x must be finite, got NaN or infinite entries")
    xs = x / scale
    if eta is None:
        # relative smoothing near 0, where products have 1/sqrt(x)-type singularities
        eta = np.clip(1e-2 * np.abs(xs), 1e-9 * top, 1e-3 * top)
    else:
        eta = float(check_positive("eta", eta)) / scale
    return x, _density(law, xs, eta, max(top, float(np.max(np.abs(xs))))) / scale
