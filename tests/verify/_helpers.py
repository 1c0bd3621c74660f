"""Small random models shared by the verify tests (kept tiny so the suite stays fast)."""

from __future__ import annotations

import torch

from toolkit.verify import TransformerClassifier


def tiny_model(
    seed=0,
    layers=1,
    layernorm="no_var",
    activation="relu",
    dim=8,
    heads=2,
    ffn_dim=16,
    num_classes=3,
    vocab=20,
):
    torch.manual_seed(seed)
    m = TransformerClassifier(
        vocab,
        dim=dim,
        layers=layers,
        heads=heads,
        ffn_dim=ffn_dim,
        num_classes=num_classes,
        max_len=8,
        layernorm=layernorm,
        activation=activation,
    )
    return m.double().eval()


def tiny_input(model, B=2, T=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, model.embedding.num_embeddings, (B, T), generator=g)
    return model.embed(ids).detach()
