r"""Design rules derived from the moments (Chen et al. 2020, Sec. 7).

* :func:`selu_parameters` -- SeLU :math:`(\lambda, \alpha)` such that a block
  ``Linear(gain) -> SeLU`` has :math:`\phi(JJ^T) = 1 + \epsilon` and keeps the
  pre-activation second moment :math:`q` at a fixed point.
* :func:`leaky_relu_slope` -- the leaky-ReLU slope (and gain) that gives a target
  end-to-end normalized variance for a depth-:math:`L` orthogonal network.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import sympy as sp

from ..._checks import check_positive, check_real, is_symbolic
from ._series import finish, is_exact, normal_cdf, num
from .blocks import check_depth

__all__ = ["LeakySlope", "leaky_relu_slope", "selu_parameters"]


def selu_parameters(epsilon: Any, gain: Any = 1.0, q: Any = 1.0) -> tuple[Any, Any]:
    r"""SeLU :math:`(\lambda, \alpha)`: block :math:`\phi(JJ^T) = 1+\epsilon`, fixed point ``q``.

    The block is a Gaussian layer with ``gain`` followed by SeLU, with
    pre-activations :math:`h \sim N(0, q)`. The two conditions are

    .. math:: g^2\lambda^2\big(\tfrac12 + \alpha^2 C\big) = 1 + \epsilon, \qquad
              g^2\lambda^2\big(\tfrac q2 + \alpha^2 B\big) = q,

    with :math:`C = e^{2q}\Phi(-2\sqrt q) = \mathbb E[e^{2h}; h<0]` and
    :math:`B = C - 2e^{q/2}\Phi(-\sqrt q) + \tfrac12 = \mathbb E[(e^h-1)^2; h<0]`. Their
    ratio is linear in :math:`\alpha^2`, so

    .. math:: \alpha^2 = \frac{\epsilon q}{2\,(qC - (1+\epsilon)B)}, \qquad
              \lambda^2 = \frac{1+\epsilon}{g^2(1/2 + \alpha^2 C)}.

    The self-normalizing SeLU of Klambauer et al. corresponds to :math:`\epsilon \approx 0.0716`.

    Parameters
    ----------
    epsilon : number or sympy expression
        The excess :math:`\phi(JJ^T) - 1`; a solution exists for
        :math:`0 \le \epsilon < qC/B - 1` (about 0.160 at ``q = 1``).
    gain : number or sympy expression
        The layer's gain, ``> 0``.
    q : number or sympy expression
        The fixed-point second moment, ``> 0``.

    Returns
    -------
    lam, alpha
        Floats, or sympy expressions for exact input.

    Raises
    ------
    ValueError
        If ``epsilon`` is outside the range above.

    Examples
    --------
    >>> lam, alpha = selu_parameters(0.0716)
    >>> round(lam, 3), round(alpha, 3)
    (1.051, 1.674)
    """
    check_real("epsilon", epsilon, symbolic=True)
    check_positive("gain", gain, symbolic=True)
    check_positive("q", q, symbolic=True)
    exact = is_exact([epsilon, gain, q])
    eps, g, qq = num(epsilon, exact), num(gain, exact), num(q, exact)
    sqrt, exp = (sp.sqrt, sp.exp) if exact else (math.sqrt, math.exp)
    c = exp(2 * qq) * normal_cdf(-2 * sqrt(qq), exact)
    b = c - 2 * exp(qq / 2) * normal_cdf(-sqrt(qq), exact) + num(sp.Rational(1, 2), exact)
    if not is_symbolic(eps) and not is_symbolic(qq):
        limit = float(qq * c / b - 1)
        if not 0 <= float(eps) < limit:
            raise ValueError(
                f"epsilon must lie in [0, {limit:.6g}) for q={q!r}, got epsilon={epsilon!r}"
            )
    alpha2 = eps * qq / (2 * (qq * c - (1 + eps) * b))
    lam2 = (1 + eps) / (g**2 * (num(sp.Rational(1, 2), exact) + alpha2 * c))
    if exact:
        return finish(sp.sqrt(lam2)), finish(sp.sqrt(alpha2))
    return math.sqrt(lam2), math.sqrt(alpha2)


class LeakySlope(NamedTuple):
    r"""Result of :func:`leaky_relu_slope`.

    Attributes
    ----------
    slope : float or sympy expression
        The leaky-ReLU negative slope :math:`a`.
    gain : float or sympy expression
        The orthogonal layers' gain :math:`\sqrt{2/(1+a^2)}`, which keeps :math:`m_1 = 1`.
    """

    slope: Any
    gain: Any


def leaky_relu_slope(depth: Any, target_variance: Any) -> LeakySlope:
    r"""Leaky-ReLU slope giving end-to-end normalized variance ``target_variance`` at ``depth``.

    Network: ``depth`` blocks of an orthogonal square layer with gain
    :math:`g = \sqrt{2/(1+a^2)}` (so :math:`\phi(JJ^T) = 1` exactly) and a leaky ReLU of
    slope :math:`a`. Orthogonal layers add no variance and a leaky ReLU adds
    :math:`v_a = ((1-a^2)/(1+a^2))^2`, and normalized variances add along the chain, so

    .. math:: L\,v_a = v_\text{target} \iff a = \sqrt{\frac{1-t}{1+t}}, \quad
              t = \sqrt{v_\text{target}/L}.

    Parameters
    ----------
    depth : int or sympy.Symbol
        :math:`L \ge 1`.
    target_variance : number or sympy expression
        :math:`0 \le v_\text{target} \le L` (slope 0, plain ReLU, gives :math:`L`).

    Returns
    -------
    LeakySlope
        ``(slope, gain)``; sympy expressions for exact or symbolic input.

    Raises
    ------
    ValueError
        If ``target_variance`` lies outside :math:`[0, L]`.

    Examples
    --------
    >>> leaky_relu_slope(100, 1.0)     # doctest: +ELLIPSIS
    LeakySlope(slope=0.9045..., gain=1.0488...)
    """
    depth_v = check_depth(depth)
    check_positive("target_variance", target_variance, allow_zero=True, symbolic=True)
    if not is_symbolic(depth_v) and not is_symbolic(target_variance):
        if float(target_variance) > depth_v:
            raise ValueError(
                f"target_variance must be <= depth={depth_v} (plain ReLU, slope 0, already gives "
                f"{depth_v}), got target_variance={target_variance!r}"
            )
    exact = is_exact([target_variance])
    sqrt = sp.sqrt if exact else math.sqrt
    t = sqrt(num(target_variance, exact) / num(depth_v, exact))
    a2 = (1 - t) / (1 + t)
    slope, gain = sqrt(a2), sqrt(2 / (1 + a2))
    if exact:
        return LeakySlope(finish(slope), finish(gain))
    return LeakySlope(slope, gain)
