"""Every explorer's figures survive a browser reload and never send NaN: checked headless.

JupyterLab rebuilds a reloaded widget from the state the kernel holds.  So: each figure is
born with its traces (final names, data), the number of traces never changes, the state a
reload receives equals the figure's current data, and every message and state passes
``json.dumps(..., allow_nan=False)`` (the front end's JSON has no NaN) in every state the
controls can reach here.
"""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest
import torch

pytest.importorskip("plotly")
pytest.importorskip("ipywidgets")

from ipywidgets.widgets.widget import _remove_buffers
from plotly.serializers import _py_to_js

from toolkit.widgets import (
    AttentionSparsityExplorer,
    BoundsExplorer,
    IsometryExplorer,
    MetricLearningExplorer,
    NormSamplingExplorer,
    SNNExplorer,
)
from toolkit.widgets._base import LiveFigure, json_safe

_MESSAGES = (
    "_py2js_restyle",
    "_py2js_relayout",
    "_py2js_update",
    "_py2js_addTraces",
    "_py2js_deleteTraces",
    "_py2js_moveTraces",
)
_WHITE = {"white", "#fff", "#ffffff", "rgb(255,255,255)", "rgb(255, 255, 255)"}


def _set(**values):
    def step(ex):
        for name, value in values.items():
            ex.controls[name].value = value

    return step


def _metric():
    from toolkit.metric import compare_on_digits

    return MetricLearningExplorer(compare_on_digits(seeds=[0], steps=30, progress=False))


def _norm():
    g = torch.Generator().manual_seed(0)
    return NormSamplingExplorer(torch.randn(64, 3, 4, 4, generator=g), batch_size=32, trials=4)


#: explorer factory, traces that are empty until a Run, and the steps that drive it
CASES = {
    "isometry": (
        lambda: IsometryExplorer(depth=4, width=32, samples=2),
        {"sampled", "sampled eigenvalues"},
        [
            _set(activation="linear", init="orthogonal", gain=1.0),  # variance 0, φ = 1
            _set(architecture="residual", activation="leaky_relu", depth=3),
            lambda ex: ex.run(),
            _set(depth=2),
        ],
    ),
    "attention": (
        lambda: AttentionSparsityExplorer("one two three four five six", model="tiny"),
        set(),
        [
            _set(method="dense"),  # nothing pruned: an empty "pruned" trace
            _set(method="dsa", rank=4, bits=2),
            _set(method="topk", density=0.3, head=1),
            _set(text="a new sentence for the model"),
        ],
    ),
    "bounds": (
        lambda: BoundsExplorer("a wonderful film"),
        {"certified radius", "alpha-crown"},  # alpha-CROWN: computed when selected
        [
            _set(eps=1e-6),
            _set(eps=1.0, p=math.inf),  # wide bounds, nothing certified
            lambda ex: ex.run(),
            _set(method="alpha-crown", eps=0.01, p=2.0),  # drawn when the background job ends
            lambda ex: ex.wait(120),
            _set(sentence="a truly dull film"),  # an unknown word
            lambda ex: ex.wait(120),
        ],
    ),
    "metric": (
        _metric,
        set(),
        [_set(log_j_avg=-1.5, anchor=3), _set(method="baseline", negative=5)],
    ),
    "norm": (_norm, set(), [_set(method="BS", ratio=0.5), _set(batch_size=48)]),
    "snn": (
        lambda: SNNExplorer(epochs=1, hidden=16, steps=4),
        {"loss", "test accuracy"},
        [_set(tau=4.0, surrogate="sigmoid"), lambda ex: ex.train(), _set(group=2)],
    ),
}


def _arrays(trace):
    for key in ("x", "y", "z"):
        value = getattr(trace, key, None)
        if value is not None:
            yield key, np.asarray(value, dtype=object)


def _non_empty(trace) -> bool:
    return any(a.size > 0 for _, a in _arrays(trace))


def _json(value) -> str:
    state, _paths, _buffers = _remove_buffers({"v": _py_to_js(value, None)})
    return json.dumps(state, allow_nan=False)


def _check_meaningful(fig, where):
    for trace in fig.data:
        assert trace.name and not re.fullmatch(r"trace \d+", trace.name), (where, trace.name)
        if trace.showlegend is False or trace.type in ("heatmap", "bar"):
            continue
        marker = getattr(trace, "marker", None)
        if marker is None:
            continue
        colors = [marker.color]
        if isinstance(marker.symbol, str) and marker.symbol.endswith(("-thin", "-open")):
            colors.append(marker.line.color)
        for c in colors:
            assert not (isinstance(c, str) and c.replace(" ", "").lower() in _WHITE), (
                where,
                trace.name,
            )


@pytest.mark.parametrize("case", sorted(CASES))
def test_figures_are_born_complete_and_stay_reload_safe(case):
    make, empty_until_run, steps = CASES[case]
    ex = make()
    counts, sent = {}, []
    for name, fig in ex.figures.items():
        assert isinstance(fig, LiveFigure), name
        counts[name] = len(fig.data)
        for trace in fig.data:
            if not any(key in trace.name for key in empty_until_run):
                assert _non_empty(trace), (case, name, trace.name)
        _check_meaningful(fig, (case, name))
        fig.observe(lambda change: sent.append(change["new"]), names=list(_MESSAGES))
        _json(fig.get_state())

    for i, step in enumerate(steps):
        step(ex)
        assert "Error" not in ex.status.value, (case, i, ex.status.value)
        for name, fig in ex.figures.items():
            assert len(fig.data) == counts[name], (case, i, name)
            _check_meaningful(fig, (case, i, name))
            # What a reload receives is the figure as it is now, JSON-safe.
            _json(fig.get_state())
            for held, trace in zip(fig._widget_data, fig.data):
                for key, arr in _arrays(trace):
                    got = np.asarray(json_safe(held.get(key, [])), dtype=object)
                    want = np.asarray(json_safe(arr.tolist()), dtype=object)
                    assert got.shape == want.shape and (got == want).all(), (case, name, key)
    sent = [m for m in sent if m is not None]
    assert sent, "the steps changed nothing"
    for msg in sent:
        _json(msg)
        assert "trace_data" not in msg and "delete_inds" not in msg  # no trace added/removed


def test_json_safe_replaces_every_non_finite_value():
    value = {
        "a": [1.0, math.nan, {"b": -math.inf}],
        "c": np.array([1.0, np.inf]),
        "d": np.array([[np.nan, 2.0]]),
        "e": np.array([1.0, 2.0]),
        "f": np.float32("nan"),
    }
    out = json_safe(value)
    assert out["a"] == [1.0, None, {"b": None}]
    assert out["c"] == [1.0, None] and out["d"] == [[None, 2.0]] and out["f"] is None
    assert out["e"] is value["e"]  # finite arrays stay arrays (sent as binary buffers)
    _json(out)
    with pytest.raises(ValueError):
        json.dumps(value["a"], allow_nan=False)  # the check itself can fail


def test_a_figure_of_plain_lists_reaches_the_front_end(monkeypatch):
    """Browser regression: the comm opens before plotly has set up the figure; plotly then
    sends ``_widget_data``.  A silent refresh of it while plotly sent ``_widget_layout`` made
    that assignment compare equal, so a figure of plain lists (the SNN cost bars) reached the
    front end with no data until a reload."""
    import ipywidgets.widgets.widget as ww
    import plotly.graph_objects as go

    sent: list[dict] = []

    class Comm:
        comm_id, kernel = "fake", object()

        def __init__(self, **kw):
            sent.append(kw.get("data", {}).get("state", {}))

        def send(self, data=None, buffers=None, **kw):
            sent.append((data or {}).get("state", {}))

        def on_msg(self, *a):
            pass

        def on_close(self, *a):
            pass

        def close(self, *a, **kw):
            pass

    monkeypatch.setattr(ww.comm, "create_comm", lambda **kw: Comm(**kw))
    fig = go.Figure()
    fig.add_bar(x=["forward", "backward"], y=[0, 0], name="baseline time")
    fig.add_bar(x=["forward", "backward"], y=[1, 2], name="accelerator")
    LiveFigure(fig)
    data = [s["_widget_data"] for s in sent if s.get("_widget_data")]
    assert data, "the figure's traces never reached the front end"
    last = data[-1]
    assert [t["name"] for t in last] == ["baseline time", "accelerator"]
    assert list(last[1]["x"]) == ["forward", "backward"] and list(last[1]["y"]) == [1, 2]
