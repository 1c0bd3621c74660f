r"""Forward statistics of a layer's input: second moment, squared mean and mean.

The mean-field picture of a wide random network at initialization, over a batch of inputs:
unit :math:`j` of a layer has, across the samples, a mean :math:`\mu_j` and a variance
:math:`v` (the same for every unit), and across the units the means are Gaussian,
:math:`\mu_j \sim N(\bar a, c - \bar a^2)`. Three numbers describe it
(:class:`ForwardStats`):

* ``q`` :math:`= \mathbb E_{j,b}[h_{jb}^2] = v + c`, the second moment (what the engine
  propagated alone before);
* ``c`` :math:`= \mathbb E_j[\mu_j^2]`, the part of ``q`` that batch norm removes (it
  divides by the variance :math:`v = q - c`, not by ``q``);
* ``mean`` :math:`= \bar a = \mathbb E_j[\mu_j]`, the mean activation, which a residual
  stream accumulates: the cross term of :math:`x + \alpha F(x)` is
  :math:`2\alpha\,\bar a_x \bar a_F`.

Zero-mean inputs (``c = mean = 0``, the default) give the engine's earlier results exactly.

With batch statistics over :math:`B` samples, :math:`v = q - c` is the per-unit variance that
an unbiased batch estimate sees (:math:`B/(B-1)` times the biased batch variance that batch
norm divides by); for independent samples it is the population variance. After batch norm
the samples of a batch are no longer independent: every unit is standardized exactly over
the batch (``standardized_batch = B``), and the element-wise map that follows sees the
samples of a sphere, not independent Gaussians (:mod:`.batch`).
A layer with zero-mean weights kills ``mean`` (:math:`\mathbb E_j[(W\mu)_j] = 0`) but keeps
``c`` (:math:`\mathbb E_j[(W\mu)_j^2] = g^2 c`); an activation sees the marginal law
:math:`h \sim N(\bar a, q - \bar a^2)`, and its output's ``c`` is the Gaussian kernel
:math:`\mathbb E_u[(\mathbb E_z f(\bar a + \sqrt{c-\bar a^2}\,u + \sqrt v\,z))^2]`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import sympy as sp

from ..._checks import check_int, check_positive, check_real, is_symbolic

__all__ = ["ForwardStats", "as_stats", "over_unit_means"]


def is_zero(x: Any) -> bool:
    """True only when ``x`` is exactly zero (a symbol never is)."""
    if isinstance(x, sp.Basic):
        return bool(x.is_zero)
    return x == 0


@dataclass(frozen=True)
class ForwardStats:
    r"""The statistics of a layer's input over units and samples (see the module docstring).

    Parameters
    ----------
    q : number or sympy expression
        Second moment :math:`\mathbb E[h^2]`, ``>= 0``.
    c : number or sympy expression
        Mean over units of the squared per-unit mean, ``0 <= c <= q``.
    mean : number or sympy expression
        Mean over units of the per-unit mean, ``mean**2 <= c``.
    standardized_batch : int, optional
        Set by :class:`~.normalization.BatchNorm` with batch statistics: every unit is
        standardized exactly over a batch of this many samples (an affine map of a point
        on a sphere; see :mod:`.batch`). Blocks other than element-wise ones drop it.

    Raises
    ------
    TypeError, ValueError
        For a non-number, or numbers that violate the inequalities.

    Examples
    --------
    >>> from toolkit.isometry import BatchNorm, Linear, ReLU, Residual, Serial
    >>> s = ForwardStats(1.0)
    >>> s.mean_free, s.unit_variance
    (True, 1.0)
    >>> block = Residual(Serial([Linear(64, 64, gain=2**0.5), BatchNorm(), ReLU()]))
    >>> out = block.propagate_stats(block.propagate_stats(s))
    >>> round(out.q, 4), round(out.c, 4), round(out.mean, 4)   # 2 + 1/pi, 2/pi, 2/sqrt(2 pi)
    (2.3183, 0.6366, 0.7979)
    """

    q: Any
    c: Any = 0
    mean: Any = 0
    standardized_batch: int | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        # (q = 0 only arises inside a chain, after Scale(0); inputs need q > 0, see as_stats)
        check_positive("q", self.q, allow_zero=True, symbolic=True)
        check_positive("c", self.c, allow_zero=True, symbolic=True)
        check_real("mean", self.mean, symbolic=True)
        if self.standardized_batch is not None:
            check_int("standardized_batch", self.standardized_batch, 3)
        if any(is_symbolic(v) for v in (self.q, self.c, self.mean)):
            return
        q, c, m = float(self.q), float(self.c), float(self.mean)
        tol = 1e-12 * max(1.0, q)
        if c > q + tol or m * m > c + tol:
            raise ValueError(
                f"forward statistics need mean**2 <= c <= q, got q={self.q!r}, c={self.c!r}, "
                f"mean={self.mean!r}"
            )

    @property
    def unit_variance(self) -> Any:
        """Per-unit variance across samples, ``q - c`` (what batch norm divides by)."""
        return self.q - self.c if not is_zero(self.c) else self.q

    @property
    def spread(self) -> Any:
        """Variance of the per-unit means across units, ``c - mean**2``."""
        return self.c - self.mean**2

    @property
    def mean_free(self) -> bool:
        """Every unit has mean zero (``c == mean == 0``): the engine's earlier assumption."""
        return is_zero(self.c) and is_zero(self.mean)

    @property
    def uniform(self) -> bool:
        """Every unit has the same mean (``c == mean**2``, to rounding for floats)."""
        if self.mean_free:
            return True
        spread = self.spread
        if is_symbolic(spread):
            return bool(sp.simplify(spread) == 0)
        return abs(float(spread)) <= 1e-12 * max(1.0, abs(float(self.q)))

    def numeric(self) -> ForwardStats:
        """The statistics as floats (TypeError if symbols remain)."""
        try:
            return ForwardStats(
                float(self.q), float(self.c), float(self.mean), self.standardized_batch
            )
        except TypeError as err:
            raise TypeError(f"these forward statistics are symbolic: {self!r}") from err


def as_stats(q: Any, name: str = "q") -> ForwardStats:
    """``q`` as :class:`ForwardStats`: a number or expression is a zero-mean input."""
    if isinstance(q, ForwardStats):
        return q
    check_positive(name, q, symbolic=True)
    return ForwardStats(q)


_LEGENDRE = np.polynomial.legendre.leggauss(16)


def _unit_rule(sd: float) -> tuple[np.ndarray, np.ndarray]:
    r"""Nodes and weights for :math:`N(0, sd^2)`: 16-point Gauss-Legendre on 96 panels over
    :math:`\pm 12\,sd` (robust to integrands with poles near the real axis)."""
    edges = np.linspace(-12 * sd, 12 * sd, 97)
    mid, half = (edges[1:] + edges[:-1]) / 2, (edges[1:] - edges[:-1]) / 2
    x, w = _LEGENDRE
    nodes = (mid[:, None] + half[:, None] * x[None, :]).ravel()
    weights = (half[:, None] * w[None, :]).ravel()
    return nodes, weights * np.exp(-(nodes**2) / (2 * sd * sd)) / (sd * math.sqrt(2 * math.pi))


def over_unit_means(fn: Any, stats: ForwardStats) -> float:
    r""":math:`\mathbb E_u[\text{fn}(\bar a + \sqrt{c - \bar a^2}\,u)]`, :math:`u \sim N(0, 1)`.

    The average over units of a function of the per-unit mean (composite Gauss-Legendre;
    ``fn`` vectorized over numpy arrays).
    """
    s = stats.numeric()
    spread = max(float(s.spread), 0.0)
    if spread <= 1e-15 * max(1.0, s.q):
        return float(fn(np.array([s.mean]))[0])
    nodes, weights = _unit_rule(math.sqrt(spread))
    return float(np.sum(weights * fn(s.mean + nodes)))
