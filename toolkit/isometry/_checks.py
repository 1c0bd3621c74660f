"""Argument checks shared by the isometry engine (errors name the argument and value)."""

from __future__ import annotations

import numbers
from typing import Any

import sympy as sp

from .._checks import check_int

__all__ = [
    "check_choice",
    "check_int",
    "check_order",
    "check_positive",
    "check_q",
    "check_range",
    "check_real",
    "is_symbolic",
]


def is_symbolic(x: Any) -> bool:
    """True for a sympy expression with free symbols."""
    return isinstance(x, sp.Basic) and bool(x.free_symbols)


def check_real(name: str, value: Any) -> Any:
    """A real number or a sympy expression; returns it unchanged."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real | sp.Basic):
        raise TypeError(f"{name} must be a real number or a sympy expression, got {value!r}")
    if isinstance(value, sp.Basic) and not value.free_symbols:
        if not value.is_real:
            raise ValueError(f"{name} must be real, got {name}={value!r}")
    return value


def check_positive(name: str, value: Any, allow_zero: bool = False) -> Any:
    """A number > 0 (>= 0 with ``allow_zero``) or a symbol (assumed positive)."""
    check_real(name, value)
    if is_symbolic(value):
        if value.is_negative or (value.is_zero and not allow_zero):
            raise ValueError(f"{name} must be positive, got {name}={value!r}")
        return value
    v = float(value)
    if v != v or (v < 0 or (v == 0 and not allow_zero)):
        expected = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be {expected}, got {name}={value!r}")
    if v == float("inf"):
        raise ValueError(f"{name} must be finite, got {name}={value!r}")
    return value


def check_range(
    name: str, value: Any, lo: float, hi: float, *, lo_open: bool = False, hi_open: bool = False
) -> Any:
    """A number in ``[lo, hi]`` (open ends on request), or a symbol."""
    check_real(name, value)
    if is_symbolic(value):
        return value
    v = float(value)
    bad = v != v or v < lo or v > hi or (lo_open and v == lo) or (hi_open and v == hi)
    if bad:
        left, right = "(" if lo_open else "[", ")" if hi_open else "]"
        raise ValueError(f"{name} must lie in {left}{lo}, {hi}{right}, got {name}={value!r}")
    return value


def check_order(order: Any) -> int:
    """Number of moments to compute (``>= 1``)."""
    return check_int("order", order, 1)


def check_q(q: Any) -> Any:
    """The input second moment ``q > 0`` (or a symbol)."""
    return check_positive("q", q)


def check_choice(name: str, value: Any, choices: tuple[str, ...]) -> str:
    """One of the allowed strings."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {name}={value!r}")
    return value
