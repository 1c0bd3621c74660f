"""Issue 10, item 6: NaN and Inf are reported, never turned into moments that look valid."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from toolkit.isometry import analyze, empirical, predict_block


def _relu_block() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 8, bias=False), nn.ReLU())


@pytest.mark.parametrize("fill", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("measure", [empirical, analyze])
def test_non_finite_input_is_refused(measure, fill):
    # before: a ReLU's derivative at NaN is 0, so the all-NaN batch gave m1 = 0, finite
    x = torch.full((4, 8), fill)
    with pytest.raises(ValueError, match="x must be finite, got 32 NaN or infinite"):
        measure(_relu_block(), x, probes=2, seed=0)


def test_one_bad_entry_is_enough():
    x = torch.randn(4, 8)
    x[2, 3] = math.nan
    with pytest.raises(ValueError, match="got 1 NaN"):
        empirical(_relu_block(), x, probes=2, seed=0)


def test_non_finite_parameters_are_reported_not_measured():
    block = _relu_block()
    with torch.no_grad():
        block[0].weight[0, 0] = math.nan
    with pytest.raises(ValueError, match="module output at x must be finite"):
        empirical(block, torch.randn(4, 8), probes=2, seed=0)
    assert predict_block(block) == (None, "non-finite parameter(s): 0.weight")
    table = analyze(block, torch.randn(4, 8), probes=2, seed=0)
    for row in [*table, table.total]:
        assert row.measured is None and row.predicted is None
    assert "not measured" in table.total.note
