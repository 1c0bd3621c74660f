"""The report's attention section: equal-density table by layer and the trade-off figure."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("plotly")

import toolkit.models.text
from toolkit.attention import NM, PATTERN_STYLES, nm_mask
from toolkit.attention.report import EQUAL_DENSITY_PATTERNS, REPORT_TEXTS, layer_metrics
from toolkit.models.text import TextModel
from toolkit.report import ReportContext, Table, all_sections

NAMES = [p.name for p in EQUAL_DENSITY_PATTERNS]
COLUMNS = ("density", "retained mass", "KL(sparse‖full)", "output error", "top-k recall")


def _build(quick=True):
    return all_sections(["attention"])[0].build(ReportContext(quick=quick))


def test_section_is_registered_and_shaped():
    section = all_sections(["attention"])[0]
    assert section.title == "Attention sparsity" and section.order == 20
    intro, table, by_layer, tradeoff = _build()
    assert isinstance(intro, str) and "Model: <b>" in intro
    assert isinstance(table, Table)
    layers = {row["layer"] for row in table.rows}
    assert len(table.rows) == len(layers) * len(NAMES)
    for row in table.rows:
        assert 0 < row["retained mass"] <= 1 + 1e-12 and row["output error"] >= 0
        assert row["density"] == pytest.approx(0.5, abs=0.05)
    # Per layer: the oracle keeps the k most probable entries of each row, so no pattern with
    # the same k per row (1:2, DSA) retains more; its recall is 1 by definition.
    for layer in layers:
        by = {r["pattern"]: r for r in table.rows if r["layer"] == layer}
        oracle = by["top-k oracle"]
        assert oracle["top-k recall"] == pytest.approx(1.0)
        for label in ("1:2 (DFSS)", "DSA (rank 16, 4 bits)"):
            assert by[label]["retained mass"] <= oracle["retained mass"] + 1e-12
    assert {t.name for t in by_layer.data} == set(NAMES)
    names = {t.name for t in tradeoff.data}
    assert {"N:M (DFSS)", "top-k oracle", "DSA (rank 16, 4 bits)", "local window"} <= names
    # One style table for the report and the explorer: every curve has its kind's colour.
    for pattern in EQUAL_DENSITY_PATTERNS:
        curve = next(t for t in by_layer.data if t.name == pattern.name)
        assert curve.line.color == PATTERN_STYLES[pattern.kind].color
    kinds = {style.name: kind for kind, style in PATTERN_STYLES.items()}
    kinds["DSA (rank 16, 4 bits)"] = "dsa"
    for curve in tradeoff.data:
        assert curve.line.color == PATTERN_STYLES[kinds[curve.name]].color


def test_layer_metrics_match_the_table_on_the_tiny_model(monkeypatch):
    def missing():
        raise ImportError("hidden by the test")

    monkeypatch.setattr(toolkit.models.text, "load_minilm", missing)
    intro, table, *_ = _build()
    assert "TinyTransformer" in intro and "MiniLM unavailable: hidden by the test" in intro
    assert {row["layer"] for row in table.rows} == set(range(4))
    # The quick table averages layer_metrics over the first two sentences: recompute it.
    tm = TextModel("tiny", device="cpu")
    traces = [tm.trace(text) for text in REPORT_TEXTS[:2]]
    per_text = [layer_metrics(trace) for trace in traces]
    assert all(list(m) == NAMES for m in per_text)
    mean = {name: np.mean([m[name] for m in per_text], axis=0) for name in NAMES}
    assert len(table.rows) == 4 * len(NAMES)
    for row in table.rows:
        got = [row[c] for c in COLUMNS]
        np.testing.assert_allclose(got, mean[row["pattern"]][row["layer"]], rtol=1e-12)
    # Independently of attention_metrics: 2:4's retained mass is the mass that the model's own
    # (float32) probabilities put on nm_mask of its own scores, averaged over heads and rows.
    for layer in range(4):
        masses = [
            float((tr.probs[layer] * nm_mask(tr.scores[layer], 2, 4)).sum(-1).mean())
            for tr in traces
        ]
        row = next(r for r in table.rows if r["layer"] == layer and r["pattern"] == "2:4 (DFSS)")
        assert row["retained mass"] == pytest.approx(np.mean(masses), rel=1e-5)
        oracle = next(
            r for r in table.rows if r["layer"] == layer and r["pattern"] == "top-k oracle"
        )
        assert oracle["top-k recall"] == pytest.approx(1.0)


def test_layer_metrics_accepts_the_earlier_label_mapping():
    trace = TextModel("tiny", device="cpu").trace("the cat sat on the mat")
    old = layer_metrics(trace, {"half": ("2:4", None), "dsa": ("dsa", 0.5)})
    new = layer_metrics(trace, [NM(2, 4), "dsa@0.5"])
    np.testing.assert_array_equal(old["half"], new["2:4 (DFSS)"])
    np.testing.assert_array_equal(old["dsa"], new["DSA (rank 16, 4 bits)"])
    with pytest.raises(ValueError, match="distinct names"):
        layer_metrics(trace, ["topk@0.5", "topk@0.25"])
