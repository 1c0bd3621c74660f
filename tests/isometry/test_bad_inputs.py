"""Property-based bad-input sweep (issue 10) over every public function of toolkit.isometry.

Each case calls one public function with one bad argument (all others valid and small):
wrong types, None, strings, booleans, NaN, Inf and sympy's ``nan``/``oo``/``zoo``, complex
and imaginary values, zero and negative sizes, out-of-range parameters, width mismatches,
clashing symbols, bad tensors (empty, 1-D, integer, all NaN or Inf), bad seeds, devices and
dtypes.  Every case must raise a TypeError or ValueError whose message names the argument
(``_sweep.py`` lists the cases; ``python tests/isometry/_sweep.py`` prints the counts).
Hypothesis also draws arbitrary floats for the real-valued arguments.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import toolkit.isometry as iso

from ._sweep import SCALARS, Case, all_cases, classify

SWEEP = settings(
    max_examples=80,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
_CASES = all_cases()


def _check(case: Case) -> None:
    outcome, detail = classify(case, seconds=20.0)
    assert outcome == "clear", f"{outcome}: {case.label}: {detail}"


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
_not_finite = st.sampled_from([math.nan, math.inf, -math.inf])
_outside_unit = st.floats(allow_nan=True, allow_infinity=True).filter(lambda v: not (0 <= v <= 1))


@SWEEP
@given(
    st.sampled_from(
        [
            ("q", lambda v: iso.gaussian_expectation(np.cos, v)),
            ("q", lambda v: iso.ReLU().moments(q=v)),
            ("gain", lambda v: iso.Linear(4, 4, gain=v)),
            ("ratio", lambda v: iso.marchenko_pastur_moments(2, ratio=v)),
            ("scale", lambda v: iso.marchenko_pastur_density(1.0, scale=v)),
            ("q", lambda v: iso.spectral_density(iso.Linear(4, 4), q=v, num=16)),
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
            ("factor", lambda v: iso.Scale(v)),
            ("scale", lambda v: iso.Residual(iso.Linear(4, 4), scale=v)),
            ("gamma", lambda v: iso.BatchNorm(gamma=v)),
            ("slope", lambda v: iso.LeakyReLU(v)),
            ("NetworkDesign.slope", lambda v: iso.NetworkDesign(slope=v)),
        ]
    ),
    st.one_of(_not_finite, _outside_unit),
)
def test_non_finite_or_out_of_range_parameters_are_refused(named_call, value):
    name, call = named_call
    if name in ("factor", "scale", "gamma") and math.isfinite(value):
        return  # any finite real is a valid factor, residual scale or gamma
    _check(Case(f"{name}={value!r}", lambda: call(value), (name,)))
