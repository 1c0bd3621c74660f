"""The attention primitives every model and sparse method shares: checks, scores, kept softmax.

Conventions (all public attention functions of :mod:`toolkit.attention` follow them):

* ``q`` is ``[..., Lq, d]``, ``k`` is ``[..., Lk, d]``, ``v`` is ``[..., Lk, dv]``; the leading
  (batch, head) dimensions broadcast against each other.  All three share dtype and device.
* Scores are :math:`S = \\text{scale}\\, QK^\\top + M` with ``scale = 1/sqrt(d)`` by default and
  ``M`` the additive ``attn_mask``.  A boolean ``attn_mask`` follows
  :func:`torch.nn.functional.scaled_dot_product_attention`: ``True`` takes part, ``False``
  becomes :math:`-\\infty`.
* Half inputs (float16, bfloat16) compute scores and softmax in float32; float32 and float64
  compute in their own dtype.  Outputs and probabilities come back in the input dtype.
* A row whose kept entries are all :math:`-\\infty` (fully masked) has **all-zero
  probabilities and a zero output**, with zero gradients; it never yields NaN.  NaN in the
  inputs, or a :math:`+\\infty` score, propagates as NaN.
"""

from __future__ import annotations

import math
from numbers import Real

import torch

from .._checks import check_flag

__all__ = [
    "ATTENTION_DTYPES",
    "attention_scores",
    "check_attn_mask",
    "check_flag",
    "check_qkv",
    "compute_dtype",
    "masked_attention",
    "resolve_scale",
    "softmax_kept",
]

ATTENTION_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)


def _names(dtypes) -> str:
    return ", ".join(str(d).removeprefix("torch.") for d in dtypes)


def check_qkv(q: object, k: object, v: object | None = None) -> tuple[int, ...]:
    """Check ``q``, ``k`` (and ``v``); return the broadcast scores' shape ``[..., Lq, Lk]``."""
    tensors = (("q", q), ("k", k)) + ((("v", v),) if v is not None else ())
    for name, t in tensors:
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if t.dtype not in ATTENTION_DTYPES:
            raise TypeError(
                f"{name} must have dtype in ({_names(ATTENTION_DTYPES)}), got {t.dtype}"
            )
        if t.dim() < 2:
            raise ValueError(
                f"{name} must have shape [..., L, d] (>= 2 dims), got {tuple(t.shape)}"
            )
    for name, t in tensors[1:]:
        if t.dtype != q.dtype:
            raise TypeError(f"{name} must have the dtype of q ({q.dtype}), got {t.dtype}")
        if t.device != q.device:
            raise ValueError(f"{name} must be on the device of q ({q.device}), got {t.device}")
    if k.shape[-1] != q.shape[-1]:
        raise ValueError(
            f"k must have the feature size of q: q is {tuple(q.shape)}, k is {tuple(k.shape)} "
            f"(expected k.shape[-1] == {q.shape[-1]})"
        )
    if v is not None and v.shape[-2] != k.shape[-2]:
        raise ValueError(
            f"v must have as many rows as k: k is {tuple(k.shape)}, v is {tuple(v.shape)} "
            f"(expected v.shape[-2] == {k.shape[-2]})"
        )
    leads = [("q", q.shape[:-2]), ("k", k.shape[:-2])]
    if v is not None:
        leads.append(("v", v.shape[:-2]))
    try:
        lead = torch.broadcast_shapes(*(s for _, s in leads))
    except RuntimeError:
        desc = ", ".join(f"{n}: {tuple(s)}" for n, s in leads)
        raise ValueError(
            f"q, k, v leading (batch/head) shapes must broadcast, got {desc}"
        ) from None
    return (*lead, q.shape[-2], k.shape[-2])


def check_attn_mask(
    attn_mask: object, score_shape: tuple[int, ...], device, name: str = "attn_mask"
) -> None:
    """``attn_mask`` must be None, or a bool/float tensor broadcastable to ``score_shape``."""
    if attn_mask is None:
        return
    if not isinstance(attn_mask, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor or None, got {type(attn_mask).__name__}")
    if name == "keep" and attn_mask.dtype != torch.bool:
        raise TypeError(f"keep must be a bool tensor, got {attn_mask.dtype}")
    if attn_mask.dtype != torch.bool and not attn_mask.is_floating_point():
        raise TypeError(f"{name} must be bool or floating (additive), got {attn_mask.dtype}")
    if attn_mask.device != device:
        raise ValueError(f"{name} must be on the device of q ({device}), got {attn_mask.device}")
    try:
        ok = torch.broadcast_shapes(attn_mask.shape, score_shape) == torch.Size(score_shape)
    except RuntimeError:
        ok = False
    if not ok:
        raise ValueError(
            f"{name} must broadcast to the scores' shape {tuple(score_shape)} "
            f"([..., Lq, Lk]), got {tuple(attn_mask.shape)}"
        )


def resolve_scale(scale: object, d: int) -> float:
    """``1/sqrt(d)`` when ``scale`` is None, else a finite positive real number."""
    if scale is None:
        return 1.0 / math.sqrt(d) if d > 0 else 1.0
    if isinstance(scale, bool) or not isinstance(scale, Real) or not math.isfinite(scale):
        raise TypeError(f"scale must be a finite real number or None, got {scale!r}")
    if scale <= 0:
        raise ValueError(f"scale must be > 0, got {scale}")
    return float(scale)


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """float32 for half inputs, else the input dtype."""
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def attention_scores(
    q: torch.Tensor, k: torch.Tensor, scale: float, attn_mask: torch.Tensor | None = None
) -> torch.Tensor:
    """:math:`S = \\text{scale}\\, QK^\\top + M` in the compute dtype, shape ``[..., Lq, Lk]``.

    Inputs are assumed checked (see :func:`check_qkv`, :func:`check_attn_mask`).

    >>> attention_scores(torch.ones(1, 2), torch.ones(3, 2), scale=0.5).tolist()
    [[1.0, 1.0, 1.0]]
    """
    ct = compute_dtype(q.dtype)
    s = torch.matmul(q.to(ct), k.to(ct).transpose(-1, -2)) * scale
    if attn_mask is not None:
        if attn_mask.dtype == torch.bool:
            s = s.masked_fill(~attn_mask, -math.inf)
        else:
            s = s + attn_mask.to(ct)
    return s


def softmax_kept(scores: torch.Tensor, keep: torch.Tensor | None) -> torch.Tensor:
    """Row softmax over the kept entries; dropped entries and dead rows get probability 0.

    A *dead* row has no kept finite score; its probabilities are all zero (no NaN, zero
    gradient).
    """
    s = scores if keep is None else scores.masked_fill(~keep, -math.inf)
    dead = s.amax(dim=-1, keepdim=True) == -math.inf if s.shape[-1] else None
    if dead is None:
        return s
    p = torch.softmax(s.masked_fill(dead, 0.0), dim=-1)
    p = p.masked_fill(dead, 0.0)
    return p if keep is None else p.masked_fill(~keep, 0.0)


def masked_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    keep: torch.Tensor | None = None,
    scale: float | None = None,
    attn_mask: torch.Tensor | None = None,
    return_probs: bool = False,
):
    r"""Attention restricted to a given pattern: softmax over the kept entries, times V.

    .. math::

        P_{ij} = \frac{[j \in K_i]\, e^{S_{ij}}}{\sum_{l \in K_i} e^{S_{il}}},\qquad
        O = P V,\qquad S = \text{scale}\, QK^\top + M .

    ``keep=None`` is dense attention.  Rows whose kept scores are all :math:`-\infty` give
    zero probabilities and a zero output.

    Args:
        q, k, v: ``[..., Lq, d]``, ``[..., Lk, d]``, ``[..., Lk, dv]``; one float dtype/device.
        keep: bool ``[..., Lq, Lk]`` (broadcastable; moved to ``q``'s device) or None (keep
            everything).
        scale: multiplies :math:`QK^\top`; default ``1/sqrt(d)``.
        attn_mask: additive float or boolean (``True`` = attend) mask, broadcastable to
            ``[..., Lq, Lk]``; applied before the pattern.
        return_probs: also return ``P`` ``[..., Lq, Lk]`` (input dtype).

    Returns:
        ``O`` of shape ``[..., Lq, dv]`` in the input dtype (and ``P`` if ``return_probs``).

    Example:
        >>> q = k = v = torch.eye(4)
        >>> keep = torch.eye(4, dtype=torch.bool)
        >>> torch.equal(masked_attention(q, k, v, keep), torch.eye(4))
        True
    """
    shape = check_qkv(q, k, v)
    check_attn_mask(attn_mask, shape, q.device)
    check_flag("return_probs", return_probs)
    if isinstance(keep, torch.Tensor):
        keep = keep.to(q.device)  # static patterns are built on the CPU
    check_attn_mask(keep, shape, q.device, name="keep")
    return _attend(q, k, v, keep, resolve_scale(scale, q.shape[-1]), attn_mask, return_probs)


def _attend(q, k, v, keep, scale, attn_mask, return_probs, scores=None):
    """Unchecked core: ``scores`` may be passed in when already computed."""
    if scores is None:
        scores = attention_scores(q, k, scale, attn_mask)
    p = softmax_kept(scores, keep)
    out = torch.matmul(p, v.to(p.dtype)).to(q.dtype)
    return (out, p.to(q.dtype)) if return_probs else out
