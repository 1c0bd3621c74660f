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
from collections.abc import Sequence
from typing import TypeAlias

import torch

from .._checks import check_flag, check_positive, check_tensor

__all__ = [
    "ATTENTION_DTYPES",
    "AttentionOutput",
    "attention_scores",
    "check_attn_mask",
    "check_padding_mask",
    "check_qkv",
    "compute_dtype",
    "masked_attention",
    "resolve_scale",
    "softmax_kept",
]

ATTENTION_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)
#: What the attention functions return: ``O``, or ``(O, P)`` with ``return_probs=True``.
AttentionOutput: TypeAlias = torch.Tensor | tuple[torch.Tensor, torch.Tensor]


_NO_V = object()


def check_qkv(q: object, k: object, v: object = _NO_V) -> tuple[int, ...]:
    """Check ``q``, ``k`` (and ``v`` when given: None is then an error); return the broadcast
    scores' shape ``[..., Lq, Lk]``.

    >>> check_qkv(torch.zeros(2, 5, 4), torch.zeros(7, 4))
    (2, 5, 7)
    """
    qt = check_tensor("q", q, dtypes=ATTENTION_DTYPES, min_ndim=2)
    kt = check_tensor("k", k, dtypes=(qt.dtype,), min_ndim=2, device=qt.device)
    vt = (
        None
        if v is _NO_V
        else check_tensor("v", v, dtypes=(qt.dtype,), min_ndim=2, device=qt.device)
    )
    if kt.shape[-1] != qt.shape[-1]:
        raise ValueError(
            f"k must have the feature size of q: q is {tuple(qt.shape)}, k is {tuple(kt.shape)} "
            f"(expected k.shape[-1] == {qt.shape[-1]})"
        )
    if vt is not None and vt.shape[-2] != kt.shape[-2]:
        raise ValueError(
            f"v must have as many rows as k: k is {tuple(kt.shape)}, v is {tuple(vt.shape)} "
            f"(expected v.shape[-2] == {kt.shape[-2]})"
        )
    leads = [("q", qt.shape[:-2]), ("k", kt.shape[:-2])]
    if vt is not None:
        leads.append(("v", vt.shape[:-2]))
    try:
        lead = torch.broadcast_shapes(*(s for _, s in leads))
    except RuntimeError:
        desc = ", ".join(f"{n}: {tuple(s)}" for n, s in leads)
        raise ValueError(
            f"q, k, v leading (batch/head) shapes must broadcast, got {desc}"
        ) from None
    return (*lead, qt.shape[-2], kt.shape[-2])


def check_attn_mask(
    attn_mask: object,
    score_shape: Sequence[int],
    device: torch.device,
    name: str = "attn_mask",
) -> None:
    """``attn_mask`` must be None, or a bool/float tensor on ``device`` broadcastable to
    ``score_shape``; with ``name="keep"`` it must be bool.

    >>> check_attn_mask(torch.ones(3, dtype=torch.bool), (2, 3), torch.device("cpu"))
    """
    if attn_mask is None:
        return
    mask = check_tensor(name, attn_mask, device=device)
    if name == "keep" and mask.dtype != torch.bool:
        raise TypeError(f"keep must be a bool tensor, got {mask.dtype}")
    if mask.dtype != torch.bool and not mask.is_floating_point():
        raise TypeError(f"{name} must be bool or floating (additive), got {mask.dtype}")
    try:
        ok = torch.broadcast_shapes(mask.shape, tuple(score_shape)) == torch.Size(score_shape)
    except RuntimeError:
        ok = False
    if not ok:
        raise ValueError(
            f"{name} must broadcast to the scores' shape {tuple(score_shape)} "
            f"([..., Lq, Lk]), got {tuple(mask.shape)}"
        )


def check_padding_mask(
    name: str, mask: object, shape: Sequence[int], device: torch.device
) -> torch.Tensor:
    """A padding mask (True or 1 = a real token, False or 0 = padding) as a bool tensor.

    ``mask`` must be a tensor on ``device`` broadcastable to ``shape``, bool or numeric with
    every entry 0 or 1: a value such as 0.5 is refused rather than read as True.

    >>> check_padding_mask("m", torch.tensor([1, 0]), (3, 2), torch.device("cpu")).tolist()
    [True, False]
    >>> check_padding_mask("m", torch.tensor([0.5, 1.0]), (2,), torch.device("cpu"))
    Traceback (most recent call last):
    ...
    ValueError: m must hold only 0/1 (or True/False), got values such as 0.5
    """
    t = check_tensor(name, mask, device=device)
    if t.is_complex():
        raise TypeError(f"{name} must be a bool or 0/1 tensor, got {t.dtype}")
    try:
        ok = torch.broadcast_shapes(t.shape, tuple(shape)) == torch.Size(shape)
    except RuntimeError:
        ok = False
    if not ok:
        raise ValueError(f"{name} must broadcast to shape {tuple(shape)}, got {tuple(t.shape)}")
    if t.dtype == torch.bool:
        return t
    bad = (t != 0) & (t != 1)
    if bool(bad.any()):
        raise ValueError(
            f"{name} must hold only 0/1 (or True/False), got values such as {t[bad][0].item()!r}"
        )
    return t != 0


def resolve_scale(scale: float | None, d: int) -> float:
    """``1/sqrt(d)`` when ``scale`` is None, else a finite positive real number.

    >>> resolve_scale(None, 16), resolve_scale(2, 16)
    (0.25, 2.0)
    """
    if scale is None:
        return 1.0 / math.sqrt(d) if d > 0 else 1.0
    return float(check_positive("scale", scale))


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """float32 for half inputs, else the input dtype."""
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def attention_scores(
    q: torch.Tensor, k: torch.Tensor, scale: float, attn_mask: torch.Tensor | None = None
) -> torch.Tensor:
    """:math:`S = \\text{scale}\\, QK^\\top + M` in the compute dtype, shape ``[..., Lq, Lk]``.

    NaN in the inputs propagates to the scores it touches (module docstring).

    Parameters
    ----------
    q, k : torch.Tensor
        ``[..., Lq, d]`` and ``[..., Lk, d]``, one floating dtype and device.
    scale : float
        Multiplies :math:`QK^\\top`.
    attn_mask : torch.Tensor, optional
        Additive float mask, or bool mask (``False`` becomes :math:`-\\infty`),
        broadcastable to ``[..., Lq, Lk]``.

    Returns
    -------
    torch.Tensor
        The scores, float32 for half inputs, else the input dtype.

    Raises
    ------
    TypeError, ValueError
        On tensors of the wrong kind, dtype, device or shape, or a ``scale`` that is not a
        finite positive number (named in the message).

    Examples
    --------
    >>> attention_scores(torch.ones(1, 2), torch.ones(3, 2), scale=0.5).tolist()
    [[1.0, 1.0, 1.0]]
    """
    shape = check_qkv(q, k)
    check_attn_mask(attn_mask, shape, q.device)
    return _scores(q, k, float(check_positive("scale", scale)), attn_mask)


def _scores(
    q: torch.Tensor, k: torch.Tensor, scale: float, attn_mask: torch.Tensor | None
) -> torch.Tensor:
    """Unchecked core of :func:`attention_scores` (for inputs checked by the caller)."""
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
) -> AttentionOutput:
    r"""Attention restricted to a given pattern: softmax over the kept entries, times V.

    .. math::

        P_{ij} = \frac{[j \in K_i]\, e^{S_{ij}}}{\sum_{l \in K_i} e^{S_{il}}},\qquad
        O = P V,\qquad S = \text{scale}\, QK^\top + M .

    ``keep=None`` is dense attention.  Rows whose kept scores are all :math:`-\infty` give
    zero probabilities and a zero output.

    Parameters
    ----------
    q, k, v : torch.Tensor
        ``[..., Lq, d]``, ``[..., Lk, d]``, ``[..., Lk, dv]``; one float dtype and device.
    keep : torch.Tensor, optional
        Bool ``[..., Lq, Lk]`` (broadcastable; moved to ``q``'s device), or None to keep
        everything.
    scale : float, optional
        Multiplies :math:`QK^\top`; default ``1/sqrt(d)``.
    attn_mask : torch.Tensor, optional
        Additive float or boolean (``True`` = attend) mask, broadcastable to
        ``[..., Lq, Lk]``; applied before the pattern.
    return_probs : bool
        Also return ``P`` ``[..., Lq, Lk]`` (input dtype).

    Returns
    -------
    torch.Tensor or tuple of torch.Tensor
        ``O`` of shape ``[..., Lq, dv]`` in the input dtype, and ``P`` if ``return_probs``.

    Raises
    ------
    TypeError, ValueError
        On tensors of the wrong kind, dtype, device or shape (named in the message).

    Examples
    --------
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


def _attend(q, k, v, keep, scale, attn_mask, return_probs, scores=None) -> AttentionOutput:
    """Unchecked core: ``scores`` may be passed in when already computed."""
    if scores is None:
        scores = _scores(q, k, scale, attn_mask)
    p = softmax_kept(scores, keep)
    out = torch.matmul(p, v.to(p.dtype)).to(q.dtype)
    return (out, p.to(q.dtype)) if return_probs else out
