"""Shared machinery of the bad-input sweeps of every module (issue 10).

A *row* names one argument of one public function, the bad values to give it and a call that
takes the bad value (every other argument valid and small).  Each (row, value) is a
:class:`Case`; :func:`classify` runs it under a time limit and says which of

* ``clear``: a TypeError or ValueError whose message names the argument,
* ``documented``: a result the docstring promises for that input (a :class:`Doc` value
  carries the predicate: NaN propagated, an empty result for empty input, ...),
* ``obscure``: any other exception, or an error that does not name the argument,
* ``silent``: a result where an error was due, or one that breaks the promise,
* ``hang``: over the time limit,

it was.  ``tests/<module>/test_bad_inputs.py`` draws cases with hypothesis and requires
``clear`` or ``documented``; ``python -m tests.<module>._sweep`` prints the counts of every
case (the tables in the issue's closing note).
"""

from __future__ import annotations

import math
import re
import signal
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

NAN, INF = float("nan"), float("inf")
OUTCOMES = ("clear", "documented", "obscure", "silent", "hang")


@dataclass(frozen=True)
class Case:
    """One call; ``names`` are the words an error message may cite (the argument's name, or
    how the message spells it: ``sizes[1]``, ``table``...); ``expect`` is None when only an
    error will do, else a predicate on the result."""

    label: str
    call: Callable[[], Any]
    names: tuple[str, ...]
    expect: Callable[[Any], bool] | None = None


@dataclass(frozen=True)
class Doc:
    """A bad-looking value whose result is documented: ``expect(result)`` must hold."""

    value: Any
    expect: Callable[[Any], bool]
    note: str = ""

    def __repr__(self) -> str:
        return f"{self.note or 'doc'}:{_short(self.value)}"


@dataclass(frozen=True)
class Named:
    """A bad value with a short label (tensors print badly)."""

    value: Any
    note: str

    def __repr__(self) -> str:
        return self.note


#: (function, argument, bad values, call taking the bad value[, extra names an error may cite])
Row = tuple


class _Hang(Exception):
    pass


def _alarm(*_: Any) -> None:
    raise _Hang


#: How an error message must cite an argument's name (see :func:`names_cited`).
MATCHES = ("word", "word-not-after-dot", "substring")


def names_cited(message: str, names: Sequence[str], match: str = "word") -> bool:
    """Whether ``message`` cites one of ``names``: as a whole word (``"word"``: ``x`` in
    "x must be..." or "self.x", not in "max"), as a whole word not after a dot
    (``"word-not-after-dot"``: attention's sweep, where "q.shape" must not count as naming
    ``shape``), or anywhere (``"substring"``: the isometry and verify sweeps, whose names
    include phrases like "point mass")."""
    if match == "substring":
        return any(n in message for n in names)
    before = r"(?<![\w.])" if match == "word-not-after-dot" else r"(?<![\w])"
    return any(re.search(rf"{before}{re.escape(n)}(?![a-zA-Z0-9_])", message) for n in names)


def classify(case: Case, seconds: float = 10.0, match: str = "word") -> tuple[str, str]:
    """``(outcome, detail)`` of running ``case`` with a time limit (see the module).

    A TypeError or ValueError naming the argument is ``clear`` even where ``expect`` documents
    a result (issue 10 accepts either); ``match`` says how the error must name the argument
    (:func:`names_cited`).
    """
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        result = case.call()
    except _Hang:
        return "hang", f"over {seconds} s"
    except (TypeError, ValueError) as exc:
        msg = str(exc)
        named = names_cited(msg, case.names, match)
        return ("clear" if named else "obscure"), f"{type(exc).__name__}: {msg}"
    except Exception as exc:
        return "obscure", f"{type(exc).__name__}: {exc}"
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    if case.expect is None:
        return "silent", f"returned {_short(result)}"
    try:
        ok = bool(case.expect(result))
    except Exception as exc:
        ok, result = False, f"{_short(result)} ({type(exc).__name__}: {exc})"
    return ("documented" if ok else "silent"), f"returned {_short(result)}"


def _short(x: Any) -> str:
    if isinstance(x, torch.Tensor):
        head = x.flatten()[:6].tolist() if x.device.type != "meta" else "(meta)"
        return f"tensor{tuple(x.shape)} {str(x.dtype).removeprefix('torch.')} {head}"
    if isinstance(x, tuple):
        return "(" + ", ".join(_short(v) for v in x) + ")"
    return f"{x!r:.100}"


def cases(rows: Iterable[Row]) -> list[Case]:
    """One case per (row, bad value)."""
    out = []
    for row in rows:
        label, name, bad, call = row[:4]
        names = (name, *row[4]) if len(row) > 4 else (name,)
        for value in bad:
            text = repr(value)[:40]
            if isinstance(value, Doc):
                fn, expect = (lambda c=call, v=value.value: c(v)), value.expect
            else:
                raw = value.value if isinstance(value, Named) else value
                fn, expect = (lambda c=call, v=raw: c(v)), None
            out.append(Case(f"{label}[{name}={text}]", fn, names, expect))
    return out


def run(all_cases: Sequence[Case], seconds: float = 10.0, show: bool = True) -> Counter:
    """Outcome counts of ``all_cases`` (and, with ``show``, one line per failing case)."""
    counts: Counter = Counter()
    for case in all_cases:
        outcome, detail = classify(case, seconds)
        counts[outcome] += 1
        if show and outcome not in ("clear", "documented"):
            print(f"{outcome:>8} {case.label}: {detail[:200]}")
    return counts


def main(groups: dict[str, list[Case]]) -> None:
    """Print the counts per group (``python -m tests.<module>._sweep``)."""
    torch.set_num_threads(1)
    total: Counter = Counter()
    lines = []
    for group, group_cases in groups.items():
        tally = run(group_cases)
        total += tally
        lines.append(
            f"{group:>10} {sum(tally.values()):4d} " + str({o: tally[o] for o in OUTCOMES})
        )
    print("\n".join(lines))
    print(f"{'total':>10} {sum(total.values()):4d} " + str({o: total[o] for o in OUTCOMES}))
    sys.stdout.flush()


# -- bad values per kind of argument ---------------------------------------------------------
def ints(minimum: int, maximum: int | None = None, huge: bool = True) -> list[Any]:
    """Bad values of an int argument in ``[minimum, maximum]``; ``huge`` adds 2**70 (beyond
    any machine's memory, and beyond int64)."""
    bad: list[Any] = [None, True, 2.5, 2.0, "3", NAN, minimum - 1, -(2**70), np.float64(3)]
    if maximum is not None:
        bad.append(maximum + 1)
    elif huge:
        bad.append(2**70)
    return bad


NOT_A_NUMBER: list[Any] = [None, "1", [1.0], True, complex(1, 0)]
REAL = [*NOT_A_NUMBER, NAN, INF, -INF]
POSITIVE = [*REAL, 0, 0.0, -1, -1e-300]
NONNEG = [*REAL, -1, -1e-300]
FRACTION = [*REAL, -0.5, 1.5]  # in [0, 1]
OPEN_FRACTION = [*FRACTION, 0.0]  # in (0, 1]
FLAG: list[Any] = [None, 1, 0, "yes", 1.0, "False"]
CHOICE: list[Any] = [None, "nope", 3, "", b"atan"]
SEED: list[Any] = [-1, 2**64, 1.5, "0", True, NAN]
GENERATOR: list[Any] = ["g", 3, 0.5, np.random.default_rng(0)]
NOT_A_TENSOR: list[Any] = [None, "x", 1.0, [[1.0, 2.0]], np.ones((2, 3), dtype=np.float32)]


def finite(x: Any) -> bool:
    """True when every float in ``x`` (tensor, array, number, tuple, dict) is finite."""
    if isinstance(x, torch.Tensor):
        return not x.is_floating_point() or bool(torch.isfinite(x).all())
    if isinstance(x, np.ndarray):
        return not np.issubdtype(x.dtype, np.floating) or bool(np.isfinite(x).all())
    if isinstance(x, (tuple, list)):
        return all(finite(v) for v in x)
    if isinstance(x, dict):
        return all(finite(v) for v in x.values())
    if isinstance(x, (int, float)):
        return math.isfinite(x)
    return True


def has_nan(x: Any) -> bool:
    """True when ``x`` (a tensor, or a tuple whose first entry is one) holds a NaN."""
    t = x[0] if isinstance(x, tuple) else x
    return isinstance(t, torch.Tensor) and bool(torch.isnan(t).any())


def tensor_variants(
    base: torch.Tensor, *, dtypes: Sequence[torch.dtype] = (torch.float32, torch.float64)
) -> dict[str, Any]:
    """Bad versions of a valid floating tensor ``base``: wrong types, wrong dtypes (those not
    in ``dtypes``), too few and too many dimensions, empty, NaN, Inf and the meta device.
    Which of them have a documented result depends on the function; the caller wraps those
    in :class:`Doc`."""
    v: dict[str, Any] = {f"type:{type(t).__name__}": t for t in NOT_A_TENSOR}
    v["type:numpy-like"] = base.numpy()
    v["type:list-like"] = base.tolist()
    for dt in (torch.int64, torch.int32, torch.bool, torch.complex64, torch.float16):
        if dt not in dtypes:
            v[f"dtype:{str(dt).removeprefix('torch.')}"] = base.to(dt)
    v["ndim:0"] = base.flatten()[0].clone()
    v["ndim:+1"] = base.unsqueeze(0).clone()
    v["empty"] = base[:0].clone()
    nan, inf = base.clone(), base.clone()
    nan.view(-1)[0] = NAN
    inf.view(-1)[-1] = INF
    v["nan"], v["inf"] = nan, inf
    v["device:meta"] = base.to("meta")
    return v


def noncontiguous(t: torch.Tensor) -> torch.Tensor:
    """The same values in a transposed (non-contiguous) layout."""
    if t.dim() < 2:
        return torch.stack([t, t], -1)[..., 0]
    return t.transpose(-1, -2).contiguous().transpose(-1, -2)


def tensor_bad(
    base: torch.Tensor,
    *,
    dtypes: Sequence[torch.dtype] = (torch.float32, torch.float64),
    docs: dict[str, Callable[[Any], bool]] | None = None,
    skip: Sequence[str] = (),
) -> list[Any]:
    """:func:`tensor_variants` of ``base`` as bad values: those named in ``docs`` carry their
    documented result, the rest must be refused."""
    docs = docs or {}
    out: list[Any] = []
    for kind, t in tensor_variants(base, dtypes=dtypes).items():
        if kind in skip:
            continue
        out.append(Doc(t, docs[kind], kind) if kind in docs else Named(t, kind))
    return out


# -- the pytest side -------------------------------------------------------------------------
#: Bounded: each module's sweep runs in well under 20 s on one busy core.
SWEEP_SETTINGS = dict(
    max_examples=60,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


def check(case: Case) -> None:
    """Assert that ``case`` gives a clear error or its documented result."""
    outcome, detail = classify(case, seconds=20.0)
    assert outcome in ("clear", "documented"), f"{outcome}: {case.label}: {detail}"


def sweep_tests(all_cases: list[Case], rows: list[Row]) -> tuple[Any, Any]:
    """The two tests of a module's sweep: hypothesis draws cases, and a deterministic
    companion runs every listed bad value of every argument once."""

    @settings(**SWEEP_SETTINGS)
    @given(st.sampled_from(all_cases))
    def test_sampled_bad_inputs(case: Case) -> None:
        check(case)

    @pytest.mark.parametrize("row", rows, ids=[f"{r[0]}-{r[1]}" for r in rows])
    def test_every_listed_bad_value(row: Row) -> None:
        for case in cases([row]):
            check(case)

    return test_sampled_bad_inputs, test_every_listed_bad_value
