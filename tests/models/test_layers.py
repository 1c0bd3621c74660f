"""The shared parts: EncoderLayer against torch's own encoder layer and a hand-written
forward, the LayerNorm variants against their formulas, and the tiny model's outputs against
values computed before the parts were shared (the naming across models is tested in
tests/verify/test_verify_interface.py)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from toolkit.models import EncoderLayer, LayerNorm, SelfAttention, TinyTransformer


def _torch_layer(ours: EncoderLayer, norm_first: bool, activation: str) -> nn.Module:
    """nn.TransformerEncoderLayer with our weights (an independent implementation)."""
    D = ours.attn.q.in_features
    ref = nn.TransformerEncoderLayer(
        D,
        ours.heads,
        ours.ff1.out_features,
        dropout=0.0,
        activation=activation,
        layer_norm_eps=ours.ln1.eps,
        batch_first=True,
        norm_first=norm_first,
    ).double()
    a = ours.attn
    sd = {
        "self_attn.in_proj_weight": torch.cat([a.q.weight, a.k.weight, a.v.weight]),
        "self_attn.in_proj_bias": torch.cat([a.q.bias, a.k.bias, a.v.bias]),
        "self_attn.out_proj.weight": a.o.weight,
        "self_attn.out_proj.bias": a.o.bias,
        "linear1.weight": ours.ff1.weight,
        "linear1.bias": ours.ff1.bias,
        "linear2.weight": ours.ff2.weight,
        "linear2.bias": ours.ff2.bias,
        "norm1.weight": ours.ln1.weight,
        "norm1.bias": ours.ln1.bias,
        "norm2.weight": ours.ln2.weight,
        "norm2.bias": ours.ln2.bias,
    }
    ref.load_state_dict({k: v.detach().clone() for k, v in sd.items()})
    return ref.eval()


@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_encoder_layer_equals_torch_encoder_layer(norm_first, activation):
    torch.manual_seed(0)
    ours = EncoderLayer(
        12, 3, 20, norm_first=norm_first, activation=activation, layernorm="standard"
    ).double()
    with torch.no_grad():  # non-trivial LayerNorm parameters
        for ln in (ours.ln1, ours.ln2):
            ln.weight.uniform_(0.5, 1.5)
            ln.bias.normal_()
    ref = _torch_layer(ours, norm_first, activation)
    x = torch.randn(2, 5, 12, dtype=torch.float64)
    with torch.no_grad():
        assert torch.allclose(ours(x), ref(x), atol=1e-12)


def _hand_forward(layer: EncoderLayer, x: torch.Tensor, variant: str) -> torch.Tensor:
    """Post-LN layer written out: per-head softmax attention, LayerNorm by its formula."""

    def ln(mod, t):
        if variant == "none":
            return t
        d = t - t.mean(-1, keepdim=True)
        if variant == "standard":
            d = d / torch.sqrt(d.pow(2).mean(-1, keepdim=True) + mod.eps)
        return d * mod.weight + mod.bias

    a = layer.attn
    D = x.shape[-1]
    H = a.heads
    dh = D // H
    out = torch.zeros_like(x)
    for h in range(H):
        sl = slice(h * dh, (h + 1) * dh)
        q = x @ a.q.weight[sl].T + a.q.bias[sl]
        k = x @ a.k.weight[sl].T + a.k.bias[sl]
        v = x @ a.v.weight[sl].T + a.v.bias[sl]
        p = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(dh), -1)
        out[..., sl] = p @ v
    y = ln(layer.ln1, x + out @ a.o.weight.T + a.o.bias)
    f = torch.tanh(y @ layer.ff1.weight.T + layer.ff1.bias)
    return ln(layer.ln2, y + f @ layer.ff2.weight.T + layer.ff2.bias)


@pytest.mark.parametrize("variant", ["standard", "no_var", "none"])
def test_post_ln_layer_equals_hand_written_forward(variant):
    torch.manual_seed(1)
    layer = EncoderLayer(8, 2, 16, layernorm=variant, activation="tanh").double()
    if variant != "none":
        with torch.no_grad():
            layer.ln1.weight.uniform_(0.5, 1.5)
            layer.ln2.bias.normal_()
    x = torch.randn(3, 4, 8, dtype=torch.float64)
    with torch.no_grad():
        assert torch.allclose(layer(x), _hand_forward(layer, x, variant), atol=1e-12)


def test_layernorm_variants_and_errors():
    x = torch.tensor([[1.0, 2.0, 4.0, 9.0]], dtype=torch.float64)
    std = LayerNorm(4, "standard", eps=0.0).double()
    mu, var = 4.0, ((x - 4.0) ** 2).mean()
    assert torch.allclose(std(x), (x - mu) / var.sqrt())
    assert torch.equal(LayerNorm(4, "no_var").double()(x), x - mu)
    none = LayerNorm(4, "none")
    assert none(x) is x and list(none.parameters()) == []
    with pytest.raises(ValueError, match="variant"):
        LayerNorm(4, "batch")
    with pytest.raises(ValueError, match="dim must be divisible by heads"):
        SelfAttention(6, 4)
    with pytest.raises(ValueError, match="activation"):
        EncoderLayer(8, 2, 16, activation="swish")
    with pytest.raises(TypeError, match="norm_first"):
        EncoderLayer(8, 2, 16, norm_first=1)


# values computed on main before the layers were shared (commit 0be80cd), float64
TINY_IDS = [[12, 15, 21, 0, 3, 27]]
TINY_H00 = [-0.24470221729559677, -0.5559902247314381, 0.1894041968167854, -1.2376915502709438]
TINY_H05 = [2.059858348415937, -0.26902213662151964, -2.3299331292944814, 0.22495023386946306]
TINY_CLS = [-1.1190803735240622, 0.7506759353697512]


def test_tiny_transformer_outputs_unchanged():
    t = TinyTransformer(seed=0).double()
    ids = t.example_ids(batch=1, length=6)
    assert ids.tolist() == TINY_IDS
    with torch.no_grad():
        h = t(ids)
        assert torch.allclose(h[0, 0, :4], torch.tensor(TINY_H00, dtype=torch.float64))
        assert torch.allclose(h[0, 5, :4], torch.tensor(TINY_H05, dtype=torch.float64))
        assert torch.allclose(t.classify(ids)[0], torch.tensor(TINY_CLS, dtype=torch.float64))
