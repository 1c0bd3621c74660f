"""IsometryExplorer: block dynamical isometry of a network design, analytic vs sampled.

The model is :mod:`toolkit.isometry` (``design_block``, ``profile``, ``spectral_density``,
``design_formula`` for the analytic side; ``sample_block_moments`` and ``sample_spectrum`` for
Monte Carlo); this module only lays out controls and redraws figures.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import ipywidgets as W
import numpy as np
import plotly.graph_objects as go
import sympy as sp
from plotly.subplots import make_subplots

from .._backend import resolve_device
from .._checks import check_choice, check_int, check_real, check_seed
from ..isometry import (
    NetworkDesign,
    design_block,
    design_formula,
    profile,
    sample_block_moments,
    sample_spectrum,
    spectral_density,
)
from ..isometry._plotting import log_histogram, to_log_axis
from ..isometry.measure.network import ACTIVATIONS, ARCHITECTURES, INITS, NORMALIZATIONS
from ._background import BackgroundTask, LatestOnly
from ._base import Explorer, controls_column, row, text_box

__all__ = ["IsometryExplorer"]

_DESIGN_CONTROLS = (
    "architecture",
    "depth",
    "width",
    "init",
    "gain",
    "activation",
    "slope",
    "normalization",
    "residual_scale",
)
_SPECTRUM_POINTS = 240
_WIDTHS = (16, 32, 64, 128, 256, 512)
_MAX_DEPTH = 64
#: slider ranges of the real-valued design fields (a slider would clamp a value outside)
_RANGES = {"gain": (0.1, 3.0), "slope": (0.0, 1.0), "residual_scale": (0.0, 2.0)}
_SPECTRUM_TITLE = "end-to-end spectral density of JJᵀ"
_BLOCK, _TOTAL = "#1f77b4", "#ff7f0e"


def _within_controls(design: NetworkDesign) -> NetworkDesign:
    """``design`` if every field fits its control, else a ValueError naming the field.

    A slider clamps a value outside its range and a dropdown refuses it with a TraitError;
    both would hide from the user which design is shown.
    """
    check_int("depth", design.depth, 1, _MAX_DEPTH)
    check_choice("width", design.width, _WIDTHS)
    for name, (lo, hi) in _RANGES.items():
        check_real(name, getattr(design, name), lo, hi)
    return design


@functools.lru_cache(maxsize=64)
def _analytic(design: NetworkDesign) -> tuple[Any, tuple[np.ndarray, np.ndarray]]:
    """Profile and spectrum of a design (numeric, a fraction of a second), cached: a slider
    moved back and forth (or a reload's redraw) answers at once."""
    chain = design_block(design)
    return profile(chain), spectral_density(chain, num=_SPECTRUM_POINTS)


def _formula_key(design: NetworkDesign) -> NetworkDesign:
    """The part of a design its shown closed form depends on: all but the depth (the formula
    is in ``L``)."""
    return dataclasses.replace(design, depth=1)


#: closed forms found so far: formula key -> (Formula, its LaTeX); a formula symbolic in the
#: gain is also filed under gain 1, where every other gain of that design finds it
_FORMULAS: dict[NetworkDesign, tuple[Any, str]] = {}
_FORMULAS_MAX = 128


def _known_formula(key: NetworkDesign) -> tuple[Any, str] | None:
    """The closed form of ``key`` if it was derived before (at this or, when it is symbolic
    in ``g``, at any gain), else None."""
    hit = _FORMULAS.get(key)
    if hit is None:
        hit = _FORMULAS.get(dataclasses.replace(key, gain=1.0))
        if hit is not None and "g" not in hit[0].symbols:
            hit = None
    return hit


def _closed_form(key: NetworkDesign) -> tuple[Any, str]:
    """:func:`design_formula` of a :func:`_formula_key` and its LaTeX, remembered (sympy takes
    up to seconds for a piecewise-linear activation, whose formula is symbolic in ``g``)."""
    hit = _known_formula(key)
    if hit is None:
        formula = design_formula(key)
        hit = (formula, formula.latex())
        if len(_FORMULAS) >= _FORMULAS_MAX:
            _FORMULAS.clear()
        _FORMULAS[dataclasses.replace(key, gain=1.0) if "g" in formula.symbols else key] = hit
    return hit


def formula_panel(key: NetworkDesign) -> str:
    """The HTML of the explorer's closed-form panel for a :func:`_formula_key`."""
    formula, latex = _closed_form(key)
    where = (
        "the network, in depth L"
        if formula.scope == "network"
        else "one block (its input's second moment q drifts with depth, so no closed form in L)"
    )
    return (
        f"<p>Free-probability prediction for {where}:</p>"
        f"{formula_html(formula, key.gain, latex=latex)}"
    )


def _quick_panel(key: NetworkDesign, limit: int = 240) -> str | None:
    """:func:`formula_panel` when it needs no sympy work (the formula is known and short),
    else None."""
    hit = _known_formula(key)
    if hit is None or len(hit[1]) > limit:
        return None
    return formula_panel(key)


def value_axis(y: np.ndarray) -> dict[str, Any]:
    """Axis settings for positive values ``y``: log when they span a factor of 10 or more.

    A nearly flat curve (φ = 1 at every depth) on a log axis gets ticks such as
    1.00000000000000666 and looks like a climb; it is drawn on a linear axis around its
    value instead.

    >>> value_axis(np.array([1.0, 1.0 + 1e-15]))["type"], value_axis(np.array([1.0, 50.0]))["type"]
    ('linear', 'log')
    """
    y = np.asarray(y, dtype=float)
    y = y[np.isfinite(y)]
    if y.size and y.min() > 0 and y.max() / y.min() >= 10.0:
        return dict(type="log", tickformat=None, range=None, autorange=True)
    lo, hi = (float(y.min()), float(y.max())) if y.size else (0.0, 1.0)
    pad = max(0.05 * (hi - lo), 0.05 * max(abs(hi), abs(lo)), 1e-3)
    return dict(type="linear", tickformat=".4~g", range=[lo - pad, hi + pad], autorange=False)


def short_moments(formula: Any, gain: float) -> tuple[sp.Expr, sp.Expr]:
    """φ and the variance of ``formula`` with the gain put in: expanded, 4 digits, in ``L``.

    Coefficients below 1e-12 (rounding left-overs of the expansion) are dropped.
    """
    g = formula.symbols.get("g")
    out = []
    for expr in (formula.moments.m1, formula.moments.variance):
        e = sp.sympify(expr)
        if g is not None:
            e = sp.powsimp(sp.expand(e.subs(g, sp.Float(gain))), force=True).evalf(4)
            e = e.xreplace({f: 0 for f in e.atoms(sp.Float) if abs(f) < 1e-12})
        out.append(e)
    return out[0], out[1]


def formula_html(formula: Any, gain: float, limit: int = 240, latex: str | None = None) -> str:
    """The design's closed form as display math short enough to read.

    When the LaTeX in the symbolic gain ``g`` runs past ``limit`` characters, it shows
    :func:`short_moments` instead (a function of the depth ``L`` only), and says so.
    ``latex`` is ``formula.latex()`` when the caller already has it.
    """
    full = formula.latex() if latex is None else latex
    if len(full) <= limit:
        return f"$${full}$$"
    m1, var = short_moments(formula, gain)
    return (
        f"<p>(with the gain g = {gain:.3g} put in; the expression in g is long)</p>"
        f"$$\\phi(J J^T) = {sp.latex(m1)}$$$$\\varphi(J J^T) = {sp.latex(var)}$$"
    )


class IsometryExplorer(Explorer):
    """Explore φ(JJᵀ) and its variance per block across depth, and the spectrum of JJᵀ.

    Analytic curves follow every control at once; the Run button samples real networks of the
    design (``samples`` draws, on the GPU when there is one) and overlays their measurements.

    Parameters
    ----------
    design : NetworkDesign, optional
        The design the controls start from (default: a Kaiming ReLU MLP of width 128 and
        depth 8).  Its fields must fit the controls: ``depth <= 64``, ``width`` in
        16, 32, ..., 512, ``gain`` in [0.1, 3], ``residual_scale`` in [0, 2].
    samples : int
        Networks drawn per Run, in ``[1, 32]`` (the range of its slider).
    seed : int
        Seed of the Monte Carlo runs (the spectrum uses ``seed + 1``).
    **fields
        :class:`~toolkit.isometry.NetworkDesign` fields that replace those of ``design``.

    Raises
    ------
    TypeError, ValueError
        For a bad ``design``, ``samples`` or ``seed``, or a field outside its control's range
        (the message names it).

    Examples
    --------
    >>> ex = IsometryExplorer(depth=6, width=64)           # doctest: +SKIP
    >>> ex.controls["gain"].value = 1.5                    # doctest: +SKIP
    >>> ex.figures["depth"].data[0].y                      # doctest: +SKIP
    """

    # The free-probability prediction is the infinite-width limit: width changes only the
    # Monte Carlo networks, so it is a background-run control (a change still clears the
    # overlay sampled at the old width, see __init__).
    live_controls = tuple(k for k in _DESIGN_CONTROLS if k != "width")

    def __init__(
        self, design: NetworkDesign | None = None, *, samples: int = 4, seed: int = 0, **fields: Any
    ) -> None:
        if design is None:
            design = NetworkDesign(architecture="mlp", width=128, depth=8, gain=2**0.5)
        elif not isinstance(design, NetworkDesign):
            raise TypeError(f"design must be a NetworkDesign or None, got {type(design).__name__}")
        self._initial = _within_controls(dataclasses.replace(design, **fields))
        self._samples = check_int("samples", samples, 1, 32)
        self.seed = check_seed(seed)
        self.sampled: dict[str, Any] = {}
        # The closed form (sympy: up to seconds for a new design) is derived in the
        # background after the first frame; the plots never wait for it.
        self._live = False
        self._panel_key: NetworkDesign | None = None
        self._formula_worker = LatestOnly(formula_panel, self._formula_ready, self._formula_failed)
        super().__init__()
        self._live = True
        self.controls["width"].observe(lambda _change: self._clear_sampled(), names="value")

    # -- layout ------------------------------------------------------------------------------
    def _build(self) -> W.Widget:
        d, style = self._initial, {"style": {"description_width": "110px"}}
        slider = {"continuous_update": False, **style}
        c = self.controls
        c["architecture"] = W.Dropdown(
            options=ARCHITECTURES, value=d.architecture, description="architecture", **style
        )
        c["depth"] = W.IntSlider(
            value=d.depth, min=1, max=_MAX_DEPTH, description="depth", **slider
        )
        c["width"] = W.Dropdown(options=_WIDTHS, value=d.width, description="width", **style)
        c["init"] = W.ToggleButtons(options=INITS, value=d.init, description="init", **style)
        c["gain"] = W.FloatSlider(
            value=d.gain,
            min=_RANGES["gain"][0],
            max=_RANGES["gain"][1],
            step=0.01,
            description="gain",
            readout_format=".3f",
            **slider,
        )
        c["activation"] = W.Dropdown(
            options=ACTIVATIONS, value=d.activation, description="activation", **style
        )
        c["slope"] = W.FloatSlider(
            value=d.slope,
            min=_RANGES["slope"][0],
            max=_RANGES["slope"][1],
            step=0.01,
            description="leaky slope",
            **slider,
        )
        c["normalization"] = W.Dropdown(
            options=NORMALIZATIONS,
            value=d.normalization,
            description="normalization",
            **style,
        )
        c["residual_scale"] = W.FloatSlider(
            value=d.residual_scale,
            min=_RANGES["residual_scale"][0],
            max=_RANGES["residual_scale"][1],
            step=0.01,
            description="residual α",
            **slider,
        )
        c["samples"] = W.IntSlider(
            value=self._samples, min=1, max=32, description="networks", **slider
        )
        self.run_button = W.Button(
            description="Run Monte Carlo", button_style="primary", icon="play"
        )
        self.run_button.on_click(lambda _: self.start_run())
        self.task = BackgroundTask("sampled")
        self.progress = self.task.bar.progress

        depth = make_subplots(
            rows=1,
            cols=2,
            subplot_titles=("φ(JJᵀ): per block and end to end", "variance φ((JJᵀ)²) − φ(JJᵀ)²"),
        )
        # One colour per quantity across both panels, one legend entry per group.
        for col, (a, b) in (
            (1, ("block φ (analytic)", "end-to-end φ (analytic)")),
            (2, ("block variance (analytic)", "end-to-end variance (analytic)")),
        ):
            depth.add_scatter(
                x=[1],
                y=[1.0],
                mode="lines+markers",
                name=a,
                legendgroup="block",
                row=1,
                col=col,
                line=dict(color=_BLOCK),
            )
            depth.add_scatter(
                x=[1],
                y=[1.0],
                mode="lines",
                name=b,
                legendgroup="total",
                row=1,
                col=col,
                line=dict(color=_TOTAL, dash="dash"),
            )
        for col, label in ((1, "φ"), (2, "variance")):
            for group, color, who in (("block", _BLOCK, "block"), ("total", _TOTAL, "end-to-end")):
                depth.add_scatter(
                    x=[],
                    y=[],
                    mode="markers",
                    name=f"{who} {label} (sampled)",
                    legendgroup=group,
                    row=1,
                    col=col,
                    marker=dict(color=color, symbol="x", size=9),
                    error_y=dict(type="data", array=[], visible=True),
                )
        depth.update_xaxes(title_text="block ℓ")
        depth.update_layout(
            height=380,
            margin=dict(t=60, b=40),
            legend=dict(font=dict(size=10), groupclick="toggleitem"),
            modebar=dict(orientation="v"),
        )

        spectrum = go.Figure()
        spectrum.add_bar(
            x=[], y=[], name="sampled eigenvalues", marker=dict(color="rgba(31,119,180,0.35)")
        )
        spectrum.add_scatter(
            x=[], y=[], mode="lines", name="free probability", line=dict(color="#d62728")
        )
        spectrum.update_layout(
            title=_SPECTRUM_TITLE,
            height=340,
            xaxis_title="log₁₀ λ (eigenvalue of JJᵀ)",
            yaxis_title="density of log₁₀ λ",
            bargap=0,
            margin=dict(t=60, b=40),
            modebar=dict(orientation="v"),
        )
        self.formula = W.HTMLMath()
        self.at_depth = W.HTML()
        formula_box = text_box(W.VBox([self.formula, self.at_depth]), "320px")

        controls = controls_column(
            *[c[k] for k in _DESIGN_CONTROLS],
            W.HTML("<b>Monte Carlo</b>"),
            c["samples"],
            self.run_button,
            self.task.widget,
            self.status,
        )
        return row(
            controls,
            W.VBox(
                [
                    self._figure("depth", depth, "640px"),
                    row(self._figure("spectrum", spectrum, "420px"), formula_box),
                ],
                layout=W.Layout(flex="1 1 640px", min_width="320px", max_width="100%"),
            ),
        )

    # -- model -> view -----------------------------------------------------------------------
    def design(self) -> NetworkDesign:
        """The design the controls describe."""
        return NetworkDesign(**{k: self.controls[k].value for k in _DESIGN_CONTROLS})

    def _update(self) -> None:
        # Every figure changes in one batch per figure; the analytic side is cached per design.
        design = self.design()
        self.controls["slope"].disabled = design.activation != "leaky_relu"
        self.controls["residual_scale"].disabled = design.architecture != "residual"
        prof, (x, density) = _analytic(design)
        fig = self.figures["depth"]
        series = [
            np.asarray(y, dtype=float)
            for y in (prof.m1, prof.cumulative_m1, prof.variance, prof.cumulative_variance)
        ]
        with fig.batch_update():
            for trace, y in zip(fig.data[:4], series):
                trace.x, trace.y = prof.depth, y
            self._clear_sampled_traces()
            for axis, ys in (("yaxis", series[:2]), ("yaxis2", series[2:])):
                fig.layout[axis].update(**value_axis(np.concatenate(ys)))
        self._forget_sampled()
        key = _formula_key(design)
        if key != self._panel_key:
            # The math is only re-typeset (slow in the browser) when the formula changes;
            # the values at the current depth live in a plain line below it.
            panel = _quick_panel(key) if self._live else formula_panel(key)
            self._panel_key = key
            if panel is None:
                self.formula.value = "<p><i>deriving the closed form of this design…</i></p>"
                self._formula_worker.submit(key)
            else:
                self.formula.value = panel
        self.at_depth.value = (
            f"<p>At depth {design.depth}: φ = {prof.cumulative_m1[-1]:.4g}, "
            f"variance = {prof.cumulative_variance[-1]:.4g}.</p>"
        )
        spectrum = self.figures["spectrum"]
        with spectrum.batch_update():
            self._clear_sampled_bars()
            spectrum.data[1].x, spectrum.data[1].y = to_log_axis(x, density)

    def _formula_ready(self, key: NetworkDesign, panel: str) -> None:
        if key == self._panel_key:  # else the controls moved on: a newer key is coming
            self.formula.value = panel

    def _formula_failed(self, key: NetworkDesign, exc: BaseException) -> None:
        if key == self._panel_key:
            self.formula.value = (
                f"<p style='color:#b00020'>no closed form: {type(exc).__name__}: {exc}</p>"
            )

    def wait(self, timeout: float | None = None) -> None:
        """Wait for background work: the closed form being derived, a Monte Carlo run."""
        self._formula_worker.join(timeout)
        self.task.join(timeout)

    # Sampled points belong to the design they were sampled from: any design change clears them.
    def _clear_sampled_traces(self) -> None:
        for trace in self.figures["depth"].data[4:]:
            if trace.y is not None and len(trace.y):
                trace.x, trace.y, trace.error_y.array = [], [], []

    def _clear_sampled_bars(self) -> None:
        bars = self.figures["spectrum"].data[0]
        if bars.y is not None and len(bars.y):
            bars.x, bars.y = [], []

    def _forget_sampled(self) -> None:
        self.sampled = {}
        if not self.task.running:
            self.task.bar.reset()

    def _clear_sampled(self) -> None:
        """The Monte Carlo overlay removed (a background-run control such as width moved)."""
        with self.figures["depth"].batch_update():
            self._clear_sampled_traces()
        with self.figures["spectrum"].batch_update():
            self._clear_sampled_bars()
        self._forget_sampled()

    def start_run(self) -> None:
        """What the Run button does: :meth:`run` in the background, with progress and Cancel.

        The kernel stays free meanwhile; a control change clears the sampled overlay.
        """
        self.run_button.disabled = True

        def job(step: Any) -> Any:
            try:
                return self.run(progress=step)
            finally:
                self.run_button.disabled = False

        self.task.start(job)

    def run(self, progress: Callable[[int, int], Any] | None = None) -> dict[str, Any]:
        """Sample networks of the current design; overlay per-block moments and the spectrum.

        Parameters
        ----------
        progress : callable, optional
            ``progress(done, total)`` after each network (default: the explorer's bar).

        Returns
        -------
        dict
            ``"moments"``: the :class:`~toolkit.isometry.BlockMoments`; ``"eigenvalues"``: the
            array of :func:`~toolkit.isometry.sample_spectrum` (also kept as ``sampled``).
        """
        design = self.design()
        samples = int(self.controls["samples"].value)
        device = resolve_device(None)  # TOOLKIT_DEVICE, else the GPU when there is one
        step = self.task.bar if progress is None else progress
        step(0, 2 * samples)
        moments = sample_block_moments(
            design,
            samples=samples,
            seed=self.seed,
            device=device,
            progress=lambda done, total: step(done, 2 * samples),
        )
        eigenvalues = sample_spectrum(
            design,
            samples=samples,
            seed=self.seed + 1,
            device=device,
            progress=lambda done, total: step(samples + done, 2 * samples),
        )
        if self.design() != design:  # the controls moved on while sampling ran in the background
            return {"moments": moments, "eigenvalues": eigenvalues}
        depth = np.arange(1, design.depth + 1)
        fig = self.figures["depth"]
        with fig.batch_update():
            series = (
                (moments.m1, moments.m1_stderr),
                (moments.total_m1, moments.total_m1_stderr),
                (moments.variance, moments.variance_stderr),
                (moments.total_variance, moments.total_variance_stderr),
            )
            for trace, (y, err) in zip(fig.data[4:], series):
                trace.x, trace.y = depth, np.asarray(y, dtype=float)
                trace.error_y.array = np.asarray(err, dtype=float)
            for axis, traces in (("yaxis", (0, 1, 4, 5)), ("yaxis2", (2, 3, 6, 7))):
                ys = np.concatenate([np.asarray(fig.data[i].y, dtype=float) for i in traces])
                fig.layout[axis].update(**value_axis(ys))
        centres, heights, widths, _ = log_histogram(eigenvalues, bins=60)
        with self.figures["spectrum"].batch_update():
            bars = self.figures["spectrum"].data[0]
            bars.x, bars.y, bars.width = centres, heights, widths
        self.sampled = {"moments": moments, "eigenvalues": eigenvalues}
        return self.sampled
