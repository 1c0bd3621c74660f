"""Argument checks shared by every module: one wording for the same mistake everywhere.

Every public function validates its arguments with these helpers before any work, so a bad
argument gives a :class:`TypeError` (wrong kind of value) or a :class:`ValueError` (right
kind, wrong value) whose message names the argument, shows the value and says what was
expected.  No module keeps its own copy; ``tests/test_checks.py`` searches the source for
hand-rolled integer checks.

Randomness follows one policy, :func:`make_generator`: a sampling function takes
``seed: int | None = None`` and ``generator: torch.Generator | None = None``; giving both is
an error, a seed makes a fresh CPU generator, and giving neither uses the function's
documented default seed (or fresh entropy where the function says so).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any, TypeVar

import torch

__all__ = [
    "MAX_SEED",
    "MAX_SIZE",
    "check_choice",
    "check_finite_tensor",
    "check_flag",
    "check_int",
    "check_positive",
    "check_real",
    "check_seed",
    "check_tensor",
    "is_symbolic",
    "make_generator",
]

#: Seeds are 64-bit: ``torch.Generator.manual_seed`` accepts ``[0, 2**64 - 1]``.
MAX_SEED = 2**64 - 1
#: The largest size (count, length, width) torch can index: sizes are int64.
MAX_SIZE = 2**63 - 1

T = TypeVar("T")


def _is_sympy(value: Any) -> bool:
    return type(value).__module__.startswith("sympy")


def is_symbolic(value: Any) -> bool:
    """True for a sympy expression with free symbols.

    >>> import sympy as sp
    >>> is_symbolic(sp.Symbol("L")), is_symbolic(sp.Integer(2)), is_symbolic(2.0)
    (True, False, False)
    """
    return _is_sympy(value) and bool(getattr(value, "free_symbols", ()))


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


def check_real(
    name: str,
    value: Any,
    lo: float = -math.inf,
    hi: float = math.inf,
    *,
    lo_open: bool = False,
    hi_open: bool = False,
    symbolic: bool = False,
) -> Any:
    """A finite real number in the interval from ``lo`` to ``hi`` (closed unless ``*_open``).

    Numbers come back as ``float``.  With ``symbolic=True`` a sympy expression is accepted
    too: one with free symbols comes back unchanged (it is assumed to lie in the interval), a
    constant one is checked like a number and returned unchanged.

    >>> check_real("eps", 0.5, 0, 1, lo_open=True)
    0.5
    >>> check_real("eps", 0, 0, 1, lo_open=True)
    Traceback (most recent call last):
    ...
    ValueError: eps must lie in (0, 1], got eps=0
    """
    if _is_sympy(value) and symbolic:
        if is_symbolic(value):
            if value.is_real is False:
                raise ValueError(f"{name} must be real, got {name}={value!r}")
            return value
        if not value.is_real:
            raise ValueError(f"{name} must be real, got {name}={value!r}")
        _check_interval(name, value, float(value), lo, hi, lo_open, hi_open)
        return value
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        what = "a real number or a sympy expression" if symbolic else "a real number"
        raise TypeError(f"{name} must be {what}, got {value!r} ({type(value).__name__})")
    v = float(value)
    if not math.isfinite(v):
        raise ValueError(f"{name} must be finite, got {name}={value!r}")
    _check_interval(name, value, v, lo, hi, lo_open, hi_open)
    return v


def _check_interval(
    name: str, value: Any, v: float, lo: float, hi: float, lo_open: bool, hi_open: bool
) -> None:
    if v != v or v < lo or v > hi or (lo_open and v == lo) or (hi_open and v == hi):
        if hi == math.inf:
            expected = f"be {'>' if lo_open else '>='} {lo:g}"
        elif lo == -math.inf:
            expected = f"be {'<' if hi_open else '<='} {hi:g}"
        else:
            left, right = "(" if lo_open else "[", ")" if hi_open else "]"
            expected = f"lie in {left}{lo:g}, {hi:g}{right}"
        raise ValueError(f"{name} must {expected}, got {name}={value!r}")


def check_positive(name: str, value: Any, allow_zero: bool = False, symbolic: bool = False) -> Any:
    """A finite number > 0 (>= 0 with ``allow_zero``); see :func:`check_real`.

    >>> check_positive("tau", 2)
    2.0
    """
    return check_real(name, value, 0.0, lo_open=not allow_zero, symbolic=symbolic)


def check_choice(name: str, value: Any, choices: Sequence[T]) -> T:
    """One of ``choices`` (compared with ``==``).

    >>> check_choice("surrogate", "atan", ("atan", "sigmoid"))
    'atan'
    """
    try:
        ok = value in choices
    except TypeError:  # unhashable values against a set
        ok = False
    if not ok:
        raise ValueError(f"{name} must be one of {tuple(choices)}, got {name}={value!r}")
    return value


def check_flag(name: str, value: Any) -> bool:
    """A ``bool`` (numpy booleans accepted); integers and strings are refused.

    >>> check_flag("detach_reset", True)
    True
    """
    if type(value).__name__ == "bool_":
        return bool(value)
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, got {value!r} ({type(value).__name__})")
    return value


def check_tensor(
    name: str,
    value: Any,
    *,
    dtypes: Sequence[torch.dtype] | None = None,
    ndim: int | Sequence[int] | None = None,
    min_ndim: int | None = None,
    device: torch.device | str | None = None,
    nonempty: bool = False,
) -> torch.Tensor:
    """A tensor with one of ``dtypes``, a dimension count and (optionally) a device.

    >>> check_tensor("x", torch.zeros(2, 3), dtypes=(torch.float32,), ndim=2).shape
    torch.Size([2, 3])
    >>> check_tensor("x", torch.zeros(3), ndim=2)
    Traceback (most recent call last):
    ...
    ValueError: x must have 2 dimensions, got shape (3,)
    """
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if dtypes is not None and value.dtype not in tuple(dtypes):
        names = ", ".join(str(d).removeprefix("torch.") for d in dtypes)
        raise TypeError(f"{name} must have dtype in ({names}), got {value.dtype}")
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if value.dim() not in allowed:
            count = " or ".join(str(a) for a in allowed)
            raise ValueError(f"{name} must have {count} dimensions, got shape {tuple(value.shape)}")
    if min_ndim is not None and value.dim() < min_ndim:
        raise ValueError(
            f"{name} must have at least {min_ndim} dimensions, got shape {tuple(value.shape)}"
        )
    if device is not None and value.device != torch.device(device):
        raise ValueError(f"{name} must be on {torch.device(device)}, got it on {value.device}")
    if nonempty and value.numel() == 0:
        raise ValueError(f"{name} must not be empty, got shape {tuple(value.shape)}")
    return value


def check_finite_tensor(name: str, value: torch.Tensor) -> torch.Tensor:
    """``value`` unchanged if every entry is finite, else a ValueError naming the count.

    >>> check_finite_tensor("e", torch.tensor([1.0, float("nan")]))
    Traceback (most recent call last):
    ...
    ValueError: e must be finite, got 1 NaN or infinite entries of 2
    """
    if value.device.type == "meta":  # no data to check (and .item() would fail)
        raise ValueError(f"{name} must hold data, got a tensor on the meta device")
    if value.is_floating_point() or value.is_complex():
        bad = int((~torch.isfinite(value)).sum())
        if bad:
            raise ValueError(
                f"{name} must be finite, got {bad} NaN or infinite entries of {value.numel()}"
            )
    return value


def check_seed(seed: Any, name: str = "seed") -> int:
    """A seed: an integer in ``[0, 2**64 - 1]``.

    >>> check_seed(7)
    7
    """
    return check_int(name, seed, 0, MAX_SEED)


def make_generator(
    seed: int | None,
    generator: torch.Generator | None,
    *,
    default_seed: int | None = None,
    cpu: bool = False,
) -> torch.Generator:
    """The project's one seed-versus-generator policy.

    * ``seed`` and ``generator`` together are an error (one would be silently ignored);
    * a ``generator`` is used as given (with ``cpu=True`` it must be a CPU generator);
    * a ``seed`` gives a fresh CPU generator seeded with it;
    * neither gives a CPU generator seeded with ``default_seed``, or one seeded from fresh
      entropy when ``default_seed`` is None.

    >>> g = make_generator(3, None)
    >>> g.initial_seed()
    3
    >>> make_generator(3, g)
    Traceback (most recent call last):
    ...
    ValueError: pass either seed or generator, not both (got seed=3 and a generator)
    """
    if seed is not None and generator is not None:
        raise ValueError(
            f"pass either seed or generator, not both (got seed={seed!r} and a generator)"
        )
    if generator is not None:
        if not isinstance(generator, torch.Generator):
            raise TypeError(
                f"generator must be a torch.Generator or None, got {type(generator).__name__}"
            )
        if cpu and generator.device.type != "cpu":
            raise ValueError(
                f"generator must be a CPU torch.Generator, got one on {generator.device}"
            )
        return generator
    if seed is None:
        seed = default_seed
    gen = torch.Generator()
    if seed is None:
        gen.seed()
    else:
        gen.manual_seed(check_seed(seed))
    return gen
