"""IsometryExplorer driven headless: set controls, read the figures back.

Every test gets its own explorer (small, so building one costs a fraction of a second), so
no test sees the controls another one moved.
"""

from __future__ import annotations

import numpy as np
import pytest

# Dependencies of the package; absent only on GPU machines that run `scripts/gpu-tests`.
pytest.importorskip("plotly")
pytest.importorskip("ipywidgets")

from toolkit.widgets import IsometryExplorer


@pytest.fixture
def explorer() -> IsometryExplorer:
    return IsometryExplorer(depth=5, width=64, samples=2)


def _trace(fig, name):
    return next(t for t in fig.data if t.name == name)


def test_kaiming_relu_keeps_phi_at_one(explorer):
    explorer.controls["activation"].value = "relu"
    explorer.controls["gain"].value = 2**0.5
    explorer.controls["depth"].value = 5
    fig = explorer.figures["depth"]
    np.testing.assert_allclose(_trace(fig, "end-to-end φ (analytic)").y, 1.0, rtol=1e-9)
    # ReLU with Kaiming-Gaussian weights: each block adds 2 to the end-to-end variance.
    np.testing.assert_allclose(
        _trace(fig, "end-to-end variance (analytic)").y, 2.0 * np.arange(1, 6), rtol=1e-9
    )


def test_gain_and_depth_controls_redraw(explorer):
    explorer.controls["activation"].value = "relu"
    explorer.controls["gain"].value = 1.0
    explorer.controls["depth"].value = 7
    y = _trace(explorer.figures["depth"], "end-to-end φ (analytic)").y
    np.testing.assert_allclose(y, 0.5 ** np.arange(1, 8), rtol=1e-9)  # (g²/2)^ℓ with g = 1
    assert r"\frac{g^{2}}{2}" in explorer.formula.value


def test_orthogonal_linear_is_isometric(explorer):
    explorer.controls["activation"].value = "linear"
    explorer.controls["init"].value = "orthogonal"
    explorer.controls["gain"].value = 1.0
    fig = explorer.figures["depth"]
    np.testing.assert_allclose(_trace(fig, "end-to-end variance (analytic)").y, 0.0, atol=1e-12)


def test_spectrum_curve_is_a_density(explorer):
    # One square Gaussian layer without activation: Marchenko-Pastur, no atom at 0.
    explorer.controls["activation"].value = "linear"
    explorer.controls["gain"].value = 1.0
    explorer.controls["depth"].value = 1
    curve = _trace(explorer.figures["spectrum"], "free probability")
    u, y = np.asarray(curve.x), np.asarray(curve.y)  # density of log10 λ
    assert np.all(y >= 0) and abs(np.trapezoid(y, u) - 1) < 0.05
    x = 10.0**u
    rho = y / (x * np.log(10.0))
    mp = np.sqrt(np.clip(x * (4 - x), 0, None)) / (2 * np.pi * x)  # g = 1, ratio 1
    inside = (x > 0.2) & (x < 3.8)
    np.testing.assert_allclose(rho[inside], mp[inside], rtol=0.02)


def test_run_overlays_samples_that_match(explorer):
    explorer.controls["activation"].value = "relu"
    explorer.controls["gain"].value = 2**0.5
    explorer.controls["depth"].value = 3
    explorer.run()
    fig = explorer.figures["depth"]
    sampled = _trace(fig, "block φ (sampled)")
    assert len(sampled.y) == 3 and len(sampled.error_y.array) == 3
    np.testing.assert_allclose(sampled.y, 1.0, atol=0.25)
    assert explorer.progress.value == explorer.progress.max
    bars = _trace(explorer.figures["spectrum"], "sampled eigenvalues")
    assert len(bars.y) > 0
    # A design change clears the stale samples.
    explorer.controls["depth"].value = 4
    assert len(_trace(fig, "block φ (sampled)").y) == 0


def test_width_is_a_monte_carlo_control_that_still_clears_stale_samples(explorer):
    """The analytic curves are the infinite-width limit (the same at every width), so width is
    not a live control; moving it must still clear an overlay sampled at the old width."""
    from toolkit.isometry import NetworkDesign, profile
    from toolkit.isometry.measure.designs import design_block

    assert "width" not in explorer.live_controls
    for w in (16, 512):  # independent of the explorer: the analytic chain at two widths
        d = NetworkDesign(architecture="mlp", width=w, depth=3, gain=2**0.5)
        np.testing.assert_allclose(profile(design_block(d)).cumulative_variance, [2, 4, 6])
    explorer.controls["depth"].value = 2
    explorer.run()
    fig, spectrum = explorer.figures["depth"], explorer.figures["spectrum"]
    analytic = np.asarray(_trace(fig, "end-to-end φ (analytic)").y).copy()
    assert len(_trace(fig, "block φ (sampled)").y) == 2
    explorer.controls["width"].value = 32
    assert len(_trace(fig, "block φ (sampled)").y) == 0
    assert len(_trace(spectrum, "sampled eigenvalues").y) == 0
    assert explorer.sampled == {}
    np.testing.assert_array_equal(_trace(fig, "end-to-end φ (analytic)").y, analytic)


def test_fixture_gives_each_test_a_fresh_explorer(explorer):
    # The default design, whatever earlier tests did to their own explorers.
    assert explorer.design().depth == 5 and explorer.design().activation == "relu"
    assert explorer.controls["gain"].value == pytest.approx(2**0.5)
    assert explorer.sampled == {}


def test_constructor_rejects_bad_design():
    with pytest.raises(ValueError, match="gain must be > 0"):
        IsometryExplorer(gain=-1.0)
    with pytest.raises(TypeError, match="unexpected keyword"):
        IsometryExplorer(depht=3)
    with pytest.raises(ValueError, match="samples"):
        IsometryExplorer(samples=0)
    with pytest.raises(TypeError, match="seed"):
        IsometryExplorer(seed=1.5)


@pytest.mark.parametrize(
    "fields, name",
    [
        ({"depth": 100}, "depth"),  # an IntSlider would clamp it to 64
        ({"gain": 5.0}, "gain"),  # a FloatSlider would clamp it to 3
        ({"residual_scale": 2.5}, "residual_scale"),
        ({"width": 100}, "width"),  # a Dropdown would raise a TraitError
    ],
)
def test_constructor_refuses_values_its_controls_cannot_show(fields, name):
    with pytest.raises(ValueError, match=name):
        IsometryExplorer(**fields)


def test_constructor_refuses_a_design_of_the_wrong_type():
    with pytest.raises(TypeError, match="design must be a NetworkDesign"):
        IsometryExplorer({"width": 64})


def test_flat_phi_gets_a_linear_axis_and_a_decay_a_log_axis(explorer):
    c, fig = explorer.controls, explorer.figures["depth"]
    c["activation"].value, c["gain"].value, c["depth"].value = "relu", 2**0.5, 8
    assert fig.layout.yaxis.type == "linear"  # φ = 1 at every depth
    lo, hi = fig.layout.yaxis.range
    assert lo < 1.0 < hi and hi - lo < 1.0
    c["gain"].value = 1.0  # φ = 2^-ℓ: spans a factor of 256
    assert fig.layout.yaxis.type == "log"


def test_a_long_closed_form_is_shown_in_the_depth_with_the_gain_put_in():
    import sympy as sp

    from toolkit.isometry import design_formula
    from toolkit.widgets.isometry import formula_html, short_moments

    ex = IsometryExplorer(
        architecture="residual", init="orthogonal", activation="leaky_relu", slope=0.3, depth=6
    )
    design = ex.design()
    formula = design_formula(design)
    assert len(formula.latex()) > 240  # the case that squeezed the controls column
    shown = formula_html(formula, design.gain)
    assert shown in ex.formula.value and "with the gain g" in shown
    lines = [part.split("$$")[0] for part in shown.split("$$")[1::2]]
    assert all(len(line) < 200 for line in lines)
    # The short form is the same function of L: it matches the analytic profile at depth 6.
    var = sp.sympify(formula.moments.variance).subs(formula.symbols["g"], design.gain)
    L = formula.symbols["L"]
    y = _trace(ex.figures["depth"], "end-to-end variance (analytic)").y
    for depth in (1, 6):
        np.testing.assert_allclose(float(var.subs(L, depth)), y[depth - 1], rtol=1e-6)
    _m1, short = short_moments(formula, design.gain)
    assert sp.latex(short) in shown
    np.testing.assert_allclose(float(short.subs(L, 6)), y[5], rtol=2e-3)  # 4 digits shown


def test_depth_and_gain_moves_do_not_derive_the_closed_form_again(monkeypatch):
    import toolkit.widgets.isometry as iso

    ex = IsometryExplorer(depth=5, width=64, activation="relu")
    calls = []
    real = iso.design_formula
    monkeypatch.setattr(iso, "design_formula", lambda d: calls.append(d) or real(d))
    shown = ex.formula.value
    for depth in (6, 7, 5):
        ex.controls["depth"].value = depth
    ex.controls["gain"].value = 1.3  # ReLU's formula is symbolic in g: the same formula
    ex.wait()
    assert calls == []
    assert ex.formula.value == shown


def test_a_new_designs_closed_form_arrives_from_the_background(monkeypatch):
    import threading

    import toolkit.widgets.isometry as iso

    ex = IsometryExplorer(depth=5, width=64, activation="relu")
    release = threading.Event()
    real = iso.design_formula

    def slow(design):
        release.wait(30)
        return real(design)

    monkeypatch.setattr(iso, "design_formula", slow)
    monkeypatch.setattr(iso, "_FORMULAS", {})
    ex.controls["init"].value = "orthogonal"
    # The plots already show the new design while its closed form is being derived.
    y = _trace(ex.figures["depth"], "end-to-end φ (analytic)").y
    assert "deriving the closed form" in ex.formula.value
    release.set()
    ex.wait(60)
    assert ex.formula.value == iso.formula_panel(iso._formula_key(ex.design()))
    from toolkit.isometry import design_block, profile

    np.testing.assert_allclose(y, profile(design_block(ex.design())).cumulative_m1, rtol=1e-12)
