"""Property-based bad-input sweep (issue 10) over every public function and class of
``toolkit.metric``: wrong types, dtypes (int, bool, complex, float16) and shapes, empty and
mismatched tuples, NaN and Inf embeddings, the meta device, mixed dtypes, non-contiguous
inputs, bool-as-int, floats and strings for ints, negative, zero and huge sizes, one-class
labels, seeds >= 2**64 and bad generators.  Each case must raise a TypeError or ValueError
that names the argument, or return its documented result (``_sweep.py`` lists the cases and
the promises; ``python -m tests.metric._sweep`` prints the counts).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import toolkit.metric as tm

from .._sweep import SWEEP_SETTINGS, Case, check, sweep_tests
from ._sweep import CASES, ROWS

SWEEP = settings(**SWEEP_SETTINGS)
test_sampled_bad_inputs, test_every_listed_bad_value = sweep_tests(CASES, ROWS)

_A = torch.randn(3, 2, generator=torch.Generator().manual_seed(0))


@SWEEP
@given(
    st.sampled_from(
        [
            ("j_avg", lambda v: tm.hardness(v)),
            ("alpha", lambda v: tm.hardness(1.0, v)),
            ("j_avg", lambda v: tm.hardness_aware_negative(_A, _A, _A, v)),
            ("alpha", lambda v: tm.HDMLConfig(alpha=v)),
            ("lr", lambda v: tm.HDMLConfig(lr=v)),
        ]
    ),
    st.floats(allow_nan=True, allow_infinity=True).filter(
        lambda v: not (math.isfinite(v) and v > 0)
    ),
)
def test_any_non_positive_float_is_refused(named_call, value):
    name, call = named_call
    check(Case(f"{name}={value!r}", lambda: call(value), (name,)))


@SWEEP
@given(
    hnp.arrays(np.float64, st.integers(0, 30), elements=st.floats(-1e6, 1e6) | st.just(math.nan)),
    st.integers(1, 40),
)
def test_smooth_is_the_trailing_mean_and_nan_stays_in_its_window(values, window):
    out = tm.smooth(values, window)
    for i in range(len(values)):
        win = values[max(0, i - window + 1) : i + 1]
        if np.isnan(win).any():
            assert np.isnan(out[i])
        else:
            assert out[i] == np.float64(win.mean()) or math.isclose(
                out[i], win.mean(), rel_tol=1e-9, abs_tol=1e-6
            )


@SWEEP
@given(st.integers(2, 6), st.integers(1, 4), st.integers(0, 2**16))
def test_npair_negatives_are_the_other_positives(n, d, seed):
    p = torch.randn(n, d, generator=torch.Generator().manual_seed(seed))
    neg = tm.npair_negatives(p)
    for i in range(n):
        assert torch.equal(neg[i], torch.cat([p[:i], p[i + 1 :]]))
