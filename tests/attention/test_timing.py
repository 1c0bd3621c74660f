"""time_attention (issue 14, item 6): its arguments, its result, and its arithmetic.

The ratios are checked with a fake clock and fake methods of known duration, so that the
expected medians and speed-ups are exact; the dense anchors it times are checked against
float64 attention written out here.
"""

from __future__ import annotations

import dataclasses
import itertools
import math

import pytest
import torch

import toolkit.attention as ta
from toolkit.attention import NM, AttentionTiming, time_attention
from toolkit.attention import timing as timing_mod

TINY = dict(heads=2, head_dim=16, repeats=2, warmup=1, device="cpu")


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (dict(seq_len=0), ValueError, "seq_len must satisfy 1 <= seq_len <= 16384"),
        (dict(seq_len=10**6), ValueError, "seq_len=1000000"),
        (dict(seq_len=64.0), TypeError, "seq_len must be an int"),
        (dict(seq_len=True), TypeError, "seq_len must be an int"),
        (dict(seq_len=4096, heads=16), ValueError, r"batch \* heads \* seq_len\*\*2"),
        (dict(seq_len=64, heads=0), ValueError, "heads must satisfy"),
        (dict(seq_len=64, head_dim=1000), ValueError, "head_dim must satisfy"),
        (dict(seq_len=64, batch=-1), ValueError, "batch must satisfy"),
        (dict(seq_len=64, repeats=0), ValueError, "repeats must satisfy"),
        (dict(seq_len=64, warmup=-1), ValueError, "warmup must satisfy"),
        (dict(seq_len=64, dtype=torch.float64), ValueError, "dtype must be one of"),
        (dict(seq_len=64, dtype="float16"), ValueError, "dtype must be one of"),
        (dict(seq_len=64, device="gpu"), ValueError, "device must be"),
        (dict(seq_len=64, patterns="2:4"), TypeError, "patterns must be a sequence"),
        (dict(seq_len=64, patterns=("2:4", NM(2, 4))), ValueError, "patterns must be distinct"),
        (dict(seq_len=64, patterns=("5:4",)), ValueError, "n must satisfy"),
        (dict(seq_len=64, patterns=(3,)), TypeError, "patterns entry must be a Pattern"),
        (dict(seq_len=64, seed=1, generator=torch.Generator()), ValueError, "either seed"),
        (dict(seq_len=64, progress=3), TypeError, "progress must be callable"),
    ],
)
def test_bad_arguments_are_named(kwargs, error, match):
    args = {**dict(device="cpu"), **kwargs}
    with pytest.raises(error, match=match):
        time_attention(**args)


def test_a_tiny_cpu_run_has_the_documented_structure():
    calls = []
    t = time_attention(
        48, patterns=("1:2", "dsa@0.25"), progress=lambda d, n: calls.append((d, n)), **TINY
    )
    assert isinstance(t, AttentionTiming)
    assert t.names == ("SDPA", "unfused", "1:2", "dsa@0.25")
    assert t.paths == ("torch SDPA", "torch bmm-softmax-bmm", "reference", "reference")
    assert (t.seq_len, t.heads, t.head_dim, t.batch, t.repeats) == (48, 2, 16, 1, 2)
    assert t.dtype == torch.float32 and t.device.startswith("CPU")
    assert calls == [(i, 4) for i in range(5)]
    assert all(ms > 0 and math.isfinite(ms) for ms in t.median_ms)
    for i, ms in enumerate(t.median_ms):
        assert t.vs_sdpa[i] == pytest.approx(t.median_ms[0] / ms)
        assert t.vs_unfused[i] == pytest.approx(t.median_ms[1] / ms)
    assert t.vs_sdpa[0] == t.vs_unfused[1] == 1.0
    assert t.ms("1:2") == t.median_ms[2]
    assert [r["name"] for r in t.rows()] == list(t.names)
    with pytest.raises(ValueError, match="name must be one of"):
        t.ms("2:4")
    with pytest.raises(dataclasses.FrozenInstanceError):
        t.seq_len = 3  # type: ignore[misc]


def test_bfloat16_on_the_cpu_and_a_pattern_object():
    t = time_attention(32, patterns=(NM(2, 4),), dtype=torch.bfloat16, **TINY)
    assert t.dtype == torch.bfloat16 and t.names == ("SDPA", "unfused", "2:4")


class _FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_medians_and_speed_ups_with_a_fake_clock(monkeypatch):
    """Each fake method takes a known time; one call in five takes ten times as long (an
    outlier the median ignores and a mean would not)."""
    clock = _FakeClock()
    base_ms = {"SDPA": 2.0, "unfused": 4.0, "2:4": 1.0, "dsa@0.1": 8.0}

    def fake(name):
        count = itertools.count()

        def run(q, k, v):
            slow = next(count) % 5 == 0
            clock.now += base_ms[name] * (10 if slow else 1) / 1e3
            return q

        return run

    monkeypatch.setattr(timing_mod, "_clock", clock)
    monkeypatch.setattr(timing_mod, "_sdpa", fake("SDPA"))
    monkeypatch.setattr(timing_mod, "_unfused", fake("unfused"))
    monkeypatch.setattr(timing_mod, "_pattern_call", lambda p: fake(p.label))
    t = time_attention(16, patterns=("2:4", "dsa@0.1"), heads=1, repeats=5, device="cpu")
    assert t.names == tuple(base_ms)
    assert t.median_ms == pytest.approx(tuple(base_ms.values()), rel=1e-9)
    assert t.vs_sdpa == pytest.approx((1.0, 0.5, 2.0, 0.25), rel=1e-9)
    assert t.vs_unfused == pytest.approx((2.0, 1.0, 4.0, 0.5), rel=1e-9)


def test_a_progress_callback_that_raises_stops_the_timing():
    class Stop(Exception):
        pass

    def progress(done, total):
        if done == 2:
            raise Stop

    with pytest.raises(Stop):
        time_attention(16, progress=progress, **TINY)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_the_dense_anchors_compute_attention(dtype, generator):
    """What is timed is attention: both anchors against float64 softmax(QK^T/sqrt(d)) V."""
    q, k, v = (torch.randn(2, 3, 40, 16, generator=generator) for _ in range(3))
    p = torch.softmax(q.double() @ k.double().transpose(-1, -2) / 4.0, dim=-1)
    expected = p @ v.double()
    tol = 1e-5 if dtype == torch.float32 else 3e-2
    for fn in (timing_mod._sdpa, timing_mod._unfused):
        out = fn(q.to(dtype), k.to(dtype), v.to(dtype))
        assert out.dtype == dtype
        torch.testing.assert_close(out.double(), expected, rtol=tol, atol=tol)


def test_exported():
    assert {"time_attention", "AttentionTiming"} <= set(ta.__all__)
