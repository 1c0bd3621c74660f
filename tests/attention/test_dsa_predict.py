"""DSA's prediction step on integer codes: the reference path against plain loops."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from toolkit.attention._dsa_predict import (
    pack_bits,
    predict_topk_bits,
    predict_topk_mask,
    unpack_bits,
)


def _loops(q_codes, k_codes, k_scale, keep):
    q = q_codes.long().numpy()
    k = k_codes.long().numpy()
    s = k_scale.numpy()
    out = np.zeros((*q.shape[:-1], k.shape[-2]), dtype=bool)
    for idx in np.ndindex(q.shape[:-2]):
        for i in range(q.shape[-2]):
            scores = [
                np.float32(float(q[idx][i] @ k[idx][j])) * s[idx][j] for j in range(k.shape[-2])
            ]
            order = sorted(range(len(scores)), key=lambda j: (-scores[j], j))
            out[(*idx, i)][order[:keep]] = True
    return torch.from_numpy(out)


@pytest.mark.parametrize(
    ("lead", "lq", "lk", "rank", "dtype", "keep"),
    [
        ((2,), 5, 17, 4, torch.int8, 3),
        ((1, 3), 4, 9, 1, torch.int8, 9),
        ((2,), 3, 33, 8, torch.int16, 1),
    ],
)
def test_reference_matches_loops_with_ties(lead, lq, lk, rank, dtype, keep, generator):
    q = torch.randint(-2, 3, (*lead, lq, rank), generator=generator).to(dtype)  # many ties
    k = torch.randint(-2, 3, (*lead, lk, rank), generator=generator).to(dtype)
    scale = torch.randint(1, 3, (*lead, lk), generator=generator).float() / 4
    mask = predict_topk_mask(q, k, scale, keep)
    assert (mask.sum(-1) == keep).all()
    assert torch.equal(mask, _loops(q, k, scale, keep))


def test_int16_large_codes_are_exact(generator):
    q = torch.randint(-32767, 32768, (1, 4, 64), generator=generator).to(torch.int16)
    k = torch.randint(-32767, 32768, (1, 50, 64), generator=generator).to(torch.int16)
    scale = torch.rand(1, 50, generator=generator) + 0.5
    assert torch.equal(predict_topk_mask(q, k, scale, 7), _loops(q, k, scale, 7))


def test_bad_arguments():
    q = torch.zeros(1, 2, 4, dtype=torch.int8)
    k = torch.zeros(1, 5, 4, dtype=torch.int8)
    s = torch.ones(1, 5)
    with pytest.raises(ValueError, match="keep must satisfy 1 <= keep <= 5, got keep=6"):
        predict_topk_mask(q, k, s, 6)
    with pytest.raises(ValueError, match="keep must satisfy"):
        predict_topk_mask(q, k, s, 0)
    with pytest.raises(TypeError, match="keep must be an int"):
        predict_topk_mask(q, k, s, 1.0)
    with pytest.raises(TypeError, match=r"q_codes must have dtype in \(int8, int16\)"):
        predict_topk_mask(q.float(), k, s, 1)
    with pytest.raises(TypeError, match=r"k_codes must have dtype in \(int8\)"):
        predict_topk_mask(q, k.short(), s, 1)
    with pytest.raises(ValueError, match="code rank r"):
        predict_topk_mask(q, k[..., :3], s, 1)
    with pytest.raises(TypeError, match="k_scale must have dtype in"):
        predict_topk_mask(q, k, s.double(), 1)
    with pytest.raises(ValueError, match=r"k_scale must have shape \(1, 5\)"):
        predict_topk_mask(q, k, s[:, :4], 1)


def _pack_loops(mask: torch.Tensor) -> torch.Tensor:
    """Words of a bool mask by plain loops: bit j % 32 of word j // 32, as uint32 bit patterns
    read as int32."""
    m = mask.numpy()
    words = -(-m.shape[-1] // 32)
    out = np.zeros((*m.shape[:-1], words), dtype=np.uint32)
    for idx in np.ndindex(m.shape[:-1]):
        for j in np.flatnonzero(m[idx]):
            out[idx][j // 32] |= np.uint32(1) << np.uint32(j % 32)
    return torch.from_numpy(out.view(np.int32))


@pytest.mark.parametrize("length", [1, 31, 32, 33, 64, 70, 100])
def test_pack_bits_matches_loops(length, generator):
    mask = torch.rand(2, 3, length, generator=generator) < 0.5
    mask[0, 0] = True  # a full row: the sign bit of every word
    packed = pack_bits(mask)
    assert packed.dtype == torch.int32 and packed.shape == (2, 3, -(-length // 32))
    assert torch.equal(packed, _pack_loops(mask))
    assert torch.equal(unpack_bits(packed, length), mask)


def test_unpack_bits_matches_loops(generator):
    words = torch.randint(-(2**31), 2**31, (4, 3), generator=generator, dtype=torch.int64)
    bits = words.to(torch.int32)
    mask = unpack_bits(bits, 90)
    expected = [
        [bool((int(words[r, j // 32]) >> (j % 32)) & 1) for j in range(90)] for r in range(4)
    ]
    assert mask.dtype == torch.bool and mask.tolist() == expected


@pytest.mark.parametrize(
    ("lead", "lq", "lk", "rank", "dtype", "keep"),
    [
        ((2,), 5, 17, 4, torch.int8, 3),
        ((1, 3), 4, 40, 1, torch.int8, 40),
        ((2,), 3, 65, 8, torch.int16, 1),
    ],
)
def test_predict_topk_bits_matches_loops(lead, lq, lk, rank, dtype, keep, generator):
    q = torch.randint(-2, 3, (*lead, lq, rank), generator=generator).to(dtype)  # many ties
    k = torch.randint(-2, 3, (*lead, lk, rank), generator=generator).to(dtype)
    scale = torch.randint(1, 3, (*lead, lk), generator=generator).float() / 4
    bits = predict_topk_bits(q, k, scale, keep)
    assert bits.shape == (*lead, lq, -(-lk // 32)) and bits.dtype == torch.int32
    assert torch.equal(bits, _pack_loops(_loops(q, k, scale, keep)))


def test_bits_bad_arguments():
    q = torch.zeros(1, 2, 4, dtype=torch.int8)
    k = torch.zeros(1, 5, 4, dtype=torch.int8)
    s = torch.ones(1, 5)
    with pytest.raises(ValueError, match="keep must satisfy 1 <= keep <= 5, got keep=0"):
        predict_topk_bits(q, k, s, 0)
    with pytest.raises(TypeError, match=r"k_codes must have dtype in \(int8\)"):
        predict_topk_bits(q, k.short(), s, 1)
    with pytest.raises(TypeError, match="mask must have dtype in"):
        pack_bits(torch.zeros(3, dtype=torch.int32))
    with pytest.raises(TypeError, match="bits must have dtype in"):
        unpack_bits(torch.zeros(1, dtype=torch.int64), 3)
    with pytest.raises(ValueError, match=r"ceil\(lk / 32\) == bits.shape\[-1\] == 2, got lk=70"):
        unpack_bits(torch.zeros(2, 2, dtype=torch.int32), 70)
    with pytest.raises(ValueError, match="lk must satisfy 0 <= lk"):
        unpack_bits(torch.zeros(0, dtype=torch.int32), -1)
    with pytest.raises(TypeError, match="lk must be an int"):
        unpack_bits(torch.zeros(1, dtype=torch.int32), 3.0)
