"""Property-based bad-input sweep (issue 10) over every public function and class of
``toolkit.snn``: wrong types, dtypes (int, bool, complex, float16) and shapes, empty inputs,
NaN and Inf currents and inputs, the meta device, non-contiguous inputs, bool-as-int, floats
and strings for ints, negative, zero and huge sizes, bad neuron parameters, seeds >= 2**64,
bad generators, devices, cost tables and labels.  Each case must raise a TypeError or
ValueError that names the argument, or return its documented result (``_sweep.py`` lists
the cases and the promises; ``python -m tests.snn._sweep`` prints the counts).
"""

from __future__ import annotations

import math

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import toolkit.snn as snn

from .._sweep import SWEEP_SETTINGS, Case, check, sweep_tests
from ._sweep import CASES, ROWS

SWEEP = settings(**SWEEP_SETTINGS)
test_sampled_bad_inputs, test_every_listed_bad_value = sweep_tests(CASES, ROWS)

_X = torch.full((3, 2), 0.8)


@SWEEP
@given(st.floats(allow_nan=True, allow_infinity=True).filter(lambda v: not 1 <= v < math.inf))
def test_any_tau_below_one_or_not_finite_is_refused_with_decay(tau):
    check(Case(f"tau={tau!r}", lambda: snn.lif_multistep(_X, tau=tau), ("tau",)))


@SWEEP
@given(
    st.floats(-1e6, 1e6),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(tuple(snn.SURROGATES)),
)
def test_surrogate_grad_is_finite_non_negative_or_nan_for_nan(center, u, surrogate):
    # documented: elementwise; NaN gives NaN, +-inf gives 0, every other value a finite >= 0
    out = snn.surrogate_grad(torch.tensor([u, center], dtype=torch.float64), surrogate)
    if math.isnan(u):
        assert math.isnan(out[0])
    else:
        assert 0 <= out[0] < math.inf and (math.isfinite(u) or out[0] == 0)


@SWEEP
@given(st.integers(1, 2**62), st.integers(1, 2**40), st.integers(1, 8), st.floats(0, 1))
def test_lut_counts_is_instant_and_exact_for_any_size(n, m, group, density):
    # the closed form of the group sizes: a list of n / group groups hung for huge n
    c = snn.lut_counts(n, m, group, density, samples=3)
    full, rem = divmod(n, group)
    build = full * (2**group - group - 1) + (2**rem - rem - 1 if rem else 0)
    assert c.lut_build_adds == float(m * build)
    assert c.dense_adds == 3.0 * n * m


@SWEEP
@given(st.dictionaries(st.sampled_from(sorted(snn.DEFAULT_TABLE)), st.floats(), min_size=1))
def test_cost_table_entries_are_positive_finite_numbers(table):
    def valid(key, v):
        if not math.isfinite(v):
            return False
        if key == "baseline_utilization":
            return 0 < v <= 1
        return v >= 0 if key == "index_bytes" else v > 0

    ok = all(valid(k, v) for k, v in table.items())
    case = Case(
        f"table={table!r}",
        lambda: snn.h2learn_cost(_profile(), table=table),
        ("table",),
        expect=(lambda r: r.table == {**snn.DEFAULT_TABLE, **table}) if ok else None,
    )
    check(case)


_PROFILES: list[snn.SparsityProfile] = []


def _profile() -> snn.SparsityProfile:
    if not _PROFILES:
        from ._sweep import _PROFILE

        _PROFILES.append(_PROFILE)
    return _PROFILES[0]
