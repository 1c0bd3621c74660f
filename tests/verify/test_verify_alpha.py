"""alpha-CROWN: optimised planes stay sound for every parameter, never lose to CROWN, and gain
where the relaxation has room (ReLU lower slopes, convex tangents)."""

from __future__ import annotations

import pytest
import torch

from toolkit.verify import LpBall, Synonyms, bounds, check_soundness, margin_bounds
from toolkit.verify.relaxations import GELU, Tanh

from ._helpers import tiny_input, tiny_model
from .test_verify_relaxations import ACTS, F64, TOL, _domain_intervals


@pytest.mark.parametrize(
    "op,f,dom",
    ACTS,
    ids=lambda v: type(v).__name__ if not callable(v) or hasattr(v, "relax") else "",
)
@pytest.mark.parametrize("kind", ["straddle", "any", "wide"])
def test_planes_at_any_parameter_are_sound_on_a_dense_grid(op, f, dom, kind):
    gen = torch.Generator().manual_seed(len(kind))
    l, u = _domain_intervals(dom, kind, 200, gen)
    for t in (
        torch.zeros(200, dtype=F64),
        torch.ones(200, dtype=F64),
        torch.rand(200, generator=gen, dtype=F64),
    ):
        tU = torch.rand(200, generator=gen, dtype=F64)
        aL, bL, aU, bU = op.relax([(l, u)], points=(t, tU))
        x = l + (u - l) * torch.linspace(0, 1, 2001, dtype=F64)[:, None]
        fx = f(x)
        scale = 1 + fx.abs()
        assert (aL * x + bL <= fx + TOL * scale).all(), "lower plane above f"
        assert (fx <= aU * x + bU + TOL * scale).all(), "upper plane below f"


@pytest.mark.parametrize(
    "op,f,dom",
    ACTS,
    ids=lambda v: type(v).__name__ if not callable(v) or hasattr(v, "relax") else "",
)
def test_initial_points_reproduce_crown_planes_on_free_sides(op, f, dom):
    gen = torch.Generator().manual_seed(5)
    l, u = _domain_intervals(dom, "any", 100, gen)
    l, u = op.input_interval(l, u)
    ok = u > l
    l, u = l[ok], u[ok]
    rel = op.relax([(l, u)])
    fl, fu = op.free_sides(l, u)
    got = op.relax([(l, u)], points=op.initial_points(rel, l, u))
    x = 0.5 * (l + u)
    for free, a, b, a0, b0 in (
        (fl, got[0], got[1], rel[0], rel[1]),
        (fu, got[2], got[3], rel[2], rel[3]),
    ):
        if not free.any():
            continue
        # the planes agree where CROWN's choice is among the parameterised ones: always for
        # a pure-curvature piece (the midpoint tangent), mostly for a mixed one (GELU's
        # derivative at the midpoint can lie outside the range spanned by the ends)
        same = torch.isclose(a, a0, rtol=1e-6, atol=1e-9)
        assert same[free].float().mean() > (0.5 if isinstance(op, (GELU, Tanh)) else 0.999)
        gap = (a * x + b) - (a0 * x + b0)
        assert torch.allclose(gap[free & same], torch.zeros(1, dtype=F64), atol=1e-6)


VARIANTS = [("no_var", "relu"), ("standard", "gelu"), ("none", "tanh")]


@pytest.mark.parametrize("layernorm,activation", VARIANTS)
def test_never_looser_than_crown_and_sound(layernorm, activation):
    m = tiny_model(21, layers=2, layernorm=layernorm, activation=activation)
    e = tiny_input(m, B=2, T=4, seed=21)
    y = m(e).argmax(-1)
    spec = LpBall(0.1, p=2, positions=[1, 2])
    for margins in (None, y):
        lc, hc = bounds(m, e, spec, "crown", margins_for=margins)
        la, ha = bounds(m, e, spec, "alpha-crown", margins_for=margins)
        assert (la >= lc - 1e-12).all() and (ha <= hc + 1e-12).all()
        res = check_soundness(
            m, e, spec, la, ha, samples=96, pgd_steps=10, seed=2, margins_for=margins
        )
        assert res.ok, res.violations[:3]


def test_gains_on_a_relu_model_and_zero_steps_is_crown():
    m = tiny_model(1, layers=2, layernorm="no_var", activation="relu")
    e = tiny_input(m, B=2, T=4)
    y = m(e).argmax(-1)
    spec = LpBall(0.3, p=2, positions=[1, 2])
    lc, _ = margin_bounds(m, e, spec, y, "crown")
    la, _ = margin_bounds(m, e, spec, y, "alpha-crown")
    assert float((la - lc).max()) > 1e-3  # the lower ReLU slopes had room
    l0, _ = margin_bounds(m, e, spec, y, "alpha-crown", alpha_steps=0)
    assert torch.equal(l0, lc)
    more, _ = margin_bounds(m, e, spec, y, "alpha-crown", alpha_steps=60)
    # the first 20 updates are the same, and the best iterate is kept
    assert (more >= la - 1e-12).all()


def test_alpha_options_are_checked():
    m = tiny_model(1)
    e = tiny_input(m, B=1, T=4)
    spec = LpBall(0.1, p=2, positions=[1])
    with pytest.raises(ValueError, match="alpha_steps"):
        bounds(m, e, spec, "alpha-crown", alpha_steps=-1)
    with pytest.raises(ValueError, match="alpha_lr"):
        bounds(m, e, spec, "alpha-crown", alpha_lr=0.0)


def test_synonym_bounds_of_a_batch_equal_each_sentence_alone():
    """Slopes are optimised per sentence, with each sentence's own candidates, so a sentence's
    alpha-CROWN bounds do not depend on its batch (issue 10): equal bit for bit."""
    m = tiny_model(21, layers=1, layernorm="no_var", activation="relu", vocab=30)
    ids = torch.randint(0, 30, (2, 4), generator=torch.Generator().manual_seed(21))
    e = m.embed(ids).detach()
    spec = Synonyms.nearest(m, ids, positions=[1, 2], k=3, budget=1)
    lo, hi = bounds(m, e, spec, "alpha-crown", alpha_steps=5)
    for b in range(2):
        one = Synonyms.nearest(m, ids[b : b + 1], positions=[1, 2], k=3, budget=1)
        l1, h1 = bounds(m, e[b : b + 1], one, "alpha-crown", alpha_steps=5)
        assert torch.equal(l1[0], lo[b]) and torch.equal(h1[0], hi[b])
