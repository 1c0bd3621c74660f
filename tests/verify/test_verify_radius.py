"""Certified radii: each is proven by the bounds and survives sampling + PGD attacks."""

from __future__ import annotations

import pytest
import torch

from toolkit.verify import LpBall, certified_radius, check_soundness, margin_bounds

from ._helpers import tiny_input, tiny_model


@pytest.fixture(scope="module")
def setup():
    m = tiny_model(21, layers=1, layernorm="standard", activation="relu", num_classes=2)
    e = tiny_input(m, B=2, T=4, seed=21)
    y = m(e).argmax(-1)
    return m, e, y


@pytest.mark.parametrize("method,p", [("crown", 2), ("baf", "inf"), ("forward", 1), ("ibp", 2)])
def test_radius_is_certified_and_not_attackable(setup, method, p):
    m, e, y = setup
    positions = [0, 2, 3]
    tol = 1e-3
    r = certified_radius(m, e, y, positions, p=p, method=method, tol=tol, max_eps=4.0)
    assert r.shape == (2, 3) and (r >= 0).all() and (r <= 4.0).all()
    if method != "ibp":
        assert (r > 0).all()
    for b in range(2):
        for j, t in enumerate(positions):
            if r[b, j] == 0:
                continue
            spec = LpBall(float(r[b, j]), p=p, positions=[t])
            lo, hi = margin_bounds(m, e[b : b + 1], spec, y[b : b + 1], method)
            assert (lo[0, torch.arange(2) != y[b]] > 0).all()  # proven at the radius
            res = check_soundness(
                m,
                e[b : b + 1],
                spec,
                lo,
                hi,
                samples=32,
                pgd_steps=8,
                margins_for=y[b : b + 1],
                seed=b,
            )
            assert res.ok and (res.observed_min[0, torch.arange(2) != y[b]] > 0).all()
            if r[b, j] < 4.0:  # bisection stopped within tol of a failing eps
                lo2, _ = margin_bounds(
                    m,
                    e[b : b + 1],
                    LpBall(float(r[b, j]) + tol, p=p, positions=[t]),
                    y[b : b + 1],
                    method,
                )
                assert not (lo2[0, torch.arange(2) != y[b]] > 0).all()


def test_radius_batched_equals_single(setup):
    m, e, y = setup
    r = certified_radius(m, e, y, [1, 3], p=2, method="baf", tol=1e-3)
    for b in range(2):
        for j, t in enumerate([1, 3]):
            r1 = certified_radius(m, e[b], int(y[b]), [t], p=2, method="baf", tol=1e-3)
            assert r1.shape == (1,) and torch.allclose(r1[0], r[b, j])


def test_radius_of_tighter_method_is_not_smaller_typically(setup):
    m, e, y = setup
    rc = certified_radius(m, e, y, [0, 1], method="crown", tol=1e-3)
    ri = certified_radius(m, e, y, [0, 1], method="ibp", tol=1e-3)
    assert (rc >= ri).all() and (rc > ri).any()


def test_wrong_label_gives_zero(setup):
    m, e, y = setup
    r = certified_radius(m, e, 1 - y, [0], method="baf")
    assert (r == 0).all()
