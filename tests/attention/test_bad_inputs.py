"""Property-based bad-input sweep (issue 10): every public function of
``toolkit.attention`` and ``toolkit.models.text``, fed wrong types, dtypes, shapes and
devices, empty tensors, NaN and Inf, non-contiguous or half-precision tensors, extreme sizes
and out-of-range scalars, either raises a TypeError/ValueError that names the argument or
returns its documented result (NaN propagated, an empty result for empty input, the same
result for any memory layout, ...).  The cases and their promised outcomes live in
``_sweep.py``; ``python tests/attention/_sweep.py`` counts the outcomes of a larger sweep.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings

from ._sweep import SCALARS, Case, classify, metric_cases, qkv_cases, scalar_cases

# Bounded: the whole file runs in a few seconds on two busy cores.
SWEEP = settings(
    max_examples=60,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


def _check(case: Case) -> None:
    outcome, detail = classify(case, seconds=20.0)
    assert outcome in ("clear", "documented"), f"{outcome}: {case.label}: {detail}"


@SWEEP
@given(qkv_cases())
def test_attention_functions_on_bad_tensors(case):
    _check(case)


@SWEEP
@given(metric_cases())
def test_metrics_on_bad_tensors(case):
    _check(case)


@SWEEP
@given(scalar_cases())
def test_bad_scalar_arguments(case):
    _check(case)


@pytest.mark.parametrize(
    "label, name, bad, call", SCALARS, ids=[f"{f}-{a}" for f, a, _, _ in SCALARS]
)
def test_every_bad_scalar_value(label, name, bad, call):
    # Deterministic companion of the sweep: every listed bad value of every argument.
    for value in bad:
        _check(Case(f"{label}[{name}={value!r:.30}]", lambda v=value: call(v), (name,)))
