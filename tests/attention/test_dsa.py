"""DSA: quantization and row-wise top-k against explicit loops, determinism, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from toolkit.attention import (
    dsa_attention,
    dsa_mask,
    dsa_projection,
    dsa_scores,
    keep_count,
    masked_attention,
    nm_mask,
    quantize_rows,
    topk_mask,
)
from toolkit.attention._dsa_predict import predict_topk_mask

from ._reference import topk_keep_ref


def _quantize_loop(row: np.ndarray, bits: int) -> tuple[list[float], float]:
    if bits == 1:
        return [1.0 if x >= 0 else -1.0 for x in row], float(np.mean(np.abs(row)))
    qmax = 2 ** (bits - 1) - 1
    s = float(np.float32(np.max(np.abs(row))) / np.float32(qmax))
    if s == 0:
        return [0.0] * len(row), 0.0
    return [float(min(qmax, max(-qmax, np.rint(np.float32(x) / np.float32(s))))) for x in row], s


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 16), st.integers(1, 6), st.integers(1, 9), st.integers(0, 10**6))
def test_quantize_matches_loop(bits, rows, cols, seed):
    x = torch.randn(rows, cols, generator=torch.Generator().manual_seed(seed))
    x[0] = 0.0 if rows > 1 else x[0]  # a zero row
    ints, s = quantize_rows(x, bits)
    for r in range(rows):
        ref_ints, ref_s = _quantize_loop(x[r].numpy(), bits)
        assert ints[r].tolist() == ref_ints
        assert s[r].item() == pytest.approx(ref_s, rel=1e-6)


@settings(max_examples=25, deadline=None)
@given(
    st.integers(1, 4),
    st.integers(1, 20),
    st.integers(1, 8),
    st.integers(1, 8),
    st.integers(1, 16),
    st.floats(0.05, 0.95),
    st.integers(0, 10**6),
)
def test_dsa_mask_matches_per_row_loop(lq, lk, d, rank, bits, sparsity, seed):
    g = torch.Generator().manual_seed(seed)
    q, k = torch.randn(2, lq, d, generator=g), torch.randn(2, lk, d, generator=g)
    mask = dsa_mask(q, k, sparsity=sparsity, rank=rank, bits=bits, seed=seed % 97)
    proj = dsa_projection(d, rank, seed=seed % 97)
    kk = max(1, min(lk, math.floor((1 - sparsity) * lk + 0.5)))
    for b in range(2):
        qi, _ = quantize_rows(q[b] @ proj, bits)
        ki, sk = quantize_rows(k[b] @ proj, bits)
        for i in range(lq):
            # float32(exact integer dot) * key scale, in float32; the query scale is left out.
            row = np.array(
                [
                    np.float32(sum(int(a) * int(c) for a, c in zip(qi[i], ki[j])))
                    * np.float32(sk[j])
                    for j in range(lk)
                ],
                dtype=np.float32,
            )
            assert mask[b, i].tolist() == topk_keep_ref(row, kk).tolist()
            assert int(mask[b, i].sum()) == kk


def test_codes_feed_the_kernel_contract(generator):
    q, k = torch.randn(2, 6, 16, generator=generator), torch.randn(2, 9, 16, generator=generator)
    for bits, dtype in ((1, torch.int8), (8, torch.int8), (9, torch.int16), (16, torch.int16)):
        qc, _ = quantize_rows(q @ dsa_projection(16, 8, seed=1), bits)
        kc, sk = quantize_rows(k @ dsa_projection(16, 8, seed=1), bits)
        assert qc.dtype == dtype and qc.abs().max() <= max(1, 2 ** (bits - 1) - 1)
        assert torch.equal(
            dsa_mask(q, k, sparsity=0.5, rank=8, bits=bits, seed=1),
            predict_topk_mask(qc, kc, sk, keep_count(0.5, 9)),
        )


def test_topk_ties_to_lower_index_and_matches_nm_mask(generator):
    scores = torch.randint(-2, 3, (50, 16), generator=generator).float()  # many ties
    for k in (1, 3, 8, 16):
        assert torch.equal(topk_mask(scores, k=k), nm_mask(scores, k, 16))
    assert topk_mask(torch.tensor([1.0, 1.0, 1.0]), k=2).tolist() == [True, True, False]
    assert topk_mask(torch.tensor([1.0, math.nan, 2.0]), k=1).tolist() == [False, True, False]


def test_seed_and_generator_determinism(generator):
    q, k = torch.randn(3, 9, 16, generator=generator), torch.randn(3, 11, 16, generator=generator)
    a = dsa_mask(q, k, sparsity=0.6, seed=3)
    assert torch.equal(a, dsa_mask(q, k, sparsity=0.6, seed=3))
    g = torch.Generator().manual_seed(3)
    assert torch.equal(a, dsa_mask(q, k, sparsity=0.6, generator=g))
    assert torch.equal(dsa_projection(16, 16, seed=5), dsa_projection(16, 16, seed=5))
    assert not torch.equal(dsa_projection(16, 16, seed=5), dsa_projection(16, 16, seed=6))


def test_exact_prediction_recovers_topk(generator):
    # Rank >> d and 16 bits: P P^T ~ I, so the prediction ranks like the true scores.
    q, k = torch.randn(4, 12, 8, generator=generator), torch.randn(4, 24, 8, generator=generator)
    oracle = topk_mask(q @ k.transpose(-1, -2), density=0.25)
    recall = [
        float((dsa_mask(q, k, sparsity=0.75, rank=r, bits=16) & oracle).sum() / oracle.sum())
        for r in (2, 8192)
    ]
    assert recall[1] > 0.95 and recall[1] > recall[0]
    approx = dsa_scores(q, k, rank=512, bits=16)
    exact = (q @ k.mT).double()
    assert torch.corrcoef(torch.stack([approx.flatten(), exact.flatten()]))[0, 1] > 0.9


def test_dsa_attention_is_masked_attention_on_dsa_mask(generator):
    q, k, v = (torch.randn(2, 2, 10, 8, generator=generator) for _ in range(3))
    out, p = dsa_attention(q, k, v, sparsity=0.7, rank=4, bits=3, seed=1, return_probs=True)
    keep = dsa_mask(q, k, sparsity=0.7, rank=4, bits=3, seed=1)
    ref_out, ref_p = masked_attention(q, k, v, keep, return_probs=True)
    assert torch.allclose(out, ref_out) and torch.allclose(p, ref_p)
    assert ((p > 0).sum(-1) == keep_count(0.3, 10)).all()


def test_dsa_attention_mask_enters_prediction(generator):
    q, k, v = (torch.randn(6, 8, 8, generator=generator) for _ in range(3))
    mask = torch.ones(8, dtype=torch.bool)
    mask[5:] = False  # 3 padded keys
    _, p = dsa_attention(q, k, v, sparsity=0.5, attn_mask=mask, return_probs=True)
    assert (p[..., 5:] == 0).all() and ((p > 0).sum(-1) == 4).all()
    for dtype in (torch.float16, torch.bfloat16):
        o = dsa_attention(q.to(dtype), k.to(dtype), v.to(dtype), sparsity=0.5, attn_mask=mask)
        assert o.dtype == dtype and torch.isfinite(o).all()
    dead = torch.zeros(8, dtype=torch.bool)
    assert (dsa_attention(q, k, v, attn_mask=dead) == 0).all()


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (dict(sparsity=0.0), ValueError, "sparsity must lie in"),
        (dict(sparsity=1.0), ValueError, "sparsity must lie in"),
        (dict(sparsity=math.nan), ValueError, "sparsity must be finite"),
        (dict(sparsity="0.5"), TypeError, "sparsity must be a real number"),
        (dict(rank=0), ValueError, "rank must satisfy"),
        (dict(rank=2.5), TypeError, "rank must be an int"),
        (dict(bits=0), ValueError, "bits must satisfy"),
        (dict(bits=17), ValueError, "bits must satisfy"),
        (dict(seed=-1), ValueError, "seed"),
        (dict(generator=5), TypeError, "generator"),
    ],
)
def test_argument_errors(kwargs, error, match):
    q, k, v = torch.randn(5, 4), torch.randn(7, 4), torch.randn(7, 3)
    with pytest.raises(error, match=match):
        dsa_mask(q, k, **kwargs)
    with pytest.raises(error, match=match):
        dsa_attention(q, k, v, **kwargs)


def test_topk_argument_errors():
    s = torch.randn(3, 5)
    with pytest.raises(ValueError, match="exactly one"):
        topk_mask(s)
    with pytest.raises(ValueError, match="k must satisfy"):
        topk_mask(s, k=6)
    with pytest.raises(ValueError, match="density must lie"):
        topk_mask(s, density=1.5)
    with pytest.raises(TypeError, match="scores"):
        topk_mask(torch.ones(3, dtype=torch.int64), k=1)
