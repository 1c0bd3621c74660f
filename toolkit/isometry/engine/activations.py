r"""Element-wise blocks: activations and dropout. Their Jacobian is diagonal.

For :math:`J = \mathrm{diag}(f'(h_i))` with pre-activations :math:`h \sim N(0, q)`
(Chen et al. 2020, Sec. 5.2):

.. math:: m_k = \phi((JJ^T)^k) = \mathbb E[f'(h)^{2k}], \qquad q \mapsto \mathbb E[f(h)^2].

Closed forms are used where they exist (ReLU family, hard tanh, SeLU; exact in
sympy when ``q`` and the parameters are exact or symbolic); the smooth
activations (tanh, sigmoid, GELU) use composite Gauss-Legendre quadrature
(:func:`gaussian_expectation`) and need a numeric ``q``. The law of :math:`f'(h)^2`
(for :func:`spectral_density`) is represented by 64 quantile atoms.

With a mean in the input (:class:`~.stats.ForwardStats`: per-unit means
:math:`\mu_j \sim N(\bar a, c - \bar a^2)`, per-unit variance :math:`v = q - c`) the
pre-activation over units and samples is :math:`h \sim N(\bar a, q - \bar a^2)`, which
gives :math:`m_k`, the output ``q`` and the output mean :math:`\mathbb E f(h)`; the output's
squared mean is :math:`\mathbb E_\mu[(\mathbb E_z f(\mu + \sqrt v z))^2]`, which is
:math:`(\mathbb E f)^2` when every unit has the same mean, and the arc-cosine kernel
:math:`\frac{q}{2\pi}(\sin\theta + (\pi-\theta)\cos\theta)`, :math:`\cos\theta = c/q`, for
ReLU with :math:`\bar a = 0`. The ReLU family uses the rectified-Gaussian closed forms
:math:`\mathbb E\,\mathrm{relu}(h) = \mu\Phi(\mu/\sigma) + \sigma\varphi(\mu/\sigma)` and
:math:`\mathbb E\,\mathrm{relu}(h)^2 = (\mu^2+\sigma^2)\Phi(\mu/\sigma) +
\mu\sigma\varphi(\mu/\sigma)` for :math:`h \sim N(\mu, \sigma^2)`.

After batch norm with batch statistics (``standardized_batch`` in the input statistics)
the samples of a unit are not independent: they are standardized exactly over the batch,
and the moments and output statistics are those of that law (:mod:`.batch`; closed forms
for the PReLU family, quadrature otherwise).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import sympy as sp
from scipy.special import ndtr

from ..._checks import check_positive, check_real, is_symbolic
from ._series import is_exact, normal_cdf, normal_pdf, num
from .batch import BatchLaw, BatchSplit, leak_fraction, pair_correlation, standardized_law
from .blocks import Block
from .spectra import AtomLaw
from .stats import ForwardStats, is_zero, over_unit_means

__all__ = [
    "GELU",
    "SELU_ALPHA",
    "SELU_LAMBDA",
    "Activation",
    "Dropout",
    "HardTanh",
    "LeakyReLU",
    "PReLU",
    "ReLU",
    "ScaledPReLU",
    "SeLU",
    "Sigmoid",
    "Tanh",
    "gaussian_expectation",
]

SELU_LAMBDA = 1.0507009873554804934193349852946
SELU_ALPHA = 1.6732632423543772848170429916717


_LEGENDRE = np.polynomial.legendre.leggauss(16)
_KINK_ZONE = 40.0  # activations bend within |h| < 40; beyond it they are affine or flat


def _edges(lo: float, hi: float, width: float) -> np.ndarray:
    count = max(1, math.ceil((hi - lo) / width - 1e-9))
    return np.linspace(lo, hi, count + 1)


def _rule(q: float, mean: float = 0.0, kinks: tuple[float, ...] = ()) -> tuple:
    """Nodes and weights for E[g(h)], h ~ N(mean, q): composite 16-point Gauss-Legendre.

    Panels are at most ``min(1, sd/2)`` wide on ``|h| < 40``, where the activations bend
    (integer-aligned for ``q >= 4``, so kinks at 0 sit on a panel edge), and ``sd/2`` wide
    further out up to ``12 sd``, where they are affine or flat and only the Gaussian weight
    varies.  The node count is about 2000 whatever ``q``: deep chains whose ``q`` grows to
    1e9 and beyond stay as cheap as ``q = 1``.  With a ``mean`` the panels move with it, and
    the ``kinks`` of the activation become panel edges too.
    """
    sd = math.sqrt(q)
    top = 12 * sd
    inner = min(top, _KINK_ZONE)
    edges = _edges(0.0, inner, min(1.0, sd / 2))
    if top > inner:
        edges = np.concatenate([edges, _edges(inner, top, sd / 2)[1:]])
    edges = np.concatenate([-edges[:0:-1], edges]) + mean
    inside = [k for k in kinks if edges[0] < k < edges[-1]]
    if inside:
        edges = np.unique(np.concatenate([edges, inside]))
    mid, half = (edges[1:] + edges[:-1]) / 2, (edges[1:] - edges[:-1]) / 2
    x, w = _LEGENDRE
    nodes = (mid[:, None] + half[:, None] * x[None, :]).ravel()
    weights = (half[:, None] * w[None, :]).ravel()
    return nodes, weights * np.exp(-((nodes - mean) ** 2) / (2 * q)) / math.sqrt(2 * math.pi * q)


def gaussian_expectation(fn: Any, q: float) -> float:
    r""":math:`\mathbb E[f(h)]`, :math:`h\sim N(0,q)`, by composite Gauss-Legendre quadrature.

    The panels cover :math:`[-12\sqrt q, 12\sqrt q]` (see ``_rule``); accurate to about
    machine precision for ``fn`` smooth within each panel.

    Parameters
    ----------
    fn : callable
        Vectorized :math:`f`: numpy array in, numpy array out.
    q : float
        The variance of :math:`h`, ``> 0``.

    Returns
    -------
    float

    Raises
    ------
    TypeError, ValueError
        If ``fn`` is not callable or ``q`` is not a finite number ``> 0``.

    Examples
    --------
    >>> round(gaussian_expectation(lambda h: h**4, 2.0), 10)   # 3 q^2
    12.0
    """
    if not callable(fn):
        raise TypeError(f"fn must be a callable taking a numpy array, got {fn!r}")
    if is_symbolic(q):
        raise TypeError(f"q must be a number (quadrature is numeric), got the expression {q!r}")
    nodes, weights = _rule(float(check_positive("q", q, symbolic=True)))
    return float(np.sum(weights * fn(nodes)))


def _shifted_rule(
    mean: float, var: float, kinks: tuple[float, ...] = ()
) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights for ``h ~ N(mean, var)`` (``var`` 0: a point mass)."""
    if var <= 0:
        return np.array([mean]), np.array([1.0])
    return _rule(var, mean, kinks)


def _quantile_atoms(values: np.ndarray, weights: np.ndarray, count: int = 64) -> tuple:
    order = np.argsort(values)
    v, w = values[order], weights[order] / weights.sum()
    cdf = np.cumsum(w) - w / 2
    levels = (np.arange(count) + 0.5) / count
    return np.interp(levels, cdf, v), np.full(count, 1 / count)


def _standardized_affine(s: ForwardStats) -> tuple[int, float, float]:
    r"""``(B, gamma, beta)``: the input is :math:`\gamma\hat y + \beta`, :math:`\hat y`
    standardized over ``B`` samples (``s.unit_variance`` is the unbiased :math:`B/(B-1)\,\gamma^2`).
    """
    batch = s.standardized_batch
    assert batch is not None
    if is_symbolic(s.unit_variance) or is_symbolic(s.mean):
        # (a symbolic batch-norm gain: the PReLU family scales with it in closed form)
        return batch, sp.sqrt(s.unit_variance * sp.Rational(batch - 1, batch)), s.mean
    v, beta = float(s.unit_variance), float(s.mean)
    return batch, math.sqrt(max(v, 0.0) * (batch - 1) / batch), beta


class Activation(Block):
    r"""Base class of the element-wise activations :math:`f`, with :math:`h \sim N(0, q)`.

    The Jacobian is :math:`\mathrm{diag}(f'(h))`, so :math:`m_k = \mathbb E[f'(h)^{2k}]` and
    ``q -> E[f(h)^2]``.  Subclasses give ``_f``/``_fprime`` (numpy; the moments then come by
    quadrature and need a numeric ``q``) or override the moments with closed forms.

    Attributes
    ----------
    numeric_only : bool
        The moments need a numeric ``q`` (quadrature).
    """

    #: the moments need numeric q (quadrature)
    numeric_only = True

    def _params(self) -> list[Any]:
        return []

    def _kinks(self) -> tuple[float, ...]:
        """Where ``_f`` or ``_fprime`` is not smooth (quadrature panel edges)."""
        return ()

    def _f(self, h: np.ndarray) -> np.ndarray:
        raise NotImplementedError(f"{type(self).__name__} gives its moments in closed form")

    def _fprime(self, h: np.ndarray) -> np.ndarray:
        raise NotImplementedError(f"{type(self).__name__} gives its moments in closed form")

    def _check_numeric_q(self, q: Any) -> float:
        if is_symbolic(q):
            raise TypeError(
                f"{type(self).__name__} moments need a numeric q (quadrature), got q={q!r}"
            )
        return float(q)

    def _jacobian_moments(self, order: int, q: Any) -> list[Any]:
        nodes, weights = _rule(self._check_numeric_q(q))
        d2 = self._fprime(nodes) ** 2
        return [float(np.sum(weights * d2**k)) for k in range(1, order + 1)]

    def _propagate_q(self, q: Any) -> Any:
        qf = self._check_numeric_q(q)
        return gaussian_expectation(lambda h: self._f(h) ** 2, qf)

    def _mean0(self, q: Any) -> Any:
        r""":math:`\mathbb E f(h)`, :math:`h \sim N(0, q)` (subclasses give closed forms)."""
        return gaussian_expectation(self._f, self._check_numeric_q(q))

    def _marginal(self, s: ForwardStats) -> tuple[float, float]:
        """Mean and variance of the pre-activation over units and samples (numeric)."""
        if any(is_symbolic(v) for v in (s.q, s.c, s.mean)):
            raise TypeError(
                f"{type(self).__name__} with a mean in its input needs numeric statistics, "
                f"got {s!r}"
            )
        mean = float(s.mean)
        return mean, max(float(s.q) - mean * mean, 0.0)

    def _batch_law(self, s: ForwardStats, order: int = 1) -> BatchLaw:
        """The law of a unit standardized over the batch (``s.standardized_batch`` is set)."""
        batch, gamma, beta = _standardized_affine(s)
        if is_symbolic(gamma) or is_symbolic(beta):
            raise TypeError(
                f"{type(self).__name__} after batch norm with batch statistics needs numeric "
                f"statistics (quadrature), got {s!r}"
            )
        return standardized_law(self._f, self._fprime, batch, gamma, beta, order)

    def _batch_split(self, order: int, s: ForwardStats) -> BatchSplit | None:
        # right after batch norm the perturbation lies in the range of its projection; the
        # map gives it a batch mean (the leak). Elsewhere the split is not modelled.
        if s.standardized_batch is None:
            return None
        try:
            law = self._batch_law(s, order)
        except NotImplementedError:
            return None
        moments = law.coupled()
        perp = [v * (1 - law.leak) ** k for k, v in enumerate(moments, start=1)]
        # (what reaches the batch mean here: batch norm left nothing on it)
        return BatchSplit(s.standardized_batch, perp, moments[0] * law.leak, law.derivative[0])

    def _moments_at(self, order: int, s: ForwardStats) -> list[Any]:
        if s.standardized_batch is not None:
            return self._batch_law(s, order).coupled()
        if is_zero(s.mean):  # h ~ N(0, q) over units and samples, as before
            return self._jacobian_moments(order, s.q)
        nodes, weights = _shifted_rule(*self._marginal(s), self._kinks())
        d2 = self._fprime(nodes) ** 2
        return [float(np.sum(weights * d2**k)) for k in range(1, order + 1)]

    def _outputs(self, s: ForwardStats) -> tuple[Any, Any]:
        """Second moment and mean of the output."""
        if is_zero(s.mean):
            return self._propagate_q(s.q), self._mean0(s.q)
        nodes, weights = _shifted_rule(*self._marginal(s), self._kinks())
        f = self._f(nodes)
        return float(np.sum(weights * f * f)), float(np.sum(weights * f))

    def _unit_mean(self, mu: np.ndarray, v: float) -> np.ndarray:
        r""":math:`\mathbb E_z f(\mu + \sqrt v z)` for an array of per-unit means."""
        if v <= 0:
            return self._f(mu)
        nodes, weights = _rule(v)
        return np.sum(weights * self._f(mu[:, None] + nodes[None, :]), axis=1)

    def _kernel(self, s: ForwardStats) -> Any:
        """The output's squared mean when the per-unit means differ (``c > mean**2``)."""
        self._marginal(s)  # (numeric statistics only)
        v = max(float(s.unit_variance), 0.0)
        return over_unit_means(lambda mu: self._unit_mean(mu, v) ** 2, s)

    def _forward(self, s: ForwardStats) -> ForwardStats:
        if s.standardized_batch is not None:
            # every unit has the same law (batch norm's output): c is the squared mean, and
            # the variance is the one the next batch norm sees (unbiased, see .batch)
            law = self._batch_law(s)
            return ForwardStats(law.variance + law.mean**2, law.mean**2, law.mean)
        q_out, mean_out = self._outputs(s)
        # every unit with the same input law has the same output mean
        c_out = mean_out**2 if s.uniform else self._kernel(s)
        return ForwardStats(q_out, c_out, mean_out)

    def _spectral_law(self, q: float) -> Any:
        nodes, weights = _rule(q)
        return AtomLaw(*_quantile_atoms(self._fprime(nodes) ** 2, weights))

    def _law(self, s: ForwardStats) -> Any:
        if is_zero(s.mean):
            return self._spectral_law(float(s.q))
        nodes, weights = _shifted_rule(*self._marginal(s), self._kinks())
        if nodes.size == 1:
            return AtomLaw(self._fprime(nodes) ** 2, np.array([1.0]))
        return AtomLaw(*_quantile_atoms(self._fprime(nodes) ** 2, weights))

    def __repr__(self) -> str:
        args = ", ".join(repr(p) for p in self._params())
        return f"{type(self).__name__}({args})"


class PReLU(Activation):
    r"""``scale * (x if x > 0 else slope * x)`` (PReLU at its initial slope).

    :math:`m_k = s^{2k}(1 + a^{2k})/2` for every ``q``; ``q -> s^2 q (1 + a^2)/2``.
    ``slope`` must lie in [0, 1].

    Parameters
    ----------
    slope : number or sympy expression
        :math:`a \in [0, 1]`.
    scale : number or sympy expression
        :math:`s > 0`.

    Examples
    --------
    >>> PReLU(0.25).moments()
    Moments(m1=0.53125, m2=0.501953, variance=0.219727)
    """

    numeric_only = False

    def __init__(self, slope: Any = 0.25, scale: Any = 1) -> None:
        check_real("slope", slope, 0, 1, symbolic=True)
        self.slope = slope
        check_positive("scale", scale, symbolic=True)
        self.scale = scale

    def _params(self) -> list[Any]:
        return [self.slope, self.scale]

    def _jacobian_moments(self, order: int, q: Any) -> list[Any]:
        exact = is_exact(self._params())
        a, s = num(self.slope, exact), num(self.scale, exact)
        half = num(sp.Rational(1, 2), exact)
        return [s ** (2 * k) * (1 + a ** (2 * k)) * half for k in range(1, order + 1)]

    def _propagate_q(self, q: Any) -> Any:
        exact = is_exact([*self._params(), q])
        a, s = num(self.slope, exact), num(self.scale, exact)
        return s**2 * (1 + a**2) * num(q, exact) / 2

    def _spectral_law(self, q: float) -> Any:
        s2 = float(self.scale) ** 2
        return AtomLaw([s2, s2 * float(self.slope) ** 2], [0.5, 0.5])

    def _kinks(self) -> tuple[float, ...]:
        return (0.0,)

    def _f(self, h: np.ndarray) -> np.ndarray:
        return float(self.scale) * np.where(h > 0, h, float(self.slope) * h)

    def _fprime(self, h: np.ndarray) -> np.ndarray:
        return float(self.scale) * np.where(h > 0, 1.0, float(self.slope))

    def _split(self, s: ForwardStats) -> tuple[bool, Any, Any, Any, Any, Any]:
        r"""``exact, a, scale, mu, sigma, P(h > 0)`` for :math:`h \sim N(\bar a, q - \bar a^2)`."""
        exact = is_exact([*self._params(), s.q, s.mean])
        a, sc = num(self.slope, exact), num(self.scale, exact)
        mu = num(s.mean, exact)
        var = num(s.q, exact) - mu**2
        sigma = sp.sqrt(var) if exact else math.sqrt(max(var, 0.0))
        if is_zero(sigma):
            raise ValueError(f"{self!r}: the input has zero variance, got {s!r}")
        return exact, a, sc, mu, sigma, normal_cdf(mu / sigma, exact)

    def _batch_law(self, s: ForwardStats, order: int = 1) -> BatchLaw:
        batch, gamma, beta = _standardized_affine(s)
        if not is_zero(beta):
            return super()._batch_law(s, order)
        # positively homogeneous: f(gamma y) = gamma f(y), x f'(x) = f(x); the pair
        # (y_1, y_2) has the direction of a Gaussian pair with correlation -1/(B-1)
        a, sc, B = float(self.slope), float(self.scale), batch
        rho = pair_correlation(B)

        def kernel(r: float) -> float:  # E relu(u) relu(w), unit variances, correlation r
            return (math.sqrt(1 - r * r) + (math.pi - math.acos(r)) * r) / (2 * math.pi)

        def orthant(r: float) -> float:  # P(u > 0, w > 0)
            return 0.25 + math.asin(r) / (2 * math.pi)

        second = sc**2 * (1 + a * a) / 2
        pair = sc**2 * ((1 + a * a) * kernel(rho) - 2 * a * kernel(-rho))
        # E|y_1| = sqrt(B - 1) E|t|, t a coordinate of a uniform unit vector in R^(B-1)
        ratio = math.exp(math.lgamma((B - 1) / 2) - math.lgamma(B / 2))
        mean = sc * (1 - a) * math.sqrt(B - 1) * ratio / (2 * math.sqrt(math.pi))
        derivative = tuple(sc ** (2 * k) * (1 + a ** (2 * k)) / 2 for k in range(1, order + 1))
        dd = sc**2 * ((1 + a * a) * orthant(rho) + 2 * a * (0.5 - orthant(rho)))
        leak = leak_fraction(B, derivative[0], dd, second, pair)
        return BatchLaw(gamma * mean, gamma**2 * second, gamma**2 * pair, derivative, leak)

    def _moments_at(self, order: int, s: ForwardStats) -> list[Any]:
        if s.standardized_batch is not None and is_zero(s.mean):
            return self._jacobian_moments(order, s.q)  # by symmetry, as for a Gaussian
        if s.standardized_batch is not None:
            return super()._moments_at(order, s)
        if is_zero(s.mean):
            return self._jacobian_moments(order, s.q)
        _, a, sc, _, _, up = self._split(s)
        return [sc ** (2 * k) * (up + a ** (2 * k) * (1 - up)) for k in range(1, order + 1)]

    def _mean0(self, q: Any) -> Any:
        exact = is_exact([*self._params(), q])
        a, sc = num(self.slope, exact), num(self.scale, exact)
        root = sp.sqrt(num(q, exact) / (2 * sp.pi)) if exact else math.sqrt(q / (2 * math.pi))
        return sc * (1 - a) * root

    def _outputs(self, s: ForwardStats) -> tuple[Any, Any]:
        if is_zero(s.mean):
            return self._propagate_q(s.q), self._mean0(s.q)
        # rectified Gaussian: E relu(h), E relu(h)^2 = E h relu(h), h ~ N(mu, sigma^2)
        exact, a, sc, mu, sigma, up = self._split(s)
        dens = normal_pdf(mu / sigma, exact)
        r1 = mu * up + sigma * dens
        r2 = (mu**2 + sigma**2) * up + mu * sigma * dens
        q_in = mu**2 + sigma**2
        return sc**2 * ((1 - a**2) * r2 + a**2 * q_in), sc * ((1 - a) * r1 + a * mu)

    def _kernel(self, s: ForwardStats) -> Any:
        if is_zero(s.mean):
            # arc-cosine kernel of the centred bivariate Gaussian with covariance c
            exact = is_exact([*self._params(), s.q, s.c])
            a, sc = num(self.slope, exact), num(self.scale, exact)
            q, c = num(s.q, exact), num(s.c, exact)
            if exact:
                theta = sp.acos(c / q)
                relu = q / (2 * sp.pi) * (sp.sin(theta) + (sp.pi - theta) * c / q)
            else:
                theta = math.acos(min(1.0, c / q))
                relu = q / (2 * math.pi) * (math.sin(theta) + (math.pi - theta) * c / q)
            return sc**2 * ((1 - a) ** 2 * relu + a * c)
        return super()._kernel(s)

    def _unit_mean(self, mu: np.ndarray, v: float) -> np.ndarray:
        a, sc = float(self.slope), float(self.scale)
        if v <= 0:
            return self._f(mu)
        sd = math.sqrt(v)
        r1 = mu * ndtr(mu / sd) + sd * np.exp(-(mu**2) / (2 * v)) / math.sqrt(2 * math.pi)
        return sc * ((1 - a) * r1 + a * mu)


class LeakyReLU(PReLU):
    """Leaky ReLU with negative ``slope`` in [0, 1] (:class:`PReLU` with scale 1).

    Parameters
    ----------
    slope : number or sympy expression
        The negative slope, in [0, 1].

    Examples
    --------
    >>> LeakyReLU(0).moments()
    Moments(m1=1/2, m2=1/2, variance=1/4)
    """

    def __init__(self, slope: Any = 0.01) -> None:
        super().__init__(slope, 1)

    def _params(self) -> list[Any]:
        return [self.slope]


class ReLU(LeakyReLU):
    r""":math:`\max(0, x)`: :math:`m_k = 1/2`, ``q -> q/2``.

    Examples
    --------
    >>> ReLU().moments(order=3)
    Moments(m1=1/2, m2=1/2, m3=1/2, variance=1/4)
    """

    def __init__(self) -> None:
        super().__init__(0)

    def _params(self) -> list[Any]:
        return []


class ScaledPReLU(PReLU):
    r"""PReLU scaled by :math:`\sqrt{2/(1+a^2)}`: :math:`m_1 = 1` and ``q`` preserved exactly.

    Normalized variance :math:`((1-a^2)/(1+a^2))^2` per layer (Chen et al. 2020, Sec. 7).

    Parameters
    ----------
    slope : number or sympy expression
        :math:`a \in [0, 1]`.

    Examples
    --------
    >>> ScaledPReLU(sp.Rational(1, 2)).moments()
    Moments(m1=1, m2=34/25, variance=9/25)
    """

    def __init__(self, slope: Any = 0.25) -> None:
        check_real("slope", slope, 0, 1, symbolic=True)
        exact = is_exact([slope])
        a = num(slope, exact)
        scale = sp.sqrt(2 / (1 + a**2)) if exact else math.sqrt(2 / (1 + a * a))
        super().__init__(slope, scale)

    def _params(self) -> list[Any]:
        return [self.slope]


class HardTanh(Activation):
    r"""``clip(x, min_val, max_val)``: :math:`m_k = P(a < h < b)`, closed form via erf.

    ``q -> q[\Phi(\beta)-\Phi(\alpha) - \beta\varphi(\beta) + \alpha\varphi(\alpha)]
    + a^2\Phi(\alpha) + b^2(1-\Phi(\beta))`` with :math:`\alpha = a/\sqrt q`,
    :math:`\beta = b/\sqrt q`.

    Parameters
    ----------
    min_val, max_val : number or sympy expression
        :math:`a < b`.

    Examples
    --------
    >>> round(HardTanh().moments().m1, 6)       # P(|h| < 1) at q = 1
    0.682689
    """

    numeric_only = False

    def __init__(self, min_val: Any = -1.0, max_val: Any = 1.0) -> None:
        check_real("min_val", min_val, symbolic=True)
        check_real("max_val", max_val, symbolic=True)
        self.min_val, self.max_val = min_val, max_val
        if not is_symbolic(min_val) and not is_symbolic(max_val) and not min_val < max_val:
            raise ValueError(
                f"need min_val < max_val, got min_val={min_val!r}, max_val={max_val!r}"
            )

    def _params(self) -> list[Any]:
        return [self.min_val, self.max_val]

    def _ab(self, q: Any) -> tuple[bool, Any, Any, Any]:
        exact = is_exact([*self._params(), q])
        sq = sp.sqrt(num(q, exact)) if exact else math.sqrt(q)
        return exact, num(self.min_val, exact) / sq, num(self.max_val, exact) / sq, sq

    def _jacobian_moments(self, order: int, q: Any) -> list[Any]:
        exact, al, be, _ = self._ab(q)
        p = normal_cdf(be, exact) - normal_cdf(al, exact)
        return [p] * order

    def _propagate_q(self, q: Any) -> Any:
        exact, al, be, sq = self._ab(q)
        a, b = num(self.min_val, exact), num(self.max_val, exact)
        cdf_a, cdf_b = normal_cdf(al, exact), normal_cdf(be, exact)
        inner = cdf_b - cdf_a - be * normal_pdf(be, exact) + al * normal_pdf(al, exact)
        return sq**2 * inner + a**2 * cdf_a + b**2 * (1 - cdf_b)

    def _spectral_law(self, q: float) -> Any:
        p = float(self._jacobian_moments(1, q)[0])
        return AtomLaw([1.0, 0.0], [p, 1 - p])

    def _kinks(self) -> tuple[float, ...]:
        return (float(self.min_val), float(self.max_val))

    def _f(self, h: np.ndarray) -> np.ndarray:
        return np.clip(h, float(self.min_val), float(self.max_val))

    def _fprime(self, h: np.ndarray) -> np.ndarray:
        return ((h > float(self.min_val)) & (h < float(self.max_val))).astype(float)

    def _mean0(self, q: Any) -> Any:
        # E clip(h) = a Phi(alpha) + b (1 - Phi(beta)) + sqrt(q) (phi(alpha) - phi(beta))
        exact, al, be, sq = self._ab(q)
        a, b = num(self.min_val, exact), num(self.max_val, exact)
        if (sp.simplify(a + b) if exact else a + b) == 0:
            return num(0, exact)  # symmetric: an odd function of a symmetric law
        cdf_a, cdf_b = normal_cdf(al, exact), normal_cdf(be, exact)
        return a * cdf_a + b * (1 - cdf_b) + sq * (normal_pdf(al, exact) - normal_pdf(be, exact))


class SeLU(Activation):
    r"""SeLU: :math:`\lambda x` for :math:`x>0`, :math:`\lambda\alpha(e^x-1)` otherwise.

    With :math:`C_k = e^{2k^2q}\Phi(-2k\sqrt q)` (:math:`\Phi` the normal CDF):
    :math:`m_k = \lambda^{2k}(1/2 + \alpha^{2k} C_k)`, and
    ``q -> \lambda^2 [q/2 + \alpha^2 (C_1 - 2e^{q/2}\Phi(-\sqrt q) + 1/2)]``.
    Defaults are the self-normalizing constants of Klambauer et al. (2017), which
    give :math:`m_1 \approx 1.0716` at their fixed point ``q = 1``.

    Parameters
    ----------
    lam, alpha : number or sympy expression
        :math:`\lambda > 0` and :math:`\alpha \ge 0`.

    Examples
    --------
    >>> round(SeLU().moments().m1, 4), round(SeLU().propagate_q(1.0), 4)
    (1.0716, 1.0)
    """

    numeric_only = False

    def __init__(self, lam: Any = SELU_LAMBDA, alpha: Any = SELU_ALPHA) -> None:
        check_positive("lam", lam, symbolic=True)
        self.lam = lam
        check_positive("alpha", alpha, allow_zero=True, symbolic=True)
        self.alpha = alpha

    def _params(self) -> list[Any]:
        return [self.lam, self.alpha]

    def _jacobian_moments(self, order: int, q: Any) -> list[Any]:
        exact = is_exact([*self._params(), q])
        lam, al, qq = num(self.lam, exact), num(self.alpha, exact), num(q, exact)
        sq = sp.sqrt(qq) if exact else math.sqrt(qq)
        ex = sp.exp if exact else math.exp
        out = []
        for k in range(1, order + 1):
            c_k = ex(2 * k * k * qq) * normal_cdf(-2 * k * sq, exact)
            out.append(lam ** (2 * k) * (num(sp.Rational(1, 2), exact) + al ** (2 * k) * c_k))
        return out

    def _propagate_q(self, q: Any) -> Any:
        exact = is_exact([*self._params(), q])
        lam, al, qq = num(self.lam, exact), num(self.alpha, exact), num(q, exact)
        sq = sp.sqrt(qq) if exact else math.sqrt(qq)
        ex = sp.exp if exact else math.exp
        half = num(sp.Rational(1, 2), exact)
        tail = (
            ex(2 * qq) * normal_cdf(-2 * sq, exact) - 2 * ex(qq / 2) * normal_cdf(-sq, exact) + half
        )
        return lam**2 * (qq * half + al**2 * tail)

    def _fprime(self, h: np.ndarray) -> np.ndarray:
        lam, al = float(self.lam), float(self.alpha)
        return np.where(h > 0, lam, lam * al * np.exp(np.minimum(h, 0)))

    def _kinks(self) -> tuple[float, ...]:
        return (0.0,)

    def _f(self, h: np.ndarray) -> np.ndarray:
        lam, al = float(self.lam), float(self.alpha)
        return np.where(h > 0, lam * h, lam * al * np.expm1(np.minimum(h, 0)))

    def _mean0(self, q: Any) -> Any:
        # lam [sqrt(q / 2 pi) + alpha (E[e^h; h < 0] - 1/2)], E[e^h; h < 0] = e^{q/2} Phi(-sqrt q)
        exact = is_exact([*self._params(), q])
        lam, al, qq = num(self.lam, exact), num(self.alpha, exact), num(q, exact)
        sq = sp.sqrt(qq) if exact else math.sqrt(qq)
        ex = sp.exp if exact else math.exp
        pi = sp.pi if exact else math.pi
        half = num(sp.Rational(1, 2), exact)
        return lam * (sq / (2 * pi) ** half + al * (ex(qq / 2) * normal_cdf(-sq, exact) - half))


class Tanh(Activation):
    r""":math:`\tanh`, by quadrature (numeric ``q``).

    Examples
    --------
    >>> m = Tanh().moments(q=1.0)
    >>> round(m.m1, 6), round(m.variance, 6)
    (0.464403, 0.125839)
    """

    def _f(self, h: np.ndarray) -> np.ndarray:
        return np.tanh(h)

    def _mean0(self, q: Any) -> Any:
        return 0.0  # an odd function of a symmetric law

    def _fprime(self, h: np.ndarray) -> np.ndarray:
        return 1 - np.tanh(h) ** 2


class Sigmoid(Activation):
    """Logistic sigmoid, by quadrature. Its mean 1/2 is carried into ``q``.

    Examples
    --------
    >>> round(Sigmoid().moments(q=1.0).m1, 6)
    0.044836
    """

    def _f(self, h: np.ndarray) -> np.ndarray:
        return 0.5 * (1 + np.tanh(h / 2))

    def _fprime(self, h: np.ndarray) -> np.ndarray:
        s = self._f(h)
        return s * (1 - s)


class GELU(Activation):
    r""":math:`x\Phi(x)` (exact erf form), :math:`f' = \Phi(x) + x\varphi(x)`, by quadrature.

    Examples
    --------
    >>> round(GELU().moments(q=1.0).m1, 6)
    0.455851
    """

    def _f(self, h: np.ndarray) -> np.ndarray:
        return h * ndtr(h)

    def _fprime(self, h: np.ndarray) -> np.ndarray:
        return ndtr(h) + h * np.exp(-h * h / 2) / math.sqrt(2 * math.pi)


class Dropout(Activation):
    """Inverted dropout in training mode: mask entries 0 (prob ``p``) or :math:`1/(1-p)`.

    :math:`m_k = (1-p)^{1-2k}`, normalized variance :math:`p/(1-p)`, ``q -> q/(1-p)``.
    In evaluation mode it is the identity.

    Parameters
    ----------
    p : number or sympy expression
        The drop probability, in [0, 1).

    Examples
    --------
    >>> Dropout(sp.Rational(1, 2)).moments()
    Moments(m1=2, m2=8, variance=4)
    """

    numeric_only = False

    def __init__(self, p: Any = 0.5) -> None:
        check_real("p", p, 0, 1, hi_open=True, symbolic=True)
        self.p = p

    def _params(self) -> list[Any]:
        return [self.p]

    def _jacobian_moments(self, order: int, q: Any) -> list[Any]:
        p = num(self.p, is_exact([self.p]))
        return [(1 - p) ** (1 - 2 * k) for k in range(1, order + 1)]

    def _propagate_q(self, q: Any) -> Any:
        return q / (1 - self.p)

    def _moments_at(self, order: int, s: ForwardStats) -> list[Any]:
        return self._jacobian_moments(order, s.q)  # the mask ignores the input

    def _forward(self, s: ForwardStats) -> ForwardStats:
        # E[mask] = 1: every unit keeps its mean, the fluctuations grow
        return ForwardStats(self._propagate_q(s.q), s.c, s.mean)

    def _law(self, s: ForwardStats) -> Any:
        return self._spectral_law(float(s.q))

    def _spectral_law(self, q: float) -> Any:
        p = float(self.p)
        return AtomLaw([1 / (1 - p) ** 2, 0.0], [1 - p, p])
