"""A tiny pre-LN transformer encoder whose weights come from a seed (no files, no extras).

Architecture, for token ids ``[B, T]``:

.. math::

    x_0 = E[\\text{ids}] + P_{0:T},\\qquad
    y = x_{\\ell-1} + \\mathrm{MHA}(\\mathrm{LN}(x_{\\ell-1})),\\qquad
    x_\\ell = y + W_2\\,\\mathrm{GELU}(W_1\\,\\mathrm{LN}(y)),\\qquad h = \\mathrm{LN}(x_L),

with :math:`\\mathrm{MHA}` the attention of :class:`~toolkit.models.SelfAttention`
(``softmax(QK^T/sqrt(d_h) + M) V`` by default, or any ``attention_fn`` such as
:func:`toolkit.attention.nm_attention`).  ``classify`` reads the first token (a CLS
position) through a linear head.

Initialisation is deterministic: every weight matrix is drawn from
:math:`\\mathcal N(0, 1/\\text{fan\\_in})` by a generator seeded with ``seed``; the query and
key projections are multiplied by ``qk_gain`` so that a freshly drawn model already has
peaked (non-uniform) attention, with score standard deviation about ``qk_gain**2``.

>>> model = TinyTransformer(seed=0)
>>> ids = model.example_ids(batch=2, length=16)
>>> h, trace = model(ids, return_attention=True)
>>> h.shape, trace.num_layers, trace.probs[0].shape
(torch.Size([2, 16, 32]), 2, torch.Size([2, 2, 16, 16]))
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._checks import check_int as _check_int
from .._checks import check_seed
from ._attention import check_padding_mask
from ._trace import AttentionFn, AttentionTrace, SelfAttention

__all__ = ["TinyTransformer"]


class _Block(nn.Module):
    def __init__(self, dim: int, heads: int, ffn_dim: int):
        super().__init__()
        self.ln1 = nn.LayerNorm(dim)
        self.attn = SelfAttention(dim, heads)
        self.ln2 = nn.LayerNorm(dim)
        self.ff1 = nn.Linear(dim, ffn_dim)
        self.ff2 = nn.Linear(ffn_dim, dim)

    def forward(self, x, attn_mask, attention_fn, trace):
        x = x + self.attn(self.ln1(x), attn_mask, attention_fn, trace)
        return x + self.ff2(F.gelu(self.ff1(self.ln2(x))))


class TinyTransformer(nn.Module):
    """Tiny pre-LN encoder with a CLS classification head; weights drawn from ``seed``.

    Args:
        vocab_size, dim, layers, heads, ffn_dim, max_len, num_classes: sizes (``dim``
            divisible by ``heads``).
        seed: seeds the deterministic initialisation.
        qk_gain: multiplies the query and key weights at initialisation (> 0).
        attention_fn: replaces dense attention in every layer (see
            :data:`~toolkit.models.AttentionFn`); settable later as ``model.attention_fn``.
    """

    def __init__(
        self,
        vocab_size: int = 32,
        dim: int = 32,
        layers: int = 2,
        heads: int = 2,
        ffn_dim: int = 64,
        max_len: int = 128,
        num_classes: int = 2,
        seed: int = 0,
        qk_gain: float = 1.5,
        attention_fn: AttentionFn | None = None,
    ):
        super().__init__()
        for name, value, lo in (
            ("vocab_size", vocab_size, 1),
            ("dim", dim, 1),
            ("layers", layers, 1),
            ("heads", heads, 1),
            ("ffn_dim", ffn_dim, 1),
            ("max_len", max_len, 1),
            ("num_classes", num_classes, 1),
        ):
            _check_int(name, value, lo)
        check_seed(seed)
        if dim % heads:
            raise ValueError(f"dim must be divisible by heads, got dim={dim}, heads={heads}")
        if not isinstance(qk_gain, (int, float)) or not qk_gain > 0:
            raise ValueError(f"qk_gain must be a positive number, got {qk_gain!r}")
        self.config = dict(
            vocab_size=vocab_size,
            dim=dim,
            layers=layers,
            heads=heads,
            ffn_dim=ffn_dim,
            max_len=max_len,
            num_classes=num_classes,
            seed=seed,
            qk_gain=qk_gain,
        )
        self.attention_fn = attention_fn
        self.embedding = nn.Embedding(vocab_size, dim)
        self.position = nn.Embedding(max_len, dim)
        self.blocks = nn.ModuleList(_Block(dim, heads, ffn_dim) for _ in range(layers))
        self.ln_f = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)
        self._init(seed, float(qk_gain))

    @torch.no_grad()
    def _init(self, seed: int, qk_gain: float) -> None:
        g = torch.Generator().manual_seed(seed)
        for name, p in self.named_parameters():
            if p.dim() == 2:
                std = 1.0 if name.startswith(("embedding", "position")) else p.shape[1] ** -0.5
                if name.endswith(("attn.q.weight", "attn.k.weight")):
                    std *= qk_gain
                if name.startswith("position"):
                    std = 0.5
                p.copy_(torch.randn(p.shape, generator=g) * std)
            elif name.endswith("weight"):  # LayerNorm gains
                p.fill_(1.0)
            else:
                p.zero_()

    def example_ids(self, batch: int = 2, length: int = 32, seed: int = 0) -> Tensor:
        """Uniformly random token ids ``[batch, length]`` from a seeded generator."""
        _check_int("batch", batch, 1)
        _check_int("length", length, 1)
        g = torch.Generator().manual_seed(check_seed(seed))
        return torch.randint(int(self.config["vocab_size"]), (batch, length), generator=g)

    def _check_ids(self, ids: Tensor, attention_mask: Tensor | None) -> None:
        if not isinstance(ids, Tensor) or ids.dtype not in (torch.int32, torch.int64):
            raise TypeError(f"ids must be an integer torch.Tensor [B, T], got {ids!r:.60}")
        if ids.dim() != 2 or not 1 <= ids.shape[1] <= self.config["max_len"]:
            raise ValueError(
                f"ids must have shape [B, T] with 1 <= T <= "
                f"{self.config['max_len']}, got {tuple(ids.shape)}"
            )
        vocab = self.config["vocab_size"]
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= vocab):
            raise ValueError(
                f"ids must lie in [0, {vocab}), got [{int(ids.min())}, {int(ids.max())}]"
            )
        if attention_mask is not None:
            if isinstance(attention_mask, Tensor) and attention_mask.shape != ids.shape:
                raise ValueError(
                    f"attention_mask must have the shape of ids {tuple(ids.shape)}, "
                    f"got {tuple(attention_mask.shape)}"
                )
            check_padding_mask("attention_mask", attention_mask, ids.shape, ids.device)

    def forward(
        self, ids: Tensor, attention_mask: Tensor | None = None, return_attention: bool = False
    ):
        """Hidden states ``[B, T, dim]`` (and an :class:`AttentionTrace` if asked).

        ``attention_mask`` ``[B, T]`` marks real tokens (1/True) against padding (0/False);
        any other value (such as 0.5) is a ValueError.
        """
        self._check_ids(ids, attention_mask)
        T = ids.shape[1]
        mask = None if attention_mask is None else attention_mask.bool()[:, None, None, :]
        trace = (
            AttentionTrace(attn_mask=mask, query_mask=None if mask is None else mask[:, :, 0, :])
            if return_attention
            else None
        )
        x = self.embedding(ids) + self.position(torch.arange(T, device=ids.device))
        for block in self.blocks:
            x = block(x, mask, self.attention_fn, trace)
        h = self.ln_f(x)
        return (h, trace) if return_attention else h

    def classify(self, ids: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        """Logits ``[B, num_classes]`` from the first position's hidden state."""
        return self.head(self(ids, attention_mask)[:, 0])
