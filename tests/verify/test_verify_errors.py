"""Clear errors on bad input (ValueError/TypeError naming the argument)."""

from __future__ import annotations

import pytest
import torch

from toolkit.verify import (
    LpBall,
    Synonyms,
    bounds,
    certified_radius,
    estimate_memory,
    margin_bounds,
)

from ._helpers import tiny_input, tiny_model


@pytest.fixture(scope="module")
def me():
    m = tiny_model()
    return m, tiny_input(m)


@pytest.mark.parametrize(
    "make,match",
    [
        (lambda: LpBall(-0.1), "eps"),
        (lambda: LpBall(float("nan")), "eps"),
        (lambda: LpBall(0.1, p=3), "p must"),
        (lambda: LpBall(0.1, p="two"), "p must"),
        (lambda: LpBall(torch.tensor([0.1, -1.0])), "eps"),
        (lambda: Synonyms({0: torch.zeros(2, 8)}, budget=0), "budget"),
        (lambda: Synonyms({0: torch.zeros(8)}), r"candidates\[0\]"),
    ],
)
def test_spec_construction_errors(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_eps_type_error():
    with pytest.raises(TypeError, match="eps"):
        LpBall("0.1")


@pytest.mark.parametrize("positions", [[4], [-1], [0, 0], []])
def test_positions_out_of_range(me, positions):
    m, e = me
    with pytest.raises(ValueError, match="positions"):
        bounds(m, e, LpBall(0.1, positions=positions), "ibp")


def test_label_and_shape_and_method_errors(me):
    m, e = me
    spec = LpBall(0.1, positions=[0])
    with pytest.raises(ValueError, match="label"):
        margin_bounds(m, e, spec, 3)
    with pytest.raises(ValueError, match="label"):
        margin_bounds(m, e, spec, [0, 1, 2])
    with pytest.raises(TypeError, match="label"):
        margin_bounds(m, e, spec, 0.5)
    with pytest.raises(ValueError, match="method"):
        bounds(m, e, spec, "deeppoly")
    with pytest.raises(ValueError, match="shape"):
        bounds(m, e[..., :5], spec)
    with pytest.raises(ValueError, match="shape"):
        bounds(m, e[None], spec)
    with pytest.raises(TypeError, match="spec"):
        bounds(m, e, 0.1)
    with pytest.raises(TypeError, match="model"):
        bounds(torch.nn.Linear(2, 2), e, spec)
    with pytest.raises(ValueError, match="eps"):
        bounds(m, e, LpBall(torch.tensor([0.1, 0.2, 0.3])))
    with pytest.raises(ValueError, match="candidates"):
        bounds(m, e, Synonyms({0: torch.zeros(3, 5)}))
    with pytest.raises(ValueError, match="tol"):
        certified_radius(m, e, 0, [0], tol=0)
    with pytest.raises(ValueError, match="max_eps"):
        certified_radius(m, e, 0, [0], max_eps=float("inf"))
    with pytest.raises(ValueError, match="seq_len"):
        estimate_memory(m, 100)
