"""The report's snn section: the trained default network's profile and cost breakdown."""

from __future__ import annotations

import pytest

pytest.importorskip("plotly")

from toolkit.report import ReportContext, Table, all_sections
from toolkit.snn import DEFAULT_ACCURACY


def test_section_registered_and_shaped():
    section = all_sections(["snn"])[0]
    assert section.order == 40
    intro, profile_table, heat, cost_table, energy = section.build(ReportContext(quick=True))
    assert "test accuracy" in intro
    accuracy = float(intro.split("<b>")[1].split("</b>")[0])
    assert accuracy >= DEFAULT_ACCURACY["quick"]
    assert isinstance(profile_table, Table) and [r["layer"] for r in profile_table.rows] == [
        "fc1",
        "fc2",
    ]
    assert 0 < profile_table.rows[0]["spike density"] < 1
    assert len(cost_table.rows) == 6
    g1 = next(r for r in cost_table.rows if r["LUT group g"] == 1)
    assert g1["speed-up (pipelined)"] >= g1["speed-up (serial)"]
    assert {t.name for t in energy.data} == {"dense baseline", "H2Learn-style"}
    assert len(heat.data) == 3
