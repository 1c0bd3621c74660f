"""MetricLearningExplorer driven headless: set controls, read the figures back."""

from __future__ import annotations

import math

import numpy as np
import pytest

pytest.importorskip("plotly")
pytest.importorskip("ipywidgets")

from toolkit.metric import compare_on_digits
from toolkit.widgets import MetricLearningExplorer


@pytest.fixture(scope="module")
def explorer():
    comparison = compare_on_digits(seeds=[0], steps=30, progress=False)
    return MetricLearningExplorer(comparison, alpha=0.1)


def _trace(fig, name):
    return next(t for t in fig.data if t.name == name)


def _point(explorer, name):
    t = _trace(explorer.figures["embedding"], name)
    return np.array([t.x[0], t.y[0]])


def test_embedding_scatter_shows_every_test_image(explorer):
    fig = explorer.figures["embedding"]
    digits = [t for t in fig.data if t.name.startswith("digit")]
    assert [t.name for t in digits] == [f"digit {c}" for c in range(5, 10)]
    assert sum(len(t.x) for t in digits) == len(explorer.comparison.runs["hdml"][0].labels)


def test_hardness_slider_moves_synthetic_negative_along_segment(explorer):
    explorer.controls["anchor"].value = 3
    explorer.controls["negative"].value = 40  # a far negative, so d+ < d-
    anchor, negative = _point(explorer, "anchor z"), _point(explorer, "negative z⁻")
    positions = []
    for log_j in (np.log10(0.1 / 20), np.log10(0.1), np.log10(0.1 * 20)):
        explorer.controls["log_j_avg"].value = float(log_j)
        s = _point(explorer, "synthetic ẑ⁻")
        # on the projected segment from the anchor to the negative
        t = np.dot(s - anchor, negative - anchor) / np.dot(negative - anchor, negative - anchor)
        assert np.allclose(anchor + t * (negative - anchor), s, atol=1e-9)
        positions.append(t)
    assert positions[0] < positions[1] < positions[2] <= 1.0
    lam = math.exp(-0.1 / (0.1 * 20))
    assert f"λ = e^(−α/J_avg) = {lam:.3f}" in explorer.readout.value


def test_path_trace_and_method_switch(explorer):
    path = _trace(explorer.figures["embedding"], "path of ẑ⁻ as J_avg varies")
    assert len(path.x) == 60
    before = np.array(_trace(explorer.figures["embedding"], "digit 5").x)
    explorer.controls["method"].value = "baseline"
    after = np.array(_trace(explorer.figures["embedding"], "digit 5").x)
    assert not np.allclose(before, after)
    a, p, n = explorer.tuple_indices()
    labels = explorer.comparison.runs["baseline"][0].labels
    assert labels[a] == labels[p] and labels[a] != labels[n] and a != p
    explorer.controls["method"].value = "hdml"


def test_curves_and_table(explorer):
    curves = explorer.figures["curves"]
    base = _trace(curves, "baseline J_m")
    assert len(base.x) == 30 and np.all(np.asarray(base.y) > 0)
    lam = np.asarray(_trace(curves, "HDML hardness λ").y)
    assert np.all((lam > 0) & (lam <= 1))
    table = explorer.table.value
    for key in ("Recall@1", "Recall@8", "NMI", "MAP@R", "baseline", "HDML"):
        assert key in table


def test_hardness_slider_acts_on_the_tuple_it_opens_on():
    """Browser regression: the tour's explorer opened on a tuple with d⁺ ≥ d⁻, where HDML
    keeps the negative and the J_avg slider changed nothing."""
    comparison = compare_on_digits(seeds=[0], steps=30, progress=False)
    ex = MetricLearningExplorer(comparison)
    a, p, n = ex.tuple_indices()
    emb = comparison.runs["hdml"][0].embeddings
    d_pos, d_neg = float((emb[a] - emb[p]).norm()), float((emb[a] - emb[n]).norm())
    assert d_pos < d_neg
    synth = _trace(ex.figures["embedding"], "synthetic ẑ⁻")
    before = (synth.x[0], synth.y[0])
    ex.controls["log_j_avg"].value = ex.controls["log_j_avg"].value + 0.01
    assert (synth.x[0], synth.y[0]) != before
