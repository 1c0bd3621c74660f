"""Bounds of every method: soundness vs sampling + PGD, exactness, monotonicity, tightness."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from toolkit.verify import (
    LpBall,
    Synonyms,
    bounds,
    build_graph,
    check_soundness,
    load_default_model,
    margin_bounds,
)
from toolkit.verify.methods import get_method

from ._helpers import tiny_input, tiny_model

METHODS = ["ibp", "crown", "forward", "baf", "alpha-crown"]
VARIANTS = list(itertools.product(["standard", "no_var", "none"], ["relu", "gelu", "tanh"]))
PS = [2, "inf", 1]


def _check_all_methods(m, e, spec, seed, margins_for=None, samples=48, steps=6, methods=METHODS):
    widths = {}
    for method in methods:
        lo, hi = bounds(m, e, spec, method, margins_for=margins_for)
        assert torch.isfinite(lo).all() and torch.isfinite(hi).all(), method
        res = check_soundness(
            m,
            e,
            spec,
            lo,
            hi,
            samples=samples,
            pgd_steps=steps,
            seed=seed,
            margins_for=margins_for,
            pgd_restarts=2,
        )
        assert res.ok, (method, res.violations[:3])
        widths[method] = float((hi - lo).mean())
    return widths


@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("layernorm,activation", VARIANTS)
def test_sound_all_methods_random_models(layernorm, activation, layers):
    seed = 3 * layers + VARIANTS.index((layernorm, activation))
    m = tiny_model(seed, layers=layers, layernorm=layernorm, activation=activation)
    e = tiny_input(m, B=2, T=4, seed=seed)
    p = PS[seed % 3]
    eps = {2: 0.1, "inf": 0.03, 1: 0.2}[p]
    _check_all_methods(m, e, LpBall(eps, p=p, positions=[seed % 4, (seed + 2) % 4]), seed)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [11, 12])
@pytest.mark.parametrize("p", PS)
@pytest.mark.parametrize("layernorm,activation", VARIANTS)
def test_sound_all_methods_sweep(layernorm, activation, p, seed):
    m = tiny_model(seed, layers=3, layernorm=layernorm, activation=activation)
    e = tiny_input(m, B=2, T=5, seed=seed)
    eps = {2: 0.15, "inf": 0.04, 1: 0.3}[p]
    # alpha-CROWN (seconds per bound) on one seed of the sweep keeps the suite's time in check
    methods = METHODS if seed == 11 else [m for m in METHODS if m != "alpha-crown"]
    _check_all_methods(
        m, e, LpBall(eps, p=p, positions=[1, 3]), seed, samples=128, steps=15, methods=methods
    )
    _check_all_methods(
        m, e, LpBall(eps, p=p, positions=[0]), seed, margins_for=[0, 1], methods=methods
    )


@pytest.mark.parametrize("layernorm,activation", VARIANTS[::2])
def test_margins_sound_and_tighter_than_interval_subtraction(layernorm, activation):
    m = tiny_model(5, layers=2, layernorm=layernorm, activation=activation)
    e = tiny_input(m, B=2, T=4, seed=5)
    spec = LpBall(0.1, p=2, positions=[1])
    y = [0, 2]
    _check_all_methods(m, e, spec, 5, margins_for=y)
    for method in ["crown", "forward", "baf"]:
        lo, hi = bounds(m, e, spec, method)
        mlo, mhi = margin_bounds(m, e, spec, y, method)
        for b in range(2):
            sub_lo = lo[b, y[b]] - hi[b]
            sub_hi = hi[b, y[b]] - lo[b]
            assert (mlo[b] >= sub_lo - 1e-9).all() and (mhi[b] <= sub_hi + 1e-9).all()
            assert mlo[b, y[b]] == 0 and mhi[b, y[b]] == 0


@pytest.mark.parametrize("layernorm,activation", VARIANTS)
def test_eps_zero_is_exact(layernorm, activation):
    m = tiny_model(7, layers=2, layernorm=layernorm, activation=activation)
    e = tiny_input(m, B=2, T=4, seed=7)
    z = m(e)
    for method in METHODS:
        lo, hi = bounds(m, e, LpBall(0.0, p=2, positions=[0, 1, 2, 3]), method)
        assert torch.allclose(lo, z, atol=1e-5) and torch.allclose(hi, z, atol=1e-5), method


def _linear_only(layernorm):
    """Zero W_q, W_k (uniform attention) and W_1 (constant FFN): logits affine in e."""
    m = tiny_model(8, layers=2, layernorm=layernorm, activation="gelu")
    with torch.no_grad():
        for blk in m.blocks:
            blk.attn.q.weight.zero_()
            blk.attn.k.weight.zero_()
            blk.ff1.weight.zero_()
    return m


@pytest.mark.parametrize("layernorm", ["no_var", "none"])
@pytest.mark.parametrize("p", PS)
def test_linear_only_model_bounded_exactly(layernorm, p):
    m = _linear_only(layernorm)
    e = tiny_input(m, B=1, T=4, seed=8)
    eps, pos = 0.3, [0, 2]
    J = torch.autograd.functional.jacobian(lambda x: m(x)[0], e)[:, 0]  # [C, T, D]
    q = {2: 2.0, "inf": 1.0, 1: math.inf}[p]
    rad = eps * sum(torch.linalg.vector_norm(J[:, t], ord=q, dim=-1) for t in pos)
    z = m(e)[0]
    for method in ["crown", "forward", "baf"]:
        lo, hi = bounds(m, e, LpBall(eps, p=p, positions=pos), method)
        assert torch.allclose(lo[0], z - rad, atol=1e-9), method
        assert torch.allclose(hi[0], z + rad, atol=1e-9), method


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("layernorm,activation", VARIANTS[1::3])
def test_monotone_in_eps(method, layernorm, activation):
    m = tiny_model(9, layers=2, layernorm=layernorm, activation=activation)
    e = tiny_input(m, B=2, T=4, seed=9)
    prev = None
    for eps in [0.0, 0.01, 0.03, 0.1, 0.3]:
        lo, hi = bounds(m, e, LpBall(eps, p=2, positions=[1, 2]), method)
        if prev is not None:
            assert (lo <= prev[0] + 1e-9).all() and (hi >= prev[1] - 1e-9).all(), eps
        prev = (lo, hi)


@pytest.mark.parametrize("layernorm,activation", VARIANTS)
def test_linear_methods_tighter_than_ibp_at_small_eps(layernorm, activation):
    """IBP is always intersected, so compare strictly: much tighter, and close to attacks."""
    m = tiny_model(10, layers=1, layernorm=layernorm, activation=activation)
    e = tiny_input(m, B=2, T=4, seed=10)
    spec = LpBall(0.01, p=2, positions=[1])
    w = {}
    for method in METHODS:
        lo, hi = bounds(m, e, spec, method)
        w[method] = (hi - lo).sum().item()
    res = check_soundness(m, e, spec, lo, hi, samples=64, pgd_steps=10, seed=0)
    observed = (res.observed_max - res.observed_min).sum().item()
    assert w["crown"] < 0.5 * w["ibp"] and w["baf"] < 0.5 * w["ibp"]
    assert w["forward"] < w["ibp"]
    assert w["crown"] <= 1.5 * observed  # near the attack's inner estimate at small eps
    assert w["crown"] <= w["forward"] + 1e-9


def test_intermediate_bounds_contain_sampled_node_values():
    m = tiny_model(12, layers=2, layernorm="standard", activation="gelu")
    e = tiny_input(m, B=1, T=4, seed=12)
    spec = LpBall(0.05, p=2, positions=[0, 3])
    dom = spec.domains(e)[0]
    g = build_graph(m, 4)
    x = dom.apply(dom.sample(256, torch.Generator().manual_seed(0), "surface")).reshape(-1, 4, 8)
    vals = g.evaluate(x)
    for method in METHODS:
        _lo, _hi, inter = bounds(m, e, spec, method, return_intermediate=True)
        assert list(inter)[:2] == ["embed", "L0.attention"] and "L1.out" in inter
        assert list(inter)[-1] == "logits"
        for name, (l, u) in inter.items():
            assert (vals[name] >= l - 1e-9).all() and (vals[name] <= u + 1e-9).all(), name


def test_batch_matches_single_sentences():
    m = tiny_model(13, layers=1, layernorm="standard", activation="tanh")
    e = tiny_input(m, B=3, T=4, seed=13)
    spec = LpBall(0.05, p="inf", positions=[2])
    for method in METHODS:
        lo, hi = bounds(m, e, spec, method)
        for b in range(3):
            l1, h1 = bounds(m, e[b], spec, method)  # 2-d input -> unbatched output
            assert l1.shape == (3,) and torch.allclose(l1, lo[b]) and torch.allclose(h1, hi[b])
            if get_method(method).optimizes_slopes:  # optimised per sentence: exactly equal
                assert torch.equal(l1, lo[b]) and torch.equal(h1, hi[b]), method


def test_synonyms_sound_by_enumeration_and_budget_nesting():
    m = tiny_model(14, layers=1, layernorm="no_var", activation="relu", vocab=30)
    ids = torch.randint(0, 30, (2, 4), generator=torch.Generator().manual_seed(14))
    e = m.embed(ids).detach()
    got = {}
    for budget in [1, 2, 3]:
        spec = Synonyms.nearest(m, ids, positions=[0, 1, 3], k=3, budget=budget)
        for method in METHODS:
            lo, hi = bounds(m, e, spec, method)
            res = check_soundness(m, e, spec, lo, hi, samples=10_000, seed=0)
            assert res.ok and res.n_points > 1, (budget, method)
            got[budget, method] = (lo, hi)
            if budget > 1:  # a larger budget allows a superset of sentences
                plo, phi = got[budget - 1, method]
                assert (lo <= plo + 1e-9).all() and (hi >= phi - 1e-9).all()


def test_synonyms_nearest_are_nearest():
    m = tiny_model(15, vocab=30)
    ids = torch.tensor([[3, 4, 5, 6]])
    spec = Synonyms.nearest(m, ids, positions=[1], k=4)
    table = m.embedding.weight.detach()
    d = (table - table[4]).norm(dim=-1)
    d[4] = math.inf
    expect = table[d.argsort()[:4]]
    assert torch.allclose(spec.candidates[1][0], expect)


@pytest.mark.parametrize("method", ["crown", "baf"])
def test_default_model_sound_and_tighter(method):
    model, vocab = load_default_model()
    e = model.embed(vocab.encode("a truly wonderful and moving film")[None]).detach()
    spec = LpBall(0.02, p=2, positions=[2])
    lo, hi = margin_bounds(model, e, spec, 1, method)
    res = check_soundness(model, e, spec, lo, hi, samples=64, pgd_steps=10, margins_for=1)
    assert res.ok and lo[0, 0] > 0
    ilo, _ = margin_bounds(model, e, spec, 1, "ibp")
    assert ilo[0, 0] < 0 < lo[0, 0]
