r"""Vectorized Newton solver for the Cauchy transform of a tree of free laws.

Internal module of :mod:`toolkit.isometry.engine.spectra` (which documents the laws). The
solver works on a whole grid :math:`z = x + i\eta` at once (numpy arrays, no Python loop
over grid points, atoms, factors or repeated sub-trees); every unknown is a logarithm.

**Batches.** A node is built from a list of :class:`ProductSpec` / :class:`SumSpec` of
equal :meth:`~ProductSpec.sig` (tree shape) and solves all of them at once: every
unknown has shape ``(instances, points)``. The sum factors of a product that share a
shape become one child :class:`Sum` node (instances ``parent x factor``), so a chain of
``L`` distinct residual blocks costs a fixed number of array operations, not ``L``.

**Product node** (factors ``(law, c, mult)``, :math:`c = n_L/n_i`). With
:math:`w = \psi(1/z)`, :math:`G = (1+w)/z` and the unknown :math:`l = \log(1+w) = \log zG`
(accurate both where :math:`w\to0` and where :math:`w\to-1`),

.. math:: F = \log z + \log w - l + \sum_k m_k \log S_k(c_k w) = 0.

Each non-constant factor has an auxiliary unknown :math:`\log u_k` with
:math:`\log S_k = \log u_k + \log(1+y) - \log y`, :math:`y = c_k w`, and a constraint
:math:`r_k = 0`: :math:`\log\psi_k(u_k) = \log y` for atom laws
(:math:`\psi(u) = \sum_j p_j a_j u/(1 - a_j u)`; two-point laws in closed form),
:math:`(1 + \lambda y)u = 1` for Marchenko-Pastur (:math:`\log S = -\log s + \log u`), and
:math:`\log(\zeta\tilde G(\zeta) - 1) = \log y`, :math:`\zeta = u^{-1/2}`, for a sum
factor, whose :math:`\tilde G` comes from a child sum node. The Jacobian is an arrow,
so a Newton step is explicit: with :math:`A_k = \partial r_k/\partial\log u_k`,
:math:`B_k = \partial r_k/\partial l`, :math:`q_k = m_k/A_k`,

.. math:: \delta l = -\frac{F - \sum_k q_k r_k + \delta\log z}{F_l - \sum_k q_k B_k},
   \qquad \delta\log u_k = -(r_k + B_k\,\delta l)/A_k .

**Sum node** (input :math:`\log\zeta`, :math:`\zeta = \sqrt z`; free R-diagonal terms):
unknowns :math:`\log g` (:math:`g = \tilde G(\zeta)`, :math:`G(z) = g/\zeta`) and
:math:`\log\omega_i`; :math:`\tilde G_i(\omega_i) = g` (atom terms:
:math:`\tilde G_i(\omega) = \sum_j p_j\omega/(\omega^2 - a_j)`; product terms:
:math:`\tilde G_i(\omega) = e^{l_i}/\omega` with :math:`l_i` of a child product node
at :math:`z = \omega^2`) and :math:`\sum_i\omega_i - (n-1)/g = \zeta`. Eliminating the
:math:`\omega_i` gives :math:`\delta\log g = \alpha + \beta\,\delta\log\zeta`, which the
parent uses in the same way (nested Schur complements).

**Continuation.** All points are first solved at :math:`\eta_0 = ` ``top`` (outside the
support, from :math:`w \approx m_1/z`; ``top`` grows tenfold, up to three times, until
that converges). Each point then walks down to its own :math:`\eta` in rounds: a trial
step of :math:`h` in :math:`\log\eta` (start ``_H0``), up to ``_ROUND_ITERS`` damped Newton
steps (no log-unknown moves by more than ``_MAX_LOG_STEP``) from the accepted solution.
The trial is accepted if the last step is below ``_LOOSE`` (``_ACCEPT`` at the target
:math:`\eta`) and :math:`\mathrm{Im}\,G \le 0` (Herglotz; the physical branch); then
:math:`h` doubles (up to ``h_max``). Otherwise the point's unknowns are restored and
:math:`h` is divided by 4; a point whose :math:`h` falls below ``_H_MIN`` (or that runs
out of rounds) fails (``ok`` False), and the caller retries it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

_LOOSE, _TIGHT, _ACCEPT = 1e-3, 1e-10, 1e-7
_ROUND_ITERS, _ROUNDS = 6, 60
_H0, _H_MAX, _H_MIN = 1.0, 2.5, 1e-3
_GROW, _SHRINK = 2.0, 0.25
_MAX_LOG_STEP = 0.5


@dataclass
class ProductSpec:
    """One product chain: ``mp`` ``(lam * c, mult)``; ``bern`` ``(a, p, c, mult)`` for
    :math:`(1-p)\\delta_0 + p\\delta_a`; ``general`` ``(a, p * a, c, mult)`` (non-zero atoms);
    ``sums`` ``(SumSpec, m_1, c, mult)``; ``const`` :math:`\\sum m\\log S` of the constant
    parts; ``m1`` the chain's first moment (start :math:`w = m_1/z`)."""

    mp: list = field(default_factory=list)
    bern: list = field(default_factory=list)
    general: list = field(default_factory=list)
    sums: list = field(default_factory=list)
    const: float = 0.0
    m1: float = 1.0

    def sig(self) -> tuple:
        return (
            "P",
            len(self.mp),
            len(self.bern),
            len(self.general),
            tuple(s[0].sig() for s in self.sums),
        )


@dataclass
class SumSpec:
    """One free sum: ``atoms`` ``(values, weights)``, ``products`` :class:`ProductSpec`."""

    atoms: list = field(default_factory=list)
    products: list = field(default_factory=list)

    def sig(self) -> tuple:
        return ("S", len(self.atoms), tuple(p.sig() for p in self.products))


def _wrap(f: np.ndarray) -> np.ndarray:
    return f - 2j * np.pi * np.round(f.imag / (2 * np.pi))


def _resolvent(s: np.ndarray, a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Real and imaginary parts of ``1/(s[..., n] - a[..., j])``, shape ``(..., n, j)``."""
    re = s.real[..., None] - a[..., None, :]
    im = np.broadcast_to(s.imag[..., None], re.shape)
    inv = 1.0 / (re * re + im * im)
    return re * inv, -im * inv


def _sums(dr: np.ndarray, di: np.ndarray, weights: np.ndarray, square: bool) -> tuple:
    """``sum_j w_j d`` (and ``sum_j w_j d^2``) for ``d = dr + i di``: complex ``(..., n)``."""
    w = weights[..., None]
    one = np.matmul(dr, w)[..., 0] + 1j * np.matmul(di, w)[..., 0]
    if not square:
        return one
    two = np.matmul(dr * dr - di * di, w)[..., 0] + 2j * np.matmul(dr * di, w)[..., 0]
    return one, two


def _stack(rows: list, width: int) -> np.ndarray:
    """Per-instance rows of ``width`` numbers -> ``(width, instances, 1)``."""
    return np.array(rows, dtype=float).reshape(len(rows), width).T[:, :, None]


def _pad(rows: list) -> np.ndarray:
    """Per-instance lists of atom vectors -> zero-padded ``(k, instances, width)``."""
    k = len(rows[0])
    width = max([v.size for row in rows for v in row] + [1])
    out = np.zeros((k, len(rows), width))
    for b, row in enumerate(rows):
        for i, v in enumerate(row):
            out[i, b, : v.size] = v
    return out


def _flat(v: np.ndarray) -> np.ndarray:
    """``(k, B, n)`` -> ``(B * k, n)`` (instance-major, the child-node order)."""
    return v.swapaxes(0, 1).reshape(-1, v.shape[-1])


def _unflat(v: np.ndarray, k: int) -> np.ndarray:
    return v.reshape(-1, k, v.shape[-1]).swapaxes(0, 1)


def _groups(specs: list, key) -> list[tuple[int, int]]:
    """Runs ``[i0, i1)`` of equal signature in the (sorted) children of ``specs[0]``."""
    sigs = [key(c) for c in specs]
    runs, start = [], 0
    for i in range(1, len(sigs) + 1):
        if i == len(sigs) or sigs[i] != sigs[start]:
            runs.append((start, i))
            start = i
    return runs


def build(specs: list) -> Product | Sum:
    """Batched solver node for specs of equal signature."""
    return Product(specs) if isinstance(specs[0], ProductSpec) else Sum(specs)


def newton(
    node: Product | Sum,
    idx: np.ndarray,
    logz: np.ndarray,
    tol: np.ndarray,
    iters: int,
    max_step: float,
) -> np.ndarray:
    """Damped Newton steps (no log-unknown moves by more than ``max_step``) at the points
    ``idx`` (input ``logz``, shape ``(1, idx.size)``) until the step is below ``tol``
    (per point). Returns the last full-step size per point (``inf`` if non-finite)."""
    last = np.full(idx.size, np.inf)
    active = np.arange(idx.size)
    for _ in range(iters):
        node.lin(idx[active], logz[:, active])
        size = node.propose(0.0).max(axis=0)
        bad = ~np.isfinite(size)
        t = np.where(bad, 0.0, np.minimum(1.0, max_step / np.maximum(size, 1e-300)))
        node.apply(idx[active], t)
        last[active] = np.where(bad, np.inf, size)
        active = active[~bad & ((size > tol[active]) | (t < 1))]
        if active.size == 0:
            break
    return last


def state(node: Product | Sum) -> list[np.ndarray]:
    """All unknowns of the tree (every array has the points on its last axis)."""
    kids: list[Product | Sum]
    if isinstance(node, Product):
        own, kids = [node.l, node.w, node.u], [n for *_, n in node.sums]
    else:
        own, kids = [node.g, node.om], list(node.products)
    return own + [a for kid in kids for a in state(kid)]


def root_g(node: Product | Sum, idx: np.ndarray, z: np.ndarray) -> np.ndarray:
    """:math:`G(z)` of a root node at the points ``idx``."""
    if isinstance(node, Sum):
        return node.g[0, idx] / np.sqrt(z)
    return np.exp(node.l[0, idx]) / z


def solve(
    node: Product | Sum,
    x: np.ndarray,
    eta: np.ndarray,
    top: float,
    half: bool,
    h0: float = _H0,
    h_max: float = _H_MAX,
    rounds: int = _ROUNDS,
) -> np.ndarray:
    r"""Adaptive continuation (input ``log z``, or ``log sqrt z`` if ``half``) from
    ``eta = top`` down to each point's ``eta`` (see the module docstring). Returns ``ok``
    per point: False where the step in :math:`\log\eta` fell below ``_H_MIN``."""
    f = 0.5 if half else 1.0
    every = np.arange(x.size)
    for _ in range(4):  # converge at eta = top first; the start w = m_1/z is asymptotic
        logz = np.log(x + 1j * top)[None] * f
        node.start(logz)
        if np.all(newton(node, every, logz, np.full(x.size, _LOOSE), 30, _MAX_LOG_STEP) <= _LOOSE):
            break
        top *= 10  # ``top`` underestimated the support: start further out
    cur, fin = np.full(x.size, np.log(top)), np.log(np.minimum(eta, top))
    h = np.full(x.size, h0)
    arrays = state(node)
    done, ok = np.zeros(x.size, dtype=bool), np.ones(x.size, dtype=bool)
    for _ in range(rounds):
        act = np.flatnonzero(~done & ok)
        if act.size == 0:
            break
        trial = np.maximum(cur[act] - h[act], fin[act])
        last = trial <= fin[act]
        saved = [a[..., act].copy() for a in arrays]
        z = x[act] + 1j * np.exp(trial)
        size = newton(
            node,
            act,
            np.log(z)[None] * f,
            np.where(last, _TIGHT, _LOOSE),
            _ROUND_ITERS,
            _MAX_LOG_STEP,
        )
        g = root_g(node, act, z)
        good = (size <= np.where(last, _ACCEPT, _LOOSE)) & (g.imag <= 1e-9 * np.abs(g))
        acc, rej = act[good], ~good
        cur[acc], h[acc] = trial[good], np.minimum(_GROW * h[acc], h_max)
        done[acc[last[good]]] = True
        for a, v in zip(arrays, saved):
            a[..., act[rej]] = v[..., rej]
        h[act[rej]] *= _SHRINK
        ok[act[rej][h[act[rej]] < _H_MIN]] = False
    return ok & done


class Product:
    r"""Product chain node: unknowns :math:`l = \log(1+w)` and one :math:`\log u_k` per factor."""

    def __init__(self, specs: list[ProductSpec]) -> None:
        s0, nb = specs[0], len(specs)
        self.nmp, self.nb, self.ng = len(s0.mp), len(s0.bern), len(s0.general)
        self.const = np.array([s.const for s in specs])[:, None]
        self.m1 = np.array([s.m1 for s in specs])[:, None]
        self.lam = _stack([[f[0] for f in s.mp] for s in specs], self.nmp)
        bern = _stack([[v for f in s.bern for v in f[:2]] for s in specs], 2 * self.nb)
        self.ab, self.pb = bern[0::2], bern[1::2]
        self.a = _pad([[f[0] for f in s.general] for s in specs])
        self.pa = _pad([[f[1] for f in s.general] for s in specs])
        self.sm1 = _stack([[f[1] for f in s.sums] for s in specs], len(s0.sums))
        rest = [s.bern + s.general + s.sums for s in specs]
        self.c = _stack([[f[2] for f in r] for r in rest], len(rest[0]))
        self.mult = _stack(
            [[f[-1] for f in s.mp + r] for s, r in zip(specs, rest)], self.nmp + len(rest[0])
        )
        self.first = self.nmp + self.nb + self.ng
        self.sums = (
            [
                (i0, i1, Sum([s.sums[i][0] for s in specs for i in range(i0, i1)]))
                for i0, i1 in _groups(s0.sums, lambda f: f[0].sig())
            ]
            if s0.sums
            else []
        )
        self.n_inst = nb

    def start(self, logz: np.ndarray) -> None:
        self.w = self.m1 * np.exp(-logz)
        self.l = np.log1p(self.w)  # the unknown: l = log(1 + w) = log(z G), w = expm1(l)
        y = self.c * self.w[None]
        nb = self.nb
        self.u = np.concatenate(
            [
                1 / (1 + self.lam * self.w[None]),
                y[:nb] / (self.ab * (self.pb + y[:nb])),
                y[nb:] / np.concatenate([self.pa.sum(axis=-1)[..., None], self.sm1]),
            ]
        )
        for i0, i1, node in self.sums:
            node.start(_flat(-0.5 * np.log(self.u[self.first + i0 : self.first + i1])))

    def lin(self, idx: np.ndarray, logz: np.ndarray) -> tuple:
        """Linearize at the points ``idx``: ``d l = alpha + beta d log z``, each ``(B, n)``."""
        w, u, k = self.w[:, idx], self.u[:, :, idx], self.nmp
        f = logz + np.log(w) - self.l[:, idx] + self.const + np.sum(self.mult * np.log(u), 0)
        fw = 1 - w / (1 + w)
        lw = self.lam * w[None]
        rs, big_a, big_b = [1 + lw - 1 / u[:k]], [1 / u[:k]], [lw]  # MP: (1 + lam y) u = 1
        y = self.c * w[None]
        m = self.mult[k:]
        f = f + np.sum(m * (np.log1p(y) - np.log(y)), axis=0)
        fw = fw + np.sum(m * (y / (1 + y) - 1), axis=0)
        nb, ng, first = self.nb, self.ng, self.first
        # two-point psi = p a u/(1 - a u); general psi = sum_j p_j a_j u/(1 - a_j u)
        a, p = self.ab, self.pb
        ub, ug = u[k : k + nb], u[k + nb : first]
        dr, di = _resolvent(1 / ug, self.a)
        psi_g, psi2 = _sums(dr, di, self.pa, True)
        psi = np.concatenate([p * a * ub / (1 - a * ub), psi_g])
        rs.append(_wrap(np.log(psi) - np.log(y[: nb + ng])))
        big_a += [1 / (1 - a * ub), psi2 / (ug * psi_g)]
        big_b.append(-np.ones(y[: nb + ng].shape))
        for i0, i1, node in self.sums:
            lu = _flat(np.log(u[first + i0 : first + i1]))
            al, be = node.lin(idx, -0.5 * lu)
            zg = np.exp(-0.5 * lu) * node.g[:, idx]
            kap = zg / (zg - 1)
            rho = _wrap(np.log(zg - 1) - _flat(np.log(y[nb + ng + i0 : nb + ng + i1])))
            rs.append(_unflat(rho + kap * al, i1 - i0))
            big_a.append(_unflat(-0.5 * kap * (1 + be), i1 - i0))
            big_b.append(-np.ones((i1 - i0, *w.shape)))
        self.r, self.big_a, self.big_b = (np.concatenate(v) for v in (rs, big_a, big_b))
        self.dlw = dl = (1 + w) / w  # d log w / d l
        self.big_b = self.big_b * dl
        q = self.mult / self.big_a
        den = fw * dl - np.sum(q * self.big_b, axis=0)
        self.alpha = -(_wrap(f) - np.sum(q * self.r, axis=0)) / den
        self.beta = -1 / den
        return self.alpha, self.beta

    def propose(self, dlogz: Any) -> np.ndarray:
        """Newton step for a change ``dlogz`` of the input; returns its size ``(B, n)``."""
        self.dw = self.alpha + self.beta * dlogz
        self.du = -(self.r + self.big_b * self.dw[None]) / self.big_a
        size = np.abs(self.dw) * np.maximum(1, np.abs(self.dlw))  # |d l| and |d log w|
        if self.du.shape[0]:
            size = np.maximum(size, np.abs(self.du).max(axis=0))
        for i0, i1, node in self.sums:
            child = node.propose(_flat(-0.5 * self.du[self.first + i0 : self.first + i1]))
            size = np.maximum(size, _unflat(child, i1 - i0).max(axis=0))
        return size

    def apply(self, idx: np.ndarray, t: np.ndarray) -> None:
        self.l[:, idx] += t * self.dw
        self.w[:, idx] = np.expm1(self.l[:, idx])
        self.u[:, :, idx] *= np.exp(t * self.du)
        for *_, node in self.sums:
            node.apply(idx, t)


class Sum:
    r"""Sum node (input :math:`\log\zeta`): unknowns :math:`\log g`, :math:`\log\omega_i`.

    Atom terms use the symmetrized transform in closed form; product terms are child
    :class:`Product` nodes, :math:`\tilde G_i(\omega) = (1 + w_i)/\omega` with
    :math:`w_i` their unknown at :math:`z = \omega^2`.
    """

    def __init__(self, specs: list[SumSpec]) -> None:
        s0 = specs[0]
        self.na, self.n = len(s0.atoms), len(s0.atoms) + len(s0.products)
        self.a = _pad([[v for v, _ in s.atoms] for s in specs])
        self.p = _pad([[p for _, p in s.atoms] for s in specs])
        self.pa = self.p * self.a
        self.products = [Product([s.products[i] for s in specs]) for i in range(len(s0.products))]
        m1 = [np.sum(self.pa, axis=-1)] + [node.m1[:, 0] for node in self.products]
        self.m1 = np.concatenate([v.reshape(-1, len(specs)) for v in m1])[:, :, None]

    def start(self, logzeta: np.ndarray) -> None:
        zeta = np.exp(logzeta)  # large: G~(zeta) = 1/zeta + m_1/zeta^3 + ...
        self.g = (1 + self.m1.sum(axis=0) / zeta**2) / zeta
        self.om = 1 / self.g[None] + self.m1 * self.g[None]
        for node in self.products:
            node.start(2 * logzeta)

    def lin(self, idx: np.ndarray, logzeta: np.ndarray) -> tuple:
        """``d log g = alpha + beta d log zeta`` at the points ``idx``, each ``(B, n)``."""
        g, om = self.g[:, idx], self.om[:, :, idx]
        lg, lom = np.log(g), np.log(om)
        oa = om[: self.na]
        s = oa * oa
        dr, di = _resolvent(s, self.a)
        sp_, sp2 = _sums(dr, di, self.p, True)
        spa2 = _sums(dr, di, self.pa, True)[1]
        gi = oa * sp_
        rho = [_wrap(np.log(gi) - lg[None])]
        e = [-(s * sp2 + spa2) * oa / gi]
        for i, node in enumerate(self.products):
            al, be = node.lin(idx, 2 * lom[self.na + i])
            r = _wrap(node.l[:, idx] - lom[self.na + i] - lg)  # log G~ = log(1 + w) - log om
            rho.append((r + al)[None])
            e.append((2 * be - 1)[None])
        self.rho, self.e = np.concatenate(rho), np.concatenate(e)
        zeta = np.exp(logzeta)
        h = om / self.e
        big_h = np.sum(h, axis=0) + (self.n - 1) / g
        self.alpha = -(np.sum(om, axis=0) - (self.n - 1) / g - zeta - np.sum(h * self.rho, axis=0))
        self.alpha = self.alpha / big_h
        self.beta = zeta / big_h
        return self.alpha, self.beta

    def propose(self, dlogzeta: Any) -> np.ndarray:
        self.dg = self.alpha + self.beta * dlogzeta
        self.dom = (self.dg[None] - self.rho) / self.e
        size = np.maximum(np.abs(self.dg), np.abs(self.dom).max(axis=0))
        for i, node in enumerate(self.products):
            size = np.maximum(size, node.propose(2 * self.dom[self.na + i]))
        return size

    def apply(self, idx: np.ndarray, t: np.ndarray) -> None:
        self.g[:, idx] *= np.exp(t * self.dg)
        self.om[:, :, idx] *= np.exp(t * self.dom)
        for node in self.products:
            node.apply(idx, t)
