"""The CUDA path of retrieval_topk against the reference, on fresh inputs, poisoned outputs."""

from __future__ import annotations

import pytest
import torch

from toolkit.metric import recall_at_k, retrieval_topk
from toolkit.metric._retrieval import _topk_cuda

pytestmark = pytest.mark.gpu

CASES = [  # (n, m, d, k, leave_one_out)
    (1, 1, 1, 1, False),
    (5, 40, 3, 1, False),
    (37, 1000, 17, 8, False),
    (100, 333, 64, 16, False),
    (257, 2049, 130, 32, False),
    (64, 64, 33, 5, True),
    (9, 9, 7, 8, True),
    (1000, 1000, 128, 32, True),
]


def _poisoned(n, k, dtype):
    dist = torch.full((n, k), float("nan"), dtype=dtype, device="cuda")
    idx = torch.full((n, k), -7, dtype=torch.int64, device="cuda")
    return dist, idx


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(("n", "m", "d", "k", "loo"), CASES)
def test_cuda_equals_reference(dtype, n, m, d, k, loo):
    gen = torch.Generator().manual_seed(hash((n, m, d, k, loo, str(dtype))) % 2**31)
    q = torch.randn(n, d, generator=gen, dtype=dtype)
    r = q if loo else torch.randn(m, d, generator=gen, dtype=dtype)
    qc, rc = q.cuda(), r.cuda()
    dist, idx = _topk_cuda(qc, rc, k, loo, out=_poisoned(n, k, dtype))
    torch.cuda.synchronize()
    assert not torch.isnan(dist).any() and (idx >= 0).all(), "unwritten outputs"
    ref_d, ref_i = retrieval_topk(q, k, None if loo else r, backend="cpu")
    dist, idx = dist.cpu(), idx.cpu()
    if dtype == torch.float64:
        assert torch.equal(idx, ref_i)
        torch.testing.assert_close(dist, ref_d, rtol=1e-12, atol=1e-12)
    else:
        torch.testing.assert_close(dist, ref_d, rtol=1e-5, atol=1e-5)
        # summation order may swap near-ties: each returned index must be as near as claimed
        true = (q.double()[:, None, :] - r.double()[idx]).norm(dim=-1)
        torch.testing.assert_close(true, ref_d.double(), rtol=1e-5, atol=1e-5)
        assert (idx == ref_i).float().mean() > 0.99
    if loo:
        assert not (idx == torch.arange(n).unsqueeze(1)).any(), "a query retrieved itself"


def test_ties_go_to_lower_index():
    base = torch.randint(-3, 4, (50, 6)).float()
    refs = torch.cat([base, base, base])  # every distance appears three times
    q = torch.randint(-3, 4, (20, 6)).float()
    d, i = retrieval_topk(q.cuda(), 12, refs.cuda(), backend="cuda")
    ref_d, ref_i = retrieval_topk(q, 12, refs, backend="cpu")
    assert torch.equal(i.cpu(), ref_i) and torch.equal(d.cpu(), ref_d)


def test_large_k_falls_back_to_reference_on_the_device():
    x = torch.randn(300, 8, device="cuda")
    d, i = retrieval_topk(x, 100, backend="cuda")
    ref_d, ref_i = retrieval_topk(x.cpu(), 100, backend="cpu")
    assert d.is_cuda and torch.equal(i.cpu(), ref_i)
    torch.testing.assert_close(d.cpu(), ref_d)


def test_auto_dispatch_in_recall_at_k():
    gen = torch.Generator().manual_seed(5)
    emb = torch.randn(2000, 32, generator=gen, dtype=torch.float64)
    labels = torch.randint(20, (2000,), generator=gen)
    assert recall_at_k(emb.cuda(), labels.cuda()) == recall_at_k(emb, labels)  # exact counts


def test_non_contiguous_inputs():
    x = torch.randn(40, 70, device="cuda").t()  # [70, 40] non-contiguous
    d, i = retrieval_topk(x, 4, backend="cuda")
    ref_d, ref_i = retrieval_topk(x.cpu(), 4, backend="cpu")
    torch.testing.assert_close(d.cpu(), ref_d, rtol=1e-5, atol=1e-5)
    assert (i.cpu() == ref_i).float().mean() > 0.99


def test_launch_validation_errors():
    q = torch.randn(4, 3, device="cuda")
    with pytest.raises(ValueError, match=r"out\[0\] must have shape"):
        _topk_cuda(q, q, 2, True, out=_poisoned(4, 3, torch.float32))
    with pytest.raises(TypeError, match="references must have dtype"):
        _topk_cuda(q, q.double(), 2, False)
