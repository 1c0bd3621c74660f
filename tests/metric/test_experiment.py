"""The zero-shot digits experiment: bookkeeping (fast) and the paper's effect (slow)."""

from __future__ import annotations

import numpy as np
import pytest

from toolkit.metric import compare_on_digits, train_on_digits


def test_summary_is_mean_and_std_over_seeds():
    c = compare_on_digits(seeds=[0, 1], steps=3, progress=False)
    s = c.summary()
    for method in ("baseline", "hdml"):
        vals = np.array([r.metrics["Recall@1"] for r in c.runs[method]])
        assert s[method]["Recall@1"] == pytest.approx((vals.mean(), vals.std(ddof=1)))
        assert [r.seed for r in c.runs[method]] == [0, 1]
    assert c.rows()[0][0] == "Recall@1" and "±" in c.rows()[0][1]


def test_same_budget_and_zero_shot_split():
    base = train_on_digits("baseline", seed=0, steps=4)
    hdml = train_on_digits("hdml", seed=0, steps=4)
    assert len(base.history) == len(hdml.history) == 4
    assert set(base.labels.tolist()) == {5, 6, 7, 8, 9}  # evaluated on unseen classes only
    assert "j_syn" in hdml.history[-1] and "j_syn" not in base.history[-1]
    # the first step sees the same batch, the same tuples and the same initial model
    assert base.history[0]["j_m"] == pytest.approx(hdml.history[0]["j_m"])


def test_errors():
    with pytest.raises(ValueError, match="method must be one of"):
        train_on_digits("mining", steps=1)
    with pytest.raises(ValueError, match="seeds must not be empty"):
        compare_on_digits(seeds=[], steps=1, progress=False)


@pytest.mark.slow
def test_hdml_beats_its_base_loss_on_unseen_digits():
    """The paper's claim on an embedded data set: with the same budget, HDML's Recall@1 on the
    unseen classes is higher than the triplet loss's alone (measured: 5 seeds x 600 steps,
    68.1 ± 6.4 vs 57.2 ± 4.0 %)."""
    c = compare_on_digits(seeds=[0, 1, 2], steps=600, progress=False)
    s = c.summary()
    assert s["hdml"]["Recall@1"][0] > s["baseline"]["Recall@1"][0] + 0.03
