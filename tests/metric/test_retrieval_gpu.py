"""The CUDA path of retrieval_topk against the reference, on fresh inputs, poisoned outputs."""

from __future__ import annotations

import pytest
import torch

from toolkit.metric import _retrieval, recall_at_k, retrieval_topk
from toolkit.metric._retrieval import _topk_cuda

from .._gpu import assert_written, generator, poisoned

pytestmark = pytest.mark.gpu

CASES = [  # (n, m, d, k, leave_one_out): m % 4 != 0 covers the scalar tail of a row
    (1, 1, 1, 1, False),
    (5, 40, 3, 1, False),
    (37, 1003, 17, 8, False),
    (100, 333, 64, 16, False),
    (257, 2049, 130, 32, False),
    (64, 64, 33, 5, True),
    (9, 9, 7, 8, True),  # fewer columns than list slots: fillers must rank last
    (1000, 1000, 128, 32, True),
    (3001, 3001, 96, 10, True),
]


def _run(q, r, k, loo):
    n = q.shape[0]
    out = (poisoned((n, k), q.dtype), poisoned((n, k), torch.int64))
    dist, idx = _topk_cuda(q.cuda(), r.cuda(), k, loo, out=out)
    torch.cuda.synchronize()
    assert_written(dist)
    assert_written(idx)
    return dist.cpu(), idx.cpu()


def _check(q, r, k, loo, dist, idx):
    """Same neighbours as the reference, up to near-ties that the GEMM's rounding may order."""
    ref_d, ref_i = retrieval_topk(q, k, None if loo else r, backend="cpu")
    n = q.shape[0]
    assert ((idx >= 0) & (idx < r.shape[0])).all(), "index out of range"
    assert (idx.sort(dim=1).values.diff(dim=1) != 0).all(), "a reference listed twice"
    if loo:
        assert not (idx == torch.arange(n).unsqueeze(1)).any(), "a query retrieved itself"
    assert (dist.diff(dim=1) >= 0).all(), "distances not ascending"
    if q.dtype == torch.float64:
        assert torch.equal(idx, ref_i)
        torch.testing.assert_close(dist, ref_d, rtol=1e-12, atol=1e-12)
        return
    torch.testing.assert_close(dist, ref_d, rtol=1e-5, atol=1e-5)
    # each returned index is as near as claimed (float64 distances of the returned pairs)
    true = (q.double()[:, None, :] - r.double()[idx]).norm(dim=-1)
    torch.testing.assert_close(true, ref_d.double(), rtol=1e-5, atol=1e-5)
    assert (idx == ref_i).float().mean() > 0.99


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(("n", "m", "d", "k", "loo"), CASES)
def test_cuda_equals_reference(dtype, n, m, d, k, loo):
    gen = generator(n, m, d, k, loo, str(dtype))
    q = torch.randn(n, d, generator=gen, dtype=dtype)
    r = q if loo else torch.randn(m, d, generator=gen, dtype=dtype)
    dist, idx = _run(q, r, k, loo)
    _check(q, r, k, loo, dist, idx)


@pytest.mark.parametrize("loo", [True, False])
def test_many_chunks(monkeypatch, loo):
    # a 7-row budget: many chunks, a short last one, the self column shifting with the chunk
    gen = generator("chunks", loo)
    q = torch.randn(600, 40, generator=gen)
    r = q if loo else torch.randn(501, 40, generator=gen)
    ld = -(-r.shape[0] // 4) * 4
    monkeypatch.setattr(_retrieval, "_CHUNK_BYTES", 7 * ld * 4)
    dist, idx = _run(q, r, 12, loo)
    _check(q, r, 12, loo, dist, idx)


def test_symmetric_and_general_paths_agree():
    # the same set as its own references: the upper-triangle path with running lists; a copy
    # of it as references: the general path, which excludes the diagonal by index only
    gen = generator("paths")
    x = torch.randn(2501, 48, generator=gen)
    xc = x.cuda()
    for k in (1, 9, 32):
        sym = _topk_cuda(xc, xc, k, True)
        gen_ = _topk_cuda(xc, xc.clone(), k, True)
        for dist, idx in (sym, gen_):
            _check(x, x, k, True, dist.cpu(), idx.cpu())


def test_near_duplicates_keep_exact_distances():
    # distances of 1e-3 next to norms of 100: ||q||^2 + ||r||^2 - 2 q.r would lose them all
    # in float32; the kernel recomputes its candidates' distances from differences
    gen = generator("near")
    base = 10 * torch.randn(500, 64, generator=gen)
    x = torch.cat([base, base + 1e-3 * torch.randn(500, 64, generator=gen)])
    dist, idx = _run(x, x, 1, True)
    ref_d, ref_i = retrieval_topk(x, 1, backend="cpu")
    assert torch.equal(idx, ref_i)
    torch.testing.assert_close(dist, ref_d, rtol=1e-4, atol=1e-7)


def test_ties_go_to_lower_index():
    base = torch.randint(-3, 4, (50, 6)).float()
    refs = torch.cat([base, base, base])  # every distance appears three times
    q = torch.randint(-3, 4, (20, 6)).float()
    for k in (1, 7, 12, 32):
        d, i = retrieval_topk(q.cuda(), k, refs.cuda(), backend="cuda")
        ref_d, ref_i = retrieval_topk(q, k, refs, backend="cpu")
        assert torch.equal(i.cpu(), ref_i) and torch.equal(d.cpu(), ref_d), k


def test_large_k_falls_back_to_reference_on_the_device():
    x = torch.randn(300, 8, device="cuda")
    d, i = retrieval_topk(x, 100, backend="cuda")
    ref_d, ref_i = retrieval_topk(x.cpu(), 100, backend="cpu")
    assert d.is_cuda and torch.equal(i.cpu(), ref_i)
    torch.testing.assert_close(d.cpu(), ref_d)


def test_auto_dispatch_in_recall_at_k():
    gen = generator("recall")
    emb = torch.randn(2000, 32, generator=gen, dtype=torch.float64)
    labels = torch.randint(20, (2000,), generator=gen)
    assert recall_at_k(emb.cuda(), labels.cuda()) == recall_at_k(emb, labels)  # exact counts


def test_non_contiguous_inputs():
    x = torch.randn(40, 70, generator=generator("noncontig")).t()  # [70, 40] non-contiguous
    d, i = retrieval_topk(x.cuda(), 4, backend="cuda")
    ref_d, ref_i = retrieval_topk(x, 4, backend="cpu")
    torch.testing.assert_close(d.cpu(), ref_d, rtol=1e-5, atol=1e-5)
    assert (i.cpu() == ref_i).float().mean() > 0.99


def test_launch_validation_errors():
    q = torch.randn(4, 3, device="cuda")
    with pytest.raises(ValueError, match=r"out\[0\] must have shape"):
        _topk_cuda(q, q, 2, True, out=(poisoned((4, 3), q.dtype), poisoned((4, 3), torch.int64)))
    with pytest.raises(TypeError, match="references must have dtype"):
        _topk_cuda(q, q.double(), 2, False)
    with pytest.raises(ValueError, match="references must be on"):
        _topk_cuda(q, q.cpu(), 2, False)
    with pytest.raises(ValueError, match="k must satisfy"):
        _topk_cuda(q, q, 4, True)
    with pytest.raises(ValueError, match="out\\[1\\] must be contiguous"):
        _topk_cuda(
            q,
            q,
            2,
            True,
            out=(
                torch.empty(4, 2, device="cuda"),
                torch.empty(2, 4, dtype=torch.int64, device="cuda").t(),
            ),
        )
