r"""How much a sparse pattern changes attention: per row, per head, per layer, and trade-off
curves of error against density for every method.

For a row with full probabilities :math:`p` (dense softmax of the exact scores), a kept set
:math:`K` and sparse probabilities :math:`\tilde p = p\,[j\in K] / p(K)` (every method here
renormalises the exact scores over its kept set):

* **retained mass** :math:`m = \sum_{j\in K} p_j` (1 for the dense pattern);
* **KL divergence** :math:`\mathrm{KL}(\tilde p\,\|\,p) = \sum_j \tilde p_j \log(\tilde p_j/p_j)
  = -\log m`.  The reverse, :math:`\mathrm{KL}(p\,\|\,\tilde p)`, is :math:`+\infty` as soon as
  a dropped entry has positive probability, i.e. for every sparse pattern, so the tables
  report :math:`\mathrm{KL}(\tilde p\|p)`; :func:`kl_divergence` computes either direction;
* **relative output error** :math:`\|\tilde O - O\|_F / \|O\|_F` over a head's ``[Lq, dv]``;
* **top-k recall** :math:`|K \cap T_{|K|}| / |K|`, with :math:`T_k` the true top-k of the row
  (1 for the oracle :func:`~toolkit.attention.topk_mask`).

Metrics are computed in float64 whatever the input dtype.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from ..models._attention import (
    _attend,
    attention_scores,
    check_attn_mask,
    check_qkv,
    resolve_scale,
    softmax_kept,
)
from ._nm import _check_nm, nm_mask
from .dsa import _check_dsa, _dsa_keep, dsa_projection
from .patterns import _check_density, _row_topk_op, keep_count, local_mask, strided_mask

__all__ = [
    "DEFAULT_DENSITIES",
    "DEFAULT_NM",
    "METHODS",
    "attention_metrics",
    "kl_divergence",
    "method_mask",
    "output_error",
    "retained_mass",
    "topk_recall",
    "tradeoff_curves",
]

METHODS = ("nm", "topk", "dsa", "local", "strided")
DEFAULT_NM = ("1:2", "2:4", "4:8", "1:4", "2:8", "1:8")
DEFAULT_DENSITIES = (0.125, 0.25, 0.5, 0.75)


def retained_mass(probs: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    r"""Per-row mass of the full probabilities on the kept entries, ``[..., Lq]``.

    >>> retained_mass(torch.tensor([[0.5, 0.3, 0.2]]), torch.tensor([[True, False, True]]))
    tensor([0.7000])
    """
    return (probs * keep.to(probs.dtype)).sum(-1)


def kl_divergence(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    r""":math:`\mathrm{KL}(p\,\|\,q) = \sum_j p_j \log(p_j / q_j)` per row, ``[..., L]`` ->
    ``[...]``, in float64, with :math:`0 \log 0 = 0` and :math:`+\infty` where
    :math:`p_j > 0 = q_j`.

    >>> kl_divergence(torch.tensor([0.5, 0.5]), torch.tensor([0.5, 0.5])).item()
    0.0
    """
    p, q = p.double(), q.double()
    terms = torch.where(p > 0, p * (torch.log(p) - torch.log(q)), 0.0)
    return terms.sum(-1)


def output_error(out: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    r"""Relative error :math:`\|O - O_{\text{ref}}\|_F / \|O_{\text{ref}}\|_F` over the last
    two dims ``[Lq, dv]``; 0 where both are zero, :math:`+\infty` where only ``ref`` is.

    >>> output_error(torch.ones(2, 2) * 1.1, torch.ones(2, 2)).item()  # doctest: +ELLIPSIS
    0.1000...
    """
    diff = torch.linalg.vector_norm((out.double() - ref.double()), dim=(-2, -1))
    norm = torch.linalg.vector_norm(ref.double(), dim=(-2, -1))
    zero_ref = torch.where(diff > 0, math.inf, 0.0)
    return torch.where(norm > 0, diff / norm.clamp_min(1e-300), zero_ref)


def topk_recall(keep: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
    r"""Per row, the fraction of the true top-:math:`|K|` entries (by ``scores``, ties to the
    lower index) that the kept set :math:`K` contains; 1 for a row that keeps nothing.

    >>> topk_recall(torch.tensor([True, False, True]), torch.tensor([3.0, 2.0, 1.0])).item()
    0.5
    """
    order = torch.sort(scores, dim=-1, descending=True, stable=True).indices
    ranks = torch.empty_like(order).scatter_(
        -1, order, torch.arange(scores.shape[-1], device=scores.device).expand_as(order)
    )
    keep = keep.expand(scores.shape)
    count = keep.sum(-1, keepdim=True)
    hits = (keep & (ranks < count)).sum(-1)
    count = count.squeeze(-1)
    return torch.where(count > 0, hits.double() / count.clamp_min(1), 1.0)


def _parse_nm(label: str) -> tuple[int, int]:
    try:
        n, m = (int(x) for x in label.split(":"))
    except (ValueError, AttributeError):
        raise ValueError(f"an N:M pattern must look like '2:4', got {label!r}") from None
    _check_nm(n, m)
    return n, m


def method_mask(
    method: str,
    q: torch.Tensor,
    k: torch.Tensor,
    density: float | None = None,
    *,
    scale: float | None = None,
    attn_mask: torch.Tensor | None = None,
    rank: int = 16,
    bits: int = 4,
    seed: int = 0,
) -> torch.Tensor:
    r"""The kept pattern ``[..., Lq, Lk]`` of one method on ``q``, ``k``.

    ``method`` is ``"dense"``, an N:M label such as ``"2:4"`` (density ``n/m``; ``density``
    must be None), or one of ``"topk"`` (oracle), ``"dsa"`` (``sparsity = 1 - density``,
    with ``rank``, ``bits``, ``seed``), ``"local"``, ``"strided"`` with a ``density``.  The
    dynamic methods see the scores with ``attn_mask`` added, as in the attention functions.

    Example:
        >>> q = k = torch.randn(2, 8, 4)
        >>> method_mask("2:4", q, k).sum(-1).unique().tolist()
        [4]
    """
    shape = check_qkv(q, k)
    check_attn_mask(attn_mask, shape, q.device)
    s = resolve_scale(scale, q.shape[-1])
    if not isinstance(method, str):
        raise TypeError(f"method must be a str, got {method!r}")
    if method == "dense" or ":" in method:
        if density is not None:
            raise ValueError(f"method {method!r} fixes its density; got density={density!r}")
        if method == "dense":
            return torch.ones(shape, dtype=torch.bool, device=q.device)
        n, m = _parse_nm(method)
        return nm_mask(attention_scores(q.detach(), k.detach(), s, attn_mask), n, m)
    if method not in METHODS:
        raise ValueError(f"method must be 'dense', 'N:M' or one of {METHODS}, got {method!r}")
    if density is None:
        raise ValueError(f"method {method!r} needs a density in (0, 1]")
    density = _check_density("density", density)
    lq, lk = shape[-2], shape[-1]
    if method == "topk":
        scores = attention_scores(q.detach(), k.detach(), s, attn_mask)
        return _row_topk_op(scores, keep_count(density, lk))
    if method == "dsa":
        if density >= 1:
            return torch.ones(shape, dtype=torch.bool, device=q.device)
        _check_dsa(1 - density, rank, bits, seed, None)
        proj = dsa_projection(q.shape[-1], rank, seed)
        kk = keep_count(density, lk)
        return _dsa_keep(q.detach(), k.detach(), proj, bits, kk, s, attn_mask)
    make = local_mask if method == "local" else strided_mask
    return make(lq, lk, density, device=q.device).expand(shape)


def attention_metrics(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    keep: torch.Tensor,
    *,
    scale: float | None = None,
    attn_mask: torch.Tensor | None = None,
    query_mask: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    r"""Metrics of a kept pattern, averaged over query rows: one value per leading index
    (e.g. ``[B, H]`` for per-head values).

    Returns a dict of float64 tensors of shape ``[...]`` (the leading dims): ``density``
    (kept fraction), ``mass``, ``kl`` (:math:`\mathrm{KL}(\tilde p\|p)`), ``error`` (relative
    output error) and ``recall`` (see the module docstring).  ``query_mask`` (bool,
    broadcastable to ``[..., Lq]``) excludes rows such as padding from the averages and
    from the output error.

    Example:
        >>> q, k, v = torch.randn(3, 6, 4), torch.randn(3, 6, 4), torch.randn(3, 6, 4)
        >>> mets = attention_metrics(q, k, v, torch.ones(6, 6, dtype=torch.bool))
        >>> round(float(mets["mass"].min()), 12), float(mets["error"].max())
        (1.0, 0.0)
    """
    shape = check_qkv(q, k, v)
    check_attn_mask(attn_mask, shape, q.device)
    check_attn_mask(keep, shape, q.device, name="keep")
    s = resolve_scale(scale, q.shape[-1])
    q64, k64, v64 = q.detach().double(), k.detach().double(), v.detach().double()
    scores = attention_scores(q64, k64, s, attn_mask)
    keep = keep.expand(shape)
    p_full = softmax_kept(scores, None)
    p_sparse = softmax_kept(scores, keep)
    rows = torch.ones(shape[:-1], dtype=torch.float64, device=q.device)
    if query_mask is not None:
        rows = rows * query_mask.to(q.device, torch.float64)
    weight = rows / rows.sum(-1, keepdim=True).clamp_min(1)

    def mean(x):
        return (x * weight).sum(-1)

    out_full = _attend(q64, k64, v64, None, s, attn_mask, False, scores=scores)
    out_sparse = _attend(q64, k64, v64, keep, s, attn_mask, False, scores=scores)
    return {
        "density": mean(keep.double().mean(-1)),
        "mass": mean(retained_mass(p_full, keep)),
        "kl": mean(kl_divergence(p_sparse, p_full)),
        "error": output_error(out_sparse * rows[..., None], out_full * rows[..., None]),
        "recall": mean(topk_recall(keep, scores)),
    }


def _layers(source) -> tuple[list[tuple], float | None, object, object]:
    if hasattr(source, "q") and hasattr(source, "k") and hasattr(source, "v"):
        layers = list(zip(source.q, source.k, source.v))
        return (
            layers,
            getattr(source, "scale", None),
            getattr(source, "attn_mask", None),
            getattr(source, "query_mask", None),
        )
    if isinstance(source, tuple) and len(source) == 3 and isinstance(source[0], torch.Tensor):
        return [source], None, None, None
    if isinstance(source, Sequence) and all(isinstance(t, tuple) and len(t) == 3 for t in source):
        return list(source), None, None, None
    raise TypeError(
        "source must be an AttentionTrace (with .q, .k, .v lists), a (q, k, v) tuple or a "
        f"list of (q, k, v) tuples, got {type(source).__name__}"
    )


def tradeoff_curves(
    source,
    methods: Sequence[str] = METHODS,
    densities: Sequence[float] = DEFAULT_DENSITIES,
    nm: Sequence[str] = DEFAULT_NM,
    *,
    scale: float | None = None,
    attn_mask: torch.Tensor | None = None,
    rank: int = 16,
    bits: int = 4,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    r"""Error against density for every method, per layer, as a column table.

    ``source`` is an :class:`~toolkit.models.AttentionTrace` (its ``scale``, ``attn_mask``
    and ``query_mask`` are used unless given here), a ``(q, k, v)`` tuple or a list of them
    (one per layer).  ``"nm"`` in ``methods`` runs every label of ``nm``; the other methods
    run at every density of ``densities``.

    Returns:
        dict of equal-length numpy arrays, one row per (layer, method, density): ``layer``
        (int), ``method`` (``"nm"``, ``"topk"``, ...), ``pattern`` (``"2:4"``, ``"topk@0.5"``),
        ``nominal_density``, and the head- and batch-averaged ``density``, ``mass``, ``kl``,
        ``error``, ``recall`` (float64).  ``{k: v[t["layer"] == 0] for k, v in t.items()}``
        selects a layer.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> qkv = tuple(torch.randn(2, 16, 8, generator=g) for _ in range(3))
        >>> t = tradeoff_curves(qkv, methods=("nm", "topk"), densities=(0.5,), nm=("2:4",))
        >>> list(t["pattern"]), bool(t["mass"][1] >= t["mass"][0])
        (['2:4', 'topk@0.5'], True)
    """
    layers, t_scale, t_mask, t_query = _layers(source)
    scale = t_scale if scale is None else scale
    attn_mask = t_mask if attn_mask is None else attn_mask
    for name in methods:
        if name not in METHODS:
            raise ValueError(f"methods must be drawn from {METHODS}, got {name!r}")
    for d in densities:
        _check_density("densities", d)
    nm_pairs = [(label, _parse_nm(label)) for label in nm]
    cols: dict[str, list] = {
        c: []
        for c in (
            "layer",
            "method",
            "pattern",
            "nominal_density",
            "density",
            "mass",
            "kl",
            "error",
            "recall",
        )
    }
    for index, (q, k, v) in enumerate(layers):
        runs = []
        for name in methods:
            if name == "nm":
                runs += [("nm", label, None, n / m) for label, (n, m) in nm_pairs]
            else:
                runs += [(name, f"{name}@{d:g}", d, d) for d in densities]
        for name, label, d, nominal in runs:
            keep = method_mask(
                label if name == "nm" else name,
                q,
                k,
                d,
                scale=scale,
                attn_mask=attn_mask,
                rank=rank,
                bits=bits,
                seed=seed,
            )
            mets = attention_metrics(
                q, k, v, keep, scale=scale, attn_mask=attn_mask, query_mask=t_query
            )
            cols["layer"].append(index)
            cols["method"].append(name)
            cols["pattern"].append(label)
            cols["nominal_density"].append(nominal)
            for key in ("density", "mass", "kl", "error", "recall"):
                cols[key].append(float(mets[key].mean()))
    out = {
        key: np.asarray(val, dtype=np.float64)
        for key, val in cols.items()
        if key not in ("layer", "method", "pattern")
    }
    out["layer"] = np.asarray(cols["layer"], dtype=np.int64)
    out["method"] = np.asarray(cols["method"], dtype=object)
    out["pattern"] = np.asarray(cols["pattern"], dtype=object)
    return {key: out[key] for key in cols}
