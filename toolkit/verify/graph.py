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

__all__ = ["REPORTED", "Graph", "Node", "build_graph"]

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


def build_graph(model, T: int) -> Graph:
    """The graph of ``model`` (a TransformerClassifier) for sequence length ``T``."""
    D, H = model.dim, model.heads
    dh = D // H
    g = Graph()
    x = g.add("input", None, (), (T, D))
    x = g.add("embed", Linear(None, _f64(model.position[:T])), (x,), (T, D))
    split = Rearrange((T, D), (T, H, dh), (1, 0, 2), (H, T, dh))
    merge = Rearrange((H, T, dh), (H, T, dh), (1, 0, 2), (T, D))
    acts = {"relu": ReLU, "gelu": GELU, "tanh": Tanh}
    for i, blk in enumerate(model.blocks):
        p = f"L{i}"
        at = dict(attention=True, layer=i)
        sc = 1.0 / math.sqrt(dh)
        q = g.add(f"{p}.q", _lin(blk.q, sc), (x,), (T, D), **at)
        k = g.add(f"{p}.k", _lin(blk.k), (x,), (T, D), **at)
        v = g.add(f"{p}.v", _lin(blk.v), (x,), (T, D), **at)
        qh = g.add(f"{p}.qh", split, (q,), (H, T, dh), **at)
        kh = g.add(f"{p}.kh", split, (k,), (H, T, dh), **at)
        vh = g.add(f"{p}.vh", split, (v,), (H, T, dh), **at)
        s = g.add(f"{p}.scores", MatMul(transpose_b=True), (qh, kh), (H, T, T), **at)
        pr = add_softmax(g, s, f"{p}.softmax", **at)
        c = g.add(f"{p}.context", MatMul(transpose_b=False), (pr, vh), (H, T, dh), **at)
        c = g.add(f"{p}.merge", merge, (c,), (T, D), **at)
        a = g.add(f"{p}.attention", _lin(blk.o), (c,), (T, D), layer=i)
        r = g.add(f"{p}.res1", Add(), (x, a), (T, D), layer=i)
        ln = blk.ln1
        y = add_layernorm(g, r, ln.variant, getattr(ln, "weight", None),
                          getattr(ln, "bias", None), ln.eps, f"{p}.ln1", layer=i)
        if y == r:  # "none": give the reported node its name anyway
            y = g.add(f"{p}.ln1", Linear(None, None), (r,), (T, D), layer=i)
        F = blk.ff1.out_features
        h = g.add(f"{p}.ffn_pre", _lin(blk.ff1), (y,), (T, F), layer=i)
        h = g.add(f"{p}.ffn_act", acts[blk.activation](), (h,), (T, F), layer=i)
        h = g.add(f"{p}.ffn_out", _lin(blk.ff2), (h,), (T, D), layer=i)
        r = g.add(f"{p}.res2", Add(), (y, h), (T, D), layer=i)
        ln = blk.ln2
        x = add_layernorm(g, r, ln.variant, getattr(ln, "weight", None),
                          getattr(ln, "bias", None), ln.eps, f"{p}.out", layer=i)
        if x == r:
            x = g.add(f"{p}.out", Linear(None, None), (r,), (T, D), layer=i)
    x = g.add("pooled", TokenMean(), (x,), (D,))
    g.add("logits", _lin(model.classifier), (x,), (model.num_classes,))
    return g
