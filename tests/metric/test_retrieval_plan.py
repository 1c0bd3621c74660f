"""The CUDA path's host-side plan (candidate list length, Gram chunks), checked on the CPU."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from toolkit.metric import _retrieval, retrieval_topk
from toolkit.metric._retrieval import _CHUNK_BYTES, MAX_K, _chunk_plan, _list_length

from ._retrieval_emulator import Emulator


@pytest.mark.parametrize("k", range(1, MAX_K + 1))
def test_list_length_holds_twice_k_up_to_max(k):
    length = _list_length(k)
    assert length in (8, 16, 32)
    assert length >= min(2 * k, MAX_K)
    assert length == 8 or length // 2 < min(2 * k, MAX_K), "not the shortest that fits"


@pytest.mark.parametrize(
    ("n", "m", "itemsize", "budget"),
    [
        (8192, 8192, 4, _CHUNK_BYTES),
        (32768, 32768, 4, _CHUNK_BYTES),
        (65536, 65536, 4, _CHUNK_BYTES),
        (65536, 65536, 8, _CHUNK_BYTES),
        (600, 501, 4, 7 * 504 * 4),
        (10, 3, 8, 1),  # a budget below one row still makes progress, one row at a time
        (1, 1, 4, _CHUNK_BYTES),
    ],
)
def test_chunk_plan_is_aligned_and_within_budget(n, m, itemsize, budget):
    rows, ld = _chunk_plan(n, m, itemsize, budget)
    assert ld % 4 == 0 and m <= ld < m + 4, "rows must start 16-byte aligned"
    assert 1 <= rows <= n
    assert rows == 1 or rows * ld * itemsize <= budget
    if rows < n:  # as many rows as the budget allows
        assert (rows + 1) * ld * itemsize > budget


@pytest.mark.parametrize("n", [1, 3, 4, 5, 9, 64, 1000, 3001, 8192, 32768, 65536])
@pytest.mark.parametrize("budget", [1, 7 * 504 * 4, _CHUNK_BYTES])
def test_symmetric_chunks_start_aligned(n, budget):
    rows, ld = _chunk_plan(n, n, 4, budget, symmetric=True)
    assert 1 <= rows <= n
    if rows < n:  # several chunks: each starts at a multiple of 4 (aligned norms)
        assert rows % 4 == 0
        assert rows <= max(4, -(-n // 8)), "an eighth of the rows at most"
        assert rows == 4 or rows * ld * 4 <= budget


def test_chunk_plan_at_benchmark_sizes():
    # the selection kernel needs thousands of rows in flight to stream at memory bandwidth
    assert _chunk_plan(32768, 32768, 4, _CHUNK_BYTES) == (4096, 32768)
    assert _chunk_plan(65536, 65536, 4, _CHUNK_BYTES) == (2048, 65536)
    assert _chunk_plan(8192, 8193, 4, _CHUNK_BYTES) == (8192, 8196)
    # leave-one-out: an eighth of the rows per chunk, the GEMMs cover the upper triangle
    assert _chunk_plan(8192, 8192, 4, _CHUNK_BYTES, symmetric=True) == (1024, 8192)
    assert _chunk_plan(32768, 32768, 4, _CHUNK_BYTES, symmetric=True) == (4096, 32768)
    assert _chunk_plan(65536, 65536, 4, _CHUNK_BYTES, symmetric=True) == (2048, 65536)


@pytest.mark.parametrize(
    ("n", "m", "d", "k", "loo", "budget", "dtype"),
    [
        (37, 37, 5, 3, True, _CHUNK_BYTES, torch.float32),  # symmetric, 4-row chunks
        (42, 42, 6, 12, True, 5 * 44 * 4, torch.float32),  # budget-capped symmetric chunks
        (30, 30, 4, 5, True, _CHUNK_BYTES, torch.float64),
        (23, 61, 7, 8, False, 5 * 64 * 4, torch.float32),  # general path, m % 4 != 0
        (20, 50, 3, 32, False, _CHUNK_BYTES, torch.float32),
    ],
)
def test_host_code_with_emulated_kernels(monkeypatch, n, m, d, k, loo, budget, dtype):
    # _topk_cuda's host logic on CPU tensors, the kernels replaced by a NumPy emulation that
    # reads and writes through the very pointers, strides and offsets the launches pass
    gen = torch.Generator().manual_seed(n * 1000 + m)
    ints = k == 12  # small integers: exact keys, many exact ties (lower index first)
    if ints:
        q = torch.randint(-2, 3, (n, d), generator=gen).to(dtype)
    else:
        q = torch.randn(n, d, generator=gen, dtype=dtype)
    r = q if loo else torch.randn(m, d, generator=gen, dtype=dtype)
    emulator = Emulator(n, m, d, k, dtype=np.float32 if dtype == torch.float32 else np.float64)
    monkeypatch.setattr(_retrieval, "fast_launch", emulator)
    monkeypatch.setattr(_retrieval, "_CHUNK_BYTES", budget)
    dist = torch.full((n, k), float("nan"), dtype=dtype)
    idx = torch.full((n, k), -7, dtype=torch.int64)
    _retrieval._topk_cuda(q, r, k, loo, out=(dist, idx))
    ref_d, ref_i = retrieval_topk(q, k, None if loo else r, backend="cpu")
    assert torch.equal(idx, ref_i)
    torch.testing.assert_close(dist, ref_d, rtol=1e-6, atol=1e-6)
    rows, _ = _chunk_plan(n, m, q.element_size(), budget, loo)
    chunks = -(-n // rows)
    assert emulator.launches.count("retrieval_select") == chunks
    assert emulator.launches.count("retrieval_select_columns") == (chunks - 1 if loo else 0)
