"""estimate_memory against measured peaks (issue 10 item 5), and limits that hold.

Peaks are measured by a counting allocator (``_peak.PeakCounter``: every tensor an aten op
returns, per storage, until it is collected); the GPU file measures the same calls with
``torch.cuda.max_memory_allocated``.
"""

from __future__ import annotations

import pytest
import torch

from toolkit.verify import LpBall, TransformerClassifier, bounds, estimate_memory

from ._peak import PeakCounter


def _model(dim=16, layernorm="no_var"):
    torch.manual_seed(0)
    return TransformerClassifier(
        20, dim=dim, heads=2, ffn_dim=2 * dim, max_len=64, layernorm=layernorm
    ).double()


def _peak(call):
    with PeakCounter() as pc:
        call()
    return pc.peak


def test_peak_counter_counts_live_storage():
    with PeakCounter() as pc:
        a = torch.zeros(1000, dtype=torch.float64)  # 8000 bytes
        b = a.view(10, 100)  # a view: no new storage
        c = torch.ones(500, dtype=torch.float64)  # 4000 more
        del c
        d = torch.ones(250, dtype=torch.float64)  # 2000, after c was freed
    assert pc.peak == 12000 and b.numel() == 1000 and d.numel() == 250


@pytest.mark.parametrize(
    "T, positions, layernorm",
    [(8, [1], "no_var"), pytest.param(12, [1, 2], "standard", marks=pytest.mark.slow)],
)
@pytest.mark.parametrize("method", ["crown", "forward"])
def test_estimate_is_within_25_percent_of_the_measured_peak(T, positions, layernorm, method):
    m = _model(layernorm=layernorm)
    e = m.embed(torch.randint(0, 20, (1, T), generator=torch.Generator().manual_seed(T)))
    spec = LpBall(0.01, positions=positions)
    limit = 2**30  # unchunked
    peak = _peak(lambda: bounds(m, e.detach(), spec, method, memory_limit=limit))
    est = estimate_memory(m, T, spec, method, memory_limit=limit)
    assert 0.75 * peak <= est <= 1.25 * peak, (est, peak)


def test_chunked_run_stays_under_the_limit():
    m = _model()
    e = m.embed(torch.randint(0, 20, (1, 8), generator=torch.Generator().manual_seed(1)))
    spec = LpBall(0.01, positions=[1])
    unchunked = _peak(lambda: bounds(m, e.detach(), spec, "crown", memory_limit=2**30))
    for limit in (unchunked // 4, unchunked // 2):
        peak = _peak(lambda lim=limit: bounds(m, e.detach(), spec, "crown", memory_limit=lim))
        assert peak <= limit, (peak, limit, unchunked)
