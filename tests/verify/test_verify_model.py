"""The model, its graph IR, the embedded task and the shipped default model."""

from __future__ import annotations

import pytest
import torch

from toolkit.verify import TransformerClassifier, build_graph, encode, load_default_model
from toolkit.verify.task import DEFAULT_PATH, EXAMPLES, make_dataset

from ._helpers import tiny_input, tiny_model


@pytest.mark.parametrize("layernorm", ["standard", "no_var", "none"])
@pytest.mark.parametrize("activation", ["relu", "gelu", "tanh"])
def test_graph_matches_model(layernorm, activation):
    """The IR (which the bounds use) computes exactly what the torch module computes."""
    m = tiny_model(1, layers=2, layernorm=layernorm, activation=activation)
    e = tiny_input(m, B=3, T=5)
    vals = build_graph(m, 5).evaluate(e)
    assert torch.allclose(vals["logits"], m(e), atol=1e-12)
    assert set(vals) >= {"L0.out", "L1.out", "L0.attention", "L1.ffn_act", "pooled"}


@pytest.mark.parametrize(
    "kw,err",
    [
        (dict(dim=10, heads=4), ValueError),
        (dict(layernorm="batch"), ValueError),
        (dict(activation="sigmoid"), ValueError),
        (dict(layers=0), ValueError),
        (dict(num_classes=1), ValueError),
        (dict(dim=8.0), TypeError),
    ],
)
def test_constructor_validation(kw, err):
    with pytest.raises(err) as info:
        TransformerClassifier(10, **kw)
    assert any(k in str(info.value) for k in kw)


def test_embed_and_call_validation():
    m = tiny_model()
    with pytest.raises(ValueError, match="token_ids"):
        m.embed(torch.tensor([[0, 99]]))
    with pytest.raises(ValueError, match="shape"):
        m(torch.zeros(1, 3, 5, dtype=torch.float64))
    with pytest.raises(ValueError, match="shape"):
        m(torch.zeros(1, 9, 8, dtype=torch.float64))  # longer than max_len
    with pytest.raises(TypeError, match="floating"):
        m(torch.zeros(1, 3, 8, dtype=torch.long))


def test_default_model_ships_and_classifies_examples():
    assert DEFAULT_PATH.stat().st_size < 1_000_000
    model, vocab = load_default_model()
    assert 200 <= len(vocab) <= 600
    for sentence, label in EXAMPLES:
        ids = encode(sentence)
        assert torch.equal(ids, vocab.encode(sentence))
        assert int(model(model.embed(ids[None])).argmax()) == label, sentence
    # accuracy on fresh sentences of the task (independent reference: the generator's label)
    ids, lens, labels = make_dataset(200, seed=7)
    correct = sum(
        int(model(model.embed(ids[i : i + 1, : int(lens[i])])).argmax() == labels[i])
        for i in range(200)
    )
    assert correct >= 180


def test_dataset_is_deterministic_and_labelled_by_word_counts():
    a, b = make_dataset(50, seed=3), make_dataset(50, seed=3)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    _, vocab = load_default_model()
    ids, lens, labels = a
    for i in range(50):
        w = ids[i, : int(lens[i])].tolist()
        npos = sum(t in vocab.positive for t in w)
        nneg = sum(t in vocab.negative for t in w)
        assert npos != nneg and labels[i] == int(npos > nneg)


def test_encode_unknown_and_errors():
    ids = encode("Wonderful, ZZZunknownZZZ film!")
    assert ids[1] == 1 and len(ids) == 3
    with pytest.raises(ValueError, match="sentence"):
        encode("  ,, ")
    with pytest.raises(TypeError, match="sentence"):
        encode(3)
