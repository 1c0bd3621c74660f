"""A small transformer classifier of the kind verified by Shi et al. (ICLR 2020).

Architecture (post-LN, as in Shi et al.), for word embeddings ``e`` of shape [B, T, D]:

.. math::

    x_0 = e + P_{0:T}, \\qquad
    a = \\mathrm{MHA}(x_{\\ell-1}), \\quad
    y = \\mathrm{LN}_1(x_{\\ell-1} + a), \\quad
    x_\\ell = \\mathrm{LN}_2(y + W_2\\,\\sigma(W_1 y + b_1) + b_2),

    \\mathrm{logits} = W_c \\, \\tfrac1T \\textstyle\\sum_t x_L[t] + b_c .

``P`` is a learned positional table, MHA is multi-head self-attention with softmax
:math:`\\mathrm{softmax}(QK^\\top/\\sqrt{d_h})V`, pooling is the **mean over tokens** (so
every position reaches the logits), and there is no padding mask: all sentences of one
batch have the same length ``T``.

LayerNorm variants (``layernorm=``):

* ``"standard"``: :math:`w \\odot (x-\\mu)/\\sqrt{\\sigma^2+\\epsilon} + b` (biased variance),
* ``"no_var"``: :math:`w \\odot (x-\\mu) + b` (Shi et al.'s LayerNorm without variance),
* ``"none"``: identity.

Example
-------
>>> import torch
>>> m = TransformerClassifier(vocab_size=50, dim=16, heads=2, ffn_dim=32)
>>> e = m.embed(torch.tensor([[1, 2, 3]]))
>>> m(e).shape
torch.Size([1, 2])
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._checks import check_int as _check_int

__all__ = ["ACTIVATIONS", "LAYERNORMS", "TransformerClassifier"]

LAYERNORMS = ("standard", "no_var", "none")
ACTIVATIONS = ("relu", "gelu", "tanh")


class _LayerNorm(nn.Module):
    """LayerNorm over the last dim in one of :data:`LAYERNORMS` (see module docstring)."""

    def __init__(self, dim: int, variant: str, eps: float = 1e-5):
        super().__init__()
        self.variant = variant
        self.eps = eps
        if variant != "none":
            self.weight = nn.Parameter(torch.ones(dim))
            self.bias = nn.Parameter(torch.zeros(dim))

    def forward(self, x: Tensor) -> Tensor:
        if self.variant == "none":
            return x
        d = x - x.mean(-1, keepdim=True)
        if self.variant == "standard":
            d = d / torch.sqrt((d * d).mean(-1, keepdim=True) + self.eps)
        return d * self.weight + self.bias


class _Block(nn.Module):
    def __init__(self, dim, heads, ffn_dim, layernorm, activation):
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self.o = nn.Linear(dim, dim)
        self.ln1 = _LayerNorm(dim, layernorm)
        self.ff1 = nn.Linear(dim, ffn_dim)
        self.ff2 = nn.Linear(ffn_dim, dim)
        self.ln2 = _LayerNorm(dim, layernorm)
        self.activation = activation

    def act(self, x: Tensor) -> Tensor:
        if self.activation == "relu":
            return F.relu(x)
        if self.activation == "gelu":
            return F.gelu(x)  # exact (erf) GELU
        return torch.tanh(x)

    def forward(self, x: Tensor) -> Tensor:
        B, T, D = x.shape
        H = self.heads
        dh = D // H

        def split(t):
            return t.reshape(B, T, H, dh).permute(0, 2, 1, 3)

        q, k, v = split(self.q(x)), split(self.k(x)), split(self.v(x))
        s = q @ k.transpose(-1, -2) / math.sqrt(dh)
        p = torch.softmax(s, dim=-1)
        o = (p @ v).permute(0, 2, 1, 3).reshape(B, T, D)
        y = self.ln1(x + self.o(o))
        return self.ln2(y + self.ff2(self.act(self.ff1(y))))


class TransformerClassifier(nn.Module):
    """Post-LN transformer encoder + mean pooling + linear classifier.

    Parameters
    ----------
    vocab_size, dim, layers, heads, ffn_dim, num_classes, max_len : int
        Sizes; ``dim`` must be divisible by ``heads``; ``T <= max_len`` at call time.
    layernorm : {"standard", "no_var", "none"}
    activation : {"relu", "gelu", "tanh"}

    ``model.embed(ids)`` maps token ids [B, T] (or [T]) to word embeddings [B, T, D]
    (or [T, D]); ``model(e)`` maps embeddings [B, T, D] to logits [B, C].
    """

    def __init__(
        self,
        vocab_size: int,
        dim: int = 64,
        layers: int = 1,
        heads: int = 4,
        ffn_dim: int = 128,
        num_classes: int = 2,
        max_len: int = 32,
        layernorm: str = "no_var",
        activation: str = "relu",
    ):
        super().__init__()
        _check_int("vocab_size", vocab_size)
        _check_int("dim", dim)
        _check_int("layers", layers)
        _check_int("heads", heads)
        _check_int("ffn_dim", ffn_dim)
        _check_int("num_classes", num_classes, 2)
        _check_int("max_len", max_len)
        if dim % heads:
            raise ValueError(f"dim must be divisible by heads, got dim={dim}, heads={heads}")
        if layernorm not in LAYERNORMS:
            raise ValueError(f"layernorm must be one of {LAYERNORMS}, got {layernorm!r}")
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")
        self.config = dict(
            vocab_size=vocab_size,
            dim=dim,
            layers=layers,
            heads=heads,
            ffn_dim=ffn_dim,
            num_classes=num_classes,
            max_len=max_len,
            layernorm=layernorm,
            activation=activation,
        )
        self.dim, self.heads, self.num_classes, self.max_len = dim, heads, num_classes, max_len
        self.layernorm, self.activation = layernorm, activation
        self.embedding = nn.Embedding(vocab_size, dim)
        self.position = nn.Parameter(0.1 * torch.randn(max_len, dim))
        self.blocks = nn.ModuleList(
            _Block(dim, heads, ffn_dim, layernorm, activation) for _ in range(layers)
        )
        self.classifier = nn.Linear(dim, num_classes)

    def embed(self, token_ids: Tensor) -> Tensor:
        """Word embeddings (no positions) of ``token_ids`` [B, T] or [T] -> [B, T, D] / [T, D]."""
        token_ids = torch.as_tensor(token_ids)
        if token_ids.dtype not in (torch.int32, torch.int64):
            raise TypeError(f"token_ids must be an integer tensor, got dtype {token_ids.dtype}")
        n = self.embedding.num_embeddings
        if token_ids.numel() and (token_ids.min() < 0 or token_ids.max() >= n):
            raise ValueError(
                f"token_ids must lie in [0, {n}), got range "
                f"[{int(token_ids.min())}, {int(token_ids.max())}]"
            )
        return self.embedding(token_ids.long())

    def check_embeddings(self, e: Tensor) -> None:
        """Raise ``TypeError``/``ValueError`` unless ``e`` is a float tensor [B, T, D]."""
        if not isinstance(e, Tensor) or not e.is_floating_point():
            raise TypeError(
                f"e must be a floating-point torch.Tensor, got {type(e).__name__}"
                + (f" of dtype {e.dtype}" if isinstance(e, Tensor) else "")
            )
        if e.dim() != 3 or e.shape[-1] != self.dim or not 1 <= e.shape[1] <= self.max_len:
            raise ValueError(
                f"e must have shape [B, T, {self.dim}] with 1 <= T <= "
                f"{self.max_len}, got {tuple(e.shape)}"
            )

    def forward(self, e: Tensor) -> Tensor:
        self.check_embeddings(e)
        x = e + self.position[: e.shape[1]].to(e.dtype)
        for block in self.blocks:
            x = block(x)
        return self.classifier(x.mean(1))
