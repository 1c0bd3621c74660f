r"""Normalization layers: :class:`BatchNorm` and :class:`SecondMomentNorm`.

Chen et al. (2020, Sec. 5.3) treat a normalization layer in the large-batch limit:
the statistics are constants, so the Jacobian is a scalar multiple of the identity,

.. math:: J \approx \frac{\gamma}{\sqrt{\sigma^2 + \epsilon}}\, I, \qquad
          m_k = \Big(\frac{\gamma^2}{\sigma^2+\epsilon}\Big)^k, \qquad \mathrm{Var} = 0,

and the output second moment is :math:`\gamma^2\sigma^2/(\sigma^2+\epsilon) + \beta^2`.
The terms from differentiating the batch statistics (a projection removing the
mean and the radial direction, relative size :math:`O(1/\text{batch})`) are
dropped. The second moment :math:`\sigma^2` of the input is the propagated ``q``:
for batch norm this equals the variance only for zero-mean inputs (e.g. directly
after a linear or convolution layer with zero-mean weights, the usual placement);
second-moment normalization divides by the second moment itself, so it needs no
such assumption. Either way the preceding block's scale is cancelled: a
``Serial([Linear(gain=g), BatchNorm()])`` has :math:`m_1 = 1` for every ``g``.
"""

from __future__ import annotations

from typing import Any

from ..._checks import check_positive, check_real, is_symbolic
from ._series import is_exact, num
from .blocks import Block
from .spectra import AtomLaw

__all__ = ["BatchNorm", "SecondMomentNorm"]


class SecondMomentNorm(Block):
    r"""Second-moment normalization :math:`y = \gamma x/\sqrt{\mathbb E[x^2] + \epsilon}`.

    Chen et al. 2020 propose it as a cheaper batch norm (no centring). Moments
    :math:`(\gamma^2/(q+\epsilon))^k`; ``q -> gamma^2 q/(q + eps)``.

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

    def _spectral_law(self, q: float) -> Any:
        return AtomLaw([float(self._gain2(q)[1])], [1.0])

    def __repr__(self) -> str:
        return f"{type(self).__name__}(gamma={self.gamma!r}, eps={self.eps!r})"


class BatchNorm(SecondMomentNorm):
    r"""Batch normalization (training mode, large batch): see the module docstring.

    :math:`m_k = (\gamma^2/(q+\epsilon))^k` with ``q`` the input second moment (assumed
    zero-mean); ``q -> gamma^2 q/(q + eps) + beta^2``.

    Parameters
    ----------
    gamma : number or sympy expression
        The affine weight, non-zero.
    beta : number or sympy expression
        The affine bias (it shifts ``q`` only).
    eps : number or sympy expression
        Added to the variance, ``>= 0``.

    Examples
    --------
    >>> from toolkit.isometry import Linear, Serial
    >>> Serial([Linear(64, 64, gain=3), BatchNorm()]).moments()
    Moments(m1=1, m2=2, variance=1)
    """

    def __init__(self, gamma: Any = 1, beta: Any = 0, eps: Any = 0) -> None:
        super().__init__(gamma, eps)
        check_real("beta", beta, symbolic=True)
        self.beta = beta

    def _propagate_q(self, q: Any) -> Any:
        exact = is_exact([*self._params(), self.beta, q])
        return super()._propagate_q(q) + num(self.beta, exact) ** 2

    def __repr__(self) -> str:
        return f"BatchNorm(gamma={self.gamma!r}, beta={self.beta!r}, eps={self.eps!r})"
