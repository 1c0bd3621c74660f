"""Property-based bad-input sweep (issue 10) over every public function and class of
``toolkit.norm``: wrong types, dtypes (int, bool, complex) and shapes, empty and zero-size
inputs, NaN and Inf, the meta device, non-contiguous inputs, bool-as-int, floats for ints,
negative, zero and huge sizes and ratios, malformed hand-built samples, bad seeds,
generators, devices and dtypes.  Each case must raise a TypeError or ValueError that names
the argument, or return its documented result (``_sweep.py`` lists the cases and the
promises; ``python -m tests.norm._sweep`` prints the counts).
"""

from __future__ import annotations

import math

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import toolkit.norm as tn

from .._sweep import SWEEP_SETTINGS, Case, check, sweep_tests
from ._sweep import ANALYSIS_CASES, ANALYSIS_ROWS, CASES, ROWS

_X = torch.randn(4, 2, 3, 3, generator=torch.Generator().manual_seed(0))
_W = torch.randn(4, 3, generator=torch.Generator().manual_seed(1))
SWEEP = settings(**SWEEP_SETTINGS)
test_sampled_bad_inputs, test_every_listed_bad_value = sweep_tests(CASES, ROWS)
# toolkit.norm.analysis (the experiments' functions)
test_analysis_sampled_bad_inputs, test_analysis_every_listed_bad_value = sweep_tests(
    ANALYSIS_CASES, ANALYSIS_ROWS
)


_any_float = st.floats(allow_nan=True, allow_infinity=True)


@SWEEP
@given(
    st.sampled_from(
        [
            ("sample_ratio", lambda v: tn.BatchSamplingBN2d(3, sample_ratio=v)),
            ("patch_ratio", lambda v: tn.FeatureSamplingBN2d(3, patch_ratio=v)),
            ("sample_ratio", lambda v: tn.sample_count(8, v)),
            ("patch_ratio", lambda v: tn.patch_size(4, 4, v)),
        ]
    ),
    _any_float.filter(lambda v: not 0 < v <= 1),
)
def test_any_ratio_outside_the_unit_interval_is_refused(named_call, value):
    name, call = named_call
    check(Case(f"{name}={value!r}", lambda: call(value), (name,)))


@SWEEP
@given(
    st.sampled_from(
        [
            ("eps", lambda v: tn.sampled_batch_norm(_X, eps=v)),
            ("gain", lambda v: tn.standardize_weight(_W, gain=v)),
            ("eps", lambda v: tn.standardize_weight(_W, eps=v)),
            ("ws_eps", lambda v: tn.WeightStandardizedConv2d(2, 2, 1, ws_eps=v)),
        ]
    ),
    _any_float.filter(lambda v: not (math.isfinite(v) and v > 0)),
)
def test_any_non_positive_float_is_refused(named_call, value):
    name, call = named_call
    check(Case(f"{name}={value!r}", lambda: call(value), (name,)))


@SWEEP
@given(st.integers(-(2**70), 2**70), st.floats(-2.0, 2.0))
def test_sample_count_is_the_documented_floor_or_a_clear_error(batch, ratio):
    case = Case(
        f"sample_count({batch}, {ratio})",
        lambda: tn.sample_count(batch, ratio),
        ("batch", "sample_ratio"),
        expect=lambda k: k == math.floor(ratio * batch + 1e-9) and 1 <= k <= batch,
    )
    check(case)
