"""Layouts that fit a laptop: rows wrap, the controls column keeps its width, text boxes scroll.

Checked on the widget tree (the browser suite measures the pixels): no explorer uses a row
that cannot wrap, every figure sits in a box that may shrink to the notebook's width, and the
controls column never gets narrower than 250 px.
"""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("ipywidgets")

import ipywidgets as W

from toolkit.widgets import (
    AttentionSparsityExplorer,
    BoundsExplorer,
    IsometryExplorer,
    NormSamplingExplorer,
    SNNExplorer,
)
from toolkit.widgets._base import LiveFigure

FACTORIES = {
    "isometry": lambda: IsometryExplorer(
        architecture="residual", init="orthogonal", activation="leaky_relu", depth=4, width=32
    ),
    "attention": lambda: AttentionSparsityExplorer("one two three", model="tiny"),
    "bounds": lambda: BoundsExplorer("a wonderful film"),
    "norm": lambda: NormSamplingExplorer(
        torch.randn(32, 2, 4, 4, generator=torch.Generator().manual_seed(0)), batch_size=16
    ),
    "snn": lambda: SNNExplorer(epochs=1, hidden=16, steps=4),
}


def _walk(widget, parent=None):
    yield widget, parent
    for child in getattr(widget, "children", ()):
        yield from _walk(child, widget)


def _px(value: str | None) -> float:
    return float(value.removesuffix("px")) if value and value.endswith("px") else 0.0


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_rows_wrap_and_figures_fit_the_notebook(name):
    ex = FACTORIES[name]()
    seen_figures = 0
    for widget, parent in _walk(ex.widget):
        if isinstance(widget, LiveFigure):
            seen_figures += 1
            box = parent.layout
            assert box.max_width == "100%" and _px(box.min_width) <= 360, name
            continue
        if type(widget) is W.HBox:  # cannot wrap: fine for a progress bar, never for a figure
            assert not any(isinstance(w, LiveFigure) for w, _ in _walk(widget)), name
        if isinstance(widget, W.VBox) and any(
            isinstance(k, (W.Dropdown, W.IntSlider, W.FloatSlider)) for k in widget.children
        ):
            assert _px(widget.layout.min_width) >= 250, name
        if isinstance(widget, (W.HTMLMath,)):
            assert widget.layout.overflow == "auto" and _px(widget.layout.min_width) >= 250
        if type(widget) is W.Box and widget.layout.display == "flex":
            assert widget.layout.flex_flow == "row wrap" and widget.layout.max_width == "100%"
    assert seen_figures == len(ex.figures)
