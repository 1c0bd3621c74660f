"""The attention trace every model returns (the attention itself is in :mod:`.layers`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from torch import Tensor

__all__ = ["AttentionFn", "AttentionTrace"]

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
