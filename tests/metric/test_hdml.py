"""The HDML objective: which losses move which parameters, weights, running means, errors."""

from __future__ import annotations

import math

import pytest
import torch

from toolkit.metric import (
    DIGITS_CONFIG,
    HDML,
    PAPER_CONFIG,
    EmbeddingNet,
    HDMLConfig,
    RunningMean,
    from_pml,
    sample_triplets,
)


def _batch(gen, n=24, classes=3):
    return torch.rand(n, 64, generator=gen), torch.arange(n) % classes


def _params(module):
    return [p.detach().clone() for p in module.parameters()]


def _moved(before, module):
    return [not torch.equal(b, p) for b, p in zip(before, module.parameters())]


def test_paper_defaults():
    assert (PAPER_CONFIG.alpha, PAPER_CONFIG.beta, PAPER_CONFIG.lam) == (90.0, 1e4, 0.5)


@pytest.mark.parametrize("loss", ["triplet", "npair"])
def test_each_optimizer_moves_its_own_parameters(generator, loss):
    torch.manual_seed(0)
    h = HDML(EmbeddingNet(embed_dim=4), 3, loss=loss, config=DIGITS_CONFIG)
    x, y = _batch(generator)
    h.step(x, y)  # first step: J_gen has no running mean yet, so the real loss alone
    before = [_params(m) for m in (h.model, h.generator, h.classifier)]
    stats = h.step(x, y)
    for moved in (_moved(b, m) for b, m in zip(before, (h.model, h.generator, h.classifier))):
        assert all(moved)
    assert 0.0 < stats["w_real"] < 1.0
    if loss == "npair":  # the synthetic N-pair negatives keep the other classes' labels
        t = h._tuples(h.model(x), y)
        assert t.negative.shape[:2] == t.negative_labels.shape == (3, 2)
        assert all(t.anchor_labels[i] not in t.negative_labels[i] for i in range(3))
    expected = stats["w_real"] * stats["j_m"] + (1 - stats["w_real"]) * stats["j_syn"]
    assert stats["j_metric"] == pytest.approx(expected, rel=1e-5)
    assert stats["j_gen"] == pytest.approx(stats["j_recon"] + 0.5 * stats["j_soft"], rel=1e-5)


def test_gradient_routing_matches_separate_backward(generator):
    """J_metric's gradient on the embedding equals a plain backward of J_metric alone, i.e.
    J_gen and the classifier's loss leak nothing into the metric parameters."""
    torch.manual_seed(1)
    h = HDML(EmbeddingNet(embed_dim=4), 3, config=DIGITS_CONFIG, seed=3)
    x, y = _batch(generator)
    h.step(x, y)
    state = {k: v.clone() for k, v in h.model.state_dict().items()}
    gen_state = {k: v.clone() for k, v in h.generator.state_dict().items()}
    rng_state = h._rng.get_state()
    captured = {}
    original = h.opt_metric.step

    def capture(*args, **kwargs):
        captured["grads"] = [p.grad.clone() for p in h.model.parameters()]
        return original(*args, **kwargs)

    h.opt_metric.step = capture
    w_real = math.exp(-h.config.beta / h.j_gen.value)
    j_avg = h.j_avg.value
    stats = h.step(x, y)
    # recompute J_metric by hand from the same state and tuples, backward it alone
    from toolkit.metric import hardness_aware_negative, triplet_loss

    h.model.load_state_dict(state)
    h.generator.load_state_dict(gen_state)
    h._rng.set_state(rng_state)
    yf = h.model.features(x)
    z = h.model.embed(yf)
    a, p, n = sample_triplets(y, h._rng)
    nh = hardness_aware_negative(z[a], z[p], z[n], j_avg, h.config.alpha)
    zs = h.model.embed(h.generator(torch.cat([z[a], z[p], nh])))
    k = len(a)
    j_syn = triplet_loss(zs[:k], zs[k : 2 * k], zs[2 * k :], h.config.margin)
    j_m = triplet_loss(z[a], z[p], z[n], h.config.margin)
    assert stats["j_syn"] == pytest.approx(j_syn.item(), rel=1e-5)
    h.model.zero_grad()
    (w_real * j_m + (1 - w_real) * j_syn).backward()
    for got, p_ in zip(captured["grads"], h.model.parameters()):
        assert torch.allclose(got, p_.grad, atol=1e-6)


def test_baseline_touches_no_generator(generator):
    torch.manual_seed(0)
    h = HDML(EmbeddingNet(embed_dim=4), 3, enabled=False)
    before = _params(h.generator)
    x, y = _batch(generator)
    stats = h.step(x, y)
    assert not any(_moved(before, h.generator)) and "j_syn" not in stats
    assert stats["j_metric"] == stats["j_m"]


def test_j_avg_is_running_mean_of_previous_losses(generator):
    torch.manual_seed(0)
    h = HDML(EmbeddingNet(embed_dim=4), 3, config=HDMLConfig(window=2, alpha=1.0))
    x, y = _batch(generator)
    s = [h.step(x, y) for _ in range(4)]
    assert s[0]["j_avg"] == pytest.approx(s[0]["j_m"])
    assert s[3]["j_avg"] == pytest.approx((s[1]["j_m"] + s[2]["j_m"]) / 2)
    assert s[3]["hardness"] == pytest.approx(math.exp(-1.0 / s[3]["j_avg"]))


def test_running_mean():
    r = RunningMean(3)
    assert r.value is None
    for v in (1, 2, 3, 4):
        r.push(v)
    assert r.value == 3.0


def test_sample_triplets_labels(generator):
    y = torch.tensor([0, 0, 1, 1, 2, 2, 2])
    a, p, n = sample_triplets(y, generator)
    assert (y[a] == y[p]).all() and (a != p).all() and (y[a] != y[n]).all()
    with pytest.raises(ValueError, match="two classes"):
        sample_triplets(torch.tensor([0, 0]), generator)


def test_with_pml_loss_and_miner(generator):
    pytest.importorskip(
        "pytorch_metric_learning", reason="pytorch-metric-learning is an optional extra"
    )
    from pytorch_metric_learning import losses, miners

    torch.manual_seed(0)
    h = HDML(
        EmbeddingNet(embed_dim=4),
        3,
        loss=from_pml(losses.TripletMarginLoss(margin=0.2)),
        miner=miners.TripletMarginMiner(margin=0.2, type_of_triplets="all"),
        config=DIGITS_CONFIG,
    )
    x, y = _batch(generator, n=12)  # the library's loss builds a distance matrix of all tuples
    stats = [h.step(x, y) for _ in range(3)]
    assert all(math.isfinite(s["j_metric"]) for s in stats)
    pair = HDML(EmbeddingNet(embed_dim=4), 3, miner=miners.PairMarginMiner())
    with pytest.raises(ValueError, match="pair miners"):
        pair.step(x, y)


def test_errors(generator):
    with pytest.raises(TypeError, match="model must be an EmbeddingNet"):
        HDML(torch.nn.Linear(2, 2), 3)
    with pytest.raises(ValueError, match="loss must be one of"):
        HDML(EmbeddingNet(), 3, loss="contrastive")
    with pytest.raises(ValueError, match="beta must be > 0"):
        HDMLConfig(beta=0.0)
    with pytest.raises(ValueError, match="one pair per class"):
        HDML(EmbeddingNet(), 3, loss="npair", miner=lambda e, y: None)
    h = HDML(EmbeddingNet(), 3)
    x, y = _batch(generator)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\)"):
        h.step(x, y + 5)
    with pytest.raises(ValueError, match="labels must have 24 entries"):
        h.step(x, y[:3])
