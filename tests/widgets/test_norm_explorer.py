"""NormSamplingExplorer driven headless: set controls, compare figures with toolkit.norm."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

pytest.importorskip("plotly")
pytest.importorskip("ipywidgets")

from toolkit.norm.analysis import accuracy_table, correlation_profile, sampling_error
from toolkit.widgets import NormSamplingExplorer
from toolkit.widgets.norm import RATIO_GRID, accuracy_html


def _acts():
    g = torch.Generator().manual_seed(0)
    shared = torch.randn(96, 3, 1, 1, generator=g) * math.sqrt(0.6)
    return shared + torch.randn(96, 3, 4, 4, generator=g) * math.sqrt(0.4)


@pytest.fixture(scope="module")
def explorer():
    return NormSamplingExplorer(_acts(), batch_size=64, trials=6, method="FS", ratio=0.25)


def _by_name(fig, name):
    return next(t for t in fig.data if t.name == name)


def test_marker_follows_the_controls(explorer):
    acts = explorer.acts
    for method, ratio, batch in (("BS", 0.25, 64), ("FS", 0.5, 32), ("random", 0.1, 48)):
        explorer.controls["method"].value = method
        explorer.controls["ratio"].value = ratio
        explorer.controls["batch_size"].value = batch
        assert "Error" not in explorer.status.value, explorer.status.value
        expected = sampling_error(acts, method, ratio, batch, trials=6, seed=0)
        fig = explorer.figures["error"]
        cur, cur_var = _by_name(fig, "current"), _by_name(fig, "current (var)")
        assert cur.x[0] == expected["count"]
        assert cur.y[0] == pytest.approx(expected["mean_error"])
        assert cur_var.y[0] == pytest.approx(expected["var_error"])
        bs = _by_name(fig, "BS")
        assert len(bs.x) == len(RATIO_GRID)
        grid_point = sampling_error(acts, "BS", RATIO_GRID[-1], batch, trials=6, seed=0)
        assert bs.y[-1] == pytest.approx(grid_point["mean_error"])


def test_correlated_maps_show_bs_worse_than_fs(explorer):
    explorer.controls["batch_size"].value = 96
    fig = explorer.figures["error"]
    bs, fs = np.asarray(_by_name(fig, "BS").y), np.asarray(_by_name(fig, "FS").y)
    assert (bs > fs).all()
    corr = explorer.figures["correlation"]
    within = _by_name(corr, "within a map (all pairs)").y[0]
    assert within == pytest.approx(float(correlation_profile(explorer.acts)["rho_map"].mean()))
    assert within > 0.4


def test_bad_ratio_reports_in_status():
    ex = NormSamplingExplorer(_acts(), batch_size=8, trials=2, method="BS", ratio=0.05)
    assert "too small for sample_ratio" in ex.status.value


def test_accuracy_table(explorer):
    table = explorer.run_accuracy(
        kinds=("bn", "fs"), seeds=(0,), epochs=1, limit=64, progress=False
    )
    assert set(table) == {"bn", "fs"}
    # one run per variant and seed (for the progress bar) gives accuracy_table's numbers
    direct = accuracy_table(("bn", "fs"), (0,), epochs=1, limit=64, progress=False)
    for kind in ("bn", "fs"):
        np.testing.assert_array_equal(table[kind], direct[kind])
    assert explorer.progress.value == explorer.progress.max == 2
    assert explorer.table.value == accuracy_html(table)
    assert "feature sampling (FS)" in explorer.table.value


def test_every_ratio_step_moves_the_plot_even_when_fs_snaps(explorer):
    """FS realizes whole patches only: a one-step ratio change often keeps the same sample, so
    the 'requested' tick, not the star, is what the slider visibly moves (browser regression)."""
    explorer.controls["method"].value = "FS"
    explorer.controls["batch_size"].value = 64
    fig = explorer.figures["error"]
    hw = explorer.acts.shape[2] * explorer.acts.shape[3]
    explorer.controls["ratio"].value = 0.25
    star_before = _by_name(fig, "current").x[0]
    explorer.controls["ratio"].value = 0.26
    assert _by_name(fig, "current").x[0] == star_before  # the same patch: FS snapped
    asked = sampling_error(explorer.acts, "FS", 0.26, 64, trials=6, seed=0)
    assert asked["count"] == star_before
    req = _by_name(fig, "requested")
    assert req.x[0] == pytest.approx(0.26 * 64 * hw)
    assert req.y[0] == pytest.approx(asked["mean_error"])
    assert _by_name(fig, "requested (var)").y[0] == pytest.approx(asked["var_error"])


def test_curves_are_computed_once_per_batch_size(monkeypatch):
    import toolkit.widgets.norm as norm_widget

    ex = NormSamplingExplorer(_acts(), batch_size=64, trials=2)
    calls = []
    real = norm_widget.sampling_error
    monkeypatch.setattr(
        norm_widget, "sampling_error", lambda *a, **k: calls.append(a[3]) or real(*a, **k)
    )
    curves = len(RATIO_GRID) * len(norm_widget.ESTIMATORS)
    ex.controls["batch_size"].value = 65  # new: its curves and the current point
    assert calls.count(65) == curves + 1
    ex.controls["batch_size"].value = 64  # seen: the current point only
    ex.controls["ratio"].value = 0.5  # the current point only
    ex.controls["method"].value = "BS"
    assert calls.count(64) == 3
    # the curves shown are those of the batch size shown
    y = _by_name(ex.figures["error"], "BS").y
    want = [real(ex.acts, "BS", r, 64, 2, 0)["mean_error"] for r in RATIO_GRID]
    np.testing.assert_allclose(y, want, rtol=1e-12)
