r"""Normalization layers: :class:`BatchNorm` and :class:`SecondMomentNorm`.

Chen et al. (2020, Sec. 5.3) treat a normalization layer in the large-batch limit:
the statistics are constants, so the Jacobian is a scalar multiple of the identity,

.. math:: J \approx \frac{\gamma}{\sqrt{\sigma^2 + \epsilon}}\, I, \qquad
          m_k = \Big(\frac{\gamma^2}{\sigma^2+\epsilon}\Big)^k, \qquad \mathrm{Var} = 0,

and the output second moment is :math:`\gamma^2\sigma^2/(\sigma^2+\epsilon) + \beta^2`.
The terms from differentiating the batch statistics (a projection removing the
mean and the radial direction, relative size :math:`O(1/\text{batch})`) are
dropped. Batch norm divides by the per-unit variance :math:`\sigma^2 = q - c`, with ``c``
the squared per-unit mean of :class:`~.stats.ForwardStats` (a mean that a residual ReLU
stream carries into the next layer survives a zero-mean weight layer as ``c``); it equals
``q`` for zero-mean inputs. Second-moment normalization divides unit :math:`j` by its own
second moment :math:`\sigma^2 + \mu_j^2`. Either way the preceding block's scale is
cancelled: a ``Serial([Linear(gain=g), BatchNorm()])`` has :math:`m_1 = 1` for every ``g``.

With a finite ``batch`` :math:`B` (batch statistics, as in training), the per-unit batch
variance of a Gaussian input is :math:`\sigma^2\chi^2_{B-1}/B` and the Jacobian of the batch
is :math:`(\gamma/\hat\sigma_j) P_j`, :math:`P_j` a projection of rank :math:`B - 2` (it
removes the batch mean and the normalized input). Normalized per sample, its moments are

.. math:: m_k = \frac{B-2}{B}\,\mathbb E\Big[\Big(\frac{\gamma^2 B}{\sigma^2
          \chi^2_{B-1}}\Big)^k\Big] = \frac{B-2}{B}\,\frac{(\gamma^2B/\sigma^2)^k}
          {\prod_{i=1}^k (B-1-2i)} \quad (\epsilon = 0),

so :math:`m_1 = \gamma^2 (B-2)/((B-3)\sigma^2)`: a few percent above the large-batch value
at :math:`B = 16`, which a deep residual network compounds. Here :math:`\sigma^2` is the
per-unit variance as an unbiased batch estimate sees it (:class:`~.stats.ForwardStats`); the
output's biased batch variance is :math:`\gamma^2` exactly, so its unbiased one is
:math:`\gamma^2 B/(B-1)`, and every unit is standardized over the batch
(``standardized_batch``), which the next element-wise map sees (:mod:`.batch`). Batch
statistics also make the Jacobian annihilate a common shift of the batch; in a residual
network that splits the spectrum (:mod:`.batch`).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import sympy as sp
from scipy import stats as _scipy_stats

from ..._checks import check_int, check_positive, check_real, is_symbolic
from ._series import is_exact, num
from .batch import BatchSplit
from .blocks import Block
from .spectra import AtomLaw
from .stats import ForwardStats, is_zero, over_unit_means

__all__ = ["BatchNorm", "SecondMomentNorm"]


def _sqrt(x: Any, exact: bool) -> Any:
    return sp.sqrt(x) if exact else math.sqrt(x)


def _scaling_split(block: Block, order: int, s: ForwardStats) -> BatchSplit | None:
    """A per-unit scaling with constant statistics acts on every sample alike."""
    try:
        m = [float(v) for v in block._moments_at(order, s)]
    except TypeError:
        return None
    return BatchSplit(None, m, 0.0, m[0])


class SecondMomentNorm(Block):
    r"""Second-moment normalization :math:`y = \gamma x/\sqrt{\mathbb E[x^2] + \epsilon}`.

    Chen et al. 2020 propose it as a cheaper batch norm (no centring). Moments
    :math:`(\gamma^2/(q+\epsilon))^k`; ``q -> gamma^2 q/(q + eps)``. Unit :math:`j` is divided
    by its own second moment; when the per-unit means differ (``c > mean**2``), the moments
    and output statistics are averages over the units (Gauss-Hermite, numeric).

    Parameters
    ----------
    gamma : number or sympy expression
        The output scale, non-zero.
    eps : number or sympy expression
        Added to the second moment, ``>= 0``.

    Examples
    --------
    >>> import sympy as sp
    >>> q = sp.Symbol("q", positive=True)
    >>> SecondMomentNorm().moments(q=q)
    Moments(m1=1/q, m2=q**(-2), variance=0)
    """

    def __init__(self, gamma: Any = 1, eps: Any = 0) -> None:
        check_real("gamma", gamma, symbolic=True)
        self.gamma = gamma
        if not is_symbolic(gamma) and float(gamma) == 0:
            raise ValueError(f"gamma must be non-zero, got gamma={gamma!r}")
        check_positive("eps", eps, allow_zero=True, symbolic=True)
        self.eps = eps

    def _params(self) -> list[Any]:
        return [self.gamma, self.eps]

    def _gain2(self, q: Any) -> tuple[bool, Any]:
        exact = is_exact([*self._params(), q])
        g, e, qq = num(self.gamma, exact), num(self.eps, exact), num(q, exact)
        return exact, g**2 / (qq + e)

    def _jacobian_moments(self, order: int, q: Any) -> list[Any]:
        _, r = self._gain2(q)
        return [r**k for k in range(1, order + 1)]

    def _propagate_q(self, q: Any) -> Any:
        exact, r = self._gain2(q)
        return r * num(q, exact)

    def _per_unit(self, s: ForwardStats) -> tuple[float, float, float]:
        g2, e, v = float(self.gamma) ** 2, float(self.eps), float(s.unit_variance)
        return g2, e, v

    def _moments_at(self, order: int, s: ForwardStats) -> list[Any]:
        if s.uniform:  # every unit's second moment is q
            return self._jacobian_moments(order, s.q)
        g2, e, v = self._per_unit(s)
        return [
            over_unit_means(lambda mu, k=k: (g2 / (v + mu**2 + e)) ** k, s)
            for k in range(1, order + 1)
        ]

    def _forward(self, s: ForwardStats) -> ForwardStats:
        if s.uniform:
            exact, r = self._gain2(s.q)
            if s.mean_free:
                return ForwardStats(r * num(s.q, exact))
            g, e = num(self.gamma, exact), num(self.eps, exact)
            root = _sqrt(num(s.q, exact) + e, exact)
            return ForwardStats(r * num(s.q, exact), r * num(s.c, exact), g * s.mean / root)
        g2, e, v = self._per_unit(s)
        g = float(self.gamma)
        return ForwardStats(
            over_unit_means(lambda mu: g2 * (v + mu**2) / (v + mu**2 + e), s),
            over_unit_means(lambda mu: g2 * mu**2 / (v + mu**2 + e), s),
            over_unit_means(lambda mu: g * mu / np.sqrt(v + mu**2 + e), s),
        )

    def _spectral_law(self, q: float) -> Any:
        return AtomLaw([float(self._gain2(q)[1])], [1.0])

    def _law(self, s: ForwardStats) -> Any:
        if s.uniform:
            return self._spectral_law(float(s.q))
        g2, e, v = self._per_unit(s)
        # 64 quantiles of the per-unit mean
        u = _scipy_stats.norm.ppf((np.arange(64) + 0.5) / 64)
        gains = g2 / (v + (float(s.mean) + math.sqrt(float(s.spread)) * u) ** 2 + e)
        return AtomLaw(gains, np.full(64, 1 / 64))

    def _batch_split(self, order: int, s: ForwardStats) -> BatchSplit | None:
        return _scaling_split(self, order, s)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(gamma={self.gamma!r}, eps={self.eps!r})"


class BatchNorm(SecondMomentNorm):
    r"""Batch normalization (training mode): see the module docstring.

    :math:`m_k = (\gamma^2/(q-c+\epsilon))^k`, with ``q - c`` the input's per-unit variance
    (``q`` for a zero-mean input); ``q -> gamma^2 (q-c)/(q-c + eps) + beta^2``, and every unit
    of the output has mean ``beta``. With a finite ``batch`` the moments are those of the
    batch statistics (module docstring).

    Parameters
    ----------
    gamma : number or sympy expression
        The affine weight, non-zero.
    beta : number or sympy expression
        The affine bias (the mean of every output unit).
    eps : number or sympy expression
        Added to the variance, ``>= 0``.
    batch : int, optional
        The batch size :math:`B \ge 3` of the batch statistics; None (default) is the
        large-batch limit.

    Examples
    --------
    >>> from toolkit.isometry import Linear, Serial
    >>> Serial([Linear(64, 64, gain=3), BatchNorm()]).moments()
    Moments(m1=1, m2=2, variance=1)
    >>> BatchNorm(batch=16).moments(q=1)       # (B-2)/(B-3) and its spread over units
    Moments(m1=14/13, m2=224/143, variance=756/1859)
    """

    def __init__(self, gamma: Any = 1, beta: Any = 0, eps: Any = 0, batch: Any = None) -> None:
        super().__init__(gamma, eps)
        check_real("beta", beta, symbolic=True)
        self.beta = beta
        self.batch = None if batch is None else check_int("batch", batch, 3)

    def _variance(self, s: ForwardStats) -> Any:
        v = s.unit_variance
        if is_zero(v) and is_zero(self.eps):
            raise ValueError(
                f"BatchNorm: the input has zero variance across samples (q = c = {s.q!r}) "
                "and eps = 0: nothing to normalize by"
            )
        return v

    def _batch_factor(self, k: int, v: Any, exact: bool) -> Any:
        r""":math:`E[(\gamma^2/(\hat\sigma^2+\epsilon))^k]` times the rank fraction (B-2)/B."""
        B = self.batch
        assert B is not None
        if B - 1 <= 2 * k:
            raise ValueError(
                f"BatchNorm(batch={B}): moment {k} of the batch Jacobian is infinite (the "
                f"inverse chi-square with {B - 1} degrees of freedom needs batch > {2 * k + 1})"
            )
        g2 = num(self.gamma, exact) ** 2
        if is_zero(self.eps):
            denom = 1
            for i in range(1, k + 1):
                denom *= B - 1 - 2 * i
            frac = num(sp.Rational(B - 2, B), exact)
            return frac * (g2 * B / num(v, exact)) ** k / num(denom, exact)
        vf, ef = float(v), float(self.eps)
        mean = _scipy_stats.chi2(B - 1).expect(lambda t: (1 / (vf * t / B + ef)) ** k)
        return (B - 2) / B * float(g2) ** k * mean

    def _moments_at(self, order: int, s: ForwardStats) -> list[Any]:
        v = self._variance(s)
        if self.batch is None:
            return self._jacobian_moments(order, v)
        exact = is_exact([*self._params(), v])
        return [self._batch_factor(k, v, exact) for k in range(1, order + 1)]

    def _jacobian_moments(self, order: int, q: Any) -> list[Any]:
        if self.batch is None:
            return super()._jacobian_moments(order, q)
        return self._moments_at(order, ForwardStats(q))

    def _propagate_q(self, q: Any) -> Any:
        return self._forward(ForwardStats(q)).q

    def _forward(self, s: ForwardStats) -> ForwardStats:
        v = self._variance(s)
        exact = is_exact([*self._params(), self.beta, v])
        beta = num(self.beta, exact)
        standardized = None
        if self.batch is not None and not is_zero(self.eps):
            B, vf, ef = self.batch, float(v), float(self.eps)
            kept = _scipy_stats.chi2(B - 1).expect(lambda t: t / (t + ef * B / vf))
            scaled = float(self.gamma) ** 2 * kept * B / (B - 1)
        elif self.batch is not None:
            # the biased batch variance is gamma^2 exactly: the unbiased one B/(B-1) of it
            B = self.batch
            scaled = num(self.gamma, exact) ** 2 * num(sp.Rational(B, B - 1), exact)
            standardized = B
        else:
            scaled = SecondMomentNorm._propagate_q(self, v)
        if is_zero(self.beta):
            return ForwardStats(scaled, standardized_batch=standardized)
        return ForwardStats(scaled + beta**2, beta**2, beta, standardized)

    def _batch_split(self, order: int, s: ForwardStats) -> BatchSplit | None:
        if self.batch is None:  # constant statistics: a scaling of every sample alike
            return _scaling_split(self, order, s)
        # batch statistics annihilate a common shift; on batch-mean-free perturbations the
        # projection has rank B - 2 of B - 1 (instead of B - 2 of B)
        B = self.batch
        try:
            m = [float(v) * B / (B - 1) for v in self._moments_at(order, s)]
        except TypeError:  # symbolic: the split is numeric
            return None
        return BatchSplit(B, m, 0.0, 0.0)

    def _law(self, s: ForwardStats) -> Any:
        v = float(self._variance(s))
        if self.batch is None:
            return self._spectral_law(v)
        B, g2, e = self.batch, float(self.gamma) ** 2, float(self.eps)
        levels = (np.arange(64) + 0.5) / 64
        gains = g2 / (v * _scipy_stats.chi2(B - 1).ppf(levels) / B + e)
        return AtomLaw(
            np.concatenate([gains, [0.0]]),
            np.concatenate([np.full(64, (B - 2) / (64 * B)), [2 / B]]),
        )

    def __repr__(self) -> str:
        extra = "" if self.batch is None else f", batch={self.batch}"
        return f"BatchNorm(gamma={self.gamma!r}, beta={self.beta!r}, eps={self.eps!r}{extra})"
