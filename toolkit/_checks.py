"""Argument checks shared by every module: one wording for the same mistake everywhere."""

from __future__ import annotations

import numbers
from typing import Any

__all__ = ["check_int"]


def check_int(name: str, value: Any, minimum: int = 1, maximum: int | None = None) -> int:
    """``value`` as an ``int`` in ``[minimum, maximum]``, else a TypeError/ValueError naming it.

    Python, numpy and sympy integers are accepted; ``bool`` is not.

    >>> check_int("depth", 3)
    3
    >>> check_int("m", 40, 1, 32)
    Traceback (most recent call last):
    ...
    ValueError: m must satisfy 1 <= m <= 32, got m=40
    """
    bound = f"{minimum} <= {name}" + (f" <= {maximum}" if maximum is not None else "")
    integral = isinstance(value, numbers.Integral) or getattr(value, "is_Integer", False)
    if isinstance(value, bool) or not integral:
        raise TypeError(
            f"{name} must be an int with {bound}, got {value!r} ({type(value).__name__})"
        )
    if int(value) < minimum or (maximum is not None and int(value) > maximum):
        raise ValueError(f"{name} must satisfy {bound}, got {name}={value!r}")
    return int(value)
