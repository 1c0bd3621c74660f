"""DSA's prediction step on integer codes: the reference path against plain loops."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from toolkit.attention._dsa_predict import predict_topk_mask


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
