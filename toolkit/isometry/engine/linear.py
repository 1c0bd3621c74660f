r"""Weight layers: :class:`Linear`, :class:`Conv2d`, weight standardization, :class:`AvgPool`.

Width convention: :math:`J` maps :math:`n_\text{in}` to :math:`n_\text{out}` coordinates and
:math:`\phi` normalizes by :math:`n_\text{out}`; ``ratio`` is
:math:`\lambda = n_\text{out}/n_\text{in}`.
For a linear map and an isotropic input, the output second moment is :math:`m_1 q`.
Zero-mean weights give every output unit a mean :math:`(W\mu)_j` that averages to zero over
the units, but its square does not: the squared mean ``c`` maps to :math:`m_1 c` and the mean
to 0 (see :mod:`.stats`). Weight standardization centres every row, so the input's common
mean is removed first: ``q -> m_1 (q - mean^2)``.

* Gaussian weights :math:`W_{ij} \sim N(0, g^2/\text{fan\_in})`: :math:`WW^T` is
  Marchenko-Pastur with ratio :math:`\lambda` and scale :math:`g^2`: free cumulants
  :math:`\kappa_k = g^{2k}\lambda^{k-1}`, so :math:`m_1 = g^2`, :math:`m_2 = g^4(1+\lambda)`,
  normalized variance :math:`\lambda` (fan-out independent :math:`m_1`, Chen et al. 2020, Sec. 5.1).
  For :math:`\lambda > 1` the law has an atom of mass :math:`1 - 1/\lambda` at 0.
* Orthogonal weights follow ``torch.nn.init.orthogonal_(W, gain=g)``: ``g`` times a
  Haar semi-orthogonal matrix, so :math:`WW^T = g^2 I` when :math:`n_\text{out}\le n_\text{in}`
  and :math:`g^2` times a projection of rank :math:`n_\text{in}` otherwise:
  :math:`m_k = g^{2k}\min(1, n_\text{in}/n_\text{out})`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import sympy as sp

from ..._checks import check_choice, check_flag, check_int, check_positive
from . import free
from ._series import coerce, is_exact, num
from .blocks import Block, Width
from .spectra import AtomLaw, MPLaw, ProductLaw
from .stats import ForwardStats, is_zero

__all__ = ["AvgPool", "Conv2d", "Linear", "WeightNorm", "WeightStandardization"]


def _orth_moments(n_in: int, n_out: int, gain: Any, order: int, exact: bool) -> list[Any]:
    g2 = num(gain, exact) ** 2
    frac = num(sp.Rational(min(n_in, n_out), n_out), exact)
    return [g2**k * frac for k in range(1, order + 1)]


def _orth_law(n_in: int, n_out: int, gain: Any) -> Any:
    frac = min(n_in, n_out) / n_out
    return AtomLaw([float(gain) ** 2, 0.0], [frac, 1 - frac])


class _Weight(Block):
    r_diagonal = True
    _batchwise_linear = True
    #: what n_in and n_out count, for checking that widths chain in a Serial
    _kind = "features"

    def __init__(self, n_in: Any, n_out: Any, gain: Any) -> None:
        self.n_in = check_int("fan_in", n_in)
        self.n_out = check_int("fan_out", n_out)
        check_positive("gain", gain, symbolic=True)
        self.gain = gain

    @property
    def ratio(self) -> Any:
        return sp.Rational(self.n_out, self.n_in)

    def _exact(self) -> bool:
        return is_exact([self.gain])

    def _widths(self) -> tuple[Width, Width]:
        return (self._kind, self.n_in), (self._kind, self.n_out)

    def _propagate_q(self, q: Any) -> Any:
        return self._jacobian_moments(1, q)[0] * q

    def _forward(self, s: ForwardStats) -> ForwardStats:
        m1 = self._jacobian_moments(1, s.q)[0]
        if s.mean_free:
            return ForwardStats(m1 * s.q)
        if getattr(self, "_center", False) and not is_zero(s.mean):
            # centred rows: W x = W (x - mean), so the common mean never reaches the output
            return ForwardStats(m1 * (s.q - s.mean**2), m1 * s.spread)
        return ForwardStats(m1 * s.q, m1 * s.c)


class Linear(_Weight):
    r"""Dense layer ``fan_in -> fan_out`` at initialization (``init`` "gaussian" or "orthogonal").

    Moments: see the module docstring. ``q -> g^2 q`` (Gaussian),
    ``q -> g^2 min(1, fan_in/fan_out) q`` (orthogonal). Source: Chen et al. 2020, Sec. 5.1.

    Parameters
    ----------
    fan_in, fan_out : int
        Input and output width, ``>= 1``.
    init : {"gaussian", "orthogonal"}
        Entries :math:`N(0, g^2/\text{fan\_in})`, or ``gain`` times a Haar (semi-)orthogonal
        matrix.
    gain : number or sympy expression
        :math:`g > 0`.

    Examples
    --------
    >>> Linear(100, 100, gain=1).moments(order=4)    # Catalan numbers
    Moments(m1=1, m2=2, m3=5, m4=14, variance=1)
    >>> Linear(100, 50, init="orthogonal").moments()
    Moments(m1=1, m2=1, variance=0)
    """

    def __init__(self, fan_in: int, fan_out: int, init: str = "gaussian", gain: Any = 1.0) -> None:
        super().__init__(fan_in, fan_out, gain)
        self.init = check_choice("init", init, ("gaussian", "orthogonal"))

    def _jacobian_moments(self, order: int, q: Any) -> list[Any]:
        exact = self._exact()
        if self.init == "orthogonal":
            return _orth_moments(self.n_in, self.n_out, self.gain, order, exact)
        lam, g = coerce([self.ratio, self.gain], exact)
        return free.marchenko_pastur_moments(order, lam, g**2)

    def _spectral_law(self, q: float) -> Any:
        if self.init == "orthogonal":
            return _orth_law(self.n_in, self.n_out, self.gain)
        return MPLaw(float(self.gain) ** 2, float(self.ratio))

    def __repr__(self) -> str:
        return f"Linear({self.n_in}, {self.n_out}, init={self.init!r}, gain={self.gain!r})"


def _pair(name: str, value: Any) -> tuple[int, int]:
    if isinstance(value, tuple | list):
        if len(value) != 2:
            raise ValueError(f"{name} must be an int or a pair of ints, got {value!r}")
        return check_int(name, value[0]), check_int(name, value[1])
    v = check_int(name, value)
    return v, v


class Conv2d(_Weight):
    r"""2-D convolution ``c_in -> c_out`` channels, stride 1, circular ("same") padding.

    The Jacobian is block circulant: in the Fourier basis it is a ``c_out x c_in``
    matrix :math:`\hat W(\omega) = \sum_t W_t e^{i\omega t}` per frequency.

    * ``"gaussian"``: taps :math:`N(0, g^2/(c_\text{in} k_h k_w))`; :math:`\hat W` has
      i.i.d. entries of variance :math:`g^2/c_\text{in}`, so :math:`JJ^T` is
      Marchenko-Pastur with ratio :math:`c_\text{out}/c_\text{in}` (not
      :math:`c_\text{out}/(c_\text{in}k^2)`) and scale :math:`g^2`.
    * ``"orthogonal"``: ``torch.nn.init.orthogonal_`` on the ``c_out x (c_in k_h k_w)``
      unfolded kernel :math:`U`. Per frequency :math:`\hat W = U E`, :math:`EE^* = K P`
      with :math:`K = k_hk_w` and :math:`P` a projection of rank :math:`c_\text{in}`, free
      from :math:`U^TU`: a chain of two atomic laws, e.g. normalized variance
      :math:`(c_\text{out}/c_\text{in})(1 - 1/K)` for :math:`c_\text{out}\le c_\text{in}K`.
    * ``"delta_orthogonal"`` (Xiao et al. 2018): only the centre tap, orthogonal; same
      moments as an orthogonal :class:`Linear` ``c_in -> c_out``.

    Zero padding adds border corrections of relative size :math:`O(k/H)`, ignored here.

    Parameters
    ----------
    c_in, c_out : int
        Input and output channels, ``>= 1``.
    kernel_size : int or pair of int
        :math:`(k_h, k_w)`.
    init : {"gaussian", "orthogonal", "delta_orthogonal"}
        The weight distribution (see above).
    gain : number or sympy expression
        :math:`g > 0`.

    Examples
    --------
    >>> Conv2d(16, 16, 3, gain=1).moments()
    Moments(m1=1, m2=2, variance=1)
    >>> Conv2d(16, 16, 3, init="orthogonal", gain=1).moments()
    Moments(m1=1, m2=17/9, variance=8/9)
    """

    _kind = "channels"

    def __init__(
        self, c_in: int, c_out: int, kernel_size: Any, init: str = "gaussian", gain: Any = 1.0
    ) -> None:
        self.c_in = check_int("c_in", c_in)
        self.c_out = check_int("c_out", c_out)
        super().__init__(self.c_in, self.c_out, gain)
        self.kernel_size = _pair("kernel_size", kernel_size)
        self.init = check_choice("init", init, ("gaussian", "orthogonal", "delta_orthogonal"))

    @property
    def fan_in(self) -> int:
        return self.c_in * self.kernel_size[0] * self.kernel_size[1]

    def _chain(self) -> tuple[int, int]:
        k = self.kernel_size[0] * self.kernel_size[1]
        return k, self.c_in * k

    def _jacobian_moments(self, order: int, q: Any) -> list[Any]:
        exact = self._exact()
        if self.init == "delta_orthogonal":
            return _orth_moments(self.c_in, self.c_out, self.gain, order, exact)
        if self.init == "gaussian":
            lam, g = coerce([self.ratio, self.gain], exact)
            return free.marchenko_pastur_moments(order, lam, g**2)
        k, n = self._chain()
        e_law = [num(sp.Integer(k) ** j / k, exact) for j in range(1, order + 1)]
        u_law = _orth_moments(n, self.c_out, self.gain, order, exact)
        ratios = coerce([k, sp.Rational(self.c_out, n)], exact)
        return free._product([e_law, u_law], ratios, order)

    def _spectral_law(self, q: float) -> Any:
        if self.init == "delta_orthogonal":
            return _orth_law(self.c_in, self.c_out, self.gain)
        if self.init == "gaussian":
            return MPLaw(float(self.gain) ** 2, float(self.ratio))
        k, n = self._chain()
        e_law = AtomLaw([float(k), 0.0], [1 / k, 1 - 1 / k])
        return ProductLaw(
            [(e_law, float(k)), (_orth_law(n, self.c_out, self.gain), self.c_out / n)]
        )

    def __repr__(self) -> str:
        return (
            f"Conv2d({self.c_in}, {self.c_out}, {self.kernel_size}, init={self.init!r}, "
            f"gain={self.gain!r})"
        )


class WeightStandardization(_Weight):
    r"""Weight-standardized layer (Qiao et al. 2019), scaled as in Chen et al. 2020, Sec. 6.

    Each output row of the ``c_out x (c_in k_h k_w)`` weight is centred and divided by
    its standard deviation; ``scaled=True`` also multiplies by :math:`g/\sqrt{\text{fan\_in}}`
    (*scaled weight standardization*), so every row has squared norm exactly
    :math:`g^2` and :math:`m_1 = g^2` holds for every draw, not only on average. The rows
    are asymptotically uniform on a sphere, so :math:`JJ^T` is Marchenko-Pastur with ratio
    :math:`c_\text{out}/c_\text{in}` and scale :math:`g^2` (:math:`g^2\,\text{fan\_in}` unscaled,
    which explodes with width). The centring removes one input direction, an
    :math:`O(1/\text{fan\_in})` effect ignored here.

    Parameters
    ----------
    c_in, c_out : int
        Input and output channels (features for ``kernel_size=1``), ``>= 1``.
    kernel_size : int or pair of int
        :math:`(k_h, k_w)`.
    gain : number or sympy expression
        :math:`g > 0`.
    scaled : bool
        Multiply the standardized rows by :math:`g/\sqrt{\text{fan\_in}}`.

    Examples
    --------
    >>> WeightStandardization(64, 64, kernel_size=3, gain=2).moments()
    Moments(m1=4, m2=32, variance=16)
    """

    _kind = "channels"

    _center = True

    def __init__(
        self, c_in: int, c_out: int, kernel_size: Any = 1, gain: Any = 1.0, scaled: bool = True
    ) -> None:
        super().__init__(c_in, c_out, gain)
        self.kernel_size = _pair("kernel_size", kernel_size)
        self.scaled = check_flag("scaled", scaled)

    def _scale(self, exact: bool) -> Any:
        g2 = num(self.gain, exact) ** 2
        if self.scaled:
            return g2
        return g2 * self.n_in * self.kernel_size[0] * self.kernel_size[1]

    def _jacobian_moments(self, order: int, q: Any) -> list[Any]:
        exact = self._exact()
        return free.marchenko_pastur_moments(order, num(self.ratio, exact), self._scale(exact))

    def _spectral_law(self, q: float) -> Any:
        return MPLaw(float(self._scale(False)), float(self.ratio))

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.n_in}, {self.n_out}, kernel_size="
            f"{self.kernel_size}, gain={self.gain!r})"
        )


class WeightNorm(WeightStandardization):
    """Weight normalization (Salimans & Kingma 2016) with every row of norm ``gain``.

    Same asymptotic law as scaled :class:`WeightStandardization` (no centring).

    Parameters
    ----------
    c_in, c_out : int
        Input and output channels (features for ``kernel_size=1``), ``>= 1``.
    kernel_size : int or pair of int
        :math:`(k_h, k_w)`.
    gain : number or sympy expression
        The norm of every row, ``> 0``.

    Examples
    --------
    >>> WeightNorm(32, 32).moments()
    Moments(m1=1, m2=2, variance=1)
    """

    _center = False

    def __init__(self, c_in: int, c_out: int, kernel_size: Any = 1, gain: Any = 1.0) -> None:
        super().__init__(c_in, c_out, kernel_size, gain, scaled=True)


def _pool_poly(k: int, s: int) -> dict[int, sp.Rational]:
    """Autocorrelation of the 1-D box filter, subsampled by the stride (Laurent coefficients)."""
    out = {}
    for e in range(-(k // s) - 1, k // s + 2):
        d = abs(s * e)
        if d < k:
            out[e] = sp.Rational(k - d, k * k)
    return out


def _laurent_const_power(poly: dict[int, sp.Rational], j: int) -> sp.Rational:
    cur = {0: sp.Integer(1)}
    for _ in range(j):
        nxt: dict[int, sp.Rational] = {}
        for a, ca in cur.items():
            for b, cb in poly.items():
                nxt[a + b] = nxt.get(a + b, 0) + ca * cb
        cur = nxt
    return cur.get(0, sp.Integer(0))


class AvgPool(Block):
    r"""Average pooling ``kernel_size`` with ``stride`` (default = kernel), circular padding.

    :math:`J = S B` with :math:`B` the box filter and :math:`S` the subsampling:
    :math:`JJ^T` is circulant with symbol :math:`\sum_e c_{se}\,e^{-i\omega e}` per axis,
    :math:`c_d = (k-|d|)/k^2`; the moments are exact constant terms of its powers,
    e.g. :math:`m_k = k^{-2k}` (zero variance) for non-overlapping windows and
    :math:`m_1 = 1/(k_hk_w)` always. ``ratio`` = :math:`1/(s_hs_w)`; assumes
    uncorrelated zero-mean fluctuations, so ``q -> m_1 q``; per-unit means equal within a
    window pass unchanged (``q -> c + m_1 (q - c)``).

    Parameters
    ----------
    kernel_size : int or pair of int
        :math:`(k_h, k_w)`.
    stride : int or pair of int, optional
        :math:`(s_h, s_w)`, default ``kernel_size``.

    Examples
    --------
    >>> AvgPool(2).moments()
    Moments(m1=1/4, m2=1/16, variance=0)
    >>> AvgPool(2, stride=1).moments()   # (1/2, 3/8) per axis, squared
    Moments(m1=1/4, m2=9/64, variance=5/64)
    """

    _batchwise_linear = True

    def __init__(self, kernel_size: Any, stride: Any = None) -> None:
        self.kernel_size = _pair("kernel_size", kernel_size)
        self.stride = self.kernel_size if stride is None else _pair("stride", stride)

    @property
    def ratio(self) -> Any:
        return sp.Rational(1, self.stride[0] * self.stride[1])

    def _axis(self, i: int) -> dict[int, sp.Rational]:
        return _pool_poly(self.kernel_size[i], self.stride[i])

    def _jacobian_moments(self, order: int, q: Any) -> list[Any]:
        p0, p1 = self._axis(0), self._axis(1)
        return [
            _laurent_const_power(p0, j) * _laurent_const_power(p1, j) for j in range(1, order + 1)
        ]

    def _propagate_q(self, q: Any) -> Any:
        return self._jacobian_moments(1, q)[0] * q

    def _forward(self, s: ForwardStats) -> ForwardStats:
        # the per-unit means are taken equal within a window (a translation-invariant input
        # law, as for a convolution's output): they pass unchanged, the fluctuations shrink
        if s.mean_free:
            return ForwardStats(self._propagate_q(s.q))
        m1 = self._jacobian_moments(1, s.q)[0]
        return ForwardStats(s.c + m1 * s.unit_variance, s.c, s.mean)

    def _spectral_law(self, q: float) -> Any:
        omega = 2 * np.pi * (np.arange(256) + 0.5) / 256
        sym = []
        for i in range(2):
            poly = self._axis(i)
            sym.append(sum(float(c) * np.cos(omega * e) for e, c in poly.items()))
        vals = np.sort(np.outer(sym[0], sym[1]).ravel())
        atoms = (
            vals.reshape(200, -1).mean(axis=1)
            if vals.size % 200 == 0
            else np.interp(
                (np.arange(200) + 0.5) / 200, (np.arange(vals.size) + 0.5) / vals.size, vals
            )
        )
        return AtomLaw(np.maximum(atoms, 0.0), np.full(atoms.size, 1 / atoms.size))

    def __repr__(self) -> str:
        return f"AvgPool({self.kernel_size}, stride={self.stride})"
