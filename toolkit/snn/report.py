"""The report's spiking-network section: the trained default network's sparsity profile and
its H2Learn-style cost breakdown."""

from __future__ import annotations

import numpy as np

from ..report import ReportContext, Table, register_section
from .cost import PHASES, h2learn_cost
from .network import DEFAULT_ACCURACY, train_default
from .profile import sparsity_profile

__all__ = ["snn_section"]


def _heatmaps(profile):
    from plotly.subplots import make_subplots

    panels = (
        ("forward: spike density", profile.spike_density),
        ("backward: dL/dX exact zeros", profile.grad_out_zero),
        (f"backward: |dL/dX| ≤ {profile.threshold:g}·max", profile.grad_out_small),
    )
    fig = make_subplots(rows=1, cols=3, subplot_titles=[p[0] for p in panels])
    for k, (name, z) in enumerate(panels, start=1):
        fig.add_heatmap(
            z=np.nan_to_num(z, nan=0.0),
            x=np.arange(profile.steps),
            y=profile.names,
            zmin=0,
            zmax=1,
            colorscale="Blues",
            showscale=k == 3,
            name=name,
            row=1,
            col=k,
        )
    fig.update_xaxes(title_text="time step")
    fig.update_layout(height=300, title="Sparsity per layer and time step (one test batch)")
    return fig


def _cost_figure(cost):
    import plotly.graph_objects as go

    fig = go.Figure()
    fig.add_bar(x=list(PHASES), y=1e6 * cost.baseline_energy.sum(0), name="dense baseline")
    fig.add_bar(x=list(PHASES), y=1e6 * cost.accel_energy.sum(0), name="H2Learn-style")
    fig.update_layout(
        height=320,
        barmode="group",
        yaxis_title="µJ per training sample",
        title=f"Energy per phase: estimated {cost.energy_saving:.2f}× saving, "
        f"{cost.speedup:.2f}× speed-up (pipelined)",
    )
    return fig


@register_section("snn", "Spiking networks trained by BPTT", order=40)
def snn_section(ctx: ReportContext) -> list:
    net, result, data = train_default(
        quick=ctx.quick, seed=ctx.seed, progress=False, device=ctx.device
    )
    batch = (data.x_test[:256], data.y_test[:256])
    profile = sparsity_profile(net, batch)
    rows = []
    costs = {}
    for sparsity in ("zero", "small"):
        for group in (1, 4, 8):
            c = h2learn_cost(profile, group=group, sparsity=sparsity)
            costs[(sparsity, group)] = c
            rows.append(
                {
                    "gradients skipped": "exact zeros" if sparsity == "zero" else "small too",
                    "LUT group g": group,
                    "forward op reduction": float(c.op_reduction[0]),
                    "backward op reduction": float(c.op_reduction[1]),
                    "update op reduction": float(c.op_reduction[2]),
                    "speed-up (pipelined)": c.speedup,
                    "speed-up (serial)": h2learn_cost(
                        profile, group=group, sparsity=sparsity, pipelined=False
                    ).speedup,
                    "energy saving": c.energy_saving,
                }
            )
    stated = DEFAULT_ACCURACY["quick" if ctx.quick else "full"]
    return [
        "<p>A rate-coded spiking MLP 64-128-10 (T = 8 steps, LIF τ = 2, ATan surrogate) "
        f"trained by BPTT on the digits for {len(result.loss)} epochs reaches a test "
        f"accuracy of <b>{result.final_test_accuracy:.3f}</b> (stated: ≥ {stated:.2f}). "
        "H2Learn's characterization, measured on it: the forward pass and the weight "
        "update see binary spikes of low density, which lookup tables over g spike bits "
        "exploit; the backward pass is sparse in its input and output only where the "
        "surrogate derivative is zero. ATan is never exactly zero, so exact-zero skipping "
        "gives nothing in the backward pass here; skipping small gradients too (an "
        "approximation) or a rectangular/triangle surrogate does.</p>",
        Table(profile.summary(), caption="Sparsity profile (time-averaged) of one test batch"),
        _heatmaps(profile),
        Table(
            rows,
            caption="H2Learn-style cost model against a dense GPU-style baseline "
            "(assumptions: toolkit.snn.cost)",
        ),
        _cost_figure(costs[("zero", 4)]),
    ]
