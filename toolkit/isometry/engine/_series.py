"""Truncated power series on plain coefficient lists, exact (sympy) or float.

A series :math:`a(z) = \\sum_k a_k z^k` is a Python list ``[a_0, a_1, ...]``. The
coefficients are either all Python floats (fast numeric path) or sympy
expressions (exact path: integers and rationals stay exact, symbols stay
symbolic). :func:`coerce` picks the path from the inputs: any Python float
without symbols selects floats; anything else (ints, ``Fraction``, sympy numbers
or symbols) selects sympy.

Internal module: the public entry points are in :mod:`toolkit.isometry.engine.free`.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Sequence
from fractions import Fraction
from typing import Any

import sympy as sp

__all__ = [
    "coerce",
    "finish",
    "is_exact",
    "normal_cdf",
    "normal_pdf",
    "num",
    "series_inv",
    "series_mul",
    "series_pow",
    "series_reverse",
    "simplify",
]


def _is_float(x: Any) -> bool:
    return isinstance(x, float) or (
        isinstance(x, numbers.Real) and not isinstance(x, (numbers.Integral, Fraction, sp.Basic))
    )


def is_exact(values: Iterable[Any]) -> bool:
    """True when the values call for the sympy path (no plain float, or any symbol)."""
    values = list(values)
    if any(isinstance(v, sp.Basic) and v.free_symbols for v in values):
        return True
    return not any(_is_float(v) or isinstance(v, sp.Float) for v in values)


def num(x: Any, exact: bool) -> Any:
    """Convert one scalar to the chosen path (sympy object or Python float)."""
    if isinstance(x, bool):
        raise TypeError(f"expected a number, got the bool {x!r}")
    if exact:
        if isinstance(x, Fraction):
            return sp.Rational(x.numerator, x.denominator)
        if isinstance(x, sp.Basic):
            return x
        if isinstance(x, numbers.Integral):
            return sp.Integer(int(x))
        if isinstance(x, numbers.Real):
            return sp.Float(float(x))
        raise TypeError(f"expected a number or a sympy expression, got {x!r}")
    if isinstance(x, sp.Basic):
        if x.free_symbols:
            return x
        return float(x)
    if isinstance(x, numbers.Real):
        return float(x)
    raise TypeError(f"expected a real number, got {x!r}")


def coerce(values: Iterable[Any], exact: bool | None = None) -> list[Any]:
    """All values on one path (see the module docstring); ``exact`` forces it."""
    values = list(values)
    if exact is None:
        exact = is_exact(values)
    return [num(v, exact) for v in values]


def simplify(x: Any) -> Any:
    """A light normal form for symbolic coefficients (floats pass through)."""
    if not isinstance(x, sp.Basic) or not x.free_symbols:
        return x
    y = sp.cancel(sp.powsimp(sp.expand(x), force=False))
    return y


def finish(x: Any) -> Any:
    """Final form of a result: floats for numeric inputs, simplified sympy otherwise.

    A sympy value without free symbols that carries a ``Float`` becomes a Python
    float; exact numbers (for example ``Rational(1, 2)``) stay exact.
    """
    if not isinstance(x, sp.Basic):
        return float(x)
    if not x.free_symbols:
        if x.has(sp.Float) or not x.is_number:
            return float(x)
        # (sympy.nsimplify mangles some rationals, e.g. 51997/2025, so leave them alone)
        return x if x.is_Rational else sp.simplify(x)
    if sp.count_ops(x) > 400:
        return simplify(x)
    expanded = sp.expand(
        sp.expand_power_base(sp.powdenest(sp.expand(x), force=True), force=True), power_exp=True
    )
    expanded = sp.powsimp(expanded, force=True)
    candidates = [x, sp.simplify(x), expanded, sp.factor(expanded), sp.simplify(expanded)]
    return min(candidates, key=sp.count_ops)


def _zero(like: Sequence[Any]) -> Any:
    return 0.0 if all(not isinstance(v, sp.Basic) for v in like) else sp.Integer(0)


def series_mul(a: Sequence[Any], b: Sequence[Any], n: int) -> list[Any]:
    """Product of two series, truncated to ``n`` coefficients."""
    zero = _zero(list(a) + list(b))
    out = [zero] * n
    for i, ai in enumerate(a[:n]):
        if ai == 0:
            continue
        for j, bj in enumerate(b[: n - i]):
            out[i + j] = out[i + j] + ai * bj
    return out


def series_inv(a: Sequence[Any], n: int) -> list[Any]:
    """Multiplicative inverse :math:`1/a(z)` (needs :math:`a_0 \\ne 0`), ``n`` terms."""
    if a[0] == 0:
        raise ZeroDivisionError("series_inv: constant coefficient is zero")
    zero = _zero(a)
    b = [zero] * n
    b[0] = 1 / a[0] if isinstance(a[0], sp.Basic) or _is_float(a[0]) else sp.Integer(1) / a[0]
    for k in range(1, n):
        s = zero
        for i in range(1, min(k, len(a) - 1) + 1):
            s = s + a[i] * b[k - i]
        b[k] = -s * b[0]
    return b


def series_pow(a: Sequence[Any], e: Any, n: int) -> list[Any]:
    """:math:`a(z)^e` truncated to ``n`` terms; ``e`` may be any number or symbol.

    Non-negative integer powers multiply; other exponents use the binomial series
    :math:`a_0^e \\sum_j \\binom{e}{j} t(z)^j` with :math:`t = a/a_0 - 1` (so :math:`a_0 \\ne 0`).
    """
    if getattr(sp.sympify(e), "is_Integer", False) and int(e) >= 0:  # (a bool is not)
        e = int(e)
        zero = _zero(a)
        result = [zero] * n
        result[0] = zero + 1
        base = list(a[:n]) + [zero] * max(0, n - len(a))
        while e:
            if e & 1:
                result = series_mul(result, base, n)
            e >>= 1
            if e:
                base = series_mul(base, base, n)
        return result
    a0 = a[0]
    if a0 == 0:
        raise ZeroDivisionError("series_pow: non-integer power of a series with zero constant term")
    t = [c / a0 for c in a[:n]] + [_zero(a)] * max(0, n - len(a))
    t[0] = t[0] - t[0]
    zero = _zero([*a, e])
    out = [zero] * n
    power = [zero] * n
    power[0] = zero + 1
    for j in range(n):
        coeff = sp.expand_func(sp.binomial(e, j)) if isinstance(e, sp.Basic) else _binom(e, j)
        for k in range(n):
            out[k] = out[k] + coeff * power[k]
        power = series_mul(power, t, n)
    if isinstance(a0, sp.Basic) or isinstance(e, sp.Basic):
        scale = sp.Pow(a0, e)
    else:
        scale = a0**e
    return [scale * c for c in out]


def _binom(e: float, j: int) -> float:
    out = 1.0
    for i in range(j):
        out *= (e - i) / (i + 1)
    return out


def series_reverse(a: Sequence[Any], n: int) -> list[Any]:
    """Compositional inverse :math:`g` of :math:`f(z) = a_1 z + a_2 z^2 + \\dots`.

    Requires :math:`a_0 = 0` and :math:`a_1 \\ne 0`; returns ``[0, b_1, ..., b_{n-1}]``
    with :math:`f(g(z)) = z + O(z^n)`.
    """
    if a[0] != 0:
        raise ValueError("series_reverse: the series must have zero constant term")
    if len(a) < 2 or a[1] == 0:
        raise ZeroDivisionError("series_reverse: the linear coefficient is zero")
    zero = _zero(a)
    a = list(a[:n]) + [zero] * max(0, n - len(a))
    b = [zero] * n
    if n == 1:
        return b
    b[1] = 1 / a[1] if isinstance(a[1], sp.Basic) or _is_float(a[1]) else sp.Integer(1) / a[1]
    for k in range(2, n):
        # coefficient of z^k in sum_j a_j g^j with b_k still zero; b_k enters only via a_1 b_k
        total = zero
        power = list(b)  # g^1
        for j in range(1, k + 1):
            if j > 1:
                power = series_mul(power, b, k + 1)
            if a[j] != 0:
                total = total + a[j] * power[k] if k < len(power) else total
        b[k] = -total * b[1]
        if isinstance(b[k], sp.Basic):
            b[k] = simplify(b[k])
    return b


def normal_cdf(x: Any, exact: bool) -> Any:
    """Standard normal CDF :math:`\\Phi(x)`: a sympy ``erf`` expression or a float."""
    if exact:
        return (1 + sp.erf(x / sp.sqrt(2))) / 2
    return 0.5 * math.erfc(-x / math.sqrt(2))


def normal_pdf(x: Any, exact: bool) -> Any:
    """Standard normal density :math:`\\varphi(x)`: a sympy expression or a float."""
    if exact:
        return sp.exp(-(x**2) / 2) / sp.sqrt(2 * sp.pi)
    return math.exp(-x * x / 2) / math.sqrt(2 * math.pi)
