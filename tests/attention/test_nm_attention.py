"""nm_attention against a loop-based reference, its mask/-inf conventions and its errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from toolkit.attention import masked_attention, nm_attention, nm_mask

from ._reference import attention_ref, nm_keep_ref

DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)
TOL = {torch.float64: 1e-10, torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 2e-2}


def _grid(shape, gen, lo=-4, hi=5):
    # Multiples of 1/2 in [-2, 2]: exact in every dtype, so pruning sees the same ties.
    return torch.randint(lo, hi, shape, generator=gen).double() / 2


@st.composite
def _cases(draw):
    lead = draw(st.sampled_from([(), (2,), (2, 3), (1, 2)]))
    lq, lk, d, dv = (draw(st.integers(1, hi)) for hi in (5, 19, 6, 4))
    m = draw(st.integers(1, 8))
    n = draw(st.integers(1, m))
    return lead, lq, lk, d, dv, n, m, draw(st.sampled_from(DTYPES)), draw(st.integers(0, 10**6))


@settings(max_examples=40, deadline=None)
@given(_cases())
def test_matches_loop_reference(case):
    lead, lq, lk, d, dv, n, m, dtype, seed = case
    g = torch.Generator().manual_seed(seed)
    q, k, v = _grid((*lead, lq, d), g), _grid((*lead, lk, d), g), _grid((*lead, lk, dv), g)
    mask = torch.where(torch.rand(lq, lk, generator=g) < 0.2, -math.inf, 0.0)
    out, p = nm_attention(
        q.to(dtype), k.to(dtype), v.to(dtype), n, m, attn_mask=mask.to(dtype), return_probs=True
    )
    ref_out, ref_p, _ = attention_ref(
        q, k, v, lambda r: nm_keep_ref(r, n, m), 1 / math.sqrt(d), mask
    )
    assert out.dtype == dtype and out.shape == (*lead, lq, dv) and p.shape == (*lead, lq, lk)
    tol = TOL[dtype]
    np.testing.assert_allclose(p.double().reshape(ref_p.shape).numpy(), ref_p, atol=tol, rtol=tol)
    np.testing.assert_allclose(
        out.double().reshape(ref_out.shape).numpy(), ref_out, atol=4 * tol, rtol=4 * tol
    )
    assert not torch.isnan(out).any()


def test_docstring_shapes_and_density(generator):
    q, k, v = (torch.randn(2, 3, 8, 16, generator=generator) for _ in range(3))
    out, p = nm_attention(q, k, v, 2, 4, return_probs=True)
    assert ((p > 0).reshape(2, 3, 8, 2, 4).sum(-1) == 2).all()
    assert torch.allclose(p.sum(-1), torch.ones(2, 3, 8))
    assert torch.allclose(out, p @ v)


def test_dense_when_n_equals_m_matches_sdpa(generator):
    q, k, v = (torch.randn(2, 5, 7, 8, generator=generator) for _ in range(3))
    ref = torch.nn.functional.scaled_dot_product_attention(q, k, v)
    assert torch.allclose(nm_attention(q, k, v, 4, 4), ref, atol=1e-6)
    assert torch.allclose(masked_attention(q, k, v), ref, atol=1e-6)


def test_mask_applied_before_pruning():
    # Key 0 has the best score but is masked: pruning after masking keeps key 1 instead.
    q = torch.ones(1, 1)
    k = torch.tensor([[3.0], [2.0], [1.0], [0.0]])
    v = torch.eye(4)
    mask = torch.tensor([[False, True, True, True]])
    out, p = nm_attention(q, k, v, 1, 2, scale=1.0, attn_mask=mask, return_probs=True)
    assert p[0, 0] == 0 and p[0, 1] > 0 and (p[0] > 0).sum() == 2
    additive = torch.where(mask, 0.0, -math.inf)
    assert torch.equal(nm_attention(q, k, v, 1, 2, scale=1.0, attn_mask=additive), out)


def test_dead_rows_give_zeros_without_nan():
    q, k, v = torch.randn(3, 4), torch.randn(6, 4), torch.randn(6, 2)
    mask = torch.ones(3, 6, dtype=torch.bool)
    mask[1] = False  # query 1 sees nothing
    for dtype in DTYPES:
        grad = dtype != torch.bfloat16
        args = [t.to(dtype).detach().clone().requires_grad_(grad) for t in (q, k, v)]
        out, p = nm_attention(*args, 1, 2, attn_mask=mask, return_probs=True)
        assert not torch.isnan(out).any() and not torch.isnan(p).any()
        assert (out[1] == 0).all() and (p[1] == 0).all() and (out[0] != 0).any()
        if dtype != torch.bfloat16:
            out.sum().backward()
            assert all(torch.isfinite(t.grad).all() for t in args)


def test_kept_all_neg_inf_row_is_zero():
    # Finite scores exist, but pruning 1:4 with the finite one masked leaves only -inf kept.
    scores_mask = torch.tensor([[-math.inf, -math.inf, -math.inf, -math.inf]])
    out = nm_attention(
        torch.ones(1, 1), torch.ones(4, 1), torch.ones(4, 3), 1, 4, attn_mask=scores_mask
    )
    assert torch.equal(out, torch.zeros(1, 3))


def test_broadcast_leading_dims(generator):
    q = torch.randn(2, 3, 5, 4, generator=generator)
    k, v = torch.randn(1, 3, 9, 4, generator=generator), torch.randn(3, 9, 2, generator=generator)
    out = nm_attention(q, k, v, 2, 4)
    expected = nm_attention(q, k.expand(2, 3, 9, 4), v.expand(2, 3, 9, 2), 2, 4)
    assert out.shape == (2, 3, 5, 2) and torch.allclose(out, expected)


def test_pattern_is_nm_mask_of_scores(generator):
    q, k, v = (torch.randn(4, 10, 8, generator=generator) for _ in range(3))
    _, p = nm_attention(q, k, v, 3, 8, scale=0.3, return_probs=True)
    assert torch.equal(p > 0, nm_mask(0.3 * q @ k.transpose(-1, -2), 3, 8))


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (dict(n=5, m=4), ValueError, "n must satisfy"),
        (dict(n=2, m=0), ValueError, "m must satisfy"),
        (dict(n=2.0, m=4), TypeError, "n must be an int"),
        (dict(scale=-1.0), ValueError, "scale must be > 0"),
        (dict(scale="x"), TypeError, "scale"),
        (dict(attn_mask=torch.zeros(3, 3)), ValueError, "attn_mask must broadcast"),
        (dict(attn_mask=torch.zeros(5, 7, dtype=torch.int64)), TypeError, "attn_mask"),
        (dict(return_probs=1), TypeError, "return_probs"),
    ],
)
def test_argument_errors(kwargs, error, match, generator):
    q, k, v = torch.randn(5, 4), torch.randn(7, 4), torch.randn(7, 3)
    with pytest.raises(error, match=match):
        nm_attention(q, k, v, **kwargs)


@pytest.mark.parametrize(
    ("q", "k", "v", "error", "match"),
    [
        (torch.randn(5, 4), torch.randn(7, 3), torch.randn(7, 3), ValueError, "k must have the "),
        (torch.randn(5, 4), torch.randn(7, 4), torch.randn(6, 3), ValueError, "v must have as"),
        (torch.randn(5, 4), torch.randn(7, 4).half(), torch.randn(7, 3), TypeError, "k must have"),
        (torch.randn(2, 5, 4), torch.randn(3, 7, 4), torch.randn(3, 7, 2), ValueError, "broadc"),
        (
            torch.randn(4),
            torch.randn(7, 4),
            torch.randn(7, 2),
            ValueError,
            "q must have at least 2",
        ),
        (
            torch.ones(5, 4, dtype=torch.int32),
            torch.randn(7, 4),
            torch.randn(7, 2),
            TypeError,
            "q must have dtype",
        ),
        ([[1.0]], torch.randn(7, 4), torch.randn(7, 2), TypeError, "q must be a torch.Tensor"),
    ],
)
def test_qkv_errors(q, k, v, error, match):
    with pytest.raises(error, match=match):
        nm_attention(q, k, v)
