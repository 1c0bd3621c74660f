"""The report's norm section in quick mode."""

from __future__ import annotations

import pytest

pytest.importorskip("plotly")

from toolkit.norm.analysis import NORM_KINDS
from toolkit.report import ReportContext, Table, all_sections


@pytest.mark.slow
def test_section_is_registered_and_shaped():
    section = all_sections(["norm"])[0]
    assert section.order == 60
    intro, fig, errors, acc, micro = section.build(ReportContext(quick=True))
    assert "intra-map correlation" in intro
    assert {t.name for t in fig.data} >= {"BS", "FS", "random"}
    assert isinstance(errors, Table) and isinstance(acc, Table) and isinstance(micro, Table)
    for row in errors.rows:
        assert row["FS mean err"] < row["BS mean err"]  # the correlation effect on real data
    variants = {row["variant"] for row in acc.rows}
    assert variants == {NORM_KINDS[k] for k in ("bn", "bs", "fs", "vdn", "smn")}
    assert all(50 < row["test accuracy %"] <= 100 for row in acc.rows)
    assert {row["variant"] for row in micro.rows} >= {NORM_KINDS["gn"], NORM_KINDS["bn"]}
