"""Property-based bad-input sweep (issue 10) over every public function of toolkit.verify.

Each case calls one public function with one bad argument (all others valid and tiny):
wrong types, None, strings, booleans, NaN and Inf, complex values, zero and negative sizes,
out-of-range labels and positions, bad tensors (empty, wrong shape, integer, NaN or Inf
embeddings), bad seeds and devices (also through ``TOOLKIT_DEVICE``), non-finite bounds
given to the soundness check, a below-spacing ``tol`` and a synonym set with 184,756 subsets.
Every case must raise a TypeError or ValueError whose message names the argument, or give
its documented result (``_sweep.py`` lists the cases; ``python tests/verify/_sweep.py``
prints the counts).  Hypothesis also draws arbitrary floats for the real-valued arguments.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import toolkit.verify as V

from ._sweep import _BALL, _E, _HI, _LO, _M, SCALARS, Case, all_cases, classify

SWEEP = settings(
    max_examples=60,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
_CASES = all_cases()


def _check(case: Case) -> None:
    outcome, detail = classify(case, seconds=20.0)
    assert outcome in ("clear", "documented"), f"{outcome}: {case.label}: {detail}"


@SWEEP
@given(st.sampled_from(_CASES))
def test_sampled_bad_inputs_give_clear_errors(case):
    _check(case)


@pytest.mark.parametrize("label, name", sorted({(f, a) for f, a, _, _ in SCALARS}))
def test_every_listed_bad_value(label, name):
    # deterministic companion: every bad value of every argument
    for case in _CASES:
        if case.label.startswith(f"{label}[{name}="):
            _check(case)


_not_positive = st.floats(allow_nan=True, allow_infinity=True).filter(
    lambda v: not (math.isfinite(v) and v > 0)
)
_not_nonneg = st.floats(allow_nan=True, allow_infinity=True).filter(
    lambda v: not (math.isfinite(v) and v >= 0)
)


@SWEEP
@given(
    st.sampled_from(
        [
            ("alpha_lr", lambda v: V.bounds(_M, _E, _BALL, "ibp", alpha_lr=v)),
            ("max_eps", lambda v: V.certified_radius(_M, _E, 0, [1], 2, "ibp", 1e-3, v)),
            ("tol", lambda v: V.certified_radius(_M, _E, 0, [1], 2, "ibp", v)),
        ]
    ),
    _not_positive,
)
def test_any_non_positive_float_is_refused(named_call, value):
    name, call = named_call
    _check(Case(f"{name}={value!r}", lambda: call(value), (name,)))


@SWEEP
@given(
    st.sampled_from(
        [
            ("atol", lambda v: V.check_soundness(_M, _E, _BALL, _LO, _HI, 2, 0, atol=v)),
            ("rtol", lambda v: V.check_soundness(_M, _E, _BALL, _LO, _HI, 2, 0, rtol=v)),
            ("eps", lambda v: V.LpBall(v)),
        ]
    ),
    _not_nonneg,
)
def test_any_negative_or_non_finite_tolerance_is_refused(named_call, value):
    name, call = named_call
    _check(Case(f"{name}={value!r}", lambda: call(value), (name,)))
