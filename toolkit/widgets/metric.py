"""MetricLearningExplorer: HDML's synthetic negatives, training curves and Recall@K.

The model is :mod:`toolkit.metric` (``compare_on_digits`` trains HDML and the baseline on the
zero-shot digits split; ``pca_2d``, ``synthesis_view`` and ``smooth`` in
:mod:`toolkit.metric.explore` compute what is drawn); this module lays out controls and
redraws figures.
"""

from __future__ import annotations

import html

import ipywidgets as W
import numpy as np
import plotly.graph_objects as go

from .._backend import quick_mode
from ..metric import (
    DIGITS_CONFIG,
    Comparison,
    compare_on_digits,
    pca_2d,
    smooth,
    synthesis_view,
)
from ._base import Explorer, controls_column, row, text_box

__all__ = ["MetricLearningExplorer"]

_PALETTE = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
)
_CURVES = (
    ("baseline J_m", "baseline", "j_m"),
    ("HDML J_m", "hdml", "j_m"),
    ("HDML J_syn", "hdml", "j_syn"),
    ("HDML hardness λ", "hdml", "hardness"),
    ("HDML real weight e^(−β/J_gen)", "hdml", "w_real"),
)


class MetricLearningExplorer(Explorer):
    """Explore HDML on the zero-shot digits: where a synthetic negative lands, how training
    goes, and what it buys in retrieval.

    Parameters
    ----------
    comparison : Comparison, optional
        A finished :func:`toolkit.metric.compare_on_digits`; by default one seed is trained
        (150 steps in quick mode, 600 otherwise).
    alpha : float, optional
        Pulling factor used by the hardness slider (default: the experiment's config).

    >>> ex = MetricLearningExplorer()                       # doctest: +SKIP
    >>> ex.controls["log_j_avg"].value = -2.0               # doctest: +SKIP
    >>> ex.figures["embedding"].data                        # doctest: +SKIP
    """

    live_controls = ("method", "anchor", "positive", "negative", "log_j_avg")

    def __init__(self, comparison: Comparison | None = None, *, alpha: float | None = None):
        if comparison is None:
            comparison = compare_on_digits(seeds=(0,), steps=150 if quick_mode() else 600)
        if not isinstance(comparison, Comparison):
            raise TypeError(f"comparison must be a Comparison, got {type(comparison).__name__}")
        self.comparison = comparison
        self.alpha = DIGITS_CONFIG.alpha if alpha is None else float(alpha)
        self._projections = {m: pca_2d(runs[0].embeddings) for m, runs in comparison.runs.items()}
        super().__init__()
        self._open_on_a_pulled_negative()

    def _open_on_a_pulled_negative(self) -> None:
        # HDML moves the synthetic negative only while d⁺ < d⁻; where the nearest negative is
        # already closer than the positive, J_avg does nothing.  Open on the nearest negative
        # that is pulled, so the hardness slider acts from the start.
        run = self._run()
        proj = self._projections[self.controls["method"].value]
        for rank in range(self.controls["negative"].max + 1):
            self.controls["negative"].value = rank  # redraws; the tuple changes with it
            a, p, n = self.tuple_indices()
            view = synthesis_view(run.embeddings, proj, a, p, n, self.alpha, self.alpha)
            if view.d_pos < view.d_neg:
                return
        self.controls["negative"].value = 0

    # -- helpers -------------------------------------------------------------------------------
    def _run(self):
        return self.comparison.runs[self.controls["method"].value][0]

    def _members(self, same: bool) -> np.ndarray:
        labels = self._run().labels.numpy()
        a = self.controls["anchor"].value
        mask = labels == labels[a] if same else labels != labels[a]
        if same:
            mask[a] = False
        return np.flatnonzero(mask)

    def tuple_indices(self) -> tuple[int, int, int]:
        """The (anchor, positive, negative) test-set indices the controls select.

        The positive and negative sliders pick by rank of distance to the anchor (0 = nearest).
        """
        run = self._run()
        a = self.controls["anchor"].value
        dist = (run.embeddings - run.embeddings[a]).norm(dim=1).numpy()
        pos, neg = self._members(True), self._members(False)
        pos = pos[np.argsort(dist[pos], kind="stable")]
        neg = neg[np.argsort(dist[neg], kind="stable")]
        p = pos[min(self.controls["positive"].value, len(pos) - 1)]
        n = neg[min(self.controls["negative"].value, len(neg) - 1)]
        return a, int(p), int(n)

    # -- layout ----------------------------------------------------------------------------------
    def _build(self) -> W.Widget:
        c, style = self.controls, {"style": {"description_width": "120px"}}
        slider = {"continuous_update": False, **style}  # redraw once the slider is let go
        n = len(self.comparison.runs["hdml"][0].labels)
        c["method"] = W.ToggleButtons(
            options=[("HDML", "hdml"), ("baseline", "baseline")],
            value="hdml",
            description="embedding",
            **style,
        )
        c["anchor"] = W.IntSlider(value=0, min=0, max=n - 1, description="anchor", **slider)
        c["positive"] = W.IntSlider(
            value=0, min=0, max=n - 1, description="positive (rank)", **slider
        )
        c["negative"] = W.IntSlider(
            value=0, min=0, max=n - 1, description="negative (rank)", **slider
        )
        c["log_j_avg"] = W.FloatSlider(
            value=float(np.log10(self.alpha)),
            min=float(np.log10(self.alpha / 20)),
            max=float(np.log10(self.alpha * 20)),
            step=0.01,
            description="log₁₀ J_avg",
            readout_format=".2f",
            **slider,
        )
        self.readout = W.HTML()
        self.table = W.HTML()

        emb = go.Figure()
        labels = self.comparison.runs["hdml"][0].labels.numpy()
        for cls in np.unique(labels):
            emb.add_scattergl(  # every test image: WebGL keeps the page responsive
                x=[],
                y=[],
                mode="markers",
                name=f"digit {cls}",
                marker=dict(size=5, opacity=0.45, color=_PALETTE[int(cls) % len(_PALETTE)]),
            )
        emb.add_scatter(
            x=[],
            y=[],
            mode="lines",
            name="path of ẑ⁻ as J_avg varies",
            line=dict(color="black", dash="dot"),
        )
        for name, symbol, color in (
            ("anchor z", "circle", "black"),
            ("positive z⁺", "diamond", "#2ca02c"),
            ("negative z⁻", "x", "#d62728"),
            ("synthetic ẑ⁻", "star", "#9467bd"),
        ):
            emb.add_scatter(
                x=[],
                y=[],
                mode="markers",
                name=name,
                marker=dict(size=14, symbol=symbol, color=color, line=dict(width=1, color="white")),
            )
        emb.update_layout(
            title="test embeddings (unseen classes), first two principal axes",
            height=460,
            xaxis_title="PC 1",
            yaxis_title="PC 2",
        )

        curves = go.Figure()
        for name, _, _ in _CURVES:
            curves.add_scatter(x=[], y=[], mode="lines", name=name)
        curves.update_layout(
            title="training curves (moving average over 20 steps)",
            height=360,
            xaxis_title="step",
            yaxis_type="log",
        )
        embedding_box = self._figure("embedding", emb, "560px")
        curves_box = self._figure("curves", curves, "520px")
        self._draw_static()
        return W.VBox(
            [
                row(
                    controls_column(
                        c["method"],
                        c["anchor"],
                        c["positive"],
                        c["negative"],
                        c["log_j_avg"],
                        self.readout,
                    ),
                    embedding_box,
                ),
                row(curves_box, text_box(self.table, "300px")),
                self.status,
            ],
            layout=W.Layout(max_width="100%"),
        )

    def _draw_static(self) -> None:
        fig = self.figures["curves"]
        with fig.batch_update():
            for trace, (_, method, key) in zip(fig.data, _CURVES):
                hist = self.comparison.runs[method][0].history
                y = np.array([h.get(key, np.nan) for h in hist], dtype=float)
                trace.x = np.arange(1, len(y) + 1)
                trace.y = smooth(np.clip(y, 1e-6, None), 20)
        self.table.value = self.recall_table_html()

    def recall_table_html(self) -> str:
        """The Recall@K / NMI / MAP@R table, HDML vs baseline (mean ± std over seeds)."""
        seeds = len(self.comparison.runs["hdml"])
        head = "<tr><th>metric (%)</th><th>baseline</th><th>HDML</th></tr>"
        body = "".join(
            "<tr>" + "".join(f"<td>{html.escape(v)}</td>" for v in row) + "</tr>"
            for row in self.comparison.rows()
        )
        return (
            f"<b>Zero-shot retrieval on unseen digits</b> ({seeds} seed(s), "
            f"{self.comparison.steps} steps, {self.comparison.loss} loss)"
            f"<table>{head}{body}</table>"
        )

    # -- redraw ----------------------------------------------------------------------------------
    def _update(self) -> None:
        run = self._run()
        proj = self._projections[self.controls["method"].value]
        a, p, n = self.tuple_indices()
        j = 10.0 ** self.controls["log_j_avg"].value
        view = synthesis_view(run.embeddings, proj, a, p, n, j, self.alpha)
        labels = run.labels.numpy()
        fig = self.figures["embedding"]
        classes = np.unique(labels)
        with fig.batch_update():
            for trace, cls in zip(fig.data, classes):
                pts = proj.coords[labels == cls]
                trace.x, trace.y = pts[:, 0], pts[:, 1]
            k = len(classes)
            fig.data[k].x, fig.data[k].y = view.path[:, 0], view.path[:, 1]
            for trace, key in zip(
                fig.data[k + 1 :], ("anchor", "positive", "negative", "synthetic")
            ):
                trace.x = np.array([view.points[key][0]])
                trace.y = np.array([view.points[key][1]])
        moved = "pulled" if view.d_pos < view.d_neg else "kept (d⁺ ≥ d⁻)"
        self.readout.value = (
            f"J_avg = {j:.3g}, α = {self.alpha:g}: λ = e^(−α/J_avg) = {view.hardness:.3f}<br>"
            f"d⁺ = {view.d_pos:.3f}, d⁻ = {view.d_neg:.3f}, d(z, ẑ⁻) = {view.d_synth:.3f} "
            f"({moved})"
        )
