"""TinyTransformer: deterministic weights, trace contents, sparse attention hook, padding."""

from __future__ import annotations

import functools

import pytest
import torch

from toolkit.attention import attention_metrics, nm_attention, tradeoff_curves
from toolkit.models import AttentionTrace, TinyTransformer


def test_seeded_weights_are_deterministic():
    a, b, c = TinyTransformer(seed=3), TinyTransformer(seed=3), TinyTransformer(seed=4)
    for (name, pa), pb, pc in zip(a.named_parameters(), b.parameters(), c.parameters()):
        assert torch.equal(pa, pb)
        if name == "embedding.weight":
            assert not torch.equal(pa, pc)


def test_trace_shapes_and_consistency():
    model = TinyTransformer(layers=3, heads=4, dim=32)
    ids = model.example_ids(batch=2, length=12)
    h, trace = model(ids, return_attention=True)
    assert isinstance(trace, AttentionTrace) and trace.num_layers == 3 and trace.num_heads == 4
    assert h.shape == (2, 12, 32)
    for q, k, v, s, p in zip(trace.q, trace.k, trace.v, trace.scores, trace.probs):
        assert q.shape == k.shape == v.shape == (2, 4, 12, 8)
        assert s.shape == p.shape == (2, 4, 12, 12)
        torch.testing.assert_close(s, q @ k.mT / 8**0.5)
        torch.testing.assert_close(p, torch.softmax(s, -1))
    assert torch.equal(model(ids), h)
    assert trace.probs[0].amax(-1).mean() > 0.2  # qk_gain gives peaked attention


def test_attention_fn_hook_applies_nm():
    model = TinyTransformer(attention_fn=functools.partial(nm_attention, n=1, m=2))
    _, trace = model(model.example_ids(1, 16), return_attention=True)
    for p in trace.probs:
        assert ((p > 0).reshape(1, 2, 16, 8, 2).sum(-1) == 1).all()


def test_padding_mask_and_metrics():
    model = TinyTransformer()
    ids = model.example_ids(2, 10)
    mask = torch.ones(2, 10, dtype=torch.long)
    mask[1, 6:] = 0
    h, trace = model(ids, attention_mask=mask, return_attention=True)
    assert (trace.probs[0][1, :, :, 6:] == 0).all()
    h_short = model(ids[1:, :6])
    torch.testing.assert_close(h[1, :6], h_short[0], atol=1e-5, rtol=1e-5)
    t = tradeoff_curves(trace, methods=("nm",), nm=("2:4",))
    assert len(t["layer"]) == 2 and (t["mass"] < 1).all()
    q, k, v = trace.layer(0)
    mets = attention_metrics(
        q,
        k,
        v,
        torch.ones(10, 10, dtype=torch.bool),
        attn_mask=trace.attn_mask,
        query_mask=trace.query_mask,
    )
    assert torch.allclose(mets["mass"], torch.ones(2, 2, dtype=torch.float64))


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        (dict(dim=30, heads=4), ValueError),
        (dict(layers=0), ValueError),
        (dict(seed=1.5), TypeError),
        (dict(qk_gain=0), ValueError),
    ],
)
def test_constructor_errors(kwargs, error):
    with pytest.raises(error):
        TinyTransformer(**kwargs)


def test_input_errors():
    model = TinyTransformer(vocab_size=8, max_len=4)
    with pytest.raises(ValueError, match="ids must lie"):
        model(torch.tensor([[9]]))
    with pytest.raises(ValueError, match="ids must have shape"):
        model(torch.zeros(1, 5, dtype=torch.long))
    with pytest.raises(TypeError, match="ids must have dtype"):
        model(torch.zeros(1, 3))
