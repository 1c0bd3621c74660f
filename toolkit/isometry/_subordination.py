r"""Vectorized Newton solver for the Cauchy transform of a tree of free laws.

Internal module of :mod:`toolkit.isometry.spectra` (which documents the laws). The
solver works on a whole grid :math:`z = x + i\eta` at once (numpy arrays, no Python loop
over grid points, atoms or atom factors); every unknown is a logarithm.

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

**Continuation.** Each point starts at :math:`\eta_0 = ` ``top`` (outside the support,
where :math:`w \approx m_1/z`) and follows a geometric path of ``_LEVELS`` levels down
to its own :math:`\eta`; at each level damped Newton steps (no log-unknown moves by more
than ``_MAX_LOG_STEP``) start from the previous level's solution, which keeps every
point on the physical branch. Intermediate levels are solved to ``1e-4``, the last
one to a log step of ``1e-10``.
"""

from __future__ import annotations

import numpy as np

_LEVELS = 8
_LOOSE, _TIGHT = 1e-4, 1e-10
_LOOSE_ITERS, _TIGHT_ITERS = 30, 40
_MAX_LOG_STEP = 0.25


def levels(eta: np.ndarray, top: float, steps: int | None = None) -> np.ndarray:
    """Continuation levels (rows), from ``top`` down to ``eta`` (per point), geometric."""
    t = np.linspace(0.0, 1.0, steps or _LEVELS)[:, None]
    return np.exp((1 - t) * np.log(top) + t * np.log(np.minimum(eta, top))[None, :])


def _wrap(f: np.ndarray) -> np.ndarray:
    return f - 2j * np.pi * np.round(f.imag / (2 * np.pi))


def _resolvent(s: np.ndarray, a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Real and imaginary parts of ``1/(s[k, n] - a[k, j])``, shape ``(k, n, j)``."""
    re = s.real[:, :, None] - a[:, None, :]
    im = s.imag[:, :, None]
    inv = 1.0 / (re * re + im * im)
    return re * inv, -im * inv


def _sums(dr: np.ndarray, di: np.ndarray, weights: np.ndarray, square: bool) -> tuple:
    """``sum_j w_kj d`` (and ``sum_j w_kj d^2``) for ``d = dr + i di``: complex ``(k, n)``."""
    w = weights[:, :, None]
    one = np.matmul(dr, w)[..., 0] + 1j * np.matmul(di, w)[..., 0]
    if not square:
        return one
    two = np.matmul(dr * dr - di * di, w)[..., 0] + 2j * np.matmul(dr * di, w)[..., 0]
    return one, two


def solve(node, x: np.ndarray, eta: np.ndarray, top: float, half: bool) -> None:
    """Continuation driver: Newton steps on ``node`` (input ``log z``, or ``log sqrt z`` if
    ``half``) from ``eta = top`` down to each point's ``eta``, damped so that no log-unknown
    moves by more than ``_MAX_LOG_STEP``."""
    path = levels(eta, top)
    node.start(np.log(x + 1j * top) * (0.5 if half else 1.0))
    for j, level in enumerate(path):
        final = j == len(path) - 1
        tol, iters = (_TIGHT, _TIGHT_ITERS) if final else (_LOOSE, _LOOSE_ITERS)
        logz = np.log(x + 1j * level) * (0.5 if half else 1.0)
        active = np.arange(x.size)
        for _ in range(iters):
            node.lin(active, logz[active])
            size = node.propose(0.0)
            t = np.minimum(1.0, _MAX_LOG_STEP / np.maximum(size, 1e-300))
            node.apply(active, t)
            active = active[(size > tol) | (t < 1)]
            if active.size == 0:
                break


class Product:
    r"""Product chain node: unknowns :math:`l = \log(1+w)` and one :math:`\log u_k` per factor.

    ``mp``: ``(scale, ratio, c, mult)``; ``bern``: ``(a, p, c, mult)`` for
    :math:`(1-p)\delta_0 + p\delta_a`; ``general``: ``(values, weights, c, mult)``;
    ``sums``: ``(Sum node, m_1, c, mult)``; ``const``: :math:`\sum m\log S` of constant
    factors; ``m1``: the chain's first moment (start :math:`w = m_1/z`). A sum factor's
    :math:`u` solves :math:`\psi(u) = \zeta\tilde G(\zeta) - 1 = y`,
    :math:`\zeta = u^{-1/2}`, with :math:`\tilde G` from its node.
    """

    def __init__(self, mp, bern, general, sums, const: float, m1: float) -> None:
        self.const = const - sum(m * np.log(s) for s, _, _, m in mp)
        self.const -= sum(m * np.log(a) for a, _, _, m in bern)
        self.m1 = m1
        self.lam = np.array([lam * c for _, lam, c, _ in mp])
        self.bern = np.array([(a, p) for a, p, _, _ in bern]).reshape(-1, 2).T[:, :, None]
        width = max([int(np.count_nonzero(v)) for v, *_ in general] + [1])
        self.a, self.pa = np.zeros((len(general), width)), np.zeros((len(general), width))
        for i, (v, p, _, _) in enumerate(general):
            nz = v != 0
            self.a[i, : nz.sum()], self.pa[i, : nz.sum()] = v[nz], (p * v)[nz]
        self.sums = [s[0] for s in sums]
        self.sm1 = np.array([s[1] for s in sums])
        rest = bern + general + [s[1:] for s in sums]
        self.c = np.array([f[-2] for f in rest])[:, None]
        self.mult = np.array([f[3] for f in mp] + [f[-1] for f in rest], dtype=float)[:, None]
        self.nmp, self.nb, self.ng = len(mp), len(bern), len(general)

    def start(self, logz: np.ndarray) -> None:
        self.w = self.m1 * np.exp(-logz)
        self.l = np.log1p(self.w)  # the unknown: l = log(1 + w) = log(z G), w = expm1(l)
        y = self.c * self.w[None, :]
        nb, ng = self.nb, self.ng
        a, p = self.bern
        self.u = np.concatenate([
            1 / (1 + self.lam[:, None] * self.w[None, :]),
            y[:nb] / (a * (p + y[:nb])),
            y[nb:] / np.concatenate([self.pa.sum(axis=1), self.sm1])[:, None],
        ])
        for i, node in enumerate(self.sums):
            node.start(-0.5 * np.log(self.u[self.nmp + nb + ng + i]))

    def lin(self, idx: np.ndarray, logz: np.ndarray) -> None:
        """Linearize at the points ``idx``: ``d l = alpha + beta d log z``."""
        w, u, k = self.w[idx], self.u[:, idx], self.nmp
        f = logz + np.log(w) - self.l[idx] + self.const + np.sum(self.mult * np.log(u), axis=0)
        fw = 1 - w / (1 + w)
        lw = self.lam[:, None] * w[None, :]
        rs, big_a, big_b = [1 + lw - 1 / u[:k]], [1 / u[:k]], [lw]  # MP: (1 + lam y) u = 1
        y = self.c * w[None, :]
        m = self.mult[k:]
        f = f + np.sum(m * (np.log1p(y) - np.log(y)), axis=0)
        fw = fw + np.sum(m * (y / (1 + y) - 1), axis=0)
        nb, ng = self.nb, self.ng
        # two-point psi = p a u/(1 - a u); general psi = sum_j p_j a_j u/(1 - a_j u)
        a, p = self.bern
        ub, ug = u[k : k + nb], u[k + nb : k + nb + ng]
        dr, di = _resolvent(1 / ug, self.a)
        psi_g, psi2 = _sums(dr, di, self.pa, True)
        psi = np.concatenate([p * a * ub / (1 - a * ub), psi_g])
        rs.append(_wrap(np.log(psi) - np.log(y[: nb + ng])))
        big_a += [1 / (1 - a * ub), psi2 / (ug * psi_g)]
        big_b.append(-np.ones((nb + ng, w.size)))
        for i, node in enumerate(self.sums):
            lu = np.log(u[k + nb + ng + i])
            al, be = node.lin(idx, -0.5 * lu)
            zg = np.exp(-0.5 * lu) * node.g[idx]
            kap = zg / (zg - 1)
            rho = _wrap(np.log(zg - 1) - np.log(y[nb + ng + i]))
            rs.append((rho + kap * al)[None])
            big_a.append((-0.5 * kap * (1 + be))[None])
            big_b.append(-np.ones((1, w.size)))
        self.r, self.big_a, self.big_b = (np.concatenate(v) for v in (rs, big_a, big_b))
        self.dlw = dl = (1 + w) / w  # d log w / d l
        self.big_b = self.big_b * dl
        q = self.mult / self.big_a
        den = fw * dl - np.sum(q * self.big_b, axis=0)
        self.alpha = -(_wrap(f) - np.sum(q * self.r, axis=0)) / den
        self.beta = -1 / den
        return self.alpha, self.beta

    def propose(self, dlogz) -> np.ndarray:
        self.dw = self.alpha + self.beta * dlogz
        self.du = -(self.r + self.big_b * self.dw[None, :]) / self.big_a
        size = np.abs(self.dw) * np.maximum(1, np.abs(self.dlw))  # |d l| and |d log w|
        if self.du.shape[0]:
            size = np.maximum(size, np.abs(self.du).max(axis=0))
        first = self.nmp + self.nb + self.ng
        for i, node in enumerate(self.sums):
            size = np.maximum(size, node.propose(-0.5 * self.du[first + i]))
        return size

    def apply(self, idx: np.ndarray, t: np.ndarray) -> None:
        self.l[idx] += t * self.dw
        self.w[idx] = np.expm1(self.l[idx])
        self.u[:, idx] *= np.exp(t * self.du)
        for node in self.sums:
            node.apply(idx, t)


class Sum:
    r"""Sum node (input :math:`\log\zeta`): unknowns :math:`\log g`, :math:`\log\omega_i`.

    ``atoms``: atom laws (symmetrized transform in closed form); ``products``:
    :class:`Product` nodes, :math:`\tilde G_i(\omega) = (1 + w_i)/\omega` with
    :math:`w_i` their unknown at :math:`z = \omega^2`.
    """

    def __init__(self, atoms: list, products: list) -> None:
        self.m1 = np.array([float(t.weights @ t.values) for t in atoms] + [n.m1 for n in products])
        width = max([t.values.size for t in atoms] + [1])
        self.a, self.p = np.zeros((len(atoms), width)), np.zeros((len(atoms), width))
        for i, t in enumerate(atoms):
            self.a[i, : t.values.size], self.p[i, : t.values.size] = t.values, t.weights
        self.pa = self.p * self.a
        self.products, self.na = products, len(atoms)
        self.n = len(atoms) + len(products)

    def start(self, logzeta: np.ndarray) -> None:
        zeta = np.exp(logzeta)  # large: G~(zeta) = 1/zeta + m_1/zeta^3 + ...
        self.g = (1 + self.m1.sum() / zeta**2) / zeta
        self.om = 1 / self.g[None, :] + self.m1[:, None] * self.g[None, :]
        for node in self.products:
            node.start(2 * logzeta)

    def lin(self, idx: np.ndarray, logzeta: np.ndarray) -> tuple:
        """``d log g = alpha + beta d log zeta`` at the points ``idx``."""
        g, om = self.g[idx], self.om[:, idx]
        lg, lom = np.log(g), np.log(om)
        oa = om[: self.na]
        s = oa * oa
        dr, di = _resolvent(s, self.a)
        sp_, sp2 = _sums(dr, di, self.p, True)
        spa2 = _sums(dr, di, self.pa, True)[1]
        gi = oa * sp_
        rho = [_wrap(np.log(gi) - lg[None, :])]
        e = [-(s * sp2 + spa2) * oa / gi]
        for i, node in enumerate(self.products):
            al, be = node.lin(idx, 2 * lom[self.na + i])
            r = _wrap(node.l[idx] - lom[self.na + i] - lg)  # log G~ = log(1 + w) - log omega
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

    def propose(self, dlogzeta) -> np.ndarray:
        self.dg = self.alpha + self.beta * dlogzeta
        self.dom = (self.dg[None, :] - self.rho) / self.e
        size = np.maximum(np.abs(self.dg), np.abs(self.dom).max(axis=0))
        for i, node in enumerate(self.products):
            size = np.maximum(size, node.propose(2 * self.dom[self.na + i]))
        return size

    def apply(self, idx: np.ndarray, t: np.ndarray) -> None:
        self.g[idx] *= np.exp(t * self.dg)
        self.om[:, idx] *= np.exp(t * self.dom)
        for node in self.products:
            node.apply(idx, t)
