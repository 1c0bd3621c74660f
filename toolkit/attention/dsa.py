r"""Prediction-based sparse attention (DSA; Liu et al., "Transformer Acceleration with Dynamic
Sparse Attention", 2021).

DSA predicts which scores matter with a cheap approximation, then computes attention only on
the predicted entries.  The approximation here, written so that a CUDA path can reproduce it
bit for bit from the same integer inputs:

1. **Projection.** :math:`P \in \mathbb R^{d\times r}` with i.i.d. :math:`\mathcal N(0, 1/r)`
   entries, drawn in float32 on the CPU from ``seed`` (or ``generator``), so that
   :math:`\mathbb E[(QP)(KP)^\top] = QK^\top` (Johnson-Lindenstrauss).
   :math:`\hat Q = QP`, :math:`\hat K = KP` in float32.
2. **Quantization** (:func:`quantize_rows`), symmetric and **per row** (per token vector):
   for ``bits >= 2``, :math:`q_{\max} = 2^{b-1}-1`, :math:`s = \max_j |x_j| / q_{\max}`
   (float32), codes :math:`c = \text{clip}(\text{rint}(x / s), -q_{\max}, q_{\max})`
   (round half to even; a zero row has :math:`s = 0` and codes 0).  For ``bits == 1``:
   :math:`c = \text{sign}(x)` with :math:`\text{sign}(0) = +1` and
   :math:`s = \text{mean}_j |x_j|` (binary, XNOR-Net style).  Codes are int8 for
   ``bits <= 8``, int16 above.
3. **Prediction** (:func:`toolkit.attention._dsa_predict.predict_topk_mask`, which has the
   CUDA path ``kernels/dsa_predict.cu``): every row keeps the
   :math:`k = \max(1, \lfloor (1-\text{sparsity}) L_k + 1/2\rfloor)` largest
   :math:`\tilde s_{ij} = \mathrm{fl}_{32}(\langle c^Q_i, c^K_j\rangle)\, s^K_j` (float32),
   ties to the lower index.  The query's own scale :math:`s^Q_i \ge 0` is left out: it does
   not change the order within a row.
4. **Approximate scores** for display (:func:`dsa_scores`):
   :math:`\hat S_{ij} = \tilde s_{ij}\, s^Q_i \approx (QK^\top)_{ij}` (float32, unscaled).

With an ``attn_mask`` (:func:`dsa_attention`), a boolean mask sends masked keys to
:math:`-\infty` in :math:`\tilde s` before the top-k; an additive mask is added in score
units, to :math:`\text{scale}\cdot\hat S + M` (reference path only: the kernel takes no mask).
"""

from __future__ import annotations

import math

import torch

from .._dispatch import operation
from ..models._attention import (
    _attend,
    attention_scores,
    check_attn_mask,
    check_flag,
    check_qkv,
    resolve_scale,
)
from ._dsa_predict import approximate_scores, predict_topk_mask
from .patterns import _check_density, _check_int, _row_topk_op, keep_count

__all__ = ["dsa_attention", "dsa_mask", "dsa_projection", "dsa_scores", "quantize_rows"]

MAX_BITS = 16


def _check_dsa(sparsity, rank, bits, seed, generator) -> None:
    _check_density("sparsity", sparsity, closed_right=False)
    _check_int("rank", rank, 1)
    _check_int("bits", bits, 1, MAX_BITS)
    _check_int("seed", seed, 0)
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {generator!r}")


def dsa_projection(
    d: int, rank: int, seed: int = 0, generator: torch.Generator | None = None
) -> torch.Tensor:
    r"""The random projection :math:`P` ``[d, rank]``, float32, entries :math:`\mathcal N(0, 1/r)`.

    Drawn from ``generator`` when given (on its device, then moved to the CPU), else from a
    fresh CPU generator seeded with ``seed``: the same seed gives the same ``P`` everywhere.

    >>> dsa_projection(4, 2, seed=0).shape
    torch.Size([4, 2])
    """
    _check_int("d", d, 1)
    _check_int("rank", rank, 1)
    if generator is None:
        generator = torch.Generator().manual_seed(_check_int("seed", seed, 0))
    p = torch.randn(d, rank, generator=generator, device=generator.device)
    return (p / math.sqrt(rank)).to("cpu", torch.float32)


def quantize_rows(x: torch.Tensor, bits: int) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Symmetric per-row quantization of float32 ``x`` ``[..., L, r]`` to ``bits`` bits.

    Returns ``(codes, scales)``: int8 (``bits <= 8``) or int16 codes ``[..., L, r]`` and
    float32 scales ``[..., L]`` with :math:`x \approx c \cdot s` (rule in the module
    docstring).

    >>> codes, s = quantize_rows(torch.tensor([[0.5, -1.0, 0.25]]), bits=3)
    >>> codes.tolist(), codes.dtype, s.tolist()
    ([[2, -3, 1]], torch.int8, [0.3333333432674408])
    """
    x = x.to(torch.float32)
    dtype = torch.int8 if bits <= 8 else torch.int16
    if bits == 1:
        return torch.where(x >= 0, 1, -1).to(dtype), x.abs().mean(-1)
    qmax = float(2 ** (bits - 1) - 1)
    s = x.abs().amax(-1) / qmax
    safe = torch.where(s > 0, s, 1.0)
    ints = torch.round(x / safe[..., None]).clamp(-qmax, qmax)
    return torch.where(s[..., None] > 0, ints, 0.0).to(dtype), s


def _codes(q: torch.Tensor, k: torch.Tensor, proj: torch.Tensor, bits: int):
    """Codes and scales of QP and KP, leading dims broadcast (module docstring, steps 1-2)."""
    proj = proj.to(q.device)
    qc, sq = quantize_rows(torch.matmul(q.to(torch.float32), proj), bits)
    kc, sk = quantize_rows(torch.matmul(k.to(torch.float32), proj), bits)
    lead = torch.broadcast_shapes(qc.shape[:-2], kc.shape[:-2])
    qc, sq = qc.expand(*lead, *qc.shape[-2:]), sq.expand(*lead, sq.shape[-1])
    kc, sk = kc.expand(*lead, *kc.shape[-2:]), sk.expand(*lead, sk.shape[-1])
    return qc, sq, kc, sk


@operation
def _dsa_scores_op(q: torch.Tensor, k: torch.Tensor, proj: torch.Tensor, bits: int):
    # Reference path of the approximate scores (module docstring, step 4), float32.
    qc, sq, kc, sk = _codes(q, k, proj, bits)
    return approximate_scores(qc, kc, sk) * sq.unsqueeze(-1)


def dsa_scores(
    q: torch.Tensor,
    k: torch.Tensor,
    rank: int = 16,
    bits: int = 4,
    seed: int = 0,
    generator: torch.Generator | None = None,
    *,
    backend: str | None = None,
) -> torch.Tensor:
    r"""DSA's approximate (unscaled) scores :math:`\hat S \approx QK^\top`, float32
    ``[..., Lq, Lk]`` (module docstring, steps 1, 2 and 4).

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> q, k = torch.randn(5, 64, generator=g), torch.randn(7, 64, generator=g)
        >>> s = dsa_scores(q, k, rank=64, bits=8)
        >>> exact = (q @ k.T).double()
        >>> bool(torch.corrcoef(torch.stack([s.flatten(), exact.flatten()]))[0, 1] > 0.5)
        True
    """
    check_qkv(q, k)
    _check_dsa(0.5, rank, bits, seed, generator)
    proj = dsa_projection(q.shape[-1], rank, seed, generator)
    return _dsa_scores_op(q, k, proj, int(bits), backend=backend)


def _dsa_keep(q, k, proj, bits: int, kk: int, scale: float, attn_mask) -> torch.Tensor:
    """The predicted pattern: without a mask through ``predict_topk_mask`` (which dispatches
    to the CUDA kernel), with one through the torch top-k."""
    qc, sq, kc, sk = _codes(q, k, proj, bits)
    if attn_mask is None:
        return predict_topk_mask(qc.contiguous(), kc.contiguous(), sk.contiguous(), kk)
    pred = approximate_scores(qc, kc, sk)
    if attn_mask.dtype == torch.bool:
        pred = pred.masked_fill(~attn_mask, -math.inf)
    else:
        pred = pred * sq.unsqueeze(-1) * scale + attn_mask.float()
    return _row_topk_op(pred, kk)


def dsa_mask(
    q: torch.Tensor,
    k: torch.Tensor,
    sparsity: float = 0.5,
    rank: int = 16,
    bits: int = 4,
    seed: int = 0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    r"""DSA's predicted pattern: bool ``[..., Lq, Lk]`` keeping, per row, the
    :math:`\max(1, \text{round}((1-\text{sparsity}) L_k))` largest approximate scores.

    Args:
        q: ``[..., Lq, d]``; k: ``[..., Lk, d]`` (same dtype and device, leading dims broadcast).
        sparsity: dropped fraction, in ``(0, 1)``.
        rank: projection rank ``r >= 1`` (may exceed ``d``).
        bits: quantization bits, ``1 <= bits <= 16``.
        seed: seeds the projection (ignored when ``generator`` is given).
        generator: a ``torch.Generator`` to draw the projection from instead.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> q, k = torch.randn(2, 8, 16, generator=g), torch.randn(2, 8, 16, generator=g)
        >>> dsa_mask(q, k, sparsity=0.75).sum(-1).unique().tolist()
        [2]
    """
    shape = check_qkv(q, k)
    _check_dsa(sparsity, rank, bits, seed, generator)
    proj = dsa_projection(q.shape[-1], rank, seed, generator)
    kk = keep_count(1.0 - sparsity, shape[-1])
    return _dsa_keep(q.detach(), k.detach(), proj, int(bits), kk, 1.0, None)


@operation
def _dsa_attention_op(q, k, v, proj, bits, kk, scale, attn_mask, return_probs):
    keep = _dsa_keep(q.detach(), k.detach(), proj, bits, kk, scale, attn_mask)
    scores = attention_scores(q, k, scale, attn_mask)
    return _attend(q, k, v, keep, scale, attn_mask, return_probs, scores=scores)


def dsa_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    sparsity: float = 0.5,
    rank: int = 16,
    bits: int = 4,
    seed: int = 0,
    scale: float | None = None,
    attn_mask: torch.Tensor | None = None,
    return_probs: bool = False,
    *,
    generator: torch.Generator | None = None,
):
    r"""Attention computed only on DSA's predicted entries.

    .. math::

        K_i = \text{top-}k_j\big(\hat S_{ij}\cdot\text{scale} + M_{ij}\big),\qquad
        P_{ij} = \frac{[j\in K_i]\,e^{S_{ij}}}{\sum_{l\in K_i} e^{S_{il}}},\qquad O = PV,

    with :math:`\hat S` from :func:`dsa_scores`, :math:`S = \text{scale}\,QK^\top + M` the exact
    scores, and :math:`k` from ``sparsity`` as in :func:`dsa_mask` (the mask enters the
    prediction too, so masked keys are predicted last; without a mask the pattern equals
    ``dsa_mask(q, k, ...)``).  Rows whose kept scores are all :math:`-\infty` give zero
    output, as in :func:`~toolkit.attention.nm_attention`.

    Returns:
        ``O`` ``[..., Lq, dv]`` in the input dtype; with ``return_probs``, ``(O, P)``.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> q, k, v = (torch.randn(4, 8, 16, generator=g) for _ in range(3))
        >>> dsa_attention(q, k, v, sparsity=0.5).shape
        torch.Size([4, 8, 16])
    """
    shape = check_qkv(q, k, v)
    _check_dsa(sparsity, rank, bits, seed, generator)
    check_attn_mask(attn_mask, shape, q.device)
    check_flag("return_probs", return_probs)
    s = resolve_scale(scale, q.shape[-1])
    proj = dsa_projection(q.shape[-1], rank, seed, generator)
    kk = keep_count(1.0 - sparsity, shape[-1])
    return _dsa_attention_op(q, k, v, proj, int(bits), kk, s, attn_mask, return_probs)
