"""The fused DSA path's CPU-side logic: the packed pattern, the dispatch rules, argument checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from toolkit.attention._fused import (
    _dsa_fused_takes,
    dsa_fused_supported,
    fused_dsa_attention,
    pack_keep_bits,
)


def _packbits_ref(keep: torch.Tensor) -> torch.Tensor:
    """numpy's little-endian packbits, 4 bytes a word read as little-endian int32."""
    lk = keep.shape[-1]
    words = -(-lk // 32)
    padded = np.zeros((*keep.shape[:-1], words * 32), dtype=bool)
    padded[..., :lk] = keep.numpy()
    packed = np.packbits(padded, axis=-1, bitorder="little")
    return torch.from_numpy(packed.view("<i4").copy())


@pytest.mark.parametrize(
    "shape", [(3, 64), (2, 5, 7, 33), (1, 31), (4, 32), (2, 3, 100), (1, 1, 1), (2, 0, 40)]
)
@pytest.mark.parametrize("density", [0.05, 0.5, 1.0])
def test_pack_keep_bits_matches_numpy_packbits(shape, density):
    gen = torch.Generator().manual_seed(hash((shape, density)) % 2**31)
    keep = torch.rand(shape, generator=gen) < density
    bits = pack_keep_bits(keep)
    assert bits.dtype == torch.int32
    assert bits.shape == (*shape[:-1], -(-shape[-1] // 32))
    assert torch.equal(bits, _packbits_ref(keep))


def test_pack_keep_bits_bit_layout_and_views():
    keep = torch.zeros(2, 70, dtype=torch.bool)
    keep[0, 31] = keep[0, 32] = keep[1, 69] = True
    bits = pack_keep_bits(keep)
    assert bits.tolist() == [[-(2**31), 1, 0], [0, 0, 1 << 5]]
    # a non-contiguous view packs as its contiguous copy
    big = torch.rand(4, 6, 40, generator=torch.Generator().manual_seed(1)) < 0.3
    view = big.transpose(0, 1)[:, 1:]
    assert torch.equal(pack_keep_bits(view), pack_keep_bits(view.contiguous()))
    assert pack_keep_bits(torch.zeros(3, 0, dtype=torch.bool)).shape == (3, 0)


def test_pack_keep_bits_refuses_bad_input():
    with pytest.raises(TypeError, match="keep must have dtype in \\(bool\\)"):
        pack_keep_bits(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="keep must have at least 2"):
        pack_keep_bits(torch.zeros(5, dtype=torch.bool))
    with pytest.raises(TypeError, match="keep must be a torch.Tensor"):
        pack_keep_bits([[True]])


def _qkv(dtype=torch.float16, d=64, lq=8, lk=9, dv=None, lead=(2, 3)):
    q = torch.zeros(*lead, lq, d, dtype=dtype)
    k = torch.zeros(*lead, lk, d, dtype=dtype)
    v = torch.zeros(*lead, lk, dv or d, dtype=dtype)
    return q, k, v, torch.ones(*lead, lq, lk, dtype=torch.bool)


def test_fused_dsa_dispatch_rules():
    q, k, v, keep = _qkv()
    assert _dsa_fused_takes(q, k, v, keep, False, None)
    assert _dsa_fused_takes(*_qkv(torch.bfloat16, 128), False, None)
    assert _dsa_fused_takes(*_qkv(d=16), False, None)
    assert _dsa_fused_takes(q, k, v, None, False, None)
    assert not dsa_fused_supported(q, k, v, keep, False, None)  # CPU tensors
    assert not _dsa_fused_takes(*_qkv(torch.float32), False, None)
    assert not _dsa_fused_takes(*_qkv(d=48), False, None)
    assert not _dsa_fused_takes(*_qkv(dv=32), False, None)
    assert not _dsa_fused_takes(q, k, v, keep, True, None)  # return_probs
    assert not _dsa_fused_takes(q, k, v, keep, False, torch.ones(8, 9, dtype=torch.bool))
    assert not _dsa_fused_takes(q, k, v, keep[:1], False, None)  # broadcast pattern
    assert not _dsa_fused_takes(q, k[:1], v[:1], keep, False, None)  # broadcast k, v
    assert not _dsa_fused_takes(*_qkv(lq=0), False, None)
    assert not _dsa_fused_takes(*_qkv(lk=0), False, None)
    qg = q.clone().requires_grad_(True)
    assert not _dsa_fused_takes(qg, k, v, keep, False, None)
    with torch.no_grad():
        assert _dsa_fused_takes(qg, k, v, keep, False, None)


def test_fused_dsa_attention_checks_its_arguments(monkeypatch):
    q, k, v, keep = _qkv(lk=40)
    bits = pack_keep_bits(keep)
    with pytest.raises(ValueError, match="q must be a CUDA tensor, got one on cpu"):
        fused_dsa_attention(q, k, v, bits, 0.125)
    # the remaining checks run before any launch: pretend the CPU tensors are CUDA ones
    monkeypatch.setattr(torch.Tensor, "is_cuda", property(lambda self: True))
    with pytest.raises(ValueError, match=r"bits must have shape \(2, 3, 8, 2\)"):
        fused_dsa_attention(q, k, v, bits[..., :1], 0.125)
    with pytest.raises(TypeError, match="q must have dtype in"):
        fused_dsa_attention(q.float(), k.float(), v.float(), bits, 0.125)
    with pytest.raises(TypeError, match="bits must have dtype in"):
        fused_dsa_attention(q, k, v, bits.long(), 0.125)
    with pytest.raises(TypeError, match="k must have dtype in"):
        fused_dsa_attention(q, k.bfloat16(), v, bits, 0.125)
    with pytest.raises(ValueError, match="pairs=True needs skip=True"):
        fused_dsa_attention(q, k, v, bits, 0.125, skip=False, pairs=True)
    with pytest.raises(ValueError, match="out must have shape"):
        fused_dsa_attention(q, k, v, bits, 0.125, out=torch.empty(1, dtype=q.dtype))
