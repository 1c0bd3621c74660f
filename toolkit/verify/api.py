"""Public entry points: :func:`bounds`, :func:`margin_bounds`, :func:`certified_radius`,
:func:`estimate_memory`.

Example
-------
>>> import torch
>>> from toolkit.verify import TransformerClassifier, LpBall, bounds
>>> m = TransformerClassifier(30, dim=8, heads=2, ffn_dim=16)
>>> e = m.embed(torch.tensor([[1, 2, 3, 4]]))
>>> lo, hi = bounds(m, e, LpBall(0.01, p=2, positions=[1]), method="crown")
>>> bool((lo <= m(e).double() + 1e-6).all() and (m(e).double() <= hi + 1e-6).all())
True
"""

from __future__ import annotations

import math
from collections import OrderedDict

import torch
from torch import Tensor

from .graph import build_graph
from .minilm import MiniLMClassifier
from .model import TransformerClassifier
from .propagate import _LIVE, METHODS, BoundMemoryError, Propagator, rows_per_chunk
from .specs import LpBall, LpDomain, Synonyms, normalize_p

__all__ = [
    "BoundMemoryError",
    "bounds",
    "certified_radius",
    "estimate_memory",
    "margin_bounds",
    "margin_matrix",
]

F64 = torch.float64


def _check_model(model):
    if not isinstance(model, (TransformerClassifier, MiniLMClassifier)):
        raise TypeError(
            "model must be a TransformerClassifier or a MiniLMClassifier, got "
            f"{type(model).__name__}"
        )


def _check_method(method: str) -> str:
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    return method


def _check_alpha(kw: dict) -> None:
    """Check the alpha-CROWN keywords present in ``kw``."""
    if "alpha_steps" in kw:
        steps = kw["alpha_steps"]
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
            raise ValueError(f"alpha_steps must be an int >= 0, got {steps!r}")
    if "alpha_lr" in kw:
        lr = kw["alpha_lr"]
        if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
            raise ValueError(f"alpha_lr must be a finite number > 0, got {lr!r}")


def _prep_e(model, e) -> tuple[Tensor, bool]:
    if isinstance(e, Tensor) and e.dim() == 2:
        e, squeeze = e[None], True
    else:
        squeeze = False
    model.check_embeddings(e)
    return e.detach().to(F64), squeeze


def _labels(label, B: int, C: int) -> Tensor:
    y = torch.as_tensor(label)
    if y.is_floating_point() or y.dtype == torch.bool:
        raise TypeError(f"label must be an int or an integer tensor, got {label!r}")
    y = y.reshape(-1).long()
    if y.numel() == 1:
        y = y.expand(B)
    if y.numel() != B:
        raise ValueError(f"label must be an int or have B={B} entries, got {y.numel()}")
    if bool(((y < 0) | (y >= C)).any()):
        raise ValueError(f"label must lie in [0, {C}), got {y.tolist()}")
    return y


def margin_matrix(label, B: int, C: int, device=None) -> Tensor:
    """Spec matrix [B, C, C] whose row j is :math:`e_y - e_j` (row y is zero)."""
    y = _labels(label, B, C).to(device)
    M = -torch.eye(C, dtype=F64, device=device).expand(B, C, C).clone()
    M[torch.arange(B, device=device), :, y] += 1.0
    return M


def _domains(spec, e):
    if isinstance(spec, (LpBall, Synonyms)):
        return spec.domains(e)
    if isinstance(spec, LpDomain):
        return [spec]
    raise TypeError(f"spec must be an LpBall or Synonyms, got {type(spec).__name__}")


def bounds(
    model,
    e: Tensor,
    spec,
    method: str = "crown",
    *,
    margins_for=None,
    return_intermediate: bool = False,
    memory_limit: int | None = None,
    chunk_size: int | None = None,
    alpha_steps: int = 20,
    alpha_lr: float = 0.25,
):
    """Certified bounds on the logits of ``model`` for all embeddings allowed by ``spec``.

    Parameters
    ----------
    model : TransformerClassifier or MiniLMClassifier
    e : Tensor [B, T, D] (or [T, D]) word embeddings (``model.embed(ids)``)
    spec : LpBall or Synonyms
    method : "ibp", "crown", "forward", "baf" or "alpha-crown" (CROWN with the final
        planes optimised, :mod:`toolkit.verify.alpha`; intermediate bounds are CROWN's)
    margins_for : int or [B] labels; if given, bounds on :math:`z_y - z_j` [B, C] (column y
        is 0), computed inside the linear bounds (not by subtracting intervals).
    return_intermediate : also return an ordered dict node name -> (lower, upper) of the
        per-layer nodes (see :data:`toolkit.verify.graph.REPORTED`).
    memory_limit : bytes; backward passes are chunked to fit; ``BoundMemoryError`` (a
        ``MemoryError``) if even the estimate at one row per chunk exceeds it.
    chunk_size : rows of the linear-bound matrices per backward chunk (overrides the limit).
    alpha_steps, alpha_lr : Adam steps and step size of alpha-CROWN (in plane parameters
        that run over [0, 1]); ignored by the other methods.

    Works on any device: the bounds are computed where ``e`` lives (the model's weights are
    copied there), in float64.

    Returns ``(lower, upper)`` float64 [B, C] (or [C] for 2-d ``e``), plus the dict.
    """
    _check_model(model)
    _check_method(method)
    alpha = dict(alpha_steps=alpha_steps, alpha_lr=alpha_lr)
    _check_alpha(alpha)
    e, squeeze = _prep_e(model, e)
    B, T, _ = e.shape
    if memory_limit is not None:
        est = estimate_memory(model, T, spec, method, batch=B, chunk_size=1)
        if est > memory_limit:
            raise BoundMemoryError(
                f"bounds(method={method!r}) needs about {est} bytes even "
                f"with one row per chunk; memory_limit={memory_limit}",
                est,
            )
    doms = _domains(spec, e)
    dev = e.device
    C = None if margins_for is None else margin_matrix(margins_for, B, model.num_classes, dev)
    graph = build_graph(model, T).to(dev)
    lo = hi = inter = None
    for dom in doms:
        prop = Propagator(
            graph,
            dom,
            method,
            report=return_intermediate,
            memory_limit=memory_limit,
            chunk_size=chunk_size,
            **alpha,
        )
        l, u, it = prop.run(C)
        if lo is None:
            lo, hi, inter = l, u, it
        else:  # union over budget subsets
            lo, hi = torch.minimum(lo, l), torch.maximum(hi, u)
            for k, (a, b) in it.items():
                inter[k] = (torch.minimum(inter[k][0], a), torch.maximum(inter[k][1], b))
    if C is not None:
        y = _labels(margins_for, B, model.num_classes).to(dev)
        lo[torch.arange(B, device=dev), y] = 0.0
        hi[torch.arange(B, device=dev), y] = 0.0
    if squeeze:
        lo, hi = lo[0], hi[0]
        inter = OrderedDict((k, (a[0], b[0])) for k, (a, b) in inter.items())
    return (lo, hi, inter) if return_intermediate else (lo, hi)


def margin_bounds(model, e: Tensor, spec, label, method: str = "crown", **kw):
    """Bounds [B, C] on :math:`z_y - z_j` (column ``y`` is 0); see :func:`bounds`."""
    return bounds(model, e, spec, method, margins_for=label, **kw)


def certified_radius(
    model,
    e: Tensor,
    label,
    positions,
    p=2,
    method: str = "crown",
    tol: float = 1e-3,
    max_eps: float = 1.0,
    **kw,
) -> Tensor:
    """Largest eps (to ``tol``) for which ``method`` proves the label, per sentence and position.

    For every sentence b and every position t in ``positions`` the perturbation is one Lp
    ball of radius eps on position t alone.  Bisection on [0, max_eps]: an eps counts as
    certified when all margin lower bounds :math:`z_y - z_j` (j != y) are > 0.  All (b, t)
    pairs run as one batch.  Returns float64 [B, P] ([P] for 2-d ``e``); a value equal to
    ``max_eps`` means "at least max_eps", 0 means not even eps = tol/2^k is certified (or
    the clean prediction is wrong).  Bisection assumes certification is monotone in eps,
    which holds up to relaxation noise; each returned radius was itself certified.
    Other keywords (``memory_limit``, ``chunk_size``, ``alpha_steps``, ``alpha_lr``) are
    as for :func:`bounds`; the bisection runs on ``e``'s device.
    """
    _check_model(model)
    _check_method(method)
    _check_alpha(kw)
    p = normalize_p(p)
    if not (isinstance(tol, (int, float)) and tol > 0):
        raise ValueError(f"tol must be > 0, got {tol!r}")
    if not (isinstance(max_eps, (int, float)) and math.isfinite(max_eps) and max_eps > 0):
        raise ValueError(f"max_eps must be finite and > 0, got {max_eps!r}")
    e, squeeze = _prep_e(model, e)
    B, T, _D = e.shape
    pos = LpBall(0.0, p, positions).domains(e)[0].pos[0].tolist()
    P = len(pos)
    dev = e.device
    y = _labels(label, B, model.num_classes).repeat_interleave(P).to(dev)
    eb = e.repeat_interleave(P, 0)
    pb = torch.tensor(pos, device=dev).repeat(B)[:, None]
    graph = build_graph(model, T).to(dev)
    Cm = margin_matrix(y, B * P, model.num_classes, dev)
    mask = torch.ones(B * P, model.num_classes, dtype=torch.bool, device=dev)
    mask[torch.arange(B * P, device=dev), y] = False

    def certified(eps: Tensor) -> Tensor:
        dom = LpDomain(eb, pb, eps, p)
        lo, _, _ = Propagator(graph, dom, method, **kw).run(Cm)
        return torch.where(mask, lo, math.inf).amin(1) > 0

    lo = torch.zeros(B * P, dtype=F64, device=dev)
    hi = torch.full((B * P,), float(max_eps), dtype=F64, device=dev)
    ok0 = certified(torch.zeros(B * P, dtype=F64, device=dev))
    okm = certified(hi.clone())
    lo = torch.where(okm, hi, lo)
    active = ok0 & ~okm
    hi = torch.where(ok0, hi, torch.zeros_like(hi))
    while bool(((hi - lo) > tol)[active].any()):
        mid = 0.5 * (lo + hi)
        ok = certified(torch.where(active, mid, lo))
        lo = torch.where(active & ok, mid, lo)
        hi = torch.where(active & ~ok, mid, hi)
        active = active & ((hi - lo) > tol)
    out = lo.reshape(B, P)
    return out[0] if squeeze else out


def estimate_memory(
    model,
    seq_len: int,
    spec=None,
    method: str = "crown",
    *,
    batch: int = 1,
    chunk_size: int | None = None,
    memory_limit: int | None = None,
) -> int:
    """Estimated peak bytes of :func:`bounds` before anything is allocated.

    ``spec``: an LpBall/Synonyms or a list of positions (default: one position).  Terms:
    interval bounds of all nodes (2 x numel); for forward/baf the linear bounds
    (2 x numel x n, n = perturbed positions x D) of the live nodes (bounded by all nodes);
    for crown/baf the live back-substitution matrices, ``_LIVE x rows x largest node``,
    with ``rows`` the chunk (2 x largest needed node when unchunked).
    """
    _check_model(model)
    _check_method(method)
    if (
        isinstance(seq_len, bool)
        or not isinstance(seq_len, int)
        or not 1 <= seq_len <= model.max_len
    ):
        raise ValueError(f"seq_len must be an int in [1, {model.max_len}], got {seq_len!r}")
    if spec is None:
        S = 1
    elif isinstance(spec, (LpBall, Synonyms)):
        S = seq_len if getattr(spec, "positions", None) is None else len(spec.positions)
        if isinstance(spec, Synonyms):
            S = min(S, spec.budget)
    else:
        S = len(list(spec))
    g = build_graph(model, seq_len)
    sizes = [math.prod(n.shape) for n in g.nodes.values()]
    total, big = sum(sizes), max(sizes)
    n = S * model.dim
    est = 2 * total * batch * 8
    if method in ("forward", "baf"):
        est += 2 * total * n * batch * 8
    if method in ("crown", "baf", "alpha-crown"):
        rows = rows_per_chunk(batch, big, memory_limit, chunk_size, 2 * big)
        est += _LIVE * rows * big * batch * 8 + rows * n * batch * 8
    return int(est)
