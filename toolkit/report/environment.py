"""The report's first section: versions, devices, and a self-check of the first kernel."""

from __future__ import annotations

import platform
from importlib import metadata

import torch

from .._backend import active_backend, cupy_available, gpu_available
from ._html import Table
from ._registry import ReportContext, register_section

__all__ = ["environment_rows"]

_PACKAGES = (
    "torch",
    "numpy",
    "scipy",
    "sympy",
    "plotly",
    "ipywidgets",
    "cupy-cuda12x",
    "cupy-cuda13x",
    "cupy",
)


def environment_rows() -> list[dict]:
    """(item, value) rows describing the interpreter, the packages and the devices."""
    rows = [
        {"item": "python", "value": platform.python_version()},
        {"item": "platform", "value": platform.platform()},
    ]
    for name in _PACKAGES:
        try:
            rows.append({"item": name, "value": metadata.version(name)})
        except metadata.PackageNotFoundError:
            if not name.startswith("cupy"):
                rows.append({"item": name, "value": "not installed"})
    rows += [
        {"item": "torch sees CUDA", "value": str(torch.cuda.is_available())},
        {"item": "CuPy usable", "value": str(cupy_available())},
        {"item": "GPU path available", "value": str(gpu_available())},
        {"item": "backend in force", "value": active_backend()},
    ]
    if torch.cuda.is_available():
        rows.append({"item": "device", "value": torch.cuda.get_device_name()})
    return rows


def _mask_figure(seed: int):
    import plotly.graph_objects as go

    from ..attention import nm_mask

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
    return fig


@register_section("environment", "Environment and kernel self-check", order=0)
def environment_section(ctx: ReportContext) -> list:
    from ..attention._selfcheck import nm_mask_selfcheck

    checks = nm_mask_selfcheck(seed=ctx.seed)
    outcomes = [row[k] for row in checks for k in ("reference = brute force", "CUDA = reference")]
    passed = all(v is True or str(v).startswith("skipped") for v in outcomes)
    verdict = (
        "<p class='tk-pass'>all kernel checks passed</p>"
        if passed
        else "<p class='tk-fail'>a kernel check FAILED</p>"
    )
    return [
        Table(environment_rows(), caption="Interpreter, packages and devices"),
        "<p>The kernel self-check runs <code>nm_mask</code> on fresh random scores with many "
        "ties, on the torch reference path and, where a GPU is usable, on the CUDA path, and "
        "compares them with a loop-based brute force.</p>",
        verdict,
        Table(checks, caption="nm_mask self-check"),
        _mask_figure(ctx.seed),
    ]
