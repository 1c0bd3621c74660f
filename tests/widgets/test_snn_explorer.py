"""SNNExplorer driven headless: set controls, train, read the figures back."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("plotly")
pytest.importorskip("ipywidgets")

from toolkit.snn import h2learn_cost, lif_multistep, lut_counts
from toolkit.widgets import SNNExplorer
from toolkit.widgets.snn import neuron_demo


@pytest.fixture(scope="module")
def explorer():
    return SNNExplorer(epochs=1, hidden=32, steps=4)


def _trace(fig, name):
    return next(t for t in fig.data if t.name == name)


def test_neuron_panel_follows_controls(explorer):
    explorer.controls["current"].value = 2.0
    explorer.controls["tau"].value = 4.0
    demo = neuron_demo(4.0, explorer.controls["surrogate"].value, "hard", 2.0)
    np.testing.assert_array_equal(
        _trace(explorer.figures["neuron"], "neuron 1").y, demo["membrane"][:, 5]
    )
    raster = _trace(explorer.figures["neuron"], "spikes")
    assert len(raster.x) == int(demo["spikes"].sum()) > 0
    n_before = len(raster.x)
    explorer.controls["current"].value = 0.3  # weaker drive: fewer spikes
    assert len(_trace(explorer.figures["neuron"], "spikes").x) < n_before


def test_neuron_demo_membrane_is_lif():
    import torch

    d = neuron_demo(3.0, "triangle", "soft", 1.0, steps=12, neurons=4, seed=2)
    g = torch.Generator().manual_seed(2)
    base = torch.linspace(0.6, 1.4, 4, dtype=torch.float64)
    x = base + 0.3 * torch.randn(12, 4, generator=g, dtype=torch.float64)
    s, v = lif_multistep(x, 3.0, v_reset=None, surrogate="triangle", return_membrane=True)
    np.testing.assert_array_equal(d["spikes"], s.numpy())
    np.testing.assert_allclose(d["membrane"], v.numpy())


def test_lut_curves_follow_group(explorer):
    explorer.controls["group"].value = 6
    fig = explorer.figures["lut"]
    x = _trace(fig, "LUT").x
    expected = [lut_counts(512, 128, 6, float(d), 1024).lut_adds for d in x]
    np.testing.assert_allclose(_trace(fig, "LUT").y, expected)
    np.testing.assert_allclose(_trace(fig, "dense").y, 512 * 128 * 1024)


def test_train_fills_curves_heatmaps_and_cost(explorer):
    explorer.controls["surrogate"].value = "rectangular"
    explorer.train()
    tr = explorer.figures["training"]
    assert len(_trace(tr, "loss").y) == 1 and 0 <= _trace(tr, "test accuracy").y[0] <= 1
    heat = _trace(explorer.figures["sparsity"], "spike density")
    assert np.asarray(heat.z).shape == (2, 4) and list(heat.y) == ["fc1", "fc2"]
    np.testing.assert_allclose(np.asarray(heat.z)[0], explorer.profile.spike_density[0])
    zeros = np.asarray(_trace(explorer.figures["sparsity"], "dL/dX zeros").z)
    assert zeros[0].max() > 0  # the rectangular surrogate gives exact zeros
    explorer.controls["pipelined"].value = False
    cost = h2learn_cost(explorer.profile, group=explorer.controls["group"].value, pipelined=False)
    accel = _trace(explorer.figures["cost"], "H2Learn-style time").y
    np.testing.assert_allclose(accel[:3], 1e6 * cost.accel_time.sum(0))
    assert f"{cost.speedup:.2f}" in explorer.figures["cost"].layout.title.text


def test_pipelined_moves_the_whole_step_bar_after_training(explorer):
    """Browser regression: ``pipelined`` once changed only the title.  The whole-step bars'
    ratio is the cost model's speed-up, serial or pipelined."""
    if explorer.profile is None:
        explorer.train()
    fig = explorer.figures["cost"]
    assert "pipelined" not in explorer.live_controls
    for pipelined in (False, True):
        explorer.controls["pipelined"].value = pipelined
        cost = h2learn_cost(
            explorer.profile, group=explorer.controls["group"].value, pipelined=pipelined
        )
        base = np.asarray(_trace(fig, "baseline time").y)
        accel = np.asarray(_trace(fig, "H2Learn-style time").y)
        phases = 1e6 * cost.accel_time.sum(0)
        assert list(_trace(fig, "baseline time").x)[-1] == "whole step"
        assert accel[-1] == pytest.approx(phases.max() if pipelined else phases.sum())
        assert base[-1] / accel[-1] == pytest.approx(cost.speedup)
