"""Explorer.export: HTML and CSV of every figure as it is now; a failure leaves no file."""

from __future__ import annotations

import csv

import numpy as np
import plotly.graph_objects as go
import pytest
import torch

pytest.importorskip("ipywidgets")

from toolkit.widgets import NormSamplingExplorer
from toolkit.widgets._base import figure_rows


@pytest.fixture(scope="module")
def explorer():
    g = torch.Generator().manual_seed(0)
    return NormSamplingExplorer(torch.randn(64, 3, 4, 4, generator=g), batch_size=32, trials=4)


def test_export_writes_html_and_csv_of_the_current_figures(explorer, tmp_path):
    explorer.controls["method"].value = "BS"
    files = explorer.export(tmp_path / "out", images=False)
    names = sorted(p.name for p in files)
    assert names == sorted(f"{n}.{ext}" for n in explorer.figures for ext in ("csv", "html"))
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == names  # no temp folder left
    html = (tmp_path / "out" / "error.html").read_text(encoding="utf-8")
    assert "plotly" in html and '"name":"BS"' in html.replace(" ", "")
    with open(tmp_path / "out" / "error.csv", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    star = [r for r in rows if r["trace"] == "current"]
    assert len(star) == 1
    np.testing.assert_allclose(float(star[0]["y"]), explorer.current["mean_error"])
    bs = [float(r["y"]) for r in rows if r["trace"] == "BS"]
    np.testing.assert_allclose(bs, explorer.curves["BS"]["mean_error"])


def test_a_failure_leaves_no_half_written_file(explorer, tmp_path, monkeypatch):
    calls = []
    real = go.Figure.write_html

    def failing(self, path, *args, **kwargs):
        calls.append(path)
        if len(calls) == 2:  # the first figure is written, the second fails
            raise OSError("disk full")
        return real(self, path, *args, **kwargs)

    monkeypatch.setattr(go.Figure, "write_html", failing)
    with pytest.raises(OSError, match="disk full"):
        explorer.export(tmp_path / "out", images=False)
    assert list((tmp_path / "out").iterdir()) == []
    with pytest.raises(TypeError, match="path must be a str or os.PathLike"):
        explorer.export(3)  # type: ignore[arg-type]


def test_figure_rows_of_a_heatmap_and_of_nan():
    fig = go.Figure()
    fig.add_heatmap(z=[[1.0, np.nan]], x=["a", "b"], y=["r"], name="h")
    rows = figure_rows(fig)
    assert [(r["y"], r["x"], r["row"], r["column"]) for r in rows] == [
        ("r", "a", 0, 0),
        ("r", "b", 0, 1),
    ]
    assert rows[0]["z"] == 1.0 and np.isnan(rows[1]["z"])
