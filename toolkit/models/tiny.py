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
from torch import Tensor, nn

from .._checks import check_int, check_positive, check_seed, check_tensor
from ._attention import check_padding_mask
from ._trace import AttentionFn, AttentionTrace
from .layers import EncoderLayer, LayerNorm, check_dim_heads

__all__ = ["TinyTransformer"]


class TinyTransformer(nn.Module):
    """Tiny pre-LN encoder with a CLS classification head; weights drawn from ``seed``.

    Parameters
    ----------
    vocab_size, dim, layers, heads, ffn_dim, max_len, num_classes : int
        Sizes (``dim`` divisible by ``heads``); the layers are pre-LN
        :class:`~toolkit.models.EncoderLayer` s (standard LayerNorm, GELU) in ``blocks``.
    seed : int
        Seeds the deterministic initialisation.
    qk_gain : float
        Multiplies the query and key weights at initialisation (> 0).
    attention_fn : AttentionFn or None
        Replaces dense attention in every layer (see :data:`~toolkit.models.AttentionFn`);
        settable later as ``model.attention_fn``.

    Examples
    --------
    >>> TinyTransformer(num_classes=3).classify(torch.zeros(2, 5, dtype=torch.long)).shape
    torch.Size([2, 3])
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
        for name, value in (
            ("vocab_size", vocab_size),
            ("dim", dim),
            ("layers", layers),
            ("heads", heads),
            ("ffn_dim", ffn_dim),
            ("max_len", max_len),
            ("num_classes", num_classes),
        ):
            check_int(name, value)
        check_seed(seed)
        check_dim_heads(dim, heads)
        check_positive("qk_gain", qk_gain)
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
        self.blocks = nn.ModuleList(
            EncoderLayer(dim, heads, ffn_dim, norm_first=True, activation="gelu")
            for _ in range(layers)
        )
        self.ln_f = LayerNorm(dim)
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
        """Uniformly random token ids ``[batch, length]`` from a seeded generator.

        Examples
        --------
        >>> TinyTransformer(vocab_size=10).example_ids(batch=1, length=4).shape
        torch.Size([1, 4])
        """
        check_int("batch", batch)
        check_int("length", length)
        g = torch.Generator().manual_seed(check_seed(seed))
        return torch.randint(int(self.config["vocab_size"]), (batch, length), generator=g)

    def _check_ids(self, ids: Tensor, attention_mask: Tensor | None) -> None:
        check_tensor("ids", ids, dtypes=(torch.int32, torch.int64), ndim=2)
        if not 1 <= ids.shape[1] <= self.config["max_len"]:
            raise ValueError(
                f"ids must have shape [B, T] with 1 <= T <= {self.config['max_len']}, "
                f"got {tuple(ids.shape)}"
            )
        vocab = self.config["vocab_size"]
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= vocab):
            raise ValueError(
                f"ids must lie in [0, {vocab}), got [{int(ids.min())}, {int(ids.max())}]"
            )
        if attention_mask is not None:
            check_tensor("attention_mask", attention_mask, ndim=2)
            if attention_mask.shape != ids.shape:
                raise ValueError(
                    f"attention_mask must have the shape of ids {tuple(ids.shape)}, "
                    f"got {tuple(attention_mask.shape)}"
                )
            check_padding_mask("attention_mask", attention_mask, ids.shape, ids.device)

    def forward(
        self, ids: Tensor, attention_mask: Tensor | None = None, return_attention: bool = False
    ) -> Tensor | tuple[Tensor, AttentionTrace]:
        """Hidden states ``[B, T, dim]`` (and an :class:`AttentionTrace` if asked).

        Parameters
        ----------
        ids : Tensor
            Integer token ids ``[B, T]`` with ``1 <= T <= max_len``.
        attention_mask : Tensor or None
            ``[B, T]``, marks real tokens (1/True) against padding (0/False); any other
            value (such as 0.5) is a ValueError.
        return_attention : bool
            Also return the per-layer :class:`~toolkit.models.AttentionTrace`.

        Returns
        -------
        Tensor or (Tensor, AttentionTrace)
            The final (LayerNormed) hidden states, and the trace when asked.
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
        return (h, trace) if trace is not None else h

    def classify(self, ids: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        """Logits ``[B, num_classes]`` from the first position's hidden state."""
        return self.head(self(ids, attention_mask)[:, 0])
