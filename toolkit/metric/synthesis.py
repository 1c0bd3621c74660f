r"""Hardness-aware synthesis of negatives (HDML, Zheng et al., CVPR 2019, eq. 4).

For an anchor :math:`z`, a positive :math:`z^+` and a negative :math:`z^-` with Euclidean
distances :math:`d^+ = \lVert z^+ - z\rVert` and :math:`d^- = \lVert z^- - z\rVert`, the
synthetic negative moves :math:`z^-` along the segment towards the anchor:

.. math::

    \hat z^- = z + \bigl[d^+ + (d^- - d^+)\,e^{-\alpha / J_\text{avg}}\bigr]
               \frac{z^- - z}{d^-}
    \quad\text{if } d^+ < d^-, \qquad \hat z^- = z^- \text{ otherwise.}

:math:`\lambda = e^{-\alpha/J_\text{avg}}` is the *hardness*: a large running loss
:math:`J_\text{avg}` (the model still struggles) gives :math:`\lambda \to 1`, the negative
stays where it is; a small loss gives :math:`\lambda \to 0` and the negative is pulled to the
positive's distance :math:`d^+`, the hardest negative that is still correctly ordered.
"""

from __future__ import annotations

import math

import torch

from .._checks import check_finite_tensor, check_positive, check_tensor

__all__ = ["PAPER_ALPHA", "hardness", "hardness_aware_negative"]

#: The paper's pulling factor for the triplet loss (the official code's default, ``alpha=90``;
#: the paper uses 7 with the N-pair loss).
PAPER_ALPHA = 90.0
_FLOATS = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def _scalar(name: str, value: object) -> float:
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise ValueError(f"{name} must be a number, got a tensor of shape {tuple(value.shape)}")
        value = value.detach().item()  # a running statistic: never differentiated through
    return float(check_positive(name, value))


def hardness(j_avg: float, alpha: float = PAPER_ALPHA) -> float:
    r"""The interpolation weight :math:`\lambda = e^{-\alpha/J_\text{avg}}` in ``[0, 1)``.

    Parameters
    ----------
    j_avg : float
        The running mean of recent metric losses, ``> 0``.
    alpha : float
        The pulling factor, ``> 0``.

    Returns
    -------
    float

    Examples
    --------
    >>> round(hardness(90.0, alpha=90.0), 4)
    0.3679
    """
    j = _scalar("j_avg", j_avg)
    a = _scalar("alpha", alpha)
    return math.exp(-a / j)


def hardness_aware_negative(
    anchor: torch.Tensor,
    positive: torch.Tensor,
    negative: torch.Tensor,
    j_avg: float,
    alpha: float = PAPER_ALPHA,
) -> torch.Tensor:
    r"""Synthetic negatives :math:`\hat z^-` interpolated towards the anchor (HDML).

    Triplet tuples give one negative per anchor; N-pair tuples give ``K`` negatives per
    anchor (for example the other classes' positives, see :func:`toolkit.metric.npair_negatives`),
    each moved with the anchor's own :math:`d^+`.

    Parameters
    ----------
    anchor, positive : torch.Tensor
        Embeddings ``[N, D]``.
    negative : torch.Tensor
        ``[N, D]`` (triplets) or ``[N, K, D]`` (N-pair tuples).
    j_avg : float
        Running mean :math:`J_\text{avg} > 0` of recent metric losses (a number or a one-element
        tensor; it is not differentiated through).
    alpha : float
        Pulling factor :math:`\alpha > 0`; the paper's default is 90 (triplet loss).

    Returns
    -------
    torch.Tensor
        The synthetic negatives, shaped like ``negative``.  Where :math:`d^+ \ge d^-` they equal
        ``negative`` (and their gradient flows to ``negative`` only); elsewhere the gradient
        flows to all three inputs.  No tuples (``N = 0``) give an empty result.

    Raises
    ------
    TypeError
        If an input is not a floating tensor, or not of the anchor's dtype.
    ValueError
        On mismatched shapes or devices, non-finite entries, or ``j_avg <= 0``,
        ``alpha <= 0``.

    Examples
    --------
    >>> z, zp = torch.zeros(1, 2), torch.tensor([[1.0, 0.0]])
    >>> zn = torch.tensor([[0.0, 3.0]])
    >>> hardness_aware_negative(z, zp, zn, j_avg=1e-3)  # hardest: pulled to d+ = 1
    tensor([[0., 1.]])
    >>> hardness_aware_negative(z, zn, zp, j_avg=1e-3)  # d+ >= d-: unchanged
    tensor([[1., 0.]])
    """
    check_tensor("anchor", anchor, dtypes=_FLOATS, ndim=2)
    same, dev = (anchor.dtype,), anchor.device
    check_tensor("positive", positive, ndim=2, dtypes=same, device=dev)
    check_tensor("negative", negative, ndim=(2, 3), dtypes=same, device=dev)
    if positive.shape != anchor.shape:
        raise ValueError(
            f"positive must have the anchor's shape {tuple(anchor.shape)}, "
            f"got {tuple(positive.shape)}"
        )
    n, d = anchor.shape
    if negative.shape[0] != n or negative.shape[-1] != d:
        expected = f"({n}, {d}) or ({n}, K, {d})"
        raise ValueError(f"negative must have shape {expected}, got {tuple(negative.shape)}")
    for name, t in (("anchor", anchor), ("positive", positive), ("negative", negative)):
        check_finite_tensor(name, t.detach())
    lam = hardness(j_avg, alpha)

    triplet = negative.dim() == 2
    z = anchor.unsqueeze(1)  # [N, 1, D]
    zn = negative.unsqueeze(1) if triplet else negative  # [N, K, D]
    d_pos = torch.linalg.vector_norm(positive - anchor, dim=-1).unsqueeze(1)  # [N, 1]
    d_neg = torch.linalg.vector_norm(zn - z, dim=-1)  # [N, K]
    pull = d_pos < d_neg
    # The unused branch must stay finite, or its NaN gradient would leak through torch.where.
    safe_d_neg = torch.where(pull, d_neg, torch.ones_like(d_neg))
    scale = (d_pos + (d_neg - d_pos) * lam) / safe_d_neg
    moved = z + scale.unsqueeze(-1) * (zn - z)
    out = torch.where(pull.unsqueeze(-1), moved, zn)
    return out.squeeze(1) if triplet else out
