r"""The :class:`Moments` of a Jacobian: :math:`m_k = \phi((JJ^T)^k)`.

:math:`\phi(A) = \mathbb E[\mathrm{tr}\,A]/\dim A`, with ``dim`` the **output** width of
:math:`J` (:math:`JJ^T` is ``d_out x d_out``). Block dynamical isometry (Chen et al.
2020, Def. 3.1) asks :math:`m_1 \approx 1` and :math:`m_2 - m_1^2 \approx 0`.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterator, Sequence
from typing import Any

import sympy as sp

from ..._checks import check_int
from ._series import coerce, finish
from .free import moments_to_cumulants, s_transform

__all__ = ["Moments"]


class Moments:
    r"""Moments :math:`m_1, \dots, m_K` of the eigenvalue law of :math:`JJ^T`.

    Values are exact sympy expressions when the inputs were symbols or rationals,
    and Python floats otherwise. ``float(moments)`` is :math:`m_1 = \phi(JJ^T)`,
    the quantity that must be close to 1 for gradient-norm equality.

    Parameters
    ----------
    *values
        :math:`m_1, m_2, \dots` (or one sequence of them).

    Examples
    --------
    >>> m = Moments(1, 3)
    >>> m.m1, m.m2, m.variance, m.normalized_variance
    (1, 3, 2, 2)
    >>> float(Moments(0.5, 0.5))
    0.5
    """

    __slots__ = ("_values",)

    def __init__(self, *values: Any) -> None:
        if (
            len(values) == 1
            and isinstance(values[0], Sequence | tuple)
            and not isinstance(values[0], str)
        ):
            values = tuple(values[0])
        if not values:
            raise ValueError("Moments needs at least m1, got no values")
        for i, v in enumerate(values):
            # (an overflowing chain may give inf, which is an honest answer; NaN never is)
            if isinstance(v, bool) or not isinstance(v, numbers.Number | sp.Basic):
                raise TypeError(f"values[{i}] must be a number or a sympy expression, got {v!r}")
            if (v != v) is True or (isinstance(v, sp.Basic) and v.has(sp.nan)):
                raise ValueError(f"values[{i}] must not be NaN, got values={values!r}")
        self._values = tuple(finish(v) for v in coerce(values))

    # -- access -----------------------------------------------------------------
    @property
    def values(self) -> tuple[Any, ...]:
        """All moments ``(m1, ..., mK)``."""
        return self._values

    @property
    def order(self) -> int:
        """The highest moment held, ``K``."""
        return len(self._values)

    def moment(self, k: int) -> Any:
        r""":math:`m_k = \phi((JJ^T)^k)`.

        Parameters
        ----------
        k : int
            ``1 <= k <= order``.

        Returns
        -------
        number or sympy expression

        Raises
        ------
        ValueError
            If ``k`` exceeds the order the moments were computed to.

        Examples
        --------
        >>> Moments(1, 2, 5).moment(3)
        5
        """
        k = check_int("k", k, 1)
        if k > self.order:
            raise ValueError(
                f"k={k} exceeds the order {self.order} these moments were computed to; "
                f"ask for moments(order={k})"
            )
        return self._values[k - 1]

    @property
    def m1(self) -> Any:
        r""":math:`\phi(JJ^T)`."""
        return self._values[0]

    @property
    def m2(self) -> Any:
        r""":math:`\phi((JJ^T)^2)`."""
        return self.moment(2)

    @property
    def variance(self) -> Any:
        r""":math:`\phi((JJ^T)^2) - \phi(JJ^T)^2`."""
        return finish(coerce([self.m2 - self.m1**2])[0])

    @property
    def normalized_variance(self) -> Any:
        r""":math:`m_2/m_1^2 - 1`; it adds along chains of square free factors."""
        return finish(coerce([self.m2 / self.m1**2 - 1])[0])

    def free_cumulants(self) -> tuple[Any, ...]:
        """Free cumulants of the same order (:func:`toolkit.isometry.moments_to_cumulants`)."""
        return tuple(moments_to_cumulants(list(self._values)))

    def s_transform(self, z: Any = None) -> sp.Expr:
        """Truncated S-transform; see :func:`~toolkit.isometry.s_transform`.

        Parameters
        ----------
        z : sympy.Symbol, optional
            The variable (default ``Symbol("z")``).

        Returns
        -------
        sympy.Expr

        Examples
        --------
        >>> Moments(1, 2, 5).s_transform()   # Marchenko-Pastur: 1/(1+z), truncated
        z**2 - z + 1
        """
        return s_transform(list(self._values), z)

    @property
    def free_symbols(self) -> set[sp.Symbol]:
        """Symbols appearing in any moment."""
        out: set[sp.Symbol] = set()
        for v in self._values:
            if isinstance(v, sp.Basic):
                out |= v.free_symbols
        return out

    def subs(self, *args: Any, **kwargs: Any) -> Moments:
        """Substitute into every moment.

        Parameters
        ----------
        *args, **kwargs
            As for ``sympy.Basic.subs``.

        Returns
        -------
        Moments

        Examples
        --------
        >>> import sympy as sp
        >>> g = sp.Symbol("g", positive=True)
        >>> Moments(g**2, 2 * g**4).subs(g, 2)
        Moments(m1=4, m2=32, variance=16)
        """
        return Moments(
            *[v.subs(*args, **kwargs) if isinstance(v, sp.Basic) else v for v in self._values]
        )

    def numeric(self) -> Moments:
        """All moments as floats.

        Raises
        ------
        TypeError
            If symbols remain.

        Examples
        --------
        >>> Moments(1, 3).numeric().values
        (1.0, 3.0)
        """
        if self.free_symbols:
            raise TypeError(f"moments still depend on {sorted(map(str, self.free_symbols))}")
        return Moments(*[float(v) for v in self._values])

    # -- conversions ------------------------------------------------------------
    def __float__(self) -> float:
        return float(self.m1)

    def __iter__(self) -> Iterator[Any]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        parts = [f"m{i + 1}={_fmt(v)}" for i, v in enumerate(self._values)]
        if self.order >= 2:
            parts.append(f"variance={_fmt(self.variance)}")
        return "Moments(" + ", ".join(parts) + ")"

    def _repr_latex_(self) -> str:
        rows = [
            rf"\phi\big((JJ^T)^{{{i + 1}}}\big) &= {sp.latex(sp.sympify(v))}"
            for i, v in enumerate(self._values)
        ]
        rows[0] = rf"\phi(JJ^T) &= {sp.latex(sp.sympify(self.m1))}"
        if self.order >= 2:
            rows.append(rf"\mathrm{{Var}} &= {sp.latex(sp.sympify(self.variance))}")
        return r"$\begin{aligned}" + r"\\ ".join(rows) + r"\end{aligned}$"


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)
