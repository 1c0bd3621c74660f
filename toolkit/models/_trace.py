"""The attention trace both models return, and the multi-head attention they share."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

from torch import Tensor, nn

from ._attention import attention_scores, masked_attention

__all__ = ["AttentionFn", "AttentionTrace", "SelfAttention"]

#: ``fn(q, k, v, attn_mask=..., return_probs=True) -> (out, probs)``, e.g.
#: :func:`toolkit.attention.nm_attention` or ``functools.partial(nm_attention, n=1, m=2)``.
AttentionFn = Callable[..., tuple[Tensor, Tensor]]


@dataclass
class AttentionTrace:
    """Per-layer attention internals of one forward pass.

    Every list has one tensor per layer: ``q``, ``k``, ``v`` are ``[B, H, T, dh]``;
    ``scores`` are the scaled, masked pre-softmax scores :math:`QK^\\top/\\sqrt{d_h} + M`
    ``[B, H, T, T]`` (float32); ``probs`` are the probabilities the layer actually used
    ``[B, H, T, T]`` (dense softmax unless the model's ``attention_fn`` is sparse).

    ``attn_mask`` is the boolean key mask ``[B, 1, 1, T]`` (``True`` = real token) or None,
    ``query_mask`` the boolean ``[B, 1, T]`` marking real query rows (for averages), ``scale``
    the score scale and ``tokens`` the token strings when the model tokenized text.
    :func:`toolkit.attention.tradeoff_curves` accepts a trace directly.
    """

    q: list[Tensor] = field(default_factory=list)
    k: list[Tensor] = field(default_factory=list)
    v: list[Tensor] = field(default_factory=list)
    scores: list[Tensor] = field(default_factory=list)
    probs: list[Tensor] = field(default_factory=list)
    scale: float = 1.0
    attn_mask: Tensor | None = None
    query_mask: Tensor | None = None
    tokens: list[list[str]] | None = None

    @property
    def num_layers(self) -> int:
        return len(self.q)

    @property
    def num_heads(self) -> int:
        return self.q[0].shape[1] if self.q else 0

    def layer(self, index: int) -> tuple[Tensor, Tensor, Tensor]:
        """``(q, k, v)`` of one layer."""
        return self.q[index], self.k[index], self.v[index]


class SelfAttention(nn.Module):
    """Multi-head self-attention with separate Q/K/V/output projections (BERT layout).

    ``forward(x [B, T, D], attn_mask, attention_fn, trace)`` returns ``[B, T, D]`` and, when
    ``trace`` is given, appends this layer's q, k, v, scores and probs to it.
    """

    def __init__(self, dim: int, heads: int):
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim must be divisible by heads, got dim={dim}, heads={heads}")
        self.heads = heads
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self.o = nn.Linear(dim, dim)

    def forward(
        self,
        x: Tensor,
        attn_mask: Tensor | None = None,
        attention_fn: AttentionFn | None = None,
        trace: AttentionTrace | None = None,
    ) -> Tensor:
        B, T, D = x.shape
        H = self.heads

        def split(t: Tensor) -> Tensor:
            return t.reshape(B, T, H, D // H).transpose(1, 2)

        q, k, v = split(self.q(x)), split(self.k(x)), split(self.v(x))
        fn = attention_fn if attention_fn is not None else masked_attention
        out, probs = fn(q, k, v, attn_mask=attn_mask, return_probs=True)
        if trace is not None:
            scale = 1.0 / math.sqrt(D // H)
            trace.scale = scale
            trace.q.append(q.detach())
            trace.k.append(k.detach())
            trace.v.append(v.detach())
            trace.scores.append(attention_scores(q.detach(), k.detach(), scale, attn_mask))
            trace.probs.append(probs.detach())
        return self.o(out.transpose(1, 2).reshape(B, T, D))
