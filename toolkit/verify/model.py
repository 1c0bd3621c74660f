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

The layers are :class:`toolkit.models.EncoderLayer` s (post-LN) in one of the LayerNorm
variants of :class:`toolkit.models.LayerNorm` (``layernorm=``):

* ``"standard"``: :math:`w \\odot (x-\\mu)/\\sqrt{\\sigma^2+\\epsilon} + b` (biased variance),
* ``"no_var"``: :math:`w \\odot (x-\\mu) + b` (Shi et al.'s LayerNorm without variance),
* ``"none"``: identity.

Parts: ``embedding`` (word table), ``position`` (an embedding table of ``max_len`` rows),
``blocks`` and ``head``.  State dicts saved before the parts were renamed (``position`` as a
bare parameter, ``classifier``, ``blocks.{i}.q`` ...) still load: the keys are remapped.

Example
-------
>>> import torch
>>> m = TransformerClassifier(vocab_size=50, dim=16, heads=2, ffn_dim=32)
>>> e = m.embed(torch.tensor([[1, 2, 3]]))
>>> m(e).shape
torch.Size([1, 2])
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .._checks import check_choice, check_int
from ..models import EncoderLayer
from ..models.layers import ACTIVATIONS, LAYERNORMS, Activation, LayerNormVariant, check_dim_heads
from .graph import Graph, add_embedding_offset, add_encoder_layer, add_mean_head
from .interface import VerifiableModel, renamed_keys_hook

__all__ = ["ACTIVATIONS", "LAYERNORMS", "TransformerClassifier"]

#: old parameter names (before the parts were shared with toolkit.models) -> new ones
_RENAMED = (
    (r"^position$", "position.weight"),
    (r"^classifier\.", "head."),
    (r"^(blocks\.\d+\.)([qkvo])\.", r"\1attn.\2."),
)


class TransformerClassifier(VerifiableModel):
    """Post-LN transformer encoder + mean pooling + linear classifier.

    Parameters
    ----------
    vocab_size, dim, layers, heads, ffn_dim, num_classes, max_len : int
        Sizes; ``dim`` must be divisible by ``heads``, ``num_classes >= 2``;
        ``T <= max_len`` at call time.
    layernorm : {"standard", "no_var", "none"}
        LayerNorm variant (:class:`toolkit.models.LayerNorm`).
    activation : {"relu", "gelu", "tanh"}
        FFN activation.

    ``model.embed(ids)`` maps token ids [B, T] (or [T]) to word embeddings [B, T, D]
    (or [T, D]); ``model(e)`` maps embeddings [B, T, D] to logits [B, C].

    Examples
    --------
    >>> m = TransformerClassifier(vocab_size=50, dim=16, heads=2, ffn_dim=32)
    >>> m(m.embed(torch.tensor([[1, 2, 3]]))).shape
    torch.Size([1, 2])
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
        layernorm: LayerNormVariant = "no_var",
        activation: Activation = "relu",
    ):
        super().__init__()
        check_int("vocab_size", vocab_size)
        check_int("dim", dim)
        check_int("layers", layers)
        check_int("heads", heads)
        check_int("ffn_dim", ffn_dim)
        check_int("num_classes", num_classes, 2)
        check_int("max_len", max_len)
        check_dim_heads(dim, heads)
        check_choice("layernorm", layernorm, LAYERNORMS)
        check_choice("activation", activation, ACTIVATIONS)
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
        self.position = nn.Embedding(max_len, dim)
        with torch.no_grad():
            self.position.weight.mul_(0.1)  # N(0, 0.01): positions smaller than words
        self.blocks = nn.ModuleList(
            EncoderLayer(dim, heads, ffn_dim, layernorm=layernorm, activation=activation)
            for _ in range(layers)
        )
        self.head = nn.Linear(dim, num_classes)
        self.register_load_state_dict_pre_hook(renamed_keys_hook(_RENAMED))

    def forward(self, e: Tensor) -> Tensor:
        """Logits ``[B, num_classes]`` of word embeddings ``e`` ``[B, T, dim]``."""
        self.check_embeddings(e)
        x = e + self.position.weight[: e.shape[1]].to(e.dtype)
        for block in self.blocks:
            x = block(x)
        return self.head(x.mean(1))

    def graph(self, T: int) -> Graph:
        """Nodes ``input``, ``embed`` (+ positions), ``L{i}.*``, ``pooled``, ``logits``."""
        g = Graph()
        x = add_embedding_offset(g, self.position.weight[:T])
        for i, block in enumerate(self.blocks):
            x = add_encoder_layer(g, x, i, block)
        add_mean_head(g, x, self.head)
        return g
