r"""Finite-batch structure: standardized units and the batch-mean subspace.

Batch norm with the statistics of a batch of :math:`B` samples couples the samples. Two
consequences matter for the Jacobian of a deep network, both of relative size
:math:`O(1/B)` per layer, and both compound with depth.

**Standardized units.** Every unit of batch norm's output is standardized exactly over the
batch: its :math:`B` values are :math:`\gamma\hat y + \beta` with :math:`\hat y` on the
sphere :math:`\sum_b \hat y_b = 0`, :math:`\sum_b \hat y_b^2 = B` (uniform on it for a
Gaussian input), not :math:`B` independent Gaussians. The element-wise map after it sees
that law: two samples of a unit have correlation :math:`\rho = -1/(B-1)`, and the batch
variance of :math:`f(\hat y)` is :math:`(B-1)/B\,(\mathbb E f(\hat y_1)^2 - \mathbb E
f(\hat y_1) f(\hat y_2))`, which is what the next batch norm divides by (for ReLU at
:math:`B = 16`: 0.3348 of the unit variance, not the 0.3195 of independent samples).
:class:`~.stats.ForwardStats` keeps the variance as an unbiased batch estimate sees it,
:math:`v = \mathbb E f(\hat y_1)^2 - \mathbb E f(\hat y_1) f(\hat y_2)`.
:func:`standardized_law` integrates over the joint law of two coordinates of the sphere
(for positively homogeneous maps, the PReLU family, closed forms replace it).

**The batch-mean subspace.** Split the perturbations of a layer into the batch-mean part
:math:`S` (the same shift for every sample, :math:`1/B` of the dimensions) and the
batch-mean-free part :math:`S^\perp`. Batch norm with batch statistics annihilates
:math:`S` (it is invariant to a common shift), weight layers act on every sample alike and
keep both parts, and the skip connection passes both. In :math:`(S, S^\perp)` coordinates
every block is block-triangular (:class:`BatchSplit`),

.. math:: J = \begin{pmatrix} K_S & A \\ 0 & M \end{pmatrix},

with :math:`K_S = 0` for a block with such a batch norm, :math:`K_S = I` for a residual
block around one, and a chain of them is :math:`\begin{pmatrix} K & T \\ 0 &
M_L\cdots M_1\end{pmatrix}`, :math:`T = \sum_l K_{S,L}\cdots K_{S,l+1} A_l M_{l-1}\cdots M_1`.
On :math:`S^\perp` batch norm has rank :math:`B - 2` of :math:`B - 1` dimensions (not
:math:`B - 2` of :math:`B`), so there each block acts with :math:`B/(B-1)` of its isotropic
moments, and the batch mean, which a residual chain carries unamplified, does not share in
the growth. The end-to-end spectrum is the mixture

.. math:: \phi\big((JJ^T)^k\big) = \frac1B (\kappa + \tau)^k + \frac{B-1}{B}\,
          \phi_\perp\big((M M^T)^k\big),
          \qquad \tau = (B-1)\,\frac{\|T\|_F^2}{\dim S^\perp},

where :math:`\phi_\perp` composes the blocks' :math:`M_l` freely (S-transforms multiply),
:math:`\kappa = \phi(KK^T)` (1 for residual chains, 0 once a batch norm is passed), and the
batch-mean block is taken as an atom (exact for :math:`m_1`). :math:`A_l` is the energy the
element-wise map after batch norm sends back to the batch mean (the ``leak``: its
derivative is not constant over the batch; 1.1 % of the branch's energy for ReLU at
:math:`B = 16`). The block-by-block free product, which treats every block as isotropic in
the batch, misses a factor close to :math:`\prod_l (1 + B/(B-1)\,\kappa_l)/(1 + \kappa_l)`
for residual branches of :math:`m_1` :math:`\kappa_l`: +9 % for residual ReLU with batch
norm at depth 16 and :math:`B = 16` (and the standardized units take 6 % off again: 17.35
against 16.95 in all). :class:`ChainMoments` composes a chain this way.

**Batch norm's projection and the next map.** The projection removes the unit's own
direction :math:`\hat y`; a saturating map has a small :math:`f'` exactly where
:math:`|\hat y|` is large, so less is removed than from a projection in general position
(:attr:`BatchLaw.coupling`).

Not modelled: finite width. On sampled residual ReLU networks with batch norm
(:math:`B = 16`, depth 16) every block's own :math:`\phi(J_lJ_l^T)` matches the prediction
to within 0.5 % even at width 64, but the end-to-end :math:`\phi` lies above it by about
11 %, 7 %, 4 % and 1 % at widths 64, 128, 256 and 1024 (at width 64: 9 %, 11 % and 16 %
for :math:`B` = 8, 16 and 32, so mostly a :math:`1/n` effect, not :math:`B/n`; residual
networks with batch norm and no activation show no gap). The gap lies between the
blocks. At width :math:`n` the perturbation :math:`dx` that the residual stream carries
becomes correlated with the stream :math:`x` itself, and the next branch :math:`J_b` adds a
coherent term :math:`2\langle dx, J_b\,dx\rangle` that a free product sets to zero. Given
the stream and the perturbation (``B x n``), the block's fresh weights (rows
:math:`w \sim N(0, g^2/n\,I)`) give exactly, by Stein's lemma,

.. math:: \mathbb E_W \langle dx, J_b\,dx\rangle = g^2 n \sum_b m_b\,
          \mathbb E_h\big[\mathrm{tr}\big(\nabla^2 f_b(h)\,H\big)\big],
          \qquad m = \tfrac1n\,dx\,\mathbf 1, \quad H = \tfrac1n\,dx\,x^T,

with :math:`h \sim N(0, g^2 x x^T/n)` and :math:`f` the map of one unit's :math:`B` samples,
:math:`h \mapsto \mathrm{relu}(\mathrm{BN}(h))`. Its two factors, the perturbation's mean
over the units and its cross-Gram with the stream, are each :math:`O(n^{-1/2})`; their
correlation is zero at the input and builds up along the stream, so the term grows from 0
at the first block to about :math:`1/n` per block after a few blocks (the identity agrees
with the sampled term within its Monte Carlo error). The branch's own energy on the
propagated perturbation falls a little below its isotropic value (the part of :math:`dx` in the row
space of :math:`x` is amplified without the factor :math:`(B-1)/(B-3)` of
:math:`\mathbb E[1/\chi^2_{B-1}]`). The spread of the batch's Gram matrix (relative variance
:math:`\delta \approx B/n` at the input, growing along the stream), which raises batch
norm's mean :math:`1/\hat\sigma^2` by :math:`2\delta/(B+1)`, and a weight row's norm, which
enters both the row and :math:`\hat\sigma` (:math:`-2/n`), change each block's own
:math:`\phi`, which matches; they do not explain the gap. A first-order correction needs the
second moments of :math:`(m, H)` carried along the stream; it is not implemented.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.special import roots_jacobi

from . import free
from ._series import series_mul

__all__ = [
    "BatchLaw",
    "BatchSplit",
    "ChainMoments",
    "chain_split",
    "pair_correlation",
    "standardized_law",
]


def pair_correlation(batch: int) -> float:
    """Correlation of two samples of a unit standardized over ``batch`` samples, -1/(B-1)."""
    return -1.0 / (batch - 1)


@dataclass(frozen=True)
class BatchLaw:
    r"""Expectations of an element-wise map :math:`f` of a standardized unit :math:`x = \gamma
    \hat y + \beta` (see the module docstring).

    Attributes
    ----------
    mean, second, pair : float
        :math:`\mathbb E f(x_1)`, :math:`\mathbb E f(x_1)^2`, :math:`\mathbb E f(x_1) f(x_2)`.
    derivative : tuple of float
        :math:`\mathbb E f'(x_1)^{2k}`, ``k = 1..order``.
    coupling : float
        :math:`r = ((B-1)\mathbb E f'^2 - \mathbb E \hat y^2 f'^2)/((B-2)\mathbb E f'^2)`:
        batch norm's projection removes the direction :math:`\hat y` of the unit, where
        :math:`f'` is small for a saturating map, so :math:`\mathrm{tr}(D P D)` is :math:`r`
        times what a projection in general position would leave (1 for the PReLU family,
        whose :math:`f'^2` does not depend on :math:`|\hat y|`).
    leak : float
        The fraction of the Jacobian's energy that lands on the batch-mean direction when the
        perturbation is batch norm's (isotropic in the range of its projection).
    """

    mean: float
    second: float
    pair: float
    derivative: tuple[float, ...]
    leak: float
    coupling: float = 1.0

    def coupled(self) -> list[float]:
        """The derivative moments as batch norm's projection leaves them: ``r**k`` times
        :attr:`derivative` (exact for ``k = 1``)."""
        return [v * self.coupling**k for k, v in enumerate(self.derivative, start=1)]

    @property
    def variance(self) -> float:
        """The unbiased batch variance of :math:`f(x)`: ``second - pair``."""
        return self.second - self.pair


def leak_fraction(batch: int, d2: float, dd: float, yd2: float, ydyd: float) -> float:
    r"""Energy fraction on the batch mean of :math:`D z`, :math:`z` isotropic in the range of
    :math:`P = I - \mathbf 1\mathbf 1^T/B - \hat y\hat y^T/B`, :math:`D = \mathrm{diag}(f')`.

    From :math:`\mathbb E f'^2_1`, :math:`\mathbb E f'_1f'_2`, :math:`\mathbb E \hat y_1^2
    f'^2_1` and :math:`\mathbb E \hat y_1 f'_1 \hat y_2 f'_2`: the batch-mean energy is
    :math:`\|P f'\|^2/B`, the total :math:`\mathrm{tr}(D^2P)`, per unit of :math:`z`'s variance.
    """
    B = batch
    sum_d2 = B * d2
    sum_d_sq = B * d2 + B * (B - 1) * dd
    sum_yd_sq = B * yd2 + B * (B - 1) * ydyd
    on_mean = sum_d2 - sum_d_sq / B - sum_yd_sq / B
    total = B * ((1 - 1 / B) * sum_d2 - B * yd2 / B)
    return max(on_mean, 0.0) / total if total > 0 else 0.0


@functools.lru_cache(maxsize=64)
def _pair_rule(batch: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r"""Nodes :math:`(\hat y_1, \hat y_2)` and weights for two coordinates of a standardized batch.

    :math:`\hat y = \sqrt B\,u`, :math:`u` uniform on the unit sphere of the
    :math:`(B-1)`-dimensional space orthogonal to :math:`\mathbf 1`. In an orthonormal basis
    of that space two coordinates :math:`(t_1, t_2)` of :math:`u` have the density
    :math:`\propto (1 - t_1^2 - t_2^2)^{(B-5)/2}` on the disc; in polar coordinates
    :math:`s = r^2` is Beta(1, (B-3)/2) (Gauss-Jacobi) and the angle is uniform (panels of
    Gauss-Legendre, with edges on the axes :math:`\hat y_1 = 0` and :math:`\hat y_2 = 0`).
    """
    B = batch
    a = -1.0 / math.sqrt(B * (B - 1))  # <P e_2, P e_1> / |P e_1|
    b = math.sqrt((B - 2) / (B - 1))
    if B == 3:  # the pair lies on the circle
        s, ws = np.array([1.0]), np.array([1.0])
    else:
        x, w = roots_jacobi(48, (B - 5) / 2, 0.0)
        s, ws = (1 + x) / 2, w / w.sum()
    theta0 = math.atan2(-a, b) % math.pi
    # panel edges on the axes y_1 = 0 and y_2 = 0 (kinks at 0 of the PReLU family)
    axes = [0.0, math.pi / 2, math.pi, 1.5 * math.pi, theta0, theta0 + math.pi]
    edges = np.concatenate([np.unique(np.array(axes)), [2 * math.pi]])
    fine = np.concatenate([np.linspace(lo, hi, 5)[:-1] for lo, hi in itertools.pairwise(edges)])
    fine = np.concatenate([fine, [2 * math.pi]])
    gx, gw = np.polynomial.legendre.leggauss(16)
    mid, half = (fine[1:] + fine[:-1]) / 2, (fine[1:] - fine[:-1]) / 2
    theta = (mid[:, None] + half[:, None] * gx[None, :]).ravel()
    wt = (half[:, None] * gw[None, :]).ravel() / (2 * math.pi)
    r = np.sqrt(s)[:, None]
    t1, t2 = r * np.cos(theta)[None, :], r * np.sin(theta)[None, :]
    y1 = math.sqrt(B - 1) * t1
    y2 = math.sqrt(B) * (a * t1 + b * t2)
    return y1.ravel(), y2.ravel(), (ws[:, None] * wt[None, :]).ravel()


def standardized_law(
    f: Callable[[np.ndarray], np.ndarray],
    fprime: Callable[[np.ndarray], np.ndarray],
    batch: int,
    gamma: float,
    beta: float,
    order: int,
) -> BatchLaw:
    r"""The :class:`BatchLaw` of ``f`` at :math:`x = \gamma\hat y + \beta`, by quadrature.

    Parameters
    ----------
    f, fprime : callable
        The map and its derivative (vectorized over numpy arrays).
    batch : int
        :math:`B \ge 3`.
    gamma, beta : float
        The affine map after the standardization.
    order : int
        Moments of :math:`f'^2` to return.

    Returns
    -------
    BatchLaw

    Examples
    --------
    >>> relu = standardized_law(lambda h: np.maximum(h, 0), lambda h: 1.0 * (h > 0), 16, 1, 0, 1)
    >>> round(relu.second, 10), round(relu.variance * 15 / 16, 4)  # batch variance 0.3348
    (0.5, 0.3348)
    """
    y1, y2, w = _pair_rule(batch)
    x1, x2 = gamma * y1 + beta, gamma * y2 + beta
    f1, f2, d1, d2 = f(x1), f(x2), fprime(x1), fprime(x2)
    dsq = d1 * d1
    derivative = tuple(float(np.sum(w * dsq**k)) for k in range(1, order + 1))
    yd2 = float(np.sum(w * y1 * y1 * dsq))
    leak = leak_fraction(
        batch, derivative[0], float(np.sum(w * d1 * d2)), yd2, float(np.sum(w * y1 * d1 * y2 * d2))
    )
    d1sq = derivative[0]
    coupling = ((batch - 1) * d1sq - yd2) / ((batch - 2) * d1sq) if d1sq > 0 else 1.0
    return BatchLaw(
        float(np.sum(w * f1)),
        float(np.sum(w * f1 * f1)),
        float(np.sum(w * f1 * f2)),
        derivative,
        leak,
        coupling,
    )


@dataclass(frozen=True)
class BatchSplit:
    r"""A block as :math:`\begin{pmatrix} K_S & A \\ 0 & M\end{pmatrix}` in the (batch mean,
    batch-mean-free) split: see the module docstring.

    Attributes
    ----------
    batch : int or None
        :math:`B`; None for a block that acts on every sample alike (a weight layer, a
        scale): it only continues a split that a batch-statistics block started.
    perp : list of float
        The moments of :math:`MM^T` on the batch-mean-free part.
    alpha : float
        :math:`\|A\|_F^2` per batch-mean-free dimension (the leak to the batch mean).
    keep : float
        :math:`\phi(K_SK_S^T)`: 1 for a residual block (its skip connection), 0 where batch
        norm annihilates the batch mean, :math:`m_1` for a weight layer.
    """

    batch: int | None
    perp: list[float]
    alpha: float
    keep: float


class _Run:
    """A chain of split blocks: the batch-mean-free moments (S-coefficients), the energy
    ``keep`` the batch mean keeps and the energy ``tau`` that leaked onto it."""

    def __init__(self, order: int) -> None:
        self.order = order
        self.batch: int | None = None
        self.coeffs: list[Any] | None = None
        self.p1, self.tau, self.keep = 1.0, 0.0, 1.0

    def add(self, split: BatchSplit) -> None:
        if split.batch is not None:
            self.batch = split.batch
        # T -> K_S T + A M_prev: the leak of this block meets what the chain made of S-perp
        leak = (self.batch - 1) * split.alpha * self.p1 if self.batch is not None else 0.0
        self.tau = split.keep * self.tau + leak
        self.keep *= split.keep
        coeffs = free._s_coeffs(list(split.perp[: self.order]))
        if self.coeffs is not None:
            coeffs = series_mul(self.coeffs, coeffs, self.order)
        self.coeffs = coeffs
        self.p1 = float(free._moments_from_s(coeffs, 1)[0])

    def perp(self) -> list[Any]:
        assert self.coeffs is not None
        return free._moments_from_s(self.coeffs, self.order)

    def mixture(self) -> list[Any]:
        """Moments of the whole chain: the batch mean (1/B of the dimensions, taken as an
        atom at ``keep + tau``) and the batch-mean-free part."""
        B = self.batch
        assert B is not None
        s_part = self.keep + self.tau
        return [s_part**k / B + (B - 1) / B * p for k, p in enumerate(self.perp(), start=1)]

    def as_split(self) -> BatchSplit:
        alpha = self.tau / (self.batch - 1) if self.batch is not None else 0.0
        return BatchSplit(self.batch, [float(v) for v in self.perp()], alpha, self.keep)


def chain_split(splits: Sequence[BatchSplit], order: int) -> BatchSplit | None:
    """The split of the chain ``splits[-1] ... splits[0]`` (None if two batch sizes meet)."""
    batches = {sp.batch for sp in splits if sp.batch is not None}
    if len(batches) > 1:
        return None
    run = _Run(order)
    for sp in splits:
        run.add(sp)
    return run.as_split()


class ChainMoments:
    """Moments of a chain of blocks ``J_L ... J_1``, added first to last (see the module docstring).

    A run of consecutive blocks with a :class:`BatchSplit` that contains one with a batch
    size composes in the split; every other block, and every run as a whole, composes freely
    (S-transforms multiply).

    Examples
    --------
    >>> chain = ChainMoments(order=2)
    >>> chain.add([2.0, 6.0])                                  # free: m1 multiply
    >>> chain.add([1.0, 1.0], split=BatchSplit(4, [2.0, 4.0], 0.0, 1.0))
    >>> [round(v, 6) for v in chain.moments()][0]              # 2 * (1/4 + 3/4 * 2)
    3.5
    """

    def __init__(self, order: int) -> None:
        self.order = order
        self._done: list[Any] | None = None  # S-coefficients of what came before
        self._run: _Run | None = None
        # blocks acting on every sample alike, before any batch statistics: they join the
        # run that a batch-statistics block starts, or compose freely
        self._pending: list[tuple[Sequence[Any], Any, BatchSplit]] = []

    def _mul(self, coeffs: list[Any], ratio: Any) -> None:
        if self._done is None:
            self._done = coeffs
        else:
            scaled = [c * ratio**j for j, c in enumerate(self._done)]
            self._done = series_mul(scaled, coeffs, self.order)

    def _flush(self) -> None:
        for moments, ratio, _ in self._pending:
            self._mul(free._s_coeffs(list(moments[: self.order])), ratio)
        self._pending = []

    def _close(self) -> None:
        self._flush()
        if self._run is not None:
            mixed = self._run.mixture()
            self._run = None
            self._mul(free._s_coeffs(mixed), 1)

    def add(self, moments: Sequence[Any], ratio: Any = 1, split: BatchSplit | None = None) -> None:
        """Append a block: its isotropic ``moments``, width ``ratio`` and batch ``split``."""
        if split is None:
            self._close()
            self._mul(free._s_coeffs(list(moments[: self.order])), ratio)
        elif split.batch is None:
            if self._run is not None:
                self._run.add(split)
            else:
                self._pending.append((moments, ratio, split))
        else:
            if self._run is not None and split.batch != self._run.batch:
                self._close()
            if self._run is None:
                self._run = _Run(self.order)
                for *_, neutral in self._pending:
                    self._run.add(neutral)
                self._pending = []
            self._run.add(split)

    def moments(self) -> list[Any]:
        """The moments of the chain so far."""
        done, pending = self._done, self._pending
        for moments, ratio, _ in pending:
            coeffs = free._s_coeffs(list(moments[: self.order]))
            if done is None:
                done = coeffs
            else:
                done = series_mul([c * ratio**j for j, c in enumerate(done)], coeffs, self.order)
        if self._run is None:
            if done is None:
                raise ValueError("the chain needs at least one block")
            return free._moments_from_s(done, self.order)
        mixed = self._run.mixture()
        if done is None:
            return mixed
        total = series_mul(done, free._s_coeffs(mixed), self.order)
        return free._moments_from_s(total, self.order)
