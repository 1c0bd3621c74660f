"""The fused DSA attention kernel (kernels/dsa_attention.cu) against float64 attention with the
same pattern, on fresh random inputs with poisoned outputs; the CUDA packing of the pattern
bit for bit against the reference; dsa_attention end to end against its reference path."""

from __future__ import annotations

import math

import pytest
import torch

from toolkit._checks import make_generator
from toolkit.attention import dsa as dsa_mod
from toolkit.attention import dsa_attention, dsa_mask, masked_attention
from toolkit.attention._fused import _pack_keep_bits_op, fused_dsa_attention, pack_keep_bits
from toolkit.attention.dsa import _dsa_attention_op

from .._gpu import assert_matches_reference, assert_written, generator, poisoned

pytestmark = pytest.mark.gpu

HALF = (torch.float16, torch.bfloat16)

CASES = [
    # (lead, lq, lk, d, density)
    ((2, 3), 100, 77, 64, 0.1),
    ((1, 2), 64, 128, 64, 0.05),
    ((3,), 130, 200, 128, 0.1),
    ((2, 2), 65, 96, 64, 0.5),
    ((1, 2), 33, 150, 128, 0.3),
    ((2, 1), 70, 129, 32, 0.2),
    ((1, 1), 17, 10, 16, 0.5),
    ((2,), 1, 5, 128, 0.5),
    ((1, 2), 200, 33, 64, 0.05),
    ((1,), 300, 1000, 64, 0.1),
]


def _ref64(q, k, v, keep, scale):
    return masked_attention(q.double().cpu(), k.double().cpu(), v.double().cpu(), keep.cpu(), scale)


def _inputs(dtype, lead, lq, lk, d, density, *case):
    gen = generator("dsa fused", dtype, lead, lq, lk, d, density, *case)
    q, k, v = (torch.randn((*lead, L, d), generator=gen).to(dtype) for L in (lq, lk, lk))
    keep = torch.rand((*lead, lq, lk), generator=gen) < density
    return q, k, v, keep


@pytest.mark.parametrize("dtype", HALF)
@pytest.mark.parametrize(("lead", "lq", "lk", "d", "density"), CASES)
def test_fused_dsa_matches_float64(dtype, lead, lq, lk, d, density):
    q, k, v, keep = _inputs(dtype, lead, lq, lk, d, density)
    flat = keep.view(-1, lq, lk)
    flat[0, lq // 2] = False  # a dead row: zero output
    if lk > 64:
        flat[-1, 0] = False
        flat[-1, 0, -1] = True  # a row whose only key is the last one (in the last tile)
    scale = 1 / math.sqrt(d)
    bits = pack_keep_bits(keep.cuda())
    out = fused_dsa_attention(
        q.cuda(), k.cuda(), v.cuda(), bits, scale, out=poisoned(q.shape, dtype)
    )
    torch.cuda.synchronize()
    assert_written(out)
    assert_matches_reference(out.double(), _ref64(q, k, v, keep, scale), dtype=dtype)
    assert (out.view(-1, lq, d)[0, lq // 2] == 0).all()


@pytest.mark.parametrize("dtype", HALF)
@pytest.mark.parametrize(("lead", "lq", "lk", "d", "density"), [CASES[0], CASES[2], CASES[3]])
def test_fused_dsa_sparse_pairs_variant_matches_float64(dtype, lead, lq, lk, d, density):
    # the softmax with one exponential a pair unless both are kept (pairs=True)
    q, k, v, keep = _inputs(dtype, lead, lq, lk, d, density, "pairs")
    keep.view(-1, lq, lk)[0, 3] = False
    scale = 1 / math.sqrt(d)
    bits = pack_keep_bits(keep.cuda())
    out = fused_dsa_attention(
        q.cuda(), k.cuda(), v.cuda(), bits, scale, out=poisoned(q.shape, dtype), pairs=True
    )
    torch.cuda.synchronize()
    assert_written(out)
    assert_matches_reference(out.double(), _ref64(q, k, v, keep, scale), dtype=dtype)
    assert (out.view(-1, lq, d)[0, 3] == 0).all()


@pytest.mark.parametrize("dtype", HALF)
@pytest.mark.parametrize("d", [64, 128])
def test_fused_dsa_structured_pattern_and_skip(dtype, d):
    # A local window plus a few global keys: most (warp, key tile) pairs keep nothing, so the
    # skip path runs; skipping must not change a bit of the output.
    lead, lq, lk = (2, 2), 300, 333
    q, k, v, _ = _inputs(dtype, lead, lq, lk, d, 0.0, "window")
    i, j = torch.arange(lq)[:, None], torch.arange(lk)[None, :]
    keep = ((j - i).abs() <= 8) | (j < 2)
    keep = keep.expand(*lead, lq, lk).clone()
    keep[0, 1, 150:170] = False  # dead rows
    scale = 0.2
    bits = pack_keep_bits(keep.cuda())
    args = (q.cuda(), k.cuda(), v.cuda(), bits, scale)
    out = fused_dsa_attention(*args, out=poisoned(q.shape, dtype))
    slow = fused_dsa_attention(*args, out=poisoned(q.shape, dtype), skip=False)
    torch.cuda.synchronize()
    assert_written(out)
    assert_written(slow)
    # a skipped tile is one whose scores are all -inf: at most the rounding of ex2(0) apart
    torch.testing.assert_close(out.float().cpu(), slow.float().cpu(), rtol=2e-3, atol=1e-5)
    assert_matches_reference(out.double(), _ref64(q, k, v, keep, scale), dtype=dtype)
    assert (out[0, 1, 150:170] == 0).all()


def test_fused_dsa_ignores_bits_past_lk():
    q, k, v, keep = _inputs(torch.float16, (2,), 70, 45, 64, 0.3, "garbage")
    bits = pack_keep_bits(keep.cuda())
    dirty = bits.clone()
    dirty[..., -1] |= -(1 << 13)  # bits 13..31 of the last word: keys 45..63, past Lk
    args = (q.cuda(), k.cuda(), v.cuda())
    clean_out = fused_dsa_attention(*args, bits, 0.125)
    dirty_out = fused_dsa_attention(*args, dirty, 0.125)
    assert_matches_reference(dirty_out, clean_out, exact=True)


@pytest.mark.parametrize(
    "shape", [(4, 16, 64, 64), (2, 3, 50, 33), (3, 100, 96), (5, 32), (2, 7, 1000), (1, 0, 64)]
)
@pytest.mark.parametrize("density", [0.1, 0.6])
def test_pack_keep_bits_cuda_bit_equal(shape, density):
    gen = generator("pack", shape, density)
    keep = torch.rand(shape, generator=gen) < density
    out = _pack_keep_bits_op(keep.cuda())
    torch.cuda.synchronize()
    assert_matches_reference(out, _pack_keep_bits_op.reference(keep), exact=True)
    # a view 1 byte into the storage is not 16-byte aligned: the general kernel runs
    flat = keep.flatten()
    if flat.numel() > 1 and shape[-1] % 32 == 0:
        n = (flat.numel() - 1) // shape[-1] * shape[-1]
        view = flat.cuda()[1 : 1 + n].view(-1, shape[-1])
        assert view.data_ptr() % 16 != 0
        expected = _pack_keep_bits_op.reference(flat[1 : 1 + n].view(-1, shape[-1]))
        assert_matches_reference(_pack_keep_bits_op(view), expected, exact=True)


@pytest.mark.parametrize("dtype", HALF)
@pytest.mark.parametrize(("lq", "lk", "d"), [(300, 257, 64), (128, 128, 128), (64, 500, 32)])
def test_dsa_attention_end_to_end_takes_the_fused_kernel(dtype, lq, lk, d, monkeypatch):
    gen = generator("dsa e2e", dtype, lq, lk, d)
    q, k, v = (torch.randn(2, 4, L, d, generator=gen).to(dtype).cuda() for L in (lq, lk, lk))
    calls, masks = [], []
    real = dsa_mod.fused_dsa_attention
    monkeypatch.setattr(
        dsa_mod, "fused_dsa_attention", lambda *a, **kw: calls.append(a[3]) or real(*a, **kw)
    )
    real_keep = dsa_mod._predict_keep
    monkeypatch.setattr(
        dsa_mod, "_predict_keep", lambda *a, **kw: masks.append(1) or real_keep(*a, **kw)
    )
    out = dsa_attention(q, k, v, sparsity=0.9, rank=16, bits=4, seed=5)
    assert calls, "dsa_attention did not take the fused kernel"
    assert not masks, "dsa_attention built a boolean mask on the fused path"
    keep = dsa_mask(q, k, sparsity=0.9, rank=16, bits=4, seed=5)
    # the prediction kernel's words are the boolean path's pattern, packed, bit for bit
    assert_matches_reference(calls[0], _pack_keep_bits_op.reference(keep.cpu()), exact=True)
    scale = 1 / math.sqrt(d)
    ref = _dsa_attention_op.reference(q, k, v, keep, scale, None, False)
    assert_matches_reference(out, ref, dtype=dtype)
    assert_matches_reference(out.double(), _ref64(q, k, v, keep, scale), dtype=dtype)


def test_dsa_attention_other_inputs_keep_their_paths(monkeypatch):
    # float32 and masks take the gather kernel, return_probs the reference: not the fused one
    gen = generator("dsa paths")
    q, k, v = (torch.randn(1, 2, 70, 64, generator=gen).cuda() for _ in range(3))
    calls = []
    real = dsa_mod.fused_dsa_attention
    monkeypatch.setattr(
        dsa_mod, "fused_dsa_attention", lambda *a, **kw: calls.append(1) or real(*a, **kw)
    )
    mask = torch.rand(70, 70, generator=gen).cuda() > 0.2
    half = (q.half(), k.half(), v.half())
    for (qq, kk, vv), mk, probs in (
        ((q, k, v), None, False),
        (half, mask, False),
        (half, None, True),
    ):
        out = dsa_attention(qq, kk, vv, sparsity=0.8, attn_mask=mk, return_probs=probs)
        out = out[0] if probs else out
        keep = dsa_mod._predict_keep(
            qq, kk, 0.2, 16, 4, make_generator(None, None, default_seed=0), 0.125, mk
        )
        ref = _dsa_attention_op.reference(qq, kk, vv, keep, 0.125, mk, False)
        assert_matches_reference(out, ref)
    assert not calls
