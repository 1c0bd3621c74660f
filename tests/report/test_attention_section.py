"""The report's attention section: equal-density table by layer and the trade-off figure."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("plotly")

import toolkit.models
from toolkit.attention.report import EQUAL_DENSITY_PATTERNS, layer_metrics
from toolkit.models.text import TextModel
from toolkit.report import ReportContext, Table, all_sections


def _build(quick=True):
    return all_sections(["attention"])[0].build(ReportContext(quick=quick))


def test_section_is_registered_and_shaped():
    section = all_sections(["attention"])[0]
    assert section.title == "Attention sparsity" and section.order == 20
    intro, table, by_layer, tradeoff = _build()
    assert isinstance(intro, str) and "Model: <b>" in intro
    assert isinstance(table, Table)
    layers = {row["layer"] for row in table.rows}
    assert len(table.rows) == len(layers) * len(EQUAL_DENSITY_PATTERNS)
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
    assert {t.name for t in by_layer.data} == set(EQUAL_DENSITY_PATTERNS)
    names = {t.name for t in tradeoff.data}
    assert {"N:M (DFSS)", "top-k oracle", "DSA (rank 16, 4 bits)", "local window"} <= names


def test_layer_metrics_match_the_table_on_the_tiny_model(monkeypatch):
    def missing():
        raise ImportError("hidden by the test")

    monkeypatch.setattr(toolkit.models, "load_minilm", missing)
    intro, table, *_ = _build()
    assert "TinyTransformer" in intro and "MiniLM unavailable" in intro
    assert {row["layer"] for row in table.rows} == set(range(4))
    trace = TextModel("tiny").trace("the cat sat on the mat")
    m = layer_metrics(trace)
    assert set(m) == set(EQUAL_DENSITY_PATTERNS)
    np.testing.assert_allclose(m["top-k oracle"][:, 4], 1.0)
