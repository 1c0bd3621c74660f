"""The shared integer check: one wording, numpy and sympy integers accepted, bools refused."""

from __future__ import annotations

import numpy as np
import pytest
import sympy as sp

from toolkit._checks import check_int


def test_accepts_integers_of_every_kind():
    assert check_int("k", 3) == 3
    assert check_int("k", np.int64(4), 1, 8) == 4
    assert check_int("k", sp.Integer(5)) == 5


@pytest.mark.parametrize("value", [True, 2.0, "3", None, sp.Symbol("L", integer=True)])
def test_rejects_non_integers(value):
    with pytest.raises(TypeError, match="k must be an int with 1 <= k"):
        check_int("k", value)


def test_range_errors_name_the_bound():
    with pytest.raises(ValueError, match=r"k must satisfy 2 <= k <= 5, got k=6"):
        check_int("k", 6, 2, 5)
    with pytest.raises(ValueError, match=r"k must satisfy 0 <= k, got k=-1"):
        check_int("k", -1, 0)
