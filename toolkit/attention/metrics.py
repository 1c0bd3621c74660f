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

Metrics are computed in float64 whatever the input dtype.  NaN is never hidden: a row whose
inputs hold NaN gives a NaN metric (see each function), and bad arguments raise a
TypeError or ValueError that names them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from .._checks import check_choice, check_tensor
from ..models import AttentionTrace
from ..models._attention import (
    ATTENTION_DTYPES,
    attention_scores,
    check_attn_mask,
    check_padding_mask,
    check_qkv,
    resolve_scale,
    softmax_kept,
)
from .masks import check_density
from .patterns import (
    NM,
    Pattern,
    PatternKind,
    PatternLike,
    _from_method,
    check_sequence,
    parse_pattern,
)

__all__ = [
    "DEFAULT_DENSITIES",
    "DEFAULT_NM",
    "METHODS",
    "attention_metrics",
    "kl_divergence",
    "method_mask",
    "output_error",
    "retained_mass",
    "sweep_patterns",
    "topk_recall",
    "tradeoff_curves",
]

#: The method families of :func:`tradeoff_curves` (the pattern kinds other than dense).
METHODS: tuple[PatternKind, ...] = ("nm", "topk", "dsa", "local", "strided")
DEFAULT_NM = ("1:2", "2:4", "4:8", "1:4", "2:8", "1:8")
DEFAULT_DENSITIES = (0.125, 0.25, 0.5, 0.75)
#: The metric columns of :func:`attention_metrics` and :func:`tradeoff_curves`.
METRICS = ("density", "mass", "kl", "error", "recall")


def _check_pair(
    a_name: str, a: object, b_name: str, b: object, min_ndim: int, b_bool: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Two tensors on one device whose shapes broadcast: ``a`` floating, ``b`` floating (or
    bool with ``b_bool``); both with at least ``min_ndim`` dimensions."""
    at = check_tensor(a_name, a, dtypes=ATTENTION_DTYPES, min_ndim=min_ndim)
    dtypes = (torch.bool,) if b_bool else ATTENTION_DTYPES
    bt = check_tensor(b_name, b, dtypes=dtypes, min_ndim=min_ndim, device=at.device)
    try:
        torch.broadcast_shapes(at.shape, bt.shape)
    except RuntimeError:
        raise ValueError(
            f"{a_name} and {b_name} must have broadcastable shapes, got "
            f"{tuple(at.shape)} and {tuple(bt.shape)}"
        ) from None
    return at, bt


def retained_mass(probs: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    r"""Per-row mass of the full probabilities on the kept entries, :math:`\sum_{j\in K} p_j`.

    Parameters
    ----------
    probs : torch.Tensor
        Full (dense) probabilities ``[..., Lq, Lk]`` (floating).
    keep : torch.Tensor
        Bool kept set; ``probs`` and ``keep`` broadcast against each other.

    Returns
    -------
    torch.Tensor
        ``[..., Lq]`` (the broadcast shape without its last dimension) in the dtype of
        ``probs``; NaN for a row whose probabilities hold NaN, kept or not.

    Raises
    ------
    TypeError, ValueError
        If ``probs`` is not a floating tensor, ``keep`` not a bool tensor on its device, or
        their shapes do not broadcast.

    Examples
    --------
    >>> retained_mass(torch.tensor([[0.5, 0.3, 0.2]]), torch.tensor([[True, False, True]]))
    tensor([0.7000])
    """
    probs, keep = _check_pair("probs", probs, "keep", keep, 1, b_bool=True)
    return (probs * keep.to(probs.dtype)).sum(-1)


def kl_divergence(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    r""":math:`\mathrm{KL}(p\,\|\,q) = \sum_j p_j \log(p_j / q_j)` per row, in float64.

    :math:`0 \log 0 = 0`, and the divergence is :math:`+\infty` where :math:`p_j > 0 = q_j`.
    A row holding NaN (in ``p``, or in ``q`` where ``p_j > 0``) or a negative entry gives NaN.

    Parameters
    ----------
    p, q : torch.Tensor
        Probabilities ``[..., L]`` (rows summing to 1), floating, on one device, with
        shapes that broadcast.

    Returns
    -------
    torch.Tensor
        float64 ``[...]``.

    Raises
    ------
    TypeError, ValueError
        If ``p`` or ``q`` is not a floating tensor, they sit on different devices, or their
        shapes do not broadcast.

    Examples
    --------
    >>> kl_divergence(torch.tensor([0.5, 0.5]), torch.tensor([0.5, 0.5])).item()
    0.0
    """
    p, q = _check_pair("p", p, "q", q, 1)
    p, q = p.double(), q.double()
    # p == 0 is the only exempt case: NaN compares unequal, so it stays NaN.
    terms = torch.where(p == 0, 0.0, p * (torch.log(p) - torch.log(q)))
    return terms.sum(-1)


def output_error(out: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    r"""Relative error :math:`\|O - O_{\text{ref}}\|_F / \|O_{\text{ref}}\|_F` over the last
    two dims ``[Lq, dv]``.

    Parameters
    ----------
    out, ref : torch.Tensor
        Outputs ``[..., Lq, dv]``, floating, on one device, with shapes that broadcast.

    Returns
    -------
    torch.Tensor
        float64 ``[...]``: 0 where both are zero, :math:`+\infty` where only ``ref`` is,
        and NaN where ``out`` or ``ref`` holds NaN (or both hold infinities).

    Raises
    ------
    TypeError, ValueError
        If ``out`` or ``ref`` is not a floating tensor with at least two dimensions, they
        sit on different devices, or their shapes do not broadcast.

    Examples
    --------
    >>> output_error(torch.ones(2, 2) * 1.1, torch.ones(2, 2)).item()  # doctest: +ELLIPSIS
    0.1000...
    """
    out, ref = _check_pair("out", out, "ref", ref, 2)
    diff = torch.linalg.vector_norm((out.double() - ref.double()), dim=(-2, -1))
    norm = torch.linalg.vector_norm(ref.double(), dim=(-2, -1))
    zero_ref = torch.where(diff > 0, math.inf, 0.0)
    err = torch.where(norm > 0, diff / norm.clamp_min(1e-300), zero_ref)
    # The comparisons above read NaN as "not positive": restore it.
    return torch.where(diff.isnan() | norm.isnan(), math.nan, err)


def topk_recall(keep: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
    r"""Per row, the fraction :math:`|K \cap T_{|K|}| / |K|` of the kept set :math:`K` that
    lies in the true top-:math:`|K|` entries :math:`T_{|K|}` (by ``scores``, ties to the
    lower index).

    Parameters
    ----------
    keep : torch.Tensor
        Bool kept set, broadcastable to ``scores``.
    scores : torch.Tensor
        The true scores ``[..., L]``, floating; :math:`-\infty` entries rank last (ties to
        the lower index).

    Returns
    -------
    torch.Tensor
        float64 ``[...]``; 1 for a row that keeps nothing, NaN for a row whose scores hold
        NaN (the true top-k is undefined).

    Raises
    ------
    TypeError, ValueError
        If ``scores`` is not a floating tensor, ``keep`` not a bool tensor on its device,
        or ``keep`` does not broadcast to ``scores``.

    Examples
    --------
    >>> topk_recall(torch.tensor([True, False, True]), torch.tensor([3.0, 2.0, 1.0])).item()
    0.5
    """
    scores, keep = _check_pair("scores", scores, "keep", keep, 1, b_bool=True)
    if torch.broadcast_shapes(keep.shape, scores.shape) != scores.shape:
        raise ValueError(
            f"keep must broadcast to the shape of scores {tuple(scores.shape)}, "
            f"got {tuple(keep.shape)}"
        )
    order = torch.sort(scores, dim=-1, descending=True, stable=True).indices
    ranks = torch.empty_like(order).scatter_(
        -1, order, torch.arange(scores.shape[-1], device=scores.device).expand_as(order)
    )
    keep = keep.expand(scores.shape)
    count = keep.sum(-1, keepdim=True)
    hits = (keep & (ranks < count)).sum(-1)
    count = count.squeeze(-1)
    recall = torch.where(count > 0, hits.double() / count.clamp_min(1), 1.0)
    return torch.where(scores.isnan().any(-1), math.nan, recall)


def method_mask(
    method: PatternLike,
    q: torch.Tensor,
    k: torch.Tensor,
    density: float | None = None,
    *,
    scale: float | None = None,
    attn_mask: torch.Tensor | None = None,
    rank: int = 16,
    bits: int = 4,
    seed: int | None = None,
) -> torch.Tensor:
    r"""The kept pattern ``[..., Lq, Lk]`` of one method on ``q``, ``k``.

    The string form of :meth:`Pattern.mask <toolkit.attention.Pattern.mask>`: ``method`` is
    a :class:`~toolkit.attention.Pattern` (``density`` must be None), ``"dense"``, an N:M
    label such as ``"2:4"`` (density ``n/m``; ``density`` must be None), or one of ``"topk"``
    (oracle), ``"dsa"`` (``sparsity = 1 - density``, with ``rank``, ``bits``, ``seed``),
    ``"local"``, ``"strided"`` with a ``density``.  The dynamic methods see the scores with
    ``attn_mask`` added, as in the attention functions.

    Parameters
    ----------
    method : Pattern or str
        The pattern, or its method name as above.
    q, k : torch.Tensor
        ``[..., Lq, d]`` and ``[..., Lk, d]``.
    density : float, optional
        Kept fraction in ``(0, 1]`` for the methods that take one.
    scale : float, optional
        Score scale, default ``1/sqrt(d)``.
    attn_mask : torch.Tensor, optional
        Additive float or bool mask, broadcastable to the scores.
    rank, bits, seed : int
        DSA's projection rank, quantization bits and seed (None means 0).

    Returns
    -------
    torch.Tensor
        Bool ``[..., Lq, Lk]``.

    Raises
    ------
    TypeError, ValueError
        On an unknown method, a missing or superfluous density, or a bad parameter.

    Examples
    --------
    >>> q = k = torch.randn(2, 8, 4)
    >>> method_mask("2:4", q, k).sum(-1).unique().tolist()
    [4]
    """
    seed = 0 if seed is None else seed
    pattern = _from_method(method, density, "method", rank=rank, bits=bits, seed=seed)
    return pattern.mask(q, k, scale=scale, attn_mask=attn_mask)


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

    Parameters
    ----------
    q, k, v : torch.Tensor
        ``[..., Lq, d]``, ``[..., Lk, d]``, ``[..., Lk, dv]``.
    keep : torch.Tensor
        Bool kept set, broadcastable to ``[..., Lq, Lk]``.
    scale : float, optional
        Score scale, default ``1/sqrt(d)``.
    attn_mask : torch.Tensor, optional
        Additive float or bool mask, broadcastable to the scores.
    query_mask : torch.Tensor, optional
        Bool (or 0/1), broadcastable to ``[..., Lq]``: rows to average over (padding
        excluded from the averages and from the output error).

    Returns
    -------
    dict of str to torch.Tensor
        float64 tensors of the leading shape: ``density`` (kept fraction), ``mass``,
        ``kl`` (:math:`\mathrm{KL}(\tilde p\|p)`), ``error`` (relative output error) and
        ``recall`` (see the module docstring).  NaN in ``q``, ``k`` or ``v`` gives NaN
        metrics, not numbers that look valid.

    Raises
    ------
    TypeError, ValueError
        On a bad tensor or mask (named in the message), or no queries or no keys
        (``Lq = 0`` or ``Lk = 0``).

    Examples
    --------
    >>> q, k, v = torch.randn(3, 6, 4), torch.randn(3, 6, 4), torch.randn(3, 6, 4)
    >>> mets = attention_metrics(q, k, v, torch.ones(6, 6, dtype=torch.bool))
    >>> round(float(mets["mass"].min()), 12), float(mets["error"].max())
    (1.0, 0.0)
    """
    shape = check_qkv(q, k, v)
    if 0 in shape[-2:]:
        raise ValueError(
            f"q and k must hold at least one query and one key (the metrics of an empty row "
            f"are undefined), got q {tuple(q.shape)} and k {tuple(k.shape)}"
        )
    check_attn_mask(attn_mask, shape, q.device)
    check_tensor("keep", keep, dtypes=(torch.bool,))
    check_attn_mask(keep, shape, q.device, name="keep")
    if query_mask is not None:
        query_mask = check_padding_mask("query_mask", query_mask, shape[:-1], q.device)
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

    def mean(x: torch.Tensor) -> torch.Tensor:
        return (x * weight).sum(-1)

    out_full, out_sparse = p_full @ v64, p_sparse @ v64
    return {
        "density": mean(keep.double().mean(-1)),
        "mass": mean(retained_mass(p_full, keep)),
        "kl": mean(kl_divergence(p_sparse, p_full)),
        "error": output_error(out_sparse * rows[..., None], out_full * rows[..., None]),
        "recall": mean(topk_recall(keep, scores)),
    }


Layer = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def _layers(
    source: Any,
) -> tuple[list[Layer], float | None, torch.Tensor | None, torch.Tensor | None]:
    if all(hasattr(source, name) for name in ("q", "k", "v")):  # a trace, or one alike
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


def sweep_patterns(
    methods: Sequence[str] = METHODS,
    densities: Sequence[float] = DEFAULT_DENSITIES,
    nm: Sequence[PatternLike] = DEFAULT_NM,
    *,
    rank: int = 16,
    bits: int = 4,
    seed: int | None = None,
) -> list[Pattern]:
    """The patterns :func:`tradeoff_curves` runs: every N:M of ``nm`` for ``"nm"``, every
    density of ``densities`` for the other ``methods`` (in the order given).

    Parameters
    ----------
    methods : sequence of str
        Drawn from :data:`METHODS`.
    densities : sequence of float
        Kept fractions in ``(0, 1]``.
    nm : sequence of str or NM
        N:M patterns (``"2:4"`` or ``NM(2, 4)``).
    rank, bits, seed : int
        DSA's parameters (seed None means 0).

    Returns
    -------
    list of Pattern

    Examples
    --------
    >>> [p.label for p in sweep_patterns(("nm", "dsa"), (0.5,), ("1:2",), rank=8)]
    ['1:2', 'dsa@0.5 r=8']
    """
    for name in check_sequence("methods", methods):
        check_choice("methods", name, METHODS)
    dens = [check_density("densities", d) for d in check_sequence("densities", densities)]
    nms = [parse_pattern(label, "nm") for label in check_sequence("nm", nm)]
    for p in nms:
        if not isinstance(p, NM):
            raise ValueError(f"nm must hold N:M patterns such as '2:4', got {p.label!r}")
    seed = 0 if seed is None else seed
    out: list[Pattern] = []
    for name in methods:
        if name == "nm":
            out += nms
        else:
            out += [_from_method(name, d, rank=rank, bits=bits, seed=seed) for d in dens]
    return out


def tradeoff_curves(
    source: AttentionTrace | Layer | Sequence[Layer],
    methods: Sequence[str] = METHODS,
    densities: Sequence[float] = DEFAULT_DENSITIES,
    nm: Sequence[PatternLike] = DEFAULT_NM,
    *,
    scale: float | None = None,
    attn_mask: torch.Tensor | None = None,
    rank: int = 16,
    bits: int = 4,
    seed: int | None = None,
    patterns: Sequence[PatternLike] | None = None,
) -> dict[str, np.ndarray]:
    r"""Error against density for every method, per layer, as a column table.

    Parameters
    ----------
    source : AttentionTrace, (q, k, v) tuple or list of them
        The attention, one ``(q, k, v)`` per layer.  A trace's ``scale``, ``attn_mask``
        and ``query_mask`` are used unless given here.
    methods, densities, nm, rank, bits, seed
        The patterns, as :func:`sweep_patterns` builds them: ``"nm"`` in ``methods`` runs
        every N:M of ``nm``, the other methods run at every density of ``densities``.
    scale : float, optional
        Score scale, default the trace's or ``1/sqrt(d)``.
    attn_mask : torch.Tensor, optional
        Additive float or bool mask, broadcastable to the scores.
    patterns : sequence of Pattern or str, optional
        Run exactly these patterns instead of ``methods``, ``densities`` and ``nm``.

    Returns
    -------
    dict of str to numpy.ndarray
        Equal-length columns, one row per (layer, pattern): ``layer`` (int), ``method``
        (the pattern's kind: ``"nm"``, ``"topk"``, ...), ``pattern`` (its label: ``"2:4"``,
        ``"topk@0.5"``), ``nominal_density``, and the head- and batch-averaged ``density``,
        ``mass``, ``kl``, ``error``, ``recall`` (float64).
        ``{k: v[t["layer"] == 0] for k, v in t.items()}`` selects a layer.

    Raises
    ------
    TypeError, ValueError
        On a bad source, pattern or mask (named in the message), and on a layer with no
        queries, no keys or an empty batch (its averages would be NaN).

    Examples
    --------
    >>> g = torch.Generator().manual_seed(0)
    >>> qkv = tuple(torch.randn(2, 16, 8, generator=g) for _ in range(3))
    >>> t = tradeoff_curves(qkv, methods=("nm", "topk"), densities=(0.5,), nm=("2:4",))
    >>> list(t["pattern"]), bool(t["mass"][1] >= t["mass"][0])
    (['2:4', 'topk@0.5'], True)
    """
    layers, t_scale, t_mask, t_query = _layers(source)
    scale = t_scale if scale is None else scale
    attn_mask = t_mask if attn_mask is None else attn_mask
    if patterns is None:
        runs = sweep_patterns(methods, densities, nm, rank=rank, bits=bits, seed=seed)
    else:
        runs = [parse_pattern(p, "patterns") for p in check_sequence("patterns", patterns)]
    cols: dict[str, list] = {
        c: [] for c in ("layer", "method", "pattern", "nominal_density", *METRICS)
    }
    for index, (q, k, v) in enumerate(layers):
        for pattern in runs:
            keep = pattern.mask(q, k, scale=scale, attn_mask=attn_mask)
            mets = attention_metrics(
                q, k, v, keep, scale=scale, attn_mask=attn_mask, query_mask=t_query
            )
            if mets["density"].numel() == 0:
                raise ValueError(
                    f"source layer {index}: q {tuple(q.shape)} and k {tuple(k.shape)} hold an "
                    "empty batch, so there is nothing to average"
                )
            cols["layer"].append(index)
            cols["method"].append(pattern.kind)
            cols["pattern"].append(pattern.label)
            cols["nominal_density"].append(pattern.density)
            for key in METRICS:
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
