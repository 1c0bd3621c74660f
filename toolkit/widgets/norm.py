"""NormSamplingExplorer: how well a few sampled data estimate batch norm's statistics.

The model is :mod:`toolkit.norm.analysis` (``sampling_error``, ``correlation_profile``,
``accuracy_table``) on real pre-normalization activations of a small CNN trained on the digits
(or activations you pass in).  This module only lays out the view.
"""

from __future__ import annotations

import html
import inspect
from collections.abc import Callable
from typing import Any

import ipywidgets as W
import numpy as np
import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots

from ..norm.analysis import (
    ESTIMATORS,
    NORM_KINDS,
    accuracy_table,
    collect_activations,
    correlation_profile,
    sampling_error,
)
from ._background import BackgroundTask
from ._base import Explorer, row

__all__ = ["RATIO_GRID", "NormSamplingExplorer", "accuracy_html"]

#: The ratios on the curves' x axis (times the batch's data per channel).
RATIO_GRID = (1 / 32, 1 / 16, 1 / 8, 1 / 4, 1 / 2)
#: batch sizes whose curves are kept
_CURVE_CACHE = 32
_COLORS = {"BS": "#d62728", "FS": "#1f77b4", "random": "#2ca02c"}


def accuracy_html(table: dict[str, np.ndarray]) -> str:
    """An HTML table of test accuracy (mean ± std over seeds) per variant.

    >>> print(accuracy_html({"bn": np.array([0.9, 1.0])}).splitlines()[2])
    <tr><td>BatchNorm (full batch)</td><td>95.00 ± 5.00</td><td>2</td></tr>
    """
    rows = [
        "<table class='toolkit-table'>",
        "<tr><th>variant</th><th>test accuracy, %</th><th>seeds</th></tr>",
    ]
    for kind, acc in table.items():
        acc = np.asarray(acc, dtype=float).ravel()
        label = html.escape(NORM_KINDS.get(kind, kind))
        rows.append(
            f"<tr><td>{label}</td><td>{100 * acc.mean():.2f} ± {100 * acc.std():.2f}</td>"
            f"<td>{acc.size}</td></tr>"
        )
    rows.append("</table>")
    return "\n".join(rows)


class NormSamplingExplorer(Explorer):
    """Estimation error of BS, FS and iid sampling against the data used, the correlations
    behind it, and the accuracy of every normalization variant.

    Parameters
    ----------
    acts : torch.Tensor, optional
        Activations ``[N, C, H, W]``; default: layer ``layer`` of a small CNN trained briefly
        on the digits (:func:`toolkit.norm.analysis.collect_activations`).
    layer : int
        Which of the CNN's three normalization inputs (used without ``acts``).
    method, ratio, batch_size : str, float, int
        Initial controls (``method`` one of ``"BS"``, ``"FS"``, ``"random"``).
    trials : int
        Random draws per point.
    seed : int
        Seeds the draws.
    accuracy : dict, optional
        A precomputed :func:`~toolkit.norm.analysis.accuracy_table` to show; else press
        *train* to compute one.

    Examples
    --------
    >>> ex = NormSamplingExplorer(torch.randn(64, 4, 4, 4), batch_size=32, trials=4)
    >>> ex.controls["method"].value = "BS"
    >>> [t.name for t in ex.figures["error"].data][:3]
    ['BS', 'FS', 'random']
    """

    live_controls = ("method", "ratio", "batch_size")

    def __init__(
        self,
        acts: torch.Tensor | None = None,
        *,
        layer: int = 2,
        method: str = "FS",
        ratio: float = 0.25,
        batch_size: int = 128,
        trials: int = 24,
        seed: int = 0,
        accuracy: dict[str, np.ndarray] | None = None,
    ) -> None:
        self.acts = collect_activations(layer=layer, seed=seed) if acts is None else acts
        self.trials, self.seed = trials, seed
        self._initial: dict[str, Any] = dict(method=method, ratio=ratio, batch_size=batch_size)
        self.profile = correlation_profile(self.acts)
        self.accuracy = accuracy
        self.curves: dict[str, dict[str, np.ndarray]] = {}
        self.current: dict[str, float] = {}
        # curves by batch size (15 sampling_error calls each), so that moving the slider back
        # answers at once; bounded
        self._curve_cache: dict[int, dict[str, dict[str, np.ndarray]]] = {}
        super().__init__()

    def _build(self) -> W.Widget:
        c, v = self.controls, self._initial
        style = {"style": {"description_width": "90px"}, "continuous_update": False}
        n = int(self.acts.shape[0])
        c["method"] = W.Dropdown(
            options=ESTIMATORS, value=v["method"], description="method", style=style["style"]
        )
        c["ratio"] = W.FloatSlider(
            value=v["ratio"], min=0.02, max=1.0, step=0.01, description="sample ratio", **style
        )
        c["batch_size"] = W.IntSlider(
            value=min(int(v["batch_size"]), n), min=2, max=n, description="batch size", **style
        )
        c["train"] = W.Button(description="train (accuracy table)")
        c["train"].on_click(lambda _b: self.start_accuracy())
        self.task = BackgroundTask("runs")
        self.progress = self.task.bar.progress

        err = make_subplots(
            rows=1, cols=2, subplot_titles=("mean: RMS (μ̂−μ)/σ", "variance: RMS σ̂²/σ²−1")
        )
        for col in (1, 2):
            for method in ESTIMATORS:
                err.add_scatter(
                    name=method if col == 1 else f"{method} (var)",
                    legendgroup=method,
                    showlegend=col == 1,
                    mode="lines+markers",
                    line=dict(color=_COLORS[method]),
                    row=1,
                    col=col,
                )
            err.add_scatter(
                name="current" if col == 1 else "current (var)",
                mode="markers",
                marker=dict(size=14, symbol="star", color="black"),
                showlegend=col == 1,
                row=1,
                col=col,
            )
            # FS realizes only whole patches, so most ratios snap to the same sample: this
            # tick shows the data asked for next to the star of the data actually used.
            err.add_scatter(
                name="requested" if col == 1 else "requested (var)",
                mode="markers",
                marker=dict(size=18, symbol="line-ns-open", color="black", line=dict(width=2)),
                showlegend=col == 1,
                row=1,
                col=col,
            )
        err.update_xaxes(type="log", title_text="data per channel")
        err.update_yaxes(type="log")
        err.update_layout(height=380, margin=dict(t=40, b=40, l=50, r=10))
        error_box = self._figure("error", err, "640px")

        prof = self.profile
        lags = np.arange(1, prof["rho_lag"].shape[1] + 1)
        corr = go.Figure()
        corr.add_bar(name="within a map, by lag", x=lags, y=prof["rho_lag"].mean(0))
        corr.add_scatter(
            name="within a map (all pairs)",
            x=[lags[0] - 0.5, lags[-1] + 0.5],
            y=[float(prof["rho_map"].mean())] * 2,
            mode="lines",
            line=dict(dash="dash", color="#d62728"),
        )
        corr.add_scatter(
            name="across samples (same place)",
            x=[lags[0] - 0.5, lags[-1] + 0.5],
            y=[float(prof["rho_across"].mean())] * 2,
            mode="lines",
            line=dict(dash="dot", color="#2ca02c"),
        )
        corr.update_layout(
            height=300,
            title="correlation of two data of one channel",
            xaxis_title="horizontal lag",
            yaxis_title="correlation",
            margin=dict(t=40, b=40, l=50, r=10),
        )
        correlation_box = self._figure("correlation", corr, "560px")
        self.table = W.HTML(accuracy_html(self.accuracy) if self.accuracy else "")
        shape = "×".join(str(s) for s in self.acts.shape)
        info = W.HTML(f"<b>activations:</b> {shape} (N×C×H×W)")
        return W.VBox(
            [
                info,
                row(c["method"], c["ratio"], c["batch_size"]),
                row(error_box),
                self.status,
                row(correlation_box),
                row(c["train"], self.task.widget),
                self.table,
            ],
            layout=W.Layout(max_width="100%"),
        )

    def _curves(self, batch: int) -> dict[str, dict[str, np.ndarray]]:
        out: dict[str, dict[str, np.ndarray]] = {}
        for method in ESTIMATORS:
            rows = [
                sampling_error(self.acts, method, r, batch, self.trials, self.seed)
                for r in RATIO_GRID
            ]
            out[method] = {k: np.array([row[k] for row in rows]) for k in rows[0]}
        return out

    def _update(self) -> None:
        v = self.values()
        batch = int(v["batch_size"])
        if batch not in self._curve_cache:
            if len(self._curve_cache) >= _CURVE_CACHE:
                self._curve_cache.pop(next(iter(self._curve_cache)))
            self._curve_cache[batch] = self._curves(batch)
        self.curves = self._curve_cache[batch]
        self.current = sampling_error(
            self.acts, v["method"], float(v["ratio"]), batch, self.trials, self.seed
        )
        hw = int(self.acts.shape[2]) * int(self.acts.shape[3])
        requested = float(v["ratio"]) * batch * hw
        fig = self.figures["error"]
        with fig.batch_update():
            for i, what in enumerate(("mean_error", "var_error")):
                base = i * (len(ESTIMATORS) + 2)
                for j, method in enumerate(ESTIMATORS):
                    fig.data[base + j].x = self.curves[method]["count"]
                    fig.data[base + j].y = self.curves[method][what]
                fig.data[base + len(ESTIMATORS)].x = np.array([self.current["count"]])
                fig.data[base + len(ESTIMATORS)].y = np.array([self.current[what]])
                fig.data[base + len(ESTIMATORS) + 1].x = np.array([requested])
                fig.data[base + len(ESTIMATORS) + 1].y = np.array([self.current[what]])
        self.status.value = (
            f"{v['method']} at ratio {float(v['ratio']):.2f} of a batch of {batch}: "
            f"{requested:.0f} data per channel asked for, {self.current['count']} used, mean error "
            f"{self.current['mean_error']:.4f}, variance error {self.current['var_error']:.4f}"
        )

    def run_accuracy(
        self, progress: Callable[[int, int], Any] | bool | None = None, **kwargs: Any
    ) -> dict[str, np.ndarray]:
        """Train every variant on the digits and show the table (:func:`accuracy_table`).

        One ``accuracy_table`` call per variant and seed (the runs are independent), so that
        ``progress(done, total)`` (default: the explorer's bar) moves after each run.
        ``kinds``, ``seeds`` and the other keywords are passed on.
        """
        params = inspect.signature(accuracy_table).parameters
        kinds = tuple(kwargs.pop("kinds", params["kinds"].default))
        seeds = tuple(kwargs.pop("seeds", params["seeds"].default))
        step = progress if callable(progress) else self.task.bar
        runs = [(k, s) for k in kinds for s in seeds]
        self.table.value = "<i>training…</i>"
        step(0, len(runs))
        parts: dict[str, list[float]] = {k: [] for k in kinds}
        for i, (kind, seed) in enumerate(runs):
            one = accuracy_table((kind,), (seed,), progress=False, **kwargs)
            parts[kind].extend(float(a) for a in one[kind])
            step(i + 1, len(runs))
        self.accuracy = {k: np.array(v) for k, v in parts.items()}
        self.table.value = accuracy_html(self.accuracy)
        return self.accuracy

    def start_accuracy(self) -> None:
        """What the train button does: :meth:`run_accuracy` in the background, with progress
        and Cancel (between two training runs)."""
        self.controls["train"].disabled = True

        def job(step: Any) -> Any:
            try:
                return self.run_accuracy(progress=step)
            finally:
                self.controls["train"].disabled = False

        self.task.start(job)
