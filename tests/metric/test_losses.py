"""Base losses against brute-force formulas, and pytorch-metric-learning interop."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from toolkit.metric import from_pml, npair_loss, npair_negatives, triplet_loss


def test_triplet_loss_brute_force(generator):
    a, p = torch.randn(6, 3, generator=generator), torch.randn(6, 3, generator=generator)
    n = torch.randn(6, 4, 3, generator=generator)
    want = (
        sum(
            max(0.0, math.dist(a[i], p[i]) - math.dist(a[i], n[i, k]) + 0.5)
            for i in range(6)
            for k in range(4)
        )
        / 24
    )
    assert triplet_loss(a, p, n, margin=0.5).item() == pytest.approx(want, rel=1e-5)
    assert triplet_loss(a, p, n[:, 0], 0.5).item() == pytest.approx(
        triplet_loss(a, p, n[:, :1], 0.5).item()
    )


def test_npair_equals_softmax_cross_entropy(generator):
    a, p = torch.randn(5, 4, generator=generator), torch.randn(5, 4, generator=generator)
    want = F.cross_entropy(a @ p.T, torch.arange(5))
    assert torch.allclose(npair_loss(a, p), want, atol=1e-6)
    assert torch.allclose(npair_loss(a, p, npair_negatives(p)), want, atol=1e-6)
    reg = npair_loss(a, p, l2_reg=0.1) - want
    assert reg.item() == pytest.approx(0.1 * (a.pow(2).sum(1) + p.pow(2).sum(1)).mean().item())


def test_npair_negatives_brute_force(generator):
    p = torch.randn(4, 2, generator=generator)
    neg = npair_negatives(p)
    for i in range(4):
        assert torch.equal(neg[i], torch.stack([p[j] for j in range(4) if j != i]))
    with pytest.raises(ValueError, match="at least 2 classes"):
        npair_negatives(p[:1])


def test_loss_errors():
    z = torch.zeros(3, 2)
    with pytest.raises(ValueError, match="margin must be >= 0"):
        triplet_loss(z, z, z, margin=-1.0)
    with pytest.raises(ValueError, match="negative must have shape"):
        triplet_loss(z, z, torch.zeros(2, 2))
    with pytest.raises(ValueError, match="l2_reg"):
        npair_loss(z, z, l2_reg=-1.0)
    with pytest.raises(TypeError, match="pytorch-metric-learning loss"):
        from_pml(3)


def test_from_pml_triplet_margin_loss_equals_ours(generator):
    pytest.importorskip(
        "pytorch_metric_learning", reason="pytorch-metric-learning is an optional extra"
    )
    from pytorch_metric_learning import losses
    from pytorch_metric_learning.distances import LpDistance
    from pytorch_metric_learning.reducers import MeanReducer

    lib = losses.TripletMarginLoss(
        margin=0.3, distance=LpDistance(normalize_embeddings=False), reducer=MeanReducer()
    )
    a, p = torch.randn(8, 5, generator=generator), torch.randn(8, 5, generator=generator)
    n = torch.randn(8, 3, 5, generator=generator)
    ours = triplet_loss(a, p, n, margin=0.3)
    theirs = from_pml(lib)(a, p, n)
    assert theirs.item() == pytest.approx(ours.item(), rel=1e-5)
