"""Bound methods as data, and the one-pass public calls the explorer and the notebook use."""

from __future__ import annotations

import pytest
import torch

from toolkit.verify import (
    METHOD_TABLE,
    METHODS,
    Graph,
    LpBall,
    Synonyms,
    bound_profile,
    bounds,
    build_graph,
    check_soundness,
    graph_bounds,
    margin_bounds,
)
from toolkit.verify.methods import get_method
from toolkit.verify.relaxations import add_softmax

from ._helpers import tiny_input, tiny_model


def test_method_records():
    assert tuple(METHOD_TABLE) == METHODS == ("ibp", "crown", "forward", "baf", "alpha-crown")
    assert [m for m in METHODS if METHOD_TABLE[m].backward] == ["crown", "baf", "alpha-crown"]
    assert [m for m in METHODS if METHOD_TABLE[m].forward_linear] == ["forward", "baf"]
    assert [m for m in METHODS if METHOD_TABLE[m].stops_at_attention] == ["baf"]
    assert [m for m in METHODS if METHOD_TABLE[m].optimizes_slopes] == ["alpha-crown"]
    assert len({m.color for m in METHOD_TABLE.values()}) == len(METHODS)
    assert get_method(METHOD_TABLE["crown"]) is METHOD_TABLE["crown"]
    with pytest.raises(ValueError, match="method must be one of"):
        get_method("CROWN")
    with pytest.raises(dataclasses_frozen_error()):
        METHOD_TABLE["ibp"].backward = True  # type: ignore[misc]


def dataclasses_frozen_error():
    import dataclasses

    return dataclasses.FrozenInstanceError


@pytest.mark.parametrize("method", METHODS)
def test_bound_profile_equals_the_separate_calls(method):
    m = tiny_model(6, layers=2, layernorm="standard", activation="gelu")
    e = tiny_input(m, B=2, T=4, seed=6)
    spec = LpBall(0.03, p=2, positions=[1, 3])
    label = torch.tensor([0, 2])
    kw = dict(alpha_steps=3)
    prof = bound_profile(m, e, spec, label, method, **kw)
    lo, hi, inter = bounds(m, e, spec, method, return_intermediate=True, **kw)
    mlo, mhi, _ = margin_bounds(m, e, spec, label, method, return_intermediate=True, **kw)
    assert torch.allclose(prof.lower, lo, atol=1e-9) and torch.allclose(prof.upper, hi, atol=1e-9)
    assert torch.allclose(prof.margin_lower, mlo, atol=1e-9)
    assert torch.allclose(prof.margin_upper, mhi, atol=1e-9)
    assert prof.layers == list(inter) and prof.layers[-1] == "logits"
    width = torch.stack([(u - l).flatten(1).mean(1) for l, u in inter.values()], 1)
    assert torch.allclose(prof.layer_width, width)
    others = torch.ones_like(mlo, dtype=torch.bool)
    others[torch.arange(2), label] = False
    assert torch.equal(prof.certified, torch.stack([mlo[b][others[b]].min() > 0 for b in range(2)]))


def test_bound_profile_one_sentence_default_label_and_synonyms():
    m = tiny_model(7, layers=1)
    e = tiny_input(m, B=1, T=4, seed=7)[0]
    prof = bound_profile(m, e, LpBall(1e-3, positions=[0]))
    assert int(prof.label) == int(m(e[None]).argmax())
    assert prof.lower.shape == (3,) and prof.layer_width.dim() == 1
    assert bool(prof.certified)  # a tiny ball around a clean prediction
    # a union over budget subsets: the same as bounds()
    spec = Synonyms({0: torch.randn(2, 8, dtype=torch.float64), 2: e[None, 1]}, budget=1)
    prof = bound_profile(m, e, spec, 1, "crown")
    lo, hi = bounds(m, e, spec, "crown")
    assert torch.allclose(prof.lower, lo) and torch.allclose(prof.upper, hi)
    with pytest.raises(TypeError, match="alpha_steps"):
        bound_profile(m, e, LpBall(0.1), 0, alpha_steps=1.5)


def test_graph_bounds_of_a_softmax_contain_sampled_values():
    g = Graph()
    add_softmax(g, g.add("input", None, (), (1, 3)), "softmax")
    x = torch.tensor([[[1.0, 0.0, -0.5]]], dtype=torch.float64)
    spec = LpBall(0.5, p="inf", positions=[0])
    samples = torch.softmax(x + torch.empty(4000, 1, 3).uniform_(-0.5, 0.5), -1)[:, 0]
    widths = {}
    for method in ("ibp", "crown"):
        lo, hi = graph_bounds(g, x, spec, method)
        assert lo.shape == (1, 1, 3)
        assert (samples >= lo[0] - 1e-12).all() and (samples <= hi[0] + 1e-12).all()
        widths[method] = float((hi - lo).sum())
    assert widths["crown"] < widths["ibp"]
    with pytest.raises(ValueError, match="e must have shape"):
        graph_bounds(g, torch.zeros(1, 2, 3), spec)
    with pytest.raises(TypeError, match="graph"):
        graph_bounds("softmax", x, spec)


def test_graph_bounds_of_a_model_graph_equal_bounds():
    m = tiny_model(8, layers=1, layernorm="no_var", activation="relu")
    e = tiny_input(m, B=2, T=4, seed=8)
    spec = LpBall(0.05, p=1, positions=[2])
    for method in ("crown", "baf"):
        lo, hi = graph_bounds(build_graph(m, 4), e, spec, method)
        rlo, rhi = bounds(m, e, spec, method)
        assert torch.allclose(lo, rlo) and torch.allclose(hi, rhi)


def test_soundness_seed_and_generator_policy():
    m = tiny_model(9, layers=1)
    e = tiny_input(m, B=1, T=4, seed=9)
    spec = LpBall(0.05, p=2, positions=[1])
    lo, hi = bounds(m, e, spec, "ibp")
    kw = dict(samples=16, pgd_steps=2)
    by_seed = check_soundness(m, e, spec, lo, hi, seed=11, **kw)
    by_gen = check_soundness(m, e, spec, lo, hi, generator=torch.Generator().manual_seed(11), **kw)
    assert torch.equal(by_seed.observed_min, by_gen.observed_min)
    assert torch.equal(by_seed.observed_max, by_gen.observed_max)
    default = check_soundness(m, e, spec, lo, hi, **kw)
    assert torch.equal(
        default.observed_max, check_soundness(m, e, spec, lo, hi, 16, 2, 0).observed_max
    )
    with pytest.raises(ValueError, match="either seed or generator"):
        check_soundness(m, e, spec, lo, hi, seed=1, generator=torch.Generator(), **kw)
    with pytest.raises(TypeError, match="samples"):
        check_soundness(m, e, spec, lo, hi, samples=2.5)
