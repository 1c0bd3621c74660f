"""A tiny graph IR of :class:`~toolkit.verify.model.TransformerClassifier`'s forward pass.

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
(+ positions + token type 0) followed by the embedding LayerNorm named ``embed``; the
layers share :func:`_add_layer` with :func:`build_graph`.

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
from dataclasses import dataclass

import torch
from torch import Tensor

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

__all__ = ["ACTIVATIONS", "REPORTED", "Graph", "Node", "build_bert_graph", "build_graph"]

#: activation name -> relaxation class
ACTIVATIONS = {"relu": ReLU, "gelu": GELU, "tanh": Tanh}

#: node-name suffixes recorded for the explorer ("bound width per layer")
REPORTED = ("embed", "attention", "ln1", "ffn_act", "out", "pooled", "logits")


@dataclass
class Node:
    name: str
    op: Op | None
    inputs: tuple[str, ...]
    shape: tuple[int, ...]
    attention: bool = False
    comparable: bool = True
    valid_range: tuple[float, float] | None = None
    layer: int = -1


class Graph:
    """Ordered nodes; ``add`` appends (inputs must exist)."""

    def __init__(self):
        self.nodes: dict[str, Node] = {}

    def add(self, name, op, inputs, shape, **kw) -> str:
        if name in self.nodes:
            raise ValueError(f"duplicate node name {name!r}")
        for i in inputs:
            if i not in self.nodes:
                raise ValueError(f"node {name!r}: unknown input {i!r}")
        self.nodes[name] = Node(name, op, tuple(inputs), tuple(shape), **kw)
        return name

    @property
    def output(self) -> str:
        return next(reversed(self.nodes))

    def reported(self) -> list[str]:
        return [n for n in self.nodes if n.split(".")[-1] in REPORTED]

    def consumers(self) -> dict[str, list[str]]:
        out = {n: [] for n in self.nodes}
        for node in self.nodes.values():
            for i in node.inputs:
                out[i].append(node.name)
        return out

    def ancestors(self, name: str) -> set[str]:
        seen, stack = {name}, [name]
        while stack:
            for i in self.nodes[stack.pop()].inputs:
                if i not in seen:
                    seen.add(i)
                    stack.append(i)
        return seen

    def to(self, device) -> Graph:
        """Move every op's constant tensors to ``device`` (in place); returns ``self``."""
        for node in self.nodes.values():
            if node.op is not None:
                for key, val in vars(node.op).items():
                    if isinstance(val, Tensor) and val.device != torch.device(device):
                        setattr(node.op, key, val.to(device))
        return self

    def evaluate(self, e: Tensor) -> dict[str, Tensor]:
        """Exact values of every node for embeddings e [B, T, D] (float64 recommended)."""
        vals = {}
        for node in self.nodes.values():
            if node.op is None:
                vals[node.name] = e
            else:
                vals[node.name] = node.op.forward(*(vals[i] for i in node.inputs))
        return vals


def _f64(t) -> Tensor:
    return t.detach().to(torch.float64).clone()


def _lin(mod, scale=1.0) -> Linear:
    return Linear(_f64(mod.weight).T.contiguous() * scale, _f64(mod.bias) * scale)


def _layernorm(g: Graph, x: str, ln, name: str, layer: int) -> str:
    """LayerNorm of node ``x`` from a model's LN module (toolkit ``_LayerNorm`` or
    ``nn.LayerNorm``, which is the "standard" variant); the result is always named ``name``."""
    variant = getattr(ln, "variant", "standard")
    y = add_layernorm(
        g,
        x,
        variant,
        getattr(ln, "weight", None),
        getattr(ln, "bias", None),
        ln.eps,
        name,
        layer=layer,
    )
    if y == x:  # "none": give the reported node its name anyway
        y = g.add(name, Linear(None, None), (x,), g.nodes[x].shape, layer=layer)
    return y


def _add_layer(
    g: Graph, x: str, i: int, heads: int, attn, ln1, ff1, ff2, ln2, activation: str
) -> str:
    """One post-LN encoder layer on node ``x`` [T, D]; ``attn`` has ``q, k, v, o`` Linears.

    :math:`y = \\mathrm{LN}_1(x + W_o\\,\\mathrm{MHA}(x))`,
    :math:`x' = \\mathrm{LN}_2(y + W_2\\,\\sigma(W_1 y + b_1) + b_2)`; nodes ``L{i}.*``.
    """
    T, D = g.nodes[x].shape
    H = heads
    dh = D // H
    split = Rearrange((T, D), (T, H, dh), (1, 0, 2), (H, T, dh))
    merge = Rearrange((H, T, dh), (H, T, dh), (1, 0, 2), (T, D))
    p = f"L{i}"
    at = dict(attention=True, layer=i)
    q = g.add(f"{p}.q", _lin(attn.q, 1.0 / math.sqrt(dh)), (x,), (T, D), **at)
    k = g.add(f"{p}.k", _lin(attn.k), (x,), (T, D), **at)
    v = g.add(f"{p}.v", _lin(attn.v), (x,), (T, D), **at)
    qh = g.add(f"{p}.qh", split, (q,), (H, T, dh), **at)
    kh = g.add(f"{p}.kh", split, (k,), (H, T, dh), **at)
    vh = g.add(f"{p}.vh", split, (v,), (H, T, dh), **at)
    s = g.add(f"{p}.scores", MatMul(transpose_b=True), (qh, kh), (H, T, T), **at)
    pr = add_softmax(g, s, f"{p}.softmax", **at)
    c = g.add(f"{p}.context", MatMul(transpose_b=False), (pr, vh), (H, T, dh), **at)
    c = g.add(f"{p}.merge", merge, (c,), (T, D), **at)
    a = g.add(f"{p}.attention", _lin(attn.o), (c,), (T, D), layer=i)
    r = g.add(f"{p}.res1", Add(), (x, a), (T, D), layer=i)
    y = _layernorm(g, r, ln1, f"{p}.ln1", i)
    F = ff1.out_features
    h = g.add(f"{p}.ffn_pre", _lin(ff1), (y,), (T, F), layer=i)
    h = g.add(f"{p}.ffn_act", ACTIVATIONS[activation](), (h,), (T, F), layer=i)
    h = g.add(f"{p}.ffn_out", _lin(ff2), (h,), (T, D), layer=i)
    r = g.add(f"{p}.res2", Add(), (y, h), (T, D), layer=i)
    return _layernorm(g, r, ln2, f"{p}.out", i)


def _add_head(g: Graph, x: str, head) -> str:
    D = g.nodes[x].shape[-1]
    x = g.add("pooled", TokenMean(), (x,), (D,))
    return g.add("logits", _lin(head), (x,), (head.out_features,))


def build_graph(model, T: int) -> Graph:
    """The graph of ``model`` for sequence length ``T``.

    ``model``: a :class:`~toolkit.verify.model.TransformerClassifier` or a
    :class:`~toolkit.verify.minilm.MiniLMClassifier` (dispatched to
    :func:`build_bert_graph`).
    """
    from .minilm import MiniLMClassifier

    if isinstance(model, MiniLMClassifier):
        return build_bert_graph(model, T)
    D = model.dim
    g = Graph()
    x = g.add("input", None, (), (T, D))
    x = g.add("embed", Linear(None, _f64(model.position[:T])), (x,), (T, D))
    for i, blk in enumerate(model.blocks):
        x = _add_layer(
            g, x, i, model.heads, blk, blk.ln1, blk.ff1, blk.ff2, blk.ln2, blk.activation
        )
    _add_head(g, x, model.classifier)
    return g


def build_bert_graph(model, T: int) -> Graph:
    """The graph of a :class:`~toolkit.verify.minilm.MiniLMClassifier` (BERT layout).

    ``input`` e [T, D] -> ``embed.sum`` (+ position rows 0..T-1 + token-type-0 row, one
    constant) -> embedding LayerNorm ``embed`` (standard, with eps) -> BERT layers
    ``L{i}.*`` (the same nodes as :func:`build_graph`; GELU FFN) -> ``pooled`` (mean over
    the T tokens) -> ``logits`` (the linear head).
    """
    D = model.dim
    g = Graph()
    x = g.add("input", None, (), (T, D))
    const = _f64(model.position.weight[:T]) + _f64(model.token_type.weight[0])
    x = g.add("embed.sum", Linear(None, const), (x,), (T, D))
    x = _layernorm(g, x, model.ln_emb, "embed", -1)
    for i, layer in enumerate(model.layers):
        x = _add_layer(
            g, x, i, model.heads, layer.attn, layer.ln1, layer.ff1, layer.ff2, layer.ln2, "gelu"
        )
    _add_head(g, x, model.head)
    return g
