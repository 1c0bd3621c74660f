"""Hardness-aware synthesis: the formula, its invariants, gradients and errors."""

from __future__ import annotations

import math

import pytest
import torch

from toolkit.metric import hardness, hardness_aware_negative


def _tuples(gen, n=64, d=8, k=None):
    a = torch.randn(n, d, generator=gen, dtype=torch.float64)
    p = a + 0.7 * torch.randn(n, d, generator=gen, dtype=torch.float64)
    shape = (n, d) if k is None else (n, k, d)
    neg = torch.randn(*shape, generator=gen, dtype=torch.float64) * 1.5
    return a, p, neg


def _formula(z, zp, zn, j, alpha):
    """The paper's formula written out per tuple in plain Python floats."""
    dp = math.dist(z, zp)
    dn = math.dist(z, zn)
    if dp >= dn:
        return list(zn)
    scale = (dp + (dn - dp) * math.exp(-alpha / j)) / dn
    return [zi + scale * (ni - zi) for zi, ni in zip(z, zn)]


@pytest.mark.parametrize("k", [None, 5])
@pytest.mark.parametrize("j_avg", [0.3, 2.0, 40.0])
def test_matches_formula_elementwise(generator, k, j_avg):
    a, p, neg = _tuples(generator, n=12, d=5, k=k)
    out = hardness_aware_negative(a, p, neg, j_avg, alpha=3.0)
    assert out.shape == neg.shape
    negs = neg if k is not None else neg.unsqueeze(1)
    outs = out if k is not None else out.unsqueeze(1)
    for i in range(a.shape[0]):
        for j in range(negs.shape[1]):
            want = _formula(a[i].tolist(), p[i].tolist(), negs[i, j].tolist(), j_avg, 3.0)
            assert outs[i, j].tolist() == pytest.approx(want, rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("k", [None, 7])
def test_no_change_where_positive_is_not_closer(generator, k):
    a, p, neg = _tuples(generator, k=k)
    d_pos = (p - a).norm(dim=-1)
    d_neg = (neg - (a if k is None else a.unsqueeze(1))).norm(dim=-1)
    keep = d_pos >= d_neg if k is None else d_pos.unsqueeze(1) >= d_neg
    assert keep.any() and (~keep).any(), "the draw must exercise both branches"
    out = hardness_aware_negative(a, p, neg, j_avg=0.01, alpha=90.0)
    assert torch.equal(out[keep], neg[keep])
    assert not torch.isclose(out[~keep], neg[~keep]).all(-1).any()


def test_huge_j_avg_barely_pulls(generator):
    a, p, neg = _tuples(generator)
    out = hardness_aware_negative(a, p, neg, j_avg=1e9, alpha=90.0)
    # lambda = exp(-9e-8): each negative moves by (1 - lambda)(d- - d+) < 1e-7 d-
    assert torch.allclose(out, neg, atol=1e-6, rtol=0)


@pytest.mark.parametrize("k", [None, 4])
def test_distance_tends_to_d_pos_as_j_avg_vanishes(generator, k):
    a, p, neg = _tuples(generator, k=k)
    d_pos = (p - a).norm(dim=-1)
    az = a if k is None else a.unsqueeze(1)
    dp = d_pos if k is None else d_pos.unsqueeze(1).expand(-1, k)
    pulled = dp < (neg - az).norm(dim=-1)
    errors = []
    for j in (1.0, 0.1, 0.01, 1e-4):
        out = hardness_aware_negative(a, p, neg, j_avg=j, alpha=1.0)
        errors.append(((out - az).norm(dim=-1) - dp)[pulled].abs().max().item())
        # stays on the segment from the anchor through the negative: same direction
        cos = torch.nn.functional.cosine_similarity(out - az, neg - az, dim=-1)
        assert torch.allclose(cos[pulled], torch.ones_like(cos[pulled]))
    assert errors == sorted(errors, reverse=True) and errors[-1] < 1e-12


def test_monotone_in_j_avg(generator):
    a, p, neg = _tuples(generator)
    dists = [
        (hardness_aware_negative(a, p, neg, j, alpha=2.0) - a).norm(dim=-1)
        for j in (0.1, 1.0, 10.0)
    ]
    assert (dists[0] <= dists[1] + 1e-12).all() and (dists[1] <= dists[2] + 1e-12).all()


def test_gradients_flow_only_where_they_should(generator):
    a, p, neg = (t.requires_grad_() for t in _tuples(generator, n=32, d=4))
    keep = ((p - a).norm(dim=-1) >= (neg - a).norm(dim=-1)).detach()
    assert keep.any() and (~keep).any()
    out = hardness_aware_negative(a, p, neg, j_avg=0.5, alpha=1.0)
    w = torch.randn(out.shape, generator=generator, dtype=out.dtype)
    ga, gp, gn = torch.autograd.grad((out * w).sum(), (a, p, neg))
    # kept negatives: identity to the negative, nothing to the anchor or positive
    assert torch.equal(gn[keep], w[keep])
    assert (ga[keep] == 0).all() and (gp[keep] == 0).all()
    # pulled ones: all three inputs receive gradient, and it matches finite differences
    assert (ga[~keep].abs().sum(-1) > 0).all() and (gp[~keep].abs().sum(-1) > 0).all()
    assert torch.isfinite(ga).all() and torch.isfinite(gn).all()
    ok = torch.autograd.gradcheck(
        lambda x, y, z: hardness_aware_negative(x, y, z, 0.5, 1.0),
        (
            a[~keep][:4].detach().requires_grad_(),
            p[~keep][:4].detach().requires_grad_(),
            neg[~keep][:4].detach().requires_grad_(),
        ),
    )
    assert ok


def test_coincident_points_give_finite_gradients():
    a = torch.zeros(2, 3, requires_grad=True)
    p = torch.zeros(2, 3, requires_grad=True)  # d+ = 0
    n = torch.tensor([[0.0, 0.0, 0.0], [1.0, 2.0, 2.0]], requires_grad=True)  # d- = 0 and 3
    out = hardness_aware_negative(a, p, n, j_avg=1.0, alpha=1.0)
    assert torch.equal(out[0], n[0].detach())
    assert torch.allclose(out[1].norm(), torch.tensor(3.0 * math.exp(-1.0)))
    grads = torch.autograd.grad(out.sum(), (a, p, n))
    assert all(torch.isfinite(g).all() for g in grads)


def test_j_avg_tensor_is_not_differentiated():
    a, p, n = torch.zeros(1, 2), torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 4.0]])
    j = torch.tensor(2.0, requires_grad=True)
    out = hardness_aware_negative(a, p, n, j, alpha=1.0)
    assert not out.requires_grad
    assert out[0, 1].item() == pytest.approx(1 + 3 * math.exp(-0.5))


def test_hardness_value():
    assert hardness(2.0, 1.0) == pytest.approx(math.exp(-0.5))


@pytest.mark.parametrize(
    ("shapes", "match"),
    [
        (((4, 3), (4, 2), (4, 3)), "positive must have the anchor's shape"),
        (((4, 3), (4, 3), (5, 3)), "negative must have shape"),
        (((4, 3), (4, 3), (4, 2, 2)), "negative must have shape"),
        (((4,), (4,), (4,)), "anchor must have 2 dimensions"),
    ],
)
def test_shape_errors(shapes, match):
    a, p, n = (torch.zeros(s) for s in shapes)
    with pytest.raises(ValueError, match=match):
        hardness_aware_negative(a, p, n, 1.0)


@pytest.mark.parametrize("alpha", [0.0, -1.0, math.inf])
def test_alpha_must_be_positive(alpha):
    z = torch.zeros(1, 2)
    with pytest.raises(ValueError, match="alpha"):
        hardness_aware_negative(z, z, z, 1.0, alpha=alpha)


@pytest.mark.parametrize("j", [0.0, -0.5, math.nan])
def test_j_avg_must_be_positive(j):
    z = torch.zeros(1, 2)
    with pytest.raises(ValueError, match="j_avg"):
        hardness_aware_negative(z, z, z, j)


def test_type_errors():
    z = torch.zeros(1, 2)
    with pytest.raises(TypeError, match="anchor must be a torch.Tensor"):
        hardness_aware_negative([[0.0, 0.0]], z, z, 1.0)
    with pytest.raises(TypeError, match="negative must have dtype"):
        hardness_aware_negative(z, z, torch.zeros(1, 2, dtype=torch.long), 1.0)
    with pytest.raises(TypeError, match="alpha must be a real number"):
        hardness_aware_negative(z, z, z, 1.0, alpha="90")
    with pytest.raises(ValueError, match="negative must be finite"):
        hardness_aware_negative(z, z, torch.tensor([[math.nan, 0.0]]), 1.0)
