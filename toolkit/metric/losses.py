r"""The base metric losses on tuples, and pytorch-metric-learning interop.

A *tuple loss* maps ``(anchor [N, D], positive [N, D], negative [N, D] or [N, K, D])`` to a
scalar.  HDML swaps real negatives for synthetic ones and evaluates the same tuple loss on
both, so any tuple loss works with it: :func:`triplet_loss`, :func:`npair_loss`, or a
pytorch-metric-learning loss wrapped by :func:`from_pml`.  Every tuple loss raises a
ValueError or TypeError for empty tuples (a mean over none would be NaN), NaN or Inf
embeddings, and tensors that disagree in shape, dtype or device.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from .._checks import check_finite_tensor, check_positive, check_real, check_tensor

__all__ = ["TupleLoss", "from_pml", "npair_loss", "npair_negatives", "triplet_loss"]

#: ``loss(anchor, positive, negative) -> scalar``.
TupleLoss = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
_FLOATS = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def _check_tuple(anchor: Any, positive: Any, negative: Any) -> torch.Tensor:
    """The negatives as ``[N, K, D]`` after checking that the three tensors agree in shape,
    dtype and device, hold at least one tuple (a mean over none is NaN) and are finite."""
    check_tensor("anchor", anchor, dtypes=_FLOATS, ndim=2, nonempty=True)
    same, dev = (anchor.dtype,), anchor.device
    check_tensor("positive", positive, ndim=2, dtypes=same, device=dev)
    check_tensor("negative", negative, ndim=(2, 3), nonempty=True, dtypes=same, device=dev)
    if positive.shape != anchor.shape:
        raise ValueError(
            f"positive must have the anchor's shape {tuple(anchor.shape)}, "
            f"got {tuple(positive.shape)}"
        )
    n, d = anchor.shape
    if negative.shape[0] != n or negative.shape[-1] != d:
        raise ValueError(
            f"negative must have shape ({n}, {d}) or ({n}, K, {d}), got {tuple(negative.shape)}"
        )
    for name, t in (("anchor", anchor), ("positive", positive), ("negative", negative)):
        check_finite_tensor(name, t.detach())
    return negative.unsqueeze(1) if negative.dim() == 2 else negative


def triplet_loss(
    anchor: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor, margin: float = 1.0
) -> torch.Tensor:
    r"""Triplet margin loss :math:`\operatorname{mean}\,[d^+ - d^- + m]_+` (Euclidean).

    With ``K`` negatives per anchor the mean runs over all ``N K`` triplets.

    Parameters
    ----------
    anchor, positive : torch.Tensor
        ``[N, D]``.
    negative : torch.Tensor
        ``[N, D]`` or ``[N, K, D]``.
    margin : float
        :math:`m \ge 0`.

    Returns
    -------
    torch.Tensor
        A scalar.

    Examples
    --------
    >>> a, p, n = torch.zeros(1, 2), torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.5]])
    >>> triplet_loss(a, p, n, margin=1.0)
    tensor(0.5000)
    """
    neg = _check_tuple(anchor, positive, negative)
    m = check_positive("margin", margin, allow_zero=True)
    d_pos = torch.linalg.vector_norm(positive - anchor, dim=-1).unsqueeze(1)
    d_neg = torch.linalg.vector_norm(neg - anchor.unsqueeze(1), dim=-1)
    return F.relu(d_pos - d_neg + m).mean()


def npair_negatives(positive: torch.Tensor) -> torch.Tensor:
    """The N-pair negatives: for anchor ``i``, the positives of the other ``N - 1`` classes.

    Parameters
    ----------
    positive : torch.Tensor
        ``[N, D]``, one positive per class.

    Returns
    -------
    torch.Tensor
        ``[N, N - 1, D]``: a reindexing, so NaN or Inf entries are carried along.

    Examples
    --------
    >>> npair_negatives(torch.arange(3.0).unsqueeze(1)).squeeze(-1)
    tensor([[1., 2.],
            [0., 2.],
            [0., 1.]])
    """
    check_tensor("positive", positive, dtypes=_FLOATS, ndim=2)
    n = positive.shape[0]
    if n < 2:
        raise ValueError(f"positive must hold at least 2 classes for N-pair tuples, got N={n}")
    # Row i skips index i: j -> j + (j >= i).  Plain indexing (no boolean mask) keeps this a
    # pure reindexing on any device; NaN or Inf entries move like any other.
    j = torch.arange(n - 1, device=positive.device)
    others = j[None, :] + (j[None, :] >= torch.arange(n, device=positive.device)[:, None])
    return positive[others]


def npair_loss(
    anchor: torch.Tensor,
    positive: torch.Tensor,
    negative: torch.Tensor | None = None,
    l2_reg: float = 0.0,
) -> torch.Tensor:
    r"""Multi-class N-pair loss (Sohn, 2016) with inner-product similarity.

    .. math::

        \frac1N \sum_i \log\Bigl(1 + \sum_k e^{z_i^\top z^-_{ik} - z_i^\top z^+_i}\Bigr)
        + \frac{\text{l2\_reg}}{N} \sum_i \bigl(\lVert z_i\rVert^2 + \lVert z_i^+\rVert^2\bigr)

    Without ``negative`` the negatives are the other classes' positives
    (:func:`npair_negatives`), and the first term is the softmax cross-entropy of
    ``anchor @ positive.T`` with target ``i``.

    Parameters
    ----------
    anchor, positive : torch.Tensor
        ``[N, D]``, pair ``i`` from class ``i``.
    negative : torch.Tensor, optional
        ``[N, K, D]`` (or ``[N, D]`` for one negative each).
    l2_reg : float
        Weight of the embeddings' squared norm, ``>= 0``.

    Returns
    -------
    torch.Tensor
        A scalar.

    Examples
    --------
    >>> a = torch.eye(3)
    >>> bool(npair_loss(a, a) < npair_loss(a, a.roll(1, 0)))
    True
    """
    if negative is None:
        negative = npair_negatives(positive)
    neg = _check_tuple(anchor, positive, negative)
    reg = check_real("l2_reg", l2_reg, 0.0)
    pos_sim = (anchor * positive).sum(-1, keepdim=True)  # [N, 1]
    neg_sim = torch.einsum("nd,nkd->nk", anchor, neg)  # [N, K]
    # log(1 + sum_k exp(s_k - s_pos)) = logsumexp over [0, s_k - s_pos], stable for large gaps
    logits = torch.cat([torch.zeros_like(pos_sim), neg_sim - pos_sim], dim=1)
    loss = torch.logsumexp(logits, dim=1).mean()
    if reg:
        loss = loss + reg * (anchor.pow(2).sum(-1) + positive.pow(2).sum(-1)).mean()
    return loss


def from_pml(loss: Any) -> TupleLoss:
    """Wrap a pytorch-metric-learning loss as a tuple loss (optional extra).

    The tuples become explicit triplets ``(anchor_i, positive_i, negative_ik)`` handed to the
    library's loss through ``indices_tuple``, with labels that make each anchor-positive pair
    a class of its own, so the library computes its loss on exactly these tuples.  Use losses
    that accept triplet ``indices_tuple`` (``TripletMarginLoss``, ``MarginLoss``,
    ``ContrastiveLoss``, ...).

    Parameters
    ----------
    loss : pytorch_metric_learning.losses.BaseMetricLossFunction
        The library's loss object.

    Returns
    -------
    callable
        ``f(anchor, positive, negative) -> scalar``.

    Raises
    ------
    TypeError
        If ``loss`` is not callable.
    """
    if not callable(loss):
        raise TypeError(f"loss must be a pytorch-metric-learning loss, got {type(loss).__name__}")

    def wrapped(anchor: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor):
        neg = _check_tuple(anchor, positive, negative)
        n, k, d = neg.shape
        dev = anchor.device
        embeddings = torch.cat([anchor, positive, neg.reshape(n * k, d)])
        labels = torch.cat(
            [torch.arange(n, device=dev), torch.arange(n, device=dev), n + torch.arange(n * k)]
        )
        a_idx = torch.arange(n, device=dev).repeat_interleave(k)
        indices = (a_idx, a_idx + n, 2 * n + torch.arange(n * k, device=dev))
        return loss(embeddings, labels.to(dev), indices)

    wrapped.__name__ = f"pml_{type(loss).__name__}"
    return wrapped
