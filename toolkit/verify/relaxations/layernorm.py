"""LayerNorm in its three variants, built from linear ops, a square, rsqrt and a product.

* ``"none"``: identity (no node).
* ``"no_var"``: :math:`y = w \\odot (x - \\mu) + b` is linear: one ``Linear`` with
  :math:`W = (I - \\tfrac1D \\mathbf{1}\\mathbf{1}^\\top)\\,\\mathrm{diag}(w)`.
* ``"standard"``: :math:`d = x - \\mu` (:class:`~.linear.Center`),
  :math:`v = \\tfrac1D\\sum d^2 + \\epsilon`
  (:class:`~.product.Square` then linear; valid range :math:`v \\ge \\epsilon`),
  :math:`r = v^{-1/2}` (:class:`~.sqrt.Rsqrt`, convex), :math:`n = d \\odot r`
  (:class:`~.product.Mul`, McCormick; valid range :math:`|n_i| \\le \\sqrt D` because
  :math:`d_i^2 \\le \\sum_j d_j^2`), :math:`y = w \\odot n + b` (:class:`~.linear.Scale`).

>>> from toolkit.verify.graph import Graph
>>> import torch
>>> g = Graph(); x = g.add("x", None, (), (3, 4))
>>> y = add_layernorm(g, x, "standard", torch.ones(4), torch.zeros(4), 1e-5, "ln")
>>> list(g.nodes)[-1]
'ln'
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from .linear import Center, Linear, Scale
from .product import Mul, Square
from .sqrt import Rsqrt

if TYPE_CHECKING:
    from ..graph import Graph

__all__ = ["add_layernorm"]


def add_layernorm(
    g: Graph,
    x: str,
    variant: str,
    weight: Tensor | None,
    bias: Tensor | None,
    eps: float,
    prefix: str,
    **flags: Any,
) -> str:
    """Append LayerNorm of node ``x`` (over its last dim) to graph ``g``; return the name."""
    if variant == "none":
        return x
    shape = g.nodes[x].shape
    D = shape[-1]
    w = torch.as_tensor(weight).detach().to(torch.float64)
    # every constant lives where the weights do (a CUDA model builds a CUDA graph)
    f64: dict[str, Any] = dict(dtype=torch.float64, device=w.device)
    b = torch.as_tensor(bias).detach().to(**f64)
    C = torch.eye(D, **f64) - 1.0 / D
    if variant == "no_var":
        return g.add(prefix, Linear(C * w[None, :], b), (x,), shape, **flags)
    if variant != "standard":
        raise ValueError(f"variant must be 'standard', 'no_var' or 'none', got {variant!r}")
    red = (*shape[:-1], 1)
    d = g.add(f"{prefix}.center", Center(), (x,), shape, **flags)
    sq = g.add(f"{prefix}.square", Square(), (d,), shape, **flags)
    v = g.add(
        f"{prefix}.var",
        Linear(torch.full((D, 1), 1.0 / D, **f64), torch.tensor([float(eps)], **f64)),
        (sq,),
        red,
        valid_range=(float(eps), math.inf),
        **flags,
    )
    r = g.add(f"{prefix}.rstd", Rsqrt(), (v,), red, **flags)
    n = g.add(
        f"{prefix}.normed", Mul(), (d, r), shape, valid_range=(-math.sqrt(D), math.sqrt(D)), **flags
    )
    return g.add(prefix, Scale(w, b), (n,), shape, **flags)
