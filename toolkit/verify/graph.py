"""A tiny graph IR of a verifiable model's forward pass, and the pieces models build it from.

A :class:`Graph` is an ordered (topological) dict of :class:`Node` s; node ``"input"`` holds
the word embeddings e [T, D] (batch dim implicit), every other node an
:class:`~toolkit.verify.relaxations.Op` applied to earlier nodes.  All weights are float64.
The bound methods (IBP, CROWN, forward, backward-forward) walk this list, so every method
shares the per-op relaxations.

Node names: ``input``, ``embed`` (e + positions), per layer ``L{i}.q/k/v`` (projections,
1/sqrt(d_h) folded into q), ``L{i}.qh/kh/vh`` (head split), ``L{i}.scores``,
``L{i}.softmax`` (+ ``.shift/.exp/.sum/.recip``), ``L{i}.context``, ``L{i}.merge``,
``L{i}.attention`` (after W_o), ``L{i}.res1``, ``L{i}.ln1``, ``L{i}.ffn_pre``,
``L{i}.ffn_act``, ``L{i}.ffn_out``, ``L{i}.res2``, ``L{i}.out`` (after LN2), ``pooled``,
``logits``.  Nodes of the attention sub-block (q .. merge) carry ``attention=True``.
:func:`build_bert_graph` (MiniLM, BERT layout) replaces ``embed`` by ``embed.sum``
(+ positions + token type 0) followed by the embedding LayerNorm named ``embed``.  Every model
builds its layers with :func:`add_encoder_layer` (one post-LN
:class:`~toolkit.models.EncoderLayer`) and its output with :func:`add_mean_head`;
:func:`build_graph` asks the model (:meth:`~toolkit.verify.VerifiableModel.graph`).

>>> import torch
>>> from toolkit.verify.model import TransformerClassifier
>>> m = TransformerClassifier(20, dim=8, heads=2, ffn_dim=16)
>>> g = build_graph(m, 5)
>>> e = m.embed(torch.tensor([[1, 2, 3, 4, 5]])).double()
>>> torch.allclose(g.evaluate(e)["logits"], m.double()(e))
True
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from ..models import EncoderLayer, LayerNorm
from .interface import VerifiableModel, check_length, check_model
from .relaxations import (
    GELU,
    Add,
    Linear,
    MatMul,
    Rearrange,
    ReLU,
    Tanh,
    TokenMean,
    add_layernorm,
    add_softmax,
)
from .relaxations._base import Op

__all__ = [
    "ACTIVATIONS",
    "REPORTED",
    "Graph",
    "Node",
    "add_encoder_layer",
    "add_mean_head",
    "build_bert_graph",
    "build_graph",
]

#: activation name -> relaxation class
ACTIVATIONS: dict[str, type[Op]] = {"relu": ReLU, "gelu": GELU, "tanh": Tanh}

#: node-name suffixes recorded for the explorer ("bound width per layer")
REPORTED = ("embed", "attention", "ln1", "ffn_act", "out", "pooled", "logits")


@dataclass
class Node:
    """One node: ``op`` applied to the nodes named ``inputs`` (``op`` None: the input).

    ``shape`` excludes the batch; ``attention`` marks the attention sub-block (q .. merge),
    ``comparable`` whether its bounds are reported, ``valid_range`` a known range of its
    values, ``layer`` the encoder layer (-1 outside the layers).
    """

    name: str
    op: Op | None
    inputs: tuple[str, ...]
    shape: tuple[int, ...]
    attention: bool = False
    comparable: bool = True
    valid_range: tuple[float, float] | None = None
    layer: int = -1


class Graph:
    """Ordered nodes; ``add`` appends (inputs must exist).

    Examples
    --------
    >>> from toolkit.verify.relaxations import ReLU
    >>> g = Graph()
    >>> g.add("relu", ReLU(), (g.add("input", None, (), (1, 2)),), (1, 2))
    'relu'
    >>> g.evaluate(torch.tensor([[[-1.0, 2.0]]]))["relu"]
    tensor([[[0., 2.]]])
    """

    def __init__(self) -> None:
        self.nodes: dict[str, Node] = {}

    def add(
        self,
        name: str,
        op: Op | None,
        inputs: Iterable[str],
        shape: Iterable[int],
        **kw: Any,
    ) -> str:
        """Append node ``name`` (``op`` of ``inputs``, per-item ``shape``); returns ``name``.

        ``kw`` sets the other :class:`Node` fields (``attention``, ``layer``, ...).
        """
        inputs = tuple(inputs)
        if name in self.nodes:
            raise ValueError(f"duplicate node name {name!r}")
        for i in inputs:
            if i not in self.nodes:
                raise ValueError(f"node {name!r}: unknown input {i!r}")
        self.nodes[name] = Node(name, op, tuple(inputs), tuple(shape), **kw)
        return name

    @property
    def output(self) -> str:
        """Name of the last node (the graph's output)."""
        return next(reversed(self.nodes))

    def reported(self) -> list[str]:
        """Names of the per-layer nodes whose bounds are reported (:data:`REPORTED`)."""
        return [n for n in self.nodes if n.split(".")[-1] in REPORTED]

    def consumers(self) -> dict[str, list[str]]:
        """Node name -> names of the nodes that take it as an input."""
        out: dict[str, list[str]] = {n: [] for n in self.nodes}
        for node in self.nodes.values():
            for i in node.inputs:
                out[i].append(node.name)
        return out

    def ancestors(self, name: str) -> set[str]:
        """``name`` and every node it depends on."""
        seen, stack = {name}, [name]
        while stack:
            for i in self.nodes[stack.pop()].inputs:
                if i not in seen:
                    seen.add(i)
                    stack.append(i)
        return seen

    def to(self, device: torch.device | str) -> Graph:
        """Move every op's constant tensors to ``device`` (in place); returns ``self``."""
        for node in self.nodes.values():
            if node.op is not None:
                for key, val in vars(node.op).items():
                    if isinstance(val, Tensor) and val.device != torch.device(device):
                        setattr(node.op, key, val.to(device))
        return self

    def evaluate(self, e: Tensor) -> dict[str, Tensor]:
        """Exact values of every node for embeddings e [B, T, D] (float64 recommended)."""
        vals: dict[str, Tensor] = {}
        for node in self.nodes.values():
            if node.op is None:
                vals[node.name] = e
            else:
                vals[node.name] = node.op.forward(*(vals[i] for i in node.inputs))
        return vals


def _f64(t: Tensor) -> Tensor:
    return t.detach().to(torch.float64).clone()


def _lin(mod: nn.Linear, scale: float = 1.0) -> Linear:
    return Linear(_f64(mod.weight).T.contiguous() * scale, _f64(mod.bias) * scale)


def add_layernorm_node(g: Graph, x: str, ln: LayerNorm, name: str, layer: int = -1) -> str:
    """LayerNorm ``ln`` (:class:`~toolkit.models.LayerNorm`, any variant) of node ``x``; the
    result is always named ``name`` (the identity variant gets a pass-through node)."""
    y = add_layernorm(g, x, ln.variant, ln.weight, ln.bias, ln.eps, name, layer=layer)
    if y == x:  # "none": give the reported node its name anyway
        y = g.add(name, Linear(None, None), (x,), g.nodes[x].shape, layer=layer)
    return y


def add_encoder_layer(g: Graph, x: str, i: int, layer: nn.Module) -> str:
    """One post-LN :class:`~toolkit.models.EncoderLayer` on node ``x`` [T, D]; nodes ``L{i}.*``.

    :math:`y = \\mathrm{LN}_1(x + W_o\\,\\mathrm{MHA}(x))`,
    :math:`x' = \\mathrm{LN}_2(y + W_2\\,\\sigma(W_1 y + b_1) + b_2)`.

    Raises
    ------
    TypeError
        Unless ``layer`` is an :class:`~toolkit.models.EncoderLayer`.
    ValueError
        For a pre-LN layer (``norm_first=True``): the bound engine covers post-LN layers.
    """
    if not isinstance(layer, EncoderLayer):
        raise TypeError(
            f"layer {i} must be a toolkit.models.EncoderLayer, got {type(layer).__name__}"
        )
    if layer.norm_first:
        raise ValueError(
            f"layer {i} must be post-LN (norm_first=False) to be bounded, got a pre-LN layer"
        )
    T, D = g.nodes[x].shape
    H = layer.heads
    dh = D // H
    attn = layer.attn
    split = Rearrange((T, D), (T, H, dh), (1, 0, 2), (H, T, dh))
    merge = Rearrange((H, T, dh), (H, T, dh), (1, 0, 2), (T, D))
    p = f"L{i}"
    at: dict[str, Any] = dict(attention=True, layer=i)
    q = g.add(f"{p}.q", _lin(attn.q, 1.0 / math.sqrt(dh)), (x,), (T, D), **at)
    k = g.add(f"{p}.k", _lin(attn.k), (x,), (T, D), **at)
    v = g.add(f"{p}.v", _lin(attn.v), (x,), (T, D), **at)
    qh = g.add(f"{p}.qh", split, (q,), (H, T, dh), **at)
    kh = g.add(f"{p}.kh", split, (k,), (H, T, dh), **at)
    vh = g.add(f"{p}.vh", split, (v,), (H, T, dh), **at)
    s = g.add(f"{p}.scores", MatMul(transpose_b=True), (qh, kh), (H, T, T), **at)
    pr = add_softmax(g, s, f"{p}.softmax", device=attn.q.weight.device, **at)
    c = g.add(f"{p}.context", MatMul(transpose_b=False), (pr, vh), (H, T, dh), **at)
    c = g.add(f"{p}.merge", merge, (c,), (T, D), **at)
    a = g.add(f"{p}.attention", _lin(attn.o), (c,), (T, D), layer=i)
    r = g.add(f"{p}.res1", Add(), (x, a), (T, D), layer=i)
    y = add_layernorm_node(g, r, layer.ln1, f"{p}.ln1", i)
    F = layer.ff1.out_features
    h = g.add(f"{p}.ffn_pre", _lin(layer.ff1), (y,), (T, F), layer=i)
    h = g.add(f"{p}.ffn_act", ACTIVATIONS[layer.activation](), (h,), (T, F), layer=i)
    h = g.add(f"{p}.ffn_out", _lin(layer.ff2), (h,), (T, D), layer=i)
    r = g.add(f"{p}.res2", Add(), (y, h), (T, D), layer=i)
    return add_layernorm_node(g, r, layer.ln2, f"{p}.out", i)


def add_mean_head(g: Graph, x: str, head: nn.Linear) -> str:
    """Mean over tokens (node ``pooled``) then the linear ``head`` (node ``logits``)."""
    D = g.nodes[x].shape[-1]
    x = g.add("pooled", TokenMean(), (x,), (D,))
    return g.add("logits", _lin(head), (x,), (head.out_features,))


def add_embedding_offset(g: Graph, offset: Tensor) -> str:
    """Node ``input`` e [T, D] and ``e + offset`` (``offset`` [T, D], e.g. positions)."""
    T, D = offset.shape
    x = g.add("input", None, (), (T, D))
    return g.add("embed", Linear(None, _f64(offset)), (x,), (T, D))


def build_graph(model: VerifiableModel, T: int) -> Graph:
    """The graph of ``model`` for sequence length ``T``: ``model.graph(T)``.

    Parameters
    ----------
    model : VerifiableModel
        E.g. a :class:`~toolkit.verify.TransformerClassifier` or a
        :class:`~toolkit.verify.MiniLMClassifier`.
    T : int
        Sequence length, ``1 <= T <= model.max_len``.

    Returns
    -------
    Graph
        Nodes from ``input`` (e [T, D]) to ``logits`` [C], float64 weights.
    """
    check_model(model)
    return model.graph(check_length(model, T))


def build_bert_graph(model: Any, T: int) -> Graph:
    """The graph of a BERT-layout model such as :class:`~toolkit.verify.MiniLMClassifier`.

    ``input`` e [T, D] -> ``embed.sum`` (+ position rows 0..T-1 + token-type-0 row, one
    constant) -> embedding LayerNorm ``embed`` (standard, with eps) -> BERT layers
    ``L{i}.*`` (:func:`add_encoder_layer`; GELU FFN) -> ``pooled`` (mean over the T tokens)
    -> ``logits`` (the linear head).  ``model`` has ``position`` and ``token_type``
    (embedding tables), ``ln_emb``, ``blocks`` and ``head``.
    """
    D = model.dim
    g = Graph()
    x = g.add("input", None, (), (T, D))
    const = _f64(model.position.weight[:T]) + _f64(model.token_type.weight[0])
    x = g.add("embed.sum", Linear(None, const), (x,), (T, D))
    x = add_layernorm_node(g, x, model.ln_emb, "embed", -1)
    for i, block in enumerate(model.blocks):
        x = add_encoder_layer(g, x, i, block)
    add_mean_head(g, x, model.head)
    return g
