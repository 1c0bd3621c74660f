"""The VerifiableModel interface: a third model bounded by the same calls, shipped weights and
old state dicts still load with the same outputs, one naming of the parts."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from toolkit.models import EncoderLayer
from toolkit.verify import (
    METHODS,
    Graph,
    LpBall,
    TransformerClassifier,
    VerifiableModel,
    bounds,
    build_graph,
    check_soundness,
    load_default_model,
)
from toolkit.verify.graph import add_encoder_layer, add_mean_head

from ._helpers import tiny_model

# logits computed on main before the parts were shared (commit 0be80cd), float64
DEFAULT_LOGITS = {
    "a truly wonderful and moving film": [-28.327386443431454, 22.36513599780266],
    "the plot was dull and the acting was wooden": [15.815651129066035, -12.775815028853863],
}
#: the same construction under torch.manual_seed(0) gave these logits on main
SEEDED_LOGITS = [0.19577644570976027, 0.3166095411705667]


class NoPositions(VerifiableModel):
    """A model the bound engine has never seen: no positions, two post-LN layers, a head."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(5)
        self.dim, self.heads, self.num_classes, self.max_len = 8, 2, 3, 6
        self.embedding = nn.Embedding(12, 8)
        self.blocks = nn.ModuleList(
            EncoderLayer(8, 2, 16, layernorm="no_var", activation="gelu") for _ in range(2)
        )
        self.head = nn.Linear(8, 3)

    def forward(self, e: Tensor) -> Tensor:
        self.check_embeddings(e)
        x = e
        for block in self.blocks:
            x = block(x)
        return self.head(x.mean(1))

    def graph(self, T: int) -> Graph:
        g = Graph()
        x = g.add("input", None, (), (T, self.dim))
        for i, block in enumerate(self.blocks):
            x = add_encoder_layer(g, x, i, block)
        add_mean_head(g, x, self.head)
        return g


def test_a_new_model_is_bounded_soundly_by_every_method():
    m = NoPositions().double().eval()
    e = m.embed(torch.tensor([[1, 5, 7, 2]])).detach()
    g = build_graph(m, 4)
    with torch.no_grad():
        assert torch.allclose(g.evaluate(e)["logits"], m(e), atol=1e-12)
    spec = LpBall(0.05, p=2, positions=[1, 2])
    for method in METHODS:
        lo, hi = bounds(m, e, spec, method)
        res = check_soundness(m, e, spec, lo, hi, samples=32, pgd_steps=4, seed=1)
        assert res.ok, (method, res)


def test_non_verifiable_models_and_pre_ln_layers_are_refused():
    with pytest.raises(TypeError, match="VerifiableModel"):
        build_graph(nn.Linear(2, 2), 3)
    m = NoPositions()
    m.blocks[0].norm_first = True
    with pytest.raises(ValueError, match="post-LN"):
        build_graph(m, 3)
    with pytest.raises(ValueError, match="T must satisfy"):
        build_graph(m, 7)


def test_shipped_default_model_gives_the_same_logits():
    model, vocab = load_default_model()
    model = model.double()
    with torch.no_grad():
        for sentence, logits in DEFAULT_LOGITS.items():
            z = model(model.embed(vocab.encode(sentence)[None]).double())[0]
            assert torch.allclose(z, torch.tensor(logits, dtype=torch.float64), rtol=1e-12)


def test_seeded_construction_unchanged():
    torch.manual_seed(0)
    m = TransformerClassifier(
        30, dim=8, heads=2, ffn_dim=16, layers=2, layernorm="standard", activation="gelu"
    ).double()
    with torch.no_grad():
        z = m(m.embed(torch.tensor([[1, 2, 3, 4, 5]])).double())[0]
    assert torch.allclose(z, torch.tensor(SEEDED_LOGITS, dtype=torch.float64), rtol=1e-12)


def _old_state_dict(m: TransformerClassifier) -> dict[str, Tensor]:
    """The state dict in the names used before the parts were shared with toolkit.models."""
    out = {}
    for k, v in m.state_dict().items():
        k = k.replace("position.weight", "position").replace("head.", "classifier.")
        k = k.replace(".attn.", ".")
        out[k] = v.clone()
    return out


def test_old_state_dicts_load():
    m = tiny_model(3, layers=2, layernorm="standard", activation="tanh")
    old = _old_state_dict(m)
    assert "position" in old and "blocks.1.q.weight" in old and "classifier.bias" in old
    fresh = tiny_model(4, layers=2, layernorm="standard", activation="tanh")
    fresh.load_state_dict(old)
    e = m.embed(torch.tensor([[1, 2, 3]])).detach()
    with torch.no_grad():
        assert torch.equal(fresh(e), m(e))


def test_parts_named_as_in_every_model():
    m = TransformerClassifier(10, dim=8, heads=2)
    keys = set(m.state_dict())
    assert {"embedding.weight", "position.weight", "head.weight", "blocks.0.attn.q.weight"} <= keys
    assert {"blocks.0.ln1.weight", "blocks.0.ff1.weight", "blocks.0.ff2.weight"} <= keys
    assert all(isinstance(b, EncoderLayer) for b in m.blocks)
