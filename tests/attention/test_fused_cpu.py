"""CPU-side logic of issue 14's CUDA paths: mask strides, memoised checks, dispatch rules."""

from __future__ import annotations

import pytest
import torch

from toolkit.attention import nm_attention
from toolkit.attention._fused import _mask_args, fused_supported, sparse_supported
from toolkit.attention._nm import check_nm
from toolkit.attention.sparse import _check_qkv_cached
from toolkit.models._attention import check_qkv


@pytest.mark.parametrize(
    ("lead", "mask_shape"),
    [
        ((2, 3), (5, 7)),
        ((2, 3), (2, 1, 1, 7)),
        ((2, 3), (2, 3, 5, 7)),
        ((3,), (1, 5, 7)),
        ((2, 2, 3), (2, 1, 3, 5, 7)),
        ((), (5, 7)),
    ],
)
@pytest.mark.parametrize("dtype", [torch.bool, torch.float16, torch.float64])
def test_mask_strides_address_the_broadcast_mask(lead, mask_shape, dtype):
    lq, lk = 5, 7
    gen = torch.Generator().manual_seed(len(mask_shape))
    mask = torch.randn(mask_shape, generator=gen)
    mask = mask > 0 if dtype == torch.bool else mask.to(dtype)
    flat, kind, heads, (sb, sh, sq, sk) = _mask_args(mask, lead, lq, lk)
    assert kind == (1 if dtype == torch.bool else 2)
    expected = mask.expand(*lead, lq, lk).reshape(-1, lq, lk)
    for r in range(expected.shape[0]):
        b, h = divmod(r, heads)
        for i in range(lq):
            for j in range(lk):
                off = b * sb + h * sh + i * sq + j * sk
                # the kernel reads element `off` of the mask's storage, from its data pointer
                got = flat.as_strided((1,), (1,), flat.storage_offset() + off)[0]
                want = expected[r, i, j]
                if dtype == torch.bool:
                    assert bool(got) == bool(want)
                else:
                    assert float(got) == float(want.float())  # float masks go to float32
    assert _mask_args(None, lead, lq, lk)[1] == 0


def test_memoised_qkv_check_equals_the_check_and_still_refuses():
    q, k, v = torch.zeros(2, 3, 5, 8), torch.zeros(2, 3, 7, 8), torch.zeros(2, 3, 7, 4)
    assert _check_qkv_cached(q, k, v) == check_qkv(q, k, v) == (2, 3, 5, 7)
    assert _check_qkv_cached(q, k, v) == (2, 3, 5, 7)  # from the memo
    with pytest.raises(ValueError, match="v must have as many rows as k"):
        _check_qkv_cached(q, k, torch.zeros(2, 3, 6, 4))
    with pytest.raises(TypeError, match="k must have dtype"):
        _check_qkv_cached(q, k.double(), v)
    p = torch.nn.Parameter(torch.zeros(2, 3, 5, 8))  # a subclass takes the full check
    assert _check_qkv_cached(p, k, v) == (2, 3, 5, 7)
    with pytest.raises(TypeError, match="q must be a torch.Tensor"):
        _check_qkv_cached([1.0], k, v)


def test_memoised_nm_check_still_refuses_bad_values():
    assert check_nm(2, 4) == (2, 4) and check_nm(2, 4) == (2, 4)
    with pytest.raises(TypeError, match="n must be an int"):
        check_nm(True, 4)
    for _ in range(2):  # errors are never memoised
        with pytest.raises(ValueError, match="n must satisfy 1 <= n <= 4"):
            check_nm(5, 4)
    with pytest.raises(ValueError, match="m must satisfy"):
        check_nm(1, 33)


def test_kernels_only_take_cuda_inputs_they_support():
    q = torch.zeros(1, 2, 8, 64, dtype=torch.float16)
    assert not fused_supported(q, q, q, 4, False, None)  # CPU tensors: reference path
    keep = torch.ones(1, 2, 8, 8, dtype=torch.bool)
    assert not sparse_supported(q, q, q, keep, False, None)
    # The public function on the CPU is the reference: unchanged results.
    out = nm_attention(q.float(), q.float(), q.float(), 2, 4)
    assert out.shape == (1, 2, 8, 64) and torch.isfinite(out).all()
