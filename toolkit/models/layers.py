"""The parts every model of the toolkit is built from: one LayerNorm, one multi-head attention,
one encoder layer.

:class:`EncoderLayer` is a transformer encoder layer in either arrangement:

.. math::

    \\text{post-LN:}\\quad y = \\mathrm{LN}_1(x + \\mathrm{MHA}(x)),\\quad
    x' = \\mathrm{LN}_2(y + W_2\\,\\sigma(W_1 y + b_1) + b_2),

    \\text{pre-LN:}\\quad y = x + \\mathrm{MHA}(\\mathrm{LN}_1(x)),\\quad
    x' = y + W_2\\,\\sigma(W_1 \\mathrm{LN}_2(y) + b_1) + b_2,

with :math:`\\mathrm{MHA}` the attention of :class:`SelfAttention` (query, key, value and
output projections ``q``, ``k``, ``v``, ``o``; ``softmax(QK^T/sqrt(d_h) + M) V`` unless an
``attention_fn`` replaces it).  The parameters are named the same in every model: ``attn.q``,
``attn.k``, ``attn.v``, ``attn.o``, ``ln1``, ``ff1``, ``ff2``, ``ln2`` inside a layer; a model
holds its layers in ``blocks``, its word and position tables in ``embedding`` and
``position``, its output layer in ``head``.

:class:`LayerNorm` has three variants (``layernorm=``):

* ``"standard"``: :math:`w \\odot (x-\\mu)/\\sqrt{\\sigma^2+\\epsilon} + b` (biased variance,
  computed by :func:`torch.nn.functional.layer_norm`),
* ``"no_var"``: :math:`w \\odot (x-\\mu) + b` (Shi et al.'s LayerNorm without variance),
* ``"none"``: the identity (no parameters).

>>> layer = EncoderLayer(8, 2, 16, activation="relu")
>>> layer(torch.zeros(1, 3, 8)).shape
torch.Size([1, 3, 8])
"""

from __future__ import annotations

import math
from typing import Literal, get_args

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._checks import check_choice, check_flag, check_int, check_positive
from ._attention import attention_scores, masked_attention
from ._trace import AttentionFn, AttentionTrace

__all__ = [
    "ACTIVATIONS",
    "LAYERNORMS",
    "Activation",
    "EncoderLayer",
    "LayerNorm",
    "LayerNormVariant",
    "SelfAttention",
]

LayerNormVariant = Literal["standard", "no_var", "none"]
Activation = Literal["relu", "gelu", "tanh"]
#: the LayerNorm variants of :class:`LayerNorm`
LAYERNORMS: tuple[LayerNormVariant, ...] = get_args(LayerNormVariant)
#: the FFN activations of :class:`EncoderLayer` (``"gelu"`` is the exact, erf, GELU)
ACTIVATIONS: tuple[Activation, ...] = get_args(Activation)


def check_dim_heads(dim: int, heads: int) -> None:
    """Raise a ValueError unless ``heads`` divides ``dim`` (both already checked ints)."""
    if dim % heads:
        raise ValueError(f"dim must be divisible by heads, got dim={dim}, heads={heads}")


class LayerNorm(nn.Module):
    """LayerNorm over the last dimension in one of :data:`LAYERNORMS` (module docstring).

    Parameters
    ----------
    dim : int
        Size of the normalised (last) dimension.
    variant : {"standard", "no_var", "none"}
        ``"none"`` has no parameters.
    eps : float
        Added to the variance (``"standard"`` only).

    Examples
    --------
    >>> ln = LayerNorm(4, "no_var")
    >>> ln(torch.tensor([1.0, 2.0, 3.0, 6.0]))
    tensor([-2., -1.,  0.,  3.], grad_fn=<AddBackward0>)
    """

    weight: nn.Parameter | None
    bias: nn.Parameter | None

    def __init__(self, dim: int, variant: LayerNormVariant = "standard", eps: float = 1e-5):
        super().__init__()
        check_int("dim", dim)
        self.variant: LayerNormVariant = check_choice("variant", variant, LAYERNORMS)
        self.eps = check_positive("eps", eps, allow_zero=True)
        self.dim = dim
        if variant == "none":
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        else:
            self.weight = nn.Parameter(torch.ones(dim))
            self.bias = nn.Parameter(torch.zeros(dim))

    def forward(self, x: Tensor) -> Tensor:
        if self.weight is None or self.bias is None:
            return x
        if self.variant == "standard":
            return F.layer_norm(x, (self.dim,), self.weight, self.bias, self.eps)
        return (x - x.mean(-1, keepdim=True)) * self.weight + self.bias

    def extra_repr(self) -> str:
        return f"{self.dim}, variant={self.variant!r}, eps={self.eps:g}"


class SelfAttention(nn.Module):
    """Multi-head self-attention with separate Q/K/V/output projections (BERT layout).

    ``forward(x [B, T, D], attn_mask, attention_fn, trace)`` returns ``[B, T, D]`` and, when
    ``trace`` is given, appends this layer's q, k, v, scores and probs to it.

    Parameters
    ----------
    dim : int
        Model width, divisible by ``heads``.
    heads : int
        Number of heads; each has width ``dim // heads``.

    Examples
    --------
    >>> SelfAttention(8, 2)(torch.zeros(2, 5, 8)).shape
    torch.Size([2, 5, 8])
    """

    def __init__(self, dim: int, heads: int):
        super().__init__()
        check_int("dim", dim)
        check_int("heads", heads)
        check_dim_heads(dim, heads)
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


class EncoderLayer(nn.Module):
    """A transformer encoder layer, post-LN (BERT, Shi et al.) or pre-LN (module docstring).

    ``forward(x [B, T, D], attn_mask=None, attention_fn=None, trace=None)`` returns
    ``[B, T, D]``; ``attn_mask``, ``attention_fn`` and ``trace`` go to :class:`SelfAttention`.

    Parameters
    ----------
    dim, heads, ffn_dim : int
        Width, number of heads (dividing ``dim``) and FFN hidden width.
    norm_first : bool
        ``True`` for pre-LN, ``False`` (default) for post-LN.
    layernorm : {"standard", "no_var", "none"}
        Variant of both LayerNorms (:class:`LayerNorm`).
    activation : {"relu", "gelu", "tanh"}
        FFN activation.
    eps : float
        LayerNorm epsilon.

    Examples
    --------
    >>> post = EncoderLayer(8, 2, 16)
    >>> x = torch.randn(1, 4, 8)
    >>> y = post.ln1(x + post.attn(x))
    >>> torch.allclose(post(x), post.ln2(y + post.ff2(post.act(post.ff1(y)))))
    True
    """

    def __init__(
        self,
        dim: int,
        heads: int,
        ffn_dim: int,
        *,
        norm_first: bool = False,
        layernorm: LayerNormVariant = "standard",
        activation: Activation = "gelu",
        eps: float = 1e-5,
    ):
        super().__init__()
        check_int("ffn_dim", ffn_dim)
        self.norm_first = check_flag("norm_first", norm_first)
        self.activation: Activation = check_choice("activation", activation, ACTIVATIONS)
        self.attn = SelfAttention(dim, heads)
        self.ln1 = LayerNorm(dim, layernorm, eps)
        self.ff1 = nn.Linear(dim, ffn_dim)
        self.ff2 = nn.Linear(ffn_dim, dim)
        self.ln2 = LayerNorm(dim, layernorm, eps)

    @property
    def heads(self) -> int:
        """Number of attention heads."""
        return self.attn.heads

    def act(self, x: Tensor) -> Tensor:
        """The FFN activation of ``x``."""
        if self.activation == "relu":
            return F.relu(x)
        if self.activation == "gelu":
            return F.gelu(x)  # exact (erf) GELU
        return torch.tanh(x)

    def forward(
        self,
        x: Tensor,
        attn_mask: Tensor | None = None,
        attention_fn: AttentionFn | None = None,
        trace: AttentionTrace | None = None,
    ) -> Tensor:
        if self.norm_first:
            x = x + self.attn(self.ln1(x), attn_mask, attention_fn, trace)
            return x + self.ff2(self.act(self.ff1(self.ln2(x))))
        y = self.ln1(x + self.attn(x, attn_mask, attention_fn, trace))
        return self.ln2(y + self.ff2(self.act(self.ff1(y))))
