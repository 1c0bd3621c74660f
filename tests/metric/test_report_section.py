"""The report's metric section on a tiny budget: its table and figure."""

from __future__ import annotations

import pytest

pytest.importorskip("plotly")

from toolkit.metric import report
from toolkit.report import ReportContext, Table, all_sections


def test_section_is_registered_from_the_card():
    assert "metric" in [s.key for s in all_sections()]


def test_section_blocks(monkeypatch):
    monkeypatch.setattr(report, "_sizes", lambda quick: dict(seeds=2, steps=3))
    intro, table, fig = report.metric_section(ReportContext(quick=True))
    assert "ẑ⁻" in intro and "α = 0.1" in intro
    assert isinstance(table, Table) and table.rows[0]["metric"] == "Recall@1"
    assert len(table.rows) == 6 and all("±" in r["triplet loss + HDML"] for r in table.rows)
    assert fig.data[0].name == "baseline J_m" and len(fig.data[0].y) == 3
