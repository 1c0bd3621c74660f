"""Sparse attention on CUDA tensors: the same results as on the CPU, through the kernels."""

from __future__ import annotations

import pytest
import torch

from toolkit.attention import dsa_attention, dsa_mask, nm_attention
from toolkit.attention.dsa import _codes, dsa_projection

from .._gpu import assert_matches_reference, generator

pytestmark = pytest.mark.gpu


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize(("n", "m"), [(2, 4), (1, 2), (3, 8)])
def test_nm_attention_cuda_matches_cpu(dtype, n, m):
    gen = generator(dtype, n, m)
    q, k, v = (torch.randn(2, 4, 37, 32, generator=gen).to(dtype) for _ in range(3))
    out_cpu, p_cpu = nm_attention(q, k, v, n=n, m=m, return_probs=True)
    out_gpu, p_gpu = nm_attention(q.cuda(), k.cuda(), v.cuda(), n=n, m=m, return_probs=True)
    kept_cpu, kept_gpu = p_cpu > 0, p_gpu.cpu() > 0
    # Scores are computed by different matmul kernels; near-ties may resolve differently.
    assert (kept_cpu == kept_gpu).float().mean() > 0.99
    rows_equal = (kept_cpu == kept_gpu).all(-1)
    assert_matches_reference(out_gpu.cpu()[rows_equal], out_cpu[rows_equal])


def test_dsa_mask_cuda_uses_kernel_and_matches_codes():
    gen = generator("dsa mask")
    q, k = torch.randn(2, 3, 64, 32, generator=gen), torch.randn(2, 3, 80, 32, generator=gen)
    mask = dsa_mask(q.cuda(), k.cuda(), sparsity=0.75, rank=16, bits=4, seed=3)
    assert mask.is_cuda and (mask.sum(-1) == 20).all()
    # The CPU path on the codes the GPU produced gives the same mask bit for bit.
    proj = dsa_projection(32, 16, seed=3).cuda()
    qc, _, kc, sk = _codes(q.cuda(), k.cuda(), proj, 4)
    from toolkit.attention._dsa_predict import predict_topk_mask

    expected = predict_topk_mask(qc.cpu(), kc.cpu(), sk.cpu(), 20, backend="cpu")
    assert_matches_reference(mask, expected, exact=True)
    agree = (mask.cpu() == dsa_mask(q, k, sparsity=0.75, rank=16, bits=4, seed=3)).float()
    assert agree.mean() > 0.98


def test_dsa_attention_cuda_runs_and_is_close_to_cpu():
    gen = generator("dsa attention")
    q, k, v = (torch.randn(1, 2, 48, 16, generator=gen) for _ in range(3))
    out = dsa_attention(q.cuda(), k.cuda(), v.cuda(), sparsity=0.5, rank=8, bits=8, seed=1)
    ref = dsa_attention(q, k, v, sparsity=0.5, rank=8, bits=8, seed=1)
    assert out.is_cuda and torch.isfinite(out).all()
    assert (out.cpu() - ref).abs().max() < 0.5  # same pattern up to rounding at the boundary
