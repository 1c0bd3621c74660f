"""time_attention on a GPU: every entry is timed, and the sparse entries run the kernels.

Counting wrappers around the kernels' launch functions show that the timed N:M calls went
through the fused kernel and the DSA calls through the sparse kernel, independently of the
path the result reports.
"""

from __future__ import annotations

import math

import pytest
import torch

import toolkit.attention.dsa as dsa_mod
import toolkit.attention.sparse as sparse_mod
from toolkit.attention import time_attention

pytestmark = pytest.mark.gpu


def _counting(monkeypatch, module, name):
    calls = [0]
    real = getattr(module, name)

    def wrapper(*args, **kwargs):
        calls[0] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, wrapper)
    return calls


@pytest.mark.parametrize("head_dim", [64, 128])
def test_time_attention_on_cuda_fp16_uses_the_kernels(monkeypatch, head_dim):
    fused = _counting(monkeypatch, sparse_mod, "fused_nm_attention")
    sparse = _counting(monkeypatch, dsa_mod, "fused_dsa_attention")
    t = time_attention(
        1024,
        patterns=("2:4", "1:2", "dsa@0.1"),
        heads=8,
        head_dim=head_dim,
        batch=2,
        dtype=torch.float16,
        device="cuda",
        repeats=3,
        warmup=1,
    )
    assert t.names == ("SDPA", "unfused", "2:4", "1:2", "dsa@0.1")
    assert t.paths[2:] == ("fused kernel", "fused kernel", "fused DSA kernel")
    assert t.dtype == torch.float16 and t.device == torch.cuda.get_device_name()
    assert all(ms > 0 and math.isfinite(ms) for ms in t.median_ms), t.rows()
    assert all(r > 0 and math.isfinite(r) for r in t.vs_sdpa + t.vs_unfused), t.rows()
    # warm-up and timed calls of both N:M entries, and of the DSA entry
    assert fused[0] >= 2 * (1 + 3)
    assert sparse[0] >= 1 + 3


def test_default_dtype_on_cuda_is_float16():
    t = time_attention(128, heads=2, patterns=("2:4",), device="cuda", repeats=1, warmup=0)
    assert t.dtype == torch.float16 and t.paths[-1] == "fused kernel"
