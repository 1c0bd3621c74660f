"""The fine-tuning demo: the task's labels, the pattern factory, and a short run."""

from __future__ import annotations

import pytest
import torch

from toolkit.attention import NM, dsa_attention, nm_attention, parse_pattern
from toolkit.attention.finetune import counting_task, finetune_demo, pattern_attention


def test_counting_task_labels():
    ids, y = counting_task(256, length=32, seed=1)
    n_a, n_b = (ids[:, 1:] == 1).sum(1), (ids[:, 1:] == 2).sum(1)
    assert (ids[:, 0] == 0).all() and torch.equal((n_a > n_b).long(), y)
    gap = (n_a - n_b).abs()
    assert (gap >= 1).all() and (gap <= 3).all() and 0.3 < y.float().mean() < 0.7
    assert torch.equal(counting_task(8, seed=2)[0], counting_task(8, seed=2)[0])


def test_pattern_attention():
    q, k, v = (torch.randn(2, 8, 4, generator=torch.Generator().manual_seed(i)) for i in range(3))
    assert torch.equal(pattern_attention("1:2")(q, k, v), nm_attention(q, k, v, 1, 2))
    assert torch.equal(pattern_attention(NM(1, 2))(q, k, v), nm_attention(q, k, v, 1, 2))
    out = pattern_attention("dsa@0.5")(q, k, v)
    assert torch.equal(out, dsa_attention(q, k, v, sparsity=0.5))
    for pattern in ("dense", "dsa@0.5", "topk@0.25", "local@0.5", "strided@0.5", "dsa@1"):
        out, p = pattern_attention(pattern)(q, k, v, return_probs=True)
        assert out.shape == (2, 8, 4) and torch.isfinite(p).all()
        keep = parse_pattern(pattern).mask(q, k)
        assert torch.equal(p > 0, keep)  # every kept score is finite, so p > 0 there
    for bad in ("2:x", "topk", "foo@0.5", "dsa@2"):
        with pytest.raises(ValueError):
            pattern_attention(bad)


def test_bad_arguments():
    for lr in (0.0, -1e-3, 2.0, 1.0):
        with pytest.raises(ValueError, match=r"lr must lie in \(0, 1\)"):
            finetune_demo(("dense",), seeds=(0,), epochs=1, quick=True, progress=False, lr=lr)
    for lr in (True, "fast"):
        with pytest.raises(TypeError, match="lr must be a real number"):
            finetune_demo(("dense",), seeds=(0,), epochs=1, quick=True, progress=False, lr=lr)
    with pytest.raises(ValueError, match="epochs must satisfy 0 <= epochs"):
        finetune_demo(("dense",), seeds=(0,), epochs=-1, quick=True, progress=False)
    with pytest.raises(TypeError, match="quick must be a bool"):
        finetune_demo(("dense",), seeds=(0,), quick=1, progress=False)
    with pytest.raises(ValueError, match="needs a density"):
        finetune_demo(("topk",), seeds=(0,), quick=True, progress=False)
    with pytest.raises(ValueError, match="length must satisfy 5 <= length"):
        counting_task(4, length=4)


def test_short_run():
    res = finetune_demo(("dense", "1:2"), seeds=(0,), epochs=1, quick=True, progress=False)
    t = res.table
    assert list(t["pattern"]) == ["dense", "1:2"] and (t["dense_acc"] > 0.9).all()
    assert t["before_acc"][1] <= t["dense_acc"][1]
    assert "before FT" in str(res)


@pytest.mark.slow
def test_quick_demo_fine_tuning_recovers():
    res = finetune_demo(quick=True, progress=False)
    s = res.summary
    assert list(s["pattern"]) == ["dense", "2:4", "1:2"]
    assert (s["after_acc_mean"][1:] >= s["before_acc_mean"][1:] - 0.01).all()
