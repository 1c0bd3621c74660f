r"""Prediction-based sparse attention (DSA; Liu et al., "Transformer Acceleration with Dynamic
Sparse Attention", 2021).

DSA predicts which scores matter with a cheap approximation, then computes attention only on
the predicted entries.  The approximation here, written so that a CUDA path can reproduce it
bit for bit from the same integer inputs:

1. **Projection.** :math:`P \in \mathbb R^{d\times r}` with i.i.d. :math:`\mathcal N(0, 1/r)`
   entries, drawn from ``seed`` (default 0) or from a ``generator`` (not both: see
   :func:`toolkit._checks.make_generator`) and kept in float32 on the CPU, so that
   :math:`\mathbb E[(QP)(KP)^\top] = QK^\top` (Johnson-Lindenstrauss).
   :math:`\hat Q = QP`, :math:`\hat K = KP` in float32.
2. **Quantization** (:func:`quantize_rows`), symmetric and **per row** (per token vector):
   for ``bits >= 2``, :math:`q_{\max} = 2^{b-1}-1`, :math:`s = \max_j |x_j| / q_{\max}`
   (float32), codes :math:`c = \text{clip}(\text{rint}(x / s), -q_{\max}, q_{\max})`
   (round half to even; a zero row has :math:`s = 0` and codes 0).  NaN or infinite
   entries have no code: they are refused (a NaN row would get codes 0 and scale NaN, and
   a NaN key would then be "predicted" by every query).  For ``bits == 1``:
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

from .._checks import check_finite_tensor, check_flag, check_int, check_tensor, make_generator
from .._dispatch import operation
from ..models._attention import (
    ATTENTION_DTYPES,
    AttentionOutput,
    _attend,
    attention_scores,
    check_attn_mask,
    check_qkv,
    resolve_scale,
)
from ._dsa_predict import (
    approximate_scores,
    codes_supported,
    dsa_codes_cuda,
    predict_topk_bits,
    predict_topk_mask,
)
from ._fused import (
    _pack_keep_bits_op,
    dsa_fused_supported,
    fused_dsa_attention,
    sparse_dsa_attention,
    sparse_supported,
)
from .masks import MAX_SIZE, _row_topk_op, check_density, keep_count

__all__ = ["dsa_attention", "dsa_mask", "dsa_projection", "dsa_scores", "quantize_rows"]

MAX_BITS = 16
#: The largest projection rank (DSA's prediction is meant to be cheap; rank >> d only serves
#: to check that the prediction tends to the exact top-k).
MAX_RANK = 2**16


def check_dsa(rank: object, bits: object) -> tuple[int, int]:
    """``(rank, bits)`` as ints with ``1 <= rank <= 65536`` and ``1 <= bits <= 16``."""
    return check_int("rank", rank, 1, MAX_RANK), check_int("bits", bits, 1, MAX_BITS)


def _projection(d: int, rank: int, generator: torch.Generator) -> torch.Tensor:
    p = torch.randn(d, rank, generator=generator, device=generator.device)
    return (p / math.sqrt(rank)).to("cpu", torch.float32)


def dsa_projection(
    d: int, rank: int, seed: int | None = None, generator: torch.Generator | None = None
) -> torch.Tensor:
    r"""The random projection :math:`P` ``[d, rank]``, float32, entries :math:`\mathcal N(0, 1/r)`.

    Parameters
    ----------
    d : int
        Head size, ``1 <= d < 2**63``.
    rank : int
        Projection rank, ``1 <= r <= 65536``.
    seed : int, optional
        Seeds a fresh CPU generator; None means 0, so the same seed gives the same ``P``
        everywhere.
    generator : torch.Generator, optional
        Draw ``P`` from this generator instead (on its device, then moved to the CPU).
        Giving both ``seed`` and ``generator`` is an error.

    Returns
    -------
    torch.Tensor
        ``P``, float32 on the CPU.

    Raises
    ------
    ValueError
        If both ``seed`` and ``generator`` are given, or a size is out of range.

    Examples
    --------
    >>> dsa_projection(4, 2, seed=0).shape
    torch.Size([4, 2])
    >>> torch.equal(dsa_projection(4, 2), dsa_projection(4, 2, generator=torch.manual_seed(0)))
    True
    """
    d, rank = check_int("d", d, 1, MAX_SIZE), check_int("rank", rank, 1, MAX_RANK)
    return _projection(d, rank, make_generator(seed, generator, default_seed=0))


def _check_finite_inputs(q: torch.Tensor, k: torch.Tensor) -> None:
    # A NaN or infinite query or key has no meaningful projection code.
    check_finite_tensor("q", q)
    check_finite_tensor("k", k)


def quantize_rows(x: torch.Tensor, bits: int) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Symmetric per-row quantization of ``x`` ``[..., L, r]`` (as float32) to ``bits`` bits.

    Parameters
    ----------
    x : torch.Tensor
        Floating ``[..., L, r]`` with finite entries (also after the cast to float32);
        every row (last dimension) gets its own scale.
    bits : int
        ``1 <= bits <= 16`` (rule in the module docstring).

    Returns
    -------
    codes : torch.Tensor
        int8 (``bits <= 8``) or int16 codes ``[..., L, r]``, in :math:`[-q_{\max}, q_{\max}]`.
    scales : torch.Tensor
        float32 scales ``[..., L]``, :math:`\ge 0`, with :math:`x \approx c \cdot s`.

    Raises
    ------
    TypeError
        If ``x`` is not a floating tensor or ``bits`` not an int.
    ValueError
        If ``x`` is a scalar, holds NaN or an infinity (before or after the cast to
        float32), or ``bits`` lies outside ``[1, 16]``.

    Examples
    --------
    >>> codes, s = quantize_rows(torch.tensor([[0.5, -1.0, 0.25]]), bits=3)
    >>> codes.tolist(), codes.dtype, s.tolist()
    ([[2, -3, 1]], torch.int8, [0.3333333432674408])
    """
    check_tensor("x", x, dtypes=ATTENTION_DTYPES, min_ndim=1)
    bits = check_int("bits", bits, 1, MAX_BITS)
    return _quantize(x, bits, "x")


def _quantize(x: torch.Tensor, bits: int, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    return _quantize_unchecked(check_finite_tensor(name, x.to(torch.float32)), bits)


def _quantize_unchecked(x: torch.Tensor, bits: int) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`quantize_rows` of float32 ``x`` without the finiteness check (a non-finite row
    gets a NaN or infinite scale)."""
    dtype = torch.int8 if bits <= 8 else torch.int16
    if bits == 1:
        return torch.where(x >= 0, 1, -1).to(dtype), x.abs().mean(-1)
    qmax = float(2 ** (bits - 1) - 1)
    s = x.abs().amax(-1) / qmax
    safe = torch.where(s > 0, s, 1.0)
    # A row with s == 0 has |x| / 1 < 2^-126 everywhere, which rounds to code 0 anyway.
    return torch.round(x / safe[..., None]).clamp_(-qmax, qmax).to(dtype), s


#: CUDA inputs take the one-pass codes kernel (False: the torch operations).
_CODES_KERNEL = True

#: Device copies of recent projections: a host-to-device copy of pageable memory would wait
#: for the device at every call.
_DEVICE_PROJ: dict[tuple[bytes, tuple[int, ...], torch.device], torch.Tensor] = {}
_DEVICE_PROJ_MAX = 16


def _on_device(proj: torch.Tensor, device: torch.device) -> torch.Tensor:
    if proj.device.type != "cpu" or device.type == "cpu":
        return proj.to(device)
    key = (proj.numpy().tobytes(), tuple(proj.shape), device)
    cached = _DEVICE_PROJ.get(key)
    if cached is None:
        if len(_DEVICE_PROJ) >= _DEVICE_PROJ_MAX:
            _DEVICE_PROJ.pop(next(iter(_DEVICE_PROJ)))
        cached = _DEVICE_PROJ[key] = proj.to(device)
    return cached


def _raise_if_bad(bad: torch.Tensor, q: torch.Tensor, k: torch.Tensor) -> None:
    """The error for the rows ``dsa_codes`` counted as not finite (``bad`` = [q, k])."""
    counts = bad.tolist()
    if any(counts):
        _check_finite_inputs(q, k)
        name = "q @ P (q projected)" if counts[0] else "k @ P (k projected)"
        raise ValueError(f"{name} must be finite, got {max(counts)} rows with NaN or infinity")


def _codes(
    q: torch.Tensor,
    k: torch.Tensor,
    proj: torch.Tensor,
    bits: int,
    deferred: list | None = None,
):
    """Codes and scales of QP and KP, leading dims broadcast (module docstring, steps 1-2).

    Raises the ValueError of :func:`_check_finite_inputs` for a non-finite ``q`` or ``k``, and
    names the projection when only it is not finite (float32 overflow).  With ``deferred`` (a
    list) the codes kernel's check is appended to it instead of run (its host sync waits for
    the device): the caller runs it after launching the work that follows; meanwhile bad rows
    have codes 0 and scale 0."""
    proj = _on_device(proj, q.device)
    rank = proj.shape[-1]
    if _CODES_KERNEL and codes_supported(q, rank) and codes_supported(k, rank):
        # One kernel a tensor (kernels/dsa_predict.cu, dsa_codes); it counts the rows whose
        # projection is not finite, which a non-finite input entry always makes so.
        bad = torch.zeros(2, dtype=torch.int32, device=q.device)
        qc, sq = dsa_codes_cuda(q, proj, bits, bad, 0)
        kc, sk = dsa_codes_cuda(k, proj, bits, bad, 1)
        if deferred is None:
            _raise_if_bad(bad, q, k)
        else:
            deferred.append(lambda: _raise_if_bad(bad, q, k))
    else:
        qp = torch.matmul(q.to(torch.float32), proj)
        kp = torch.matmul(k.to(torch.float32), proj)
        qc, sq = _quantize_unchecked(qp, bits)
        kc, sk = _quantize_unchecked(kp, bits)
        # A NaN or infinity in a row of q, k or their projections makes that row's scale NaN
        # or infinite (amax and mean propagate them), so one host sync on the small scale
        # tensors stands for the checks; only when it fails are they checked one by one.
        if not bool(torch.isfinite(sq).all() & torch.isfinite(sk).all()):
            _check_finite_inputs(q, k)
            check_finite_tensor("q @ P (q projected)", qp)
            check_finite_tensor("k @ P (k projected)", kp)
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
    seed: int | None = None,
    generator: torch.Generator | None = None,
    *,
    backend: str | None = None,
) -> torch.Tensor:
    r"""DSA's approximate (unscaled) scores :math:`\hat S \approx QK^\top` (module docstring,
    steps 1, 2 and 4).

    Parameters
    ----------
    q, k : torch.Tensor
        ``[..., Lq, d]`` and ``[..., Lk, d]`` (same dtype and device, leading dims broadcast).
    rank : int
        Projection rank, ``1 <= r <= 65536`` (may exceed ``d``).
    bits : int
        Quantization bits, ``1 <= bits <= 16``.
    seed : int, optional
        Seeds the projection (None means 0).
    generator : torch.Generator, optional
        Draw the projection from this generator instead (not together with ``seed``).
    backend : str, optional
        ``"cpu"`` forces the reference path.

    Returns
    -------
    torch.Tensor
        float32 ``[..., Lq, Lk]``.

    Raises
    ------
    TypeError, ValueError
        On a bad argument (named in the message), including NaN or infinite entries in
        ``q`` or ``k``.

    Examples
    --------
    >>> g = torch.Generator().manual_seed(0)
    >>> q, k = torch.randn(5, 64, generator=g), torch.randn(7, 64, generator=g)
    >>> s = dsa_scores(q, k, rank=64, bits=8)
    >>> exact = (q @ k.T).double()
    >>> bool(torch.corrcoef(torch.stack([s.flatten(), exact.flatten()]))[0, 1] > 0.5)
    True
    """
    check_qkv(q, k)
    rank, bits = check_dsa(rank, bits)
    gen = make_generator(seed, generator, default_seed=0)
    _check_finite_inputs(q, k)
    proj = _projection(q.shape[-1], rank, gen)
    return _dsa_scores_op(q, k, proj, bits, backend=backend)


def _predict_keep(
    q: torch.Tensor,
    k: torch.Tensor,
    density: float,
    rank: int,
    bits: int,
    generator: torch.Generator,
    scale: float,
    attn_mask: torch.Tensor | None,
) -> torch.Tensor:
    """DSA's kept pattern at ``density`` on checked inputs (shared by :func:`dsa_mask`,
    :func:`dsa_attention` and :class:`~toolkit.attention.DSA`): without a mask through
    ``predict_topk_mask`` (which dispatches to the CUDA kernel), with one through the torch
    top-k.  Empty inputs give an empty mask."""
    lead = torch.broadcast_shapes(q.shape[:-2], k.shape[:-2])
    if 0 in (*lead, q.shape[-2], k.shape[-2]):
        return torch.zeros((*lead, q.shape[-2], k.shape[-2]), dtype=torch.bool, device=q.device)
    proj = _projection(q.shape[-1], rank, generator)
    kk = keep_count(density, k.shape[-2])
    qc, sq, kc, sk = _codes(q.detach(), k.detach(), proj, bits)  # checks finiteness
    if attn_mask is None:
        return predict_topk_mask(qc.contiguous(), kc.contiguous(), sk.contiguous(), kk)
    pred = approximate_scores(qc, kc, sk)
    if attn_mask.dtype == torch.bool:
        pred = pred.masked_fill(~attn_mask, -math.inf)
    else:
        pred = pred * sq.unsqueeze(-1) * scale + attn_mask.float()
    return _row_topk_op(pred, kk)


def _predict_bits(
    q: torch.Tensor,
    k: torch.Tensor,
    density: float,
    rank: int,
    bits: int,
    generator: torch.Generator,
    deferred: list | None = None,
) -> torch.Tensor:
    """:func:`_predict_keep`'s pattern without a mask, as the packed words of
    ``predict_topk_bits`` ``[..., Lq, ceil(Lk / 32)]`` (non-empty inputs, equal leading
    shapes): the fused kernel's input, with no boolean mask in between.  ``deferred`` as for
    :func:`_codes`."""
    proj = _projection(q.shape[-1], rank, generator)
    kk = keep_count(density, k.shape[-2])
    qc, _, kc, sk = _codes(q.detach(), k.detach(), proj, bits, deferred)
    return predict_topk_bits(qc.contiguous(), kc.contiguous(), sk.contiguous(), kk)


def dsa_mask(
    q: torch.Tensor,
    k: torch.Tensor,
    sparsity: float = 0.5,
    rank: int = 16,
    bits: int = 4,
    seed: int | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    r"""DSA's predicted pattern: per row, the :func:`~toolkit.attention.keep_count`
    ``(1 - sparsity, Lk)`` largest approximate scores.

    Parameters
    ----------
    q, k : torch.Tensor
        ``[..., Lq, d]`` and ``[..., Lk, d]`` (same dtype and device, leading dims broadcast).
    sparsity : float
        Dropped fraction, in ``(0, 1)``; the kept fraction (density) is ``1 - sparsity``.
    rank : int
        Projection rank, ``1 <= r <= 65536`` (may exceed ``d``).
    bits : int
        Quantization bits, ``1 <= bits <= 16``.
    seed : int, optional
        Seeds the projection (None means 0).
    generator : torch.Generator, optional
        Draw the projection from this generator instead (not together with ``seed``).

    Returns
    -------
    torch.Tensor
        Bool ``[..., Lq, Lk]``; empty when ``Lq``, ``Lk`` or a batch size is 0.

    Raises
    ------
    TypeError, ValueError
        On a bad argument (named in the message), NaN or infinite entries in ``q`` or
        ``k``, or when both ``seed`` and ``generator`` are given.

    Examples
    --------
    >>> g = torch.Generator().manual_seed(0)
    >>> q, k = torch.randn(2, 8, 16, generator=g), torch.randn(2, 8, 16, generator=g)
    >>> dsa_mask(q, k, sparsity=0.75).sum(-1).unique().tolist()
    [2]
    """
    check_qkv(q, k)
    sparsity = check_density("sparsity", sparsity, allow_one=False)
    rank, bits = check_dsa(rank, bits)
    gen = make_generator(seed, generator, default_seed=0)
    return _predict_keep(q, k, 1.0 - sparsity, rank, bits, gen, 1.0, None)


@operation
def _dsa_attention_op(q, k, v, keep, scale, attn_mask, return_probs):
    # Reference path: the dense scores, masked to the kept entries.
    scores = attention_scores(q, k, scale, attn_mask)
    return _attend(q, k, v, keep, scale, attn_mask, return_probs, scores=scores)


@_dsa_attention_op.cuda
def _dsa_attention_cuda(q, k, v, keep, scale, attn_mask, return_probs):
    # A given boolean pattern (dsa_attention itself sends fp16/bf16 without a mask through
    # _predict_bits straight to the fused kernel).  fp16/bf16, head dims 16-128, no mask, no
    # probabilities, no autograd: the pattern packed into bits, then the fused tensor-core
    # kernel (kernels/dsa_attention.cu).  Float32 and
    # masks take the gather kernel (kernels/dsa_sparse.cu) where it supports them: exact
    # scores only at the kept entries, each query gathering its kept keys.
    if dsa_fused_supported(q, k, v, keep, return_probs, attn_mask):
        return fused_dsa_attention(q, k, v, _pack_keep_bits_op(keep), scale)
    if sparse_supported(q, k, v, keep, return_probs, attn_mask):
        return sparse_dsa_attention(q, k, v, keep, scale, attn_mask)
    return _dsa_attention_op.reference(q, k, v, keep, scale, attn_mask, return_probs)


def dsa_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    sparsity: float = 0.5,
    rank: int = 16,
    bits: int = 4,
    seed: int | None = None,
    scale: float | None = None,
    attn_mask: torch.Tensor | None = None,
    return_probs: bool = False,
    *,
    generator: torch.Generator | None = None,
) -> AttentionOutput:
    r"""Attention computed only on DSA's predicted entries.

    .. math::

        K_i = \text{top-}k_j\big(\hat S_{ij}\cdot\text{scale} + M_{ij}\big),\qquad
        P_{ij} = \frac{[j\in K_i]\,e^{S_{ij}}}{\sum_{l\in K_i} e^{S_{il}}},\qquad O = PV,

    with :math:`\hat S` from :func:`dsa_scores`, :math:`S = \text{scale}\,QK^\top + M` the exact
    scores, and :math:`k` from ``sparsity`` as in :func:`dsa_mask` (the mask enters the
    prediction too, so masked keys are predicted last; without a mask the pattern equals
    ``dsa_mask(q, k, ...)``).  Rows whose kept scores are all :math:`-\infty` give zero
    output, as in :func:`~toolkit.attention.nm_attention`.

    On CUDA, after the prediction kernel, float16/bfloat16 inputs with head dim 16, 32, 64
    or 128 (``dv = d``), equal leading shapes, no ``attn_mask``, no ``return_probs`` and no
    autograd take the fused kernel (``kernels/dsa_attention.cu``): the prediction kernel
    writes the pattern as packed bits (32 keys a word; no boolean mask), then flash-style
    attention on the tensor cores: each 64 x 64 tile
    of :math:`QK^\top`, the entries outside the pattern set to :math:`-\infty` before an
    online softmax, :math:`PV` (a warp skips key tiles in which its queries keep nothing).
    With ~10% of the keys kept but spread over all keys, every tile holds kept entries, so
    the dense tile product on tensor cores beats gathering them; its extra memory is the
    pattern (one bit per entry), never a score matrix.  Float32 inputs and masks (head dim
    64 or 128, no ``return_probs``, no autograd) take the gather kernel
    (``kernels/dsa_sparse.cu``): exact scores only at the predicted entries, each query
    gathering its kept keys.  Other inputs take the reference path (dense scores, masked to
    the pattern); all agree within the dtype's tolerance.

    Parameters
    ----------
    q, k, v : torch.Tensor
        ``[..., Lq, d]``, ``[..., Lk, d]``, ``[..., Lk, dv]``; one float dtype and device.
    sparsity, rank, bits, seed, generator
        The prediction, as in :func:`dsa_mask`.
    scale : float, optional
        Score scale, default ``1/sqrt(d)``.
    attn_mask : torch.Tensor, optional
        Additive float or bool (``True`` = attend) mask, broadcastable to ``[..., Lq, Lk]``.
    return_probs : bool
        Also return the sparse probabilities ``[..., Lq, Lk]``.

    Returns
    -------
    torch.Tensor or tuple of torch.Tensor
        ``O`` ``[..., Lq, dv]`` in the input dtype; with ``return_probs``, ``(O, P)``.
        With ``Lk = 0`` every row is empty: ``O`` is zero.

    Raises
    ------
    TypeError, ValueError
        On a bad argument (named in the message), NaN or infinite entries in ``q`` or
        ``k``, or when both ``seed`` and ``generator`` are given.

    Examples
    --------
    >>> g = torch.Generator().manual_seed(0)
    >>> q, k, v = (torch.randn(4, 8, 16, generator=g) for _ in range(3))
    >>> dsa_attention(q, k, v, sparsity=0.5).shape
    torch.Size([4, 8, 16])
    """
    shape = check_qkv(q, k, v)
    sparsity = check_density("sparsity", sparsity, allow_one=False)
    rank, bits = check_dsa(rank, bits)
    check_attn_mask(attn_mask, shape, q.device)
    check_flag("return_probs", return_probs)
    s = resolve_scale(scale, q.shape[-1])
    gen = make_generator(seed, generator, default_seed=0)
    if _dsa_attention_op.path_for(q) == "cuda" and dsa_fused_supported(
        q, k, v, None, return_probs, attn_mask
    ):
        # The prediction kernel's packed words go straight to the fused kernel: no boolean
        # mask, no packing (the same pattern as _predict_keep's).  The finiteness check
        # waits for the device, so it runs after the launches.
        deferred: list = []
        words = _predict_bits(q, k, 1.0 - sparsity, rank, bits, gen, deferred)
        out = fused_dsa_attention(q, k, v, words, s)
        for check in deferred:
            check()
        return out
    keep = _predict_keep(q, k, 1.0 - sparsity, rank, bits, gen, s, attn_mask)
    return _dsa_attention_op(q, k, v, keep, s, attn_mask, return_probs)
