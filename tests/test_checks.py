"""The shared integer check: one wording, numpy and sympy integers accepted, bools refused."""

from __future__ import annotations

import re
from pathlib import Path

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


# Places where an integer type test is not an argument check: exact arithmetic picks the sympy
# type of a value, a CUDA device may be given by its index, and a SystemExit's code may be an
# exit status or a message.
_NOT_ARGUMENT_CHECKS = {
    "toolkit/isometry/engine/_series.py": 2,
    "toolkit/_backend.py": 1,
    "toolkit/__main__.py": 1,
}
_INTEGER_TEST = re.compile(
    r"isinstance\([^()]*?(\(\s*)?[^()]*\b(int|np\.integer|numbers\.Integral)\b"
)


def test_no_module_hand_rolls_its_integer_checks():
    """Argument checks go through ``toolkit/_checks.py``: one wording, bools refused, numpy and
    sympy integers accepted.  A module with its own ``isinstance(x, int)`` drifts from that."""
    root = Path(__file__).resolve().parent.parent
    found: dict[str, int] = {}
    for path in sorted((root / "toolkit").rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        if rel == "toolkit/_checks.py":
            continue
        hits = len(_INTEGER_TEST.findall(path.read_text()))
        if hits:
            found[rel] = hits
    assert found == _NOT_ARGUMENT_CHECKS, (
        "hand-rolled integer checks outside toolkit/_checks.py (use check_int): "
        f"{ {k: v for k, v in found.items() if _NOT_ARGUMENT_CHECKS.get(k) != v} }"
    )
