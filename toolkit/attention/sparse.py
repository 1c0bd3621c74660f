"""Dynamic N:M sparse attention (DFSS, Chen et al., PPoPP 2023).

DFSS computes the full score matrix, prunes every row *dynamically* to an N:M pattern along
the key dimension (keep the ``n`` largest of every ``m`` consecutive scores), takes the
softmax over the kept entries only, and multiplies by ``V``.  The additive mask is applied
before pruning, so padded keys are never kept in place of real ones.
"""

from __future__ import annotations

import torch

from .._checks import check_flag
from .._dispatch import operation
from ..models._attention import (
    AttentionOutput,
    _attend,
    attention_scores,
    check_attn_mask,
    check_qkv,
    resolve_scale,
)
from ._fused import _needs_grad, fused_nm_attention, fused_nm_attention_grad, fused_supported
from ._nm import check_nm, nm_mask

__all__ = ["nm_attention"]


#: check_qkv's verdict for tensors of given (type, dtype, shape, device): a pure function of
#: them, memoised because torch.broadcast_shapes costs tens of microseconds a call, as much as
#: the fused kernel itself at short lengths.
_QKV_SHAPES: dict[tuple, tuple[int, ...]] = {}


def _check_qkv_cached(q: object, k: object, v: object) -> tuple[int, ...]:
    if not (type(q) is type(k) is type(v) is torch.Tensor):
        return check_qkv(q, k, v)
    key = (q.dtype, k.dtype, v.dtype, q.shape, k.shape, v.shape, q.device, k.device, v.device)
    shape = _QKV_SHAPES.get(key)
    if shape is None:
        shape = check_qkv(q, k, v)  # raises on bad input: nothing is cached then
        if len(_QKV_SHAPES) > 1024:
            _QKV_SHAPES.clear()
        _QKV_SHAPES[key] = shape
    return shape


@operation
def _nm_attention_op(q, k, v, n: int, m: int, scale: float, attn_mask, return_probs: bool):
    # Reference path; CUDA inputs the fused kernel supports take _nm_attention_cuda.
    scores = attention_scores(q, k, scale, attn_mask)
    keep = nm_mask(scores.detach(), n, m)  # nm_mask dispatches on its own (CPU or CUDA)
    return _attend(q, k, v, keep, scale, attn_mask, return_probs, scores=scores)


@_nm_attention_op.cuda
def _nm_attention_cuda(q, k, v, n: int, m: int, scale: float, attn_mask, return_probs: bool):
    # The fused kernels (kernels/nm_attention.cu, and nm_attention_bwd.cu when autograd needs
    # the backward) for fp16/bf16, head dim 16, 32, 64 or 128, m a power of two, no
    # probabilities and no mask gradient; anything else takes the reference path.
    if fused_supported(q, k, v, m, return_probs, attn_mask):
        if _needs_grad(q, k, v):
            return fused_nm_attention_grad(q, k, v, n, m, scale, attn_mask)
        return fused_nm_attention(q, k, v, n, m, scale, attn_mask)
    return _nm_attention_op.reference(q, k, v, n, m, scale, attn_mask, return_probs)


def nm_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    n: int = 2,
    m: int = 4,
    scale: float | None = None,
    attn_mask: torch.Tensor | None = None,
    return_probs: bool = False,
) -> AttentionOutput:
    r"""N:M dynamically pruned attention (DFSS).

    .. math::

        S = \text{scale}\,QK^\top + M,\qquad
        K_i = \text{N:M}(S_{i,:}) ,\qquad
        P_{ij} = \frac{[j\in K_i]\,e^{S_{ij}}}{\sum_{l\in K_i} e^{S_{il}}},\qquad O = PV,

    where :math:`\text{N:M}` keeps, in every group of ``m`` consecutive keys (groups start at
    key 0; a shorter tail group of ``r`` keys keeps :math:`\min(n, r)`), the ``n`` largest
    scores, ties to the lower index (exactly :func:`toolkit.attention.nm_mask`).  The mask
    ``M`` is added **before** pruning, as DFSS does.  Half inputs compute scores, pruning and
    softmax in float32.  A row whose kept scores are all :math:`-\infty` (e.g. fully masked)
    gets zero probabilities and a **zero output** (never NaN).  Density is :math:`n/m`.

    On CUDA, float16/bfloat16 inputs with head dim 16, 32, 64 or 128, ``m`` a power of two,
    equal leading shapes, no ``return_probs`` and no gradient wanted for ``attn_mask`` run the
    fused single-pass kernel (``kernels/nm_attention.cu``: tensor cores, online softmax, pruning in
    registers; memory O(L), never the L x L scores).  When autograd needs gradients of ``q``,
    ``k`` or ``v``, the forward also saves each row's log-sum-exp and the backward runs the
    fused ``kernels/nm_attention_bwd.cu`` (FlashAttention-2 style; it recomputes the forward's
    scores bit for bit, so it differentiates exactly the kept set the forward used; memory
    O(L)).  Not twice differentiable on that path.  A NaN score gives its row NaN output and
    gradients, as the reference does; in the NaN's group the kernels keep one more key than
    the reference (no comparison with a NaN is true), whose ``dk``, ``dv`` are then NaN too.
    The kernels' scores are fp32 sums in the tensor cores' order, so where two scores of a
    group agree to about an ulp they may keep the other one; the output then differs from the
    reference within the dtype's tolerance.  ``P`` is rounded to the input dtype before the
    ``P V`` product.  Other inputs take the reference path.

    Parameters
    ----------
    q : torch.Tensor
        Queries ``[..., Lq, d]`` (float32, float16, bfloat16 or float64).
    k : torch.Tensor
        Keys ``[..., Lk, d]``, same dtype and device as ``q``.
    v : torch.Tensor
        Values ``[..., Lk, dv]``, same dtype and device.  Leading dims broadcast.
    n, m : int
        Keep ``n`` of every ``m`` keys, ``1 <= n <= m <= 32``.
    scale : float, optional
        Score scale, default ``1/sqrt(d)``.
    attn_mask : torch.Tensor, optional
        Additive float mask or bool mask (``True`` = attend), broadcastable to
        ``[..., Lq, Lk]``.
    return_probs : bool
        Also return the sparse probabilities ``[..., Lq, Lk]``.

    Returns
    -------
    torch.Tensor or tuple of torch.Tensor
        ``O`` ``[..., Lq, dv]`` in the input dtype; with ``return_probs``, ``(O, P)``.

    Raises
    ------
    TypeError, ValueError
        On a bad argument (named in the message), e.g. ``n > m`` or mismatched shapes.

    Examples
    --------
    >>> g = torch.Generator().manual_seed(0)
    >>> q, k, v = (torch.randn(2, 3, 8, 16, generator=g) for _ in range(3))
    >>> out, p = nm_attention(q, k, v, n=2, m=4, return_probs=True)
    >>> out.shape, int((p > 0).sum(-1).max())
    (torch.Size([2, 3, 8, 16]), 4)
    """
    shape = _check_qkv_cached(q, k, v)
    n, m = check_nm(n, m)
    check_attn_mask(attn_mask, shape, q.device)
    check_flag("return_probs", return_probs)
    s = resolve_scale(scale, q.shape[-1])
    return _nm_attention_op(q, k, v, n, m, s, attn_mask, return_probs)
