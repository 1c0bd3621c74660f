"""The report's normalization section: estimation error of BS, FS and iid sampling on real
activations with the design-effect prediction, accuracy of every variant, micro-batches."""

from __future__ import annotations

import numpy as np

from .._backend import single_thread
from ..report import ReportContext, Table, register_section
from .analysis import (
    NORM_KINDS,
    accuracy_table,
    collect_activations,
    estimation_curves,
    microbatch_table,
)

__all__ = ["norm_section"]

_COLORS = {"BS": "#d62728", "FS": "#1f77b4", "random": "#2ca02c"}


def _sizes(quick: bool) -> dict:
    if quick:
        return dict(samples=256, trials=12, seeds=(0,), epochs=3, limit=600, micro=(1, 4),
                    micro_limit=300)  # fmt: skip
    return dict(samples=512, trials=48, seeds=(0, 1, 2), epochs=8, limit=None,
                micro=(1, 2, 3, 4), micro_limit=600)  # fmt: skip


def _error_figure(curves) -> object:
    import plotly.graph_objects as go

    fig = go.Figure()
    for method, err in curves.mean_error.items():
        fig.add_scatter(
            x=curves.counts, y=err, name=method, mode="lines+markers",
            line=dict(color=_COLORS[method]),
        )  # fmt: skip
    fig.add_scatter(
        x=curves.counts, y=curves.predicted_bs, name="BS predicted (design effect)",
        mode="lines", line=dict(dash="dash", color=_COLORS["BS"]),
    )  # fmt: skip
    fig.add_scatter(
        x=curves.counts, y=curves.iid, name="1/√m (independent data)", mode="lines",
        line=dict(dash="dot", color="gray"),
    )  # fmt: skip
    fig.update_layout(
        title="Error of the estimated mean, RMS of (μ̂−μ)/σ",
        xaxis=dict(type="log", title="data per channel m"),
        yaxis=dict(type="log", title="error"),
        height=420,
    )
    return fig


@register_section("norm", "Batch normalization with sampled statistics", order=60)
def norm_section(ctx: ReportContext) -> list:
    sizes = _sizes(ctx.quick)
    with single_thread():
        acts = collect_activations(layer=2, samples=sizes["samples"], seed=ctx.seed)
        curves = estimation_curves(acts, trials=sizes["trials"], seed=ctx.seed)
        acc = accuracy_table(
            seeds=sizes["seeds"], epochs=sizes["epochs"], limit=sizes["limit"], progress=False
        )
        micro = microbatch_table(
            sizes["micro"], limit=sizes["micro_limit"], epochs=1 if ctx.quick else 2, progress=False
        )
    n, c, h, w = acts.shape
    intro = (
        "<p>Chen et al. (TNNLS 2020) estimate batch norm's statistics from a few "
        "<i>uncorrelated</i> data. The data of one feature map are correlated, so whole maps "
        "(batch sampling, BS) carry fewer effective data than a small patch from every sample "
        "(feature sampling, FS): Var μ̂ = σ²/m · (1 + (s−1)ρ) for clusters of s data with "
        f"correlation ρ. Activations: the third normalization input of a small CNN trained on "
        f"the digits, {n}×{c}×{h}×{w}; measured intra-map correlation ρ = {curves.rho:.3f}.</p>"
    )
    rows = []
    for j, m in enumerate(curves.counts):
        row: dict[str, float | int | str] = {"data per channel": int(m)}
        for method in curves.mean_error:
            row[f"{method} mean err"] = float(curves.mean_error[method][j])
        for method in curves.var_error:
            row[f"{method} var err"] = float(curves.var_error[method][j])
        row["BS predicted"] = float(curves.predicted_bs[j])
        rows.append(row)
    acc_rows = [
        {
            "variant": NORM_KINDS[k],
            "test accuracy %": float(100 * v.mean()),
            "std %": float(100 * v.std()),
            "seeds": len(v),
        }
        for k, v in acc.items()
    ]
    micro_rows = []
    for k, table in micro.items():
        mrow: dict[str, float | str] = {"variant": NORM_KINDS[k]}
        for b, accs in zip(sizes["micro"], table):
            mrow[f"batch {b}"] = float(100 * np.mean(accs))
        micro_rows.append(mrow)
    return [
        intro,
        _error_figure(curves),
        Table(rows, caption="Normalized estimation errors at equal data counts (RMS)"),
        Table(
            acc_rows,
            caption=f"Digits test accuracy, {sizes['epochs']} epochs"
            + (f" on {sizes['limit']} images" if sizes["limit"] else "")
            + ", batch 32, ratio 1/4 "
            "(BS sample ratio, FS patch ratio), VDN with 8 virtual samples",
        ),
        Table(
            micro_rows,
            caption=f"Micro-batches: test accuracy % ({2 if not ctx.quick else 1} epoch(s) on "
            f"{sizes['micro_limit']} images, Adam 1e-3; FS patch ratio 1/2, VDN 8 virtual "
            "samples, GroupNorm 4 groups)",
        ),
    ]
