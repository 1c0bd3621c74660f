"""Metrics against closed forms and small hand-made examples; the trade-off table."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from toolkit.attention import (
    attention_metrics,
    kl_divergence,
    method_mask,
    output_error,
    retained_mass,
    topk_mask,
    topk_recall,
    tradeoff_curves,
)


def _qkv(gen, lead=(2, 3), lq=8, lk=16, d=8):
    return (
        torch.randn(*lead, lq, d, generator=gen),
        torch.randn(*lead, lk, d, generator=gen),
        torch.randn(*lead, lk, d, generator=gen),
    )


def test_dense_pattern_is_exact(generator):
    q, k, v = _qkv(generator)
    mets = attention_metrics(q, k, v, method_mask("dense", q, k))
    assert mets["mass"].shape == (2, 3)
    torch.testing.assert_close(mets["mass"], torch.ones(2, 3, dtype=torch.float64))
    torch.testing.assert_close(mets["kl"], torch.zeros(2, 3, dtype=torch.float64))
    assert (mets["error"] == 0).all() and (mets["recall"] == 1).all()
    assert (mets["density"] == 1).all()


def test_hand_example():
    # One row, scores log([0.5, 0.3, 0.2]) (scale 1, q = 1, k = scores): keep {0, 2}.
    p = torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64)
    q, k = torch.ones(1, 1, dtype=torch.float64), torch.log(p)[:, None]
    v = torch.tensor([[1.0], [0.0], [0.0]], dtype=torch.float64)
    keep = torch.tensor([[True, False, True]])
    mets = attention_metrics(q, k, v, keep, scale=1.0)
    assert mets["mass"].item() == pytest.approx(0.7)
    assert mets["kl"].item() == pytest.approx(-math.log(0.7))
    # O_full = 0.5, O_sparse = 0.5 / 0.7.
    assert mets["error"].item() == pytest.approx((0.5 / 0.7 - 0.5) / 0.5)
    assert mets["recall"].item() == pytest.approx(0.5)  # top-2 is {0, 1}
    assert mets["density"].item() == pytest.approx(2 / 3)


def test_kl_is_minus_log_mass_and_reverse_is_infinite(generator):
    q, k, v = _qkv(generator)
    keep = method_mask("2:4", q, k)
    mets = attention_metrics(q, k, v, keep)
    s = q @ k.mT / math.sqrt(8)
    p_full = torch.softmax(s.double(), -1)
    mass = retained_mass(p_full, keep)
    p_sparse = torch.where(keep, p_full, 0.0) / mass[..., None]
    torch.testing.assert_close(kl_divergence(p_sparse, p_full), -torch.log(mass))
    torch.testing.assert_close(mets["kl"], (-torch.log(mass)).mean(-1))
    assert torch.isinf(kl_divergence(p_full, p_sparse)).all()


def test_topk_maximises_mass_and_has_recall_one(generator):
    q, k, v = _qkv(generator)
    scores = q @ k.mT / math.sqrt(8)
    oracle = attention_metrics(q, k, v, topk_mask(scores, k=8))
    assert torch.allclose(oracle["recall"], torch.ones(2, 3, dtype=torch.float64))
    for method in ("2:4", "1:2"):
        other = attention_metrics(q, k, v, method_mask(method, q, k))
        assert (oracle["mass"] >= other["mass"] - 1e-12).all()


def test_output_error_and_recall_edge_cases():
    assert output_error(torch.zeros(2, 2), torch.zeros(2, 2)).item() == 0
    assert output_error(torch.ones(2, 2), torch.zeros(2, 2)).item() == math.inf
    assert topk_recall(torch.zeros(3, dtype=torch.bool), torch.randn(3)).item() == 1.0


def test_query_mask_excludes_rows(generator):
    q, k, v = _qkv(generator, lead=(1,))
    keep = method_mask("1:2", q, k)
    rows = torch.zeros(1, 8, dtype=torch.bool)
    rows[:, :4] = True
    a = attention_metrics(q, k, v, keep, query_mask=rows)
    b = attention_metrics(q[:, :4], k, v, keep[:, :4])
    for key in a:
        torch.testing.assert_close(a[key], b[key])


def test_tradeoff_table(generator):
    q, k, v = _qkv(generator)
    layers = [(q, k, v), (q * 2, k, v)]
    t = tradeoff_curves(layers, densities=(0.25, 0.5), nm=("1:2", "2:4", "1:4"))
    n_rows = 2 * (3 + 4 * 2)
    assert all(len(col) == n_rows for col in t.values())
    assert set(t["method"]) == {"nm", "topk", "dsa", "local", "strided"}
    assert set(np.unique(t["layer"])) == {0, 1}
    nm24 = (t["pattern"] == "2:4") & (t["layer"] == 0)
    assert t["density"][nm24] == pytest.approx(0.5) and t["nominal_density"][nm24] == 0.5
    top = (t["pattern"] == "topk@0.5") & (t["layer"] == 0)
    assert t["recall"][top] == pytest.approx(1.0)
    same = (t["layer"] == 0) & (t["nominal_density"] == 0.5)
    assert t["mass"][top] >= t["mass"][same].max() - 1e-12
    assert ((t["mass"] > 0) & (t["mass"] <= 1 + 1e-12)).all()


def test_method_mask_errors(generator):
    q, k, _ = _qkv(generator)
    with pytest.raises(ValueError, match="method must be"):
        method_mask("foo", q, k, 0.5)
    with pytest.raises(ValueError, match="needs a density"):
        method_mask("topk", q, k)
    with pytest.raises(ValueError, match="fixes its density"):
        method_mask("2:4", q, k, 0.5)
    with pytest.raises(ValueError, match="n must satisfy"):
        method_mask("5:4", q, k)
    with pytest.raises(ValueError, match="N:M pattern"):
        method_mask("a:b", q, k)
    with pytest.raises(TypeError, match="source must be"):
        tradeoff_curves(q)
