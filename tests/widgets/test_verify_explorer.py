"""BoundsExplorer driven headless: set controls, read the figures back, compare with the API."""

from __future__ import annotations

import math

import numpy as np
import pytest

pytest.importorskip("plotly")
pytest.importorskip("ipywidgets")

from toolkit.verify import LpBall, bounds, certified_radius, load_default_model, margin_bounds
from toolkit.widgets import BoundsExplorer
from toolkit.widgets.verify import RADIUS_RANGE

SENTENCE = "a wonderful film"
METHODS = ("ibp", "crown", "forward", "baf")


@pytest.fixture(scope="module")
def explorer():
    return BoundsExplorer(SENTENCE, positions=[1], eps=0.01)


@pytest.fixture(scope="module")
def model():
    m, vocab = load_default_model()
    return m, vocab


def _embed(model, sentence):
    m, vocab = model
    return m.embed(vocab.encode(sentence)).detach()


def _trace(fig, name):
    return next(t for t in fig.data if t.name == name)


def _arr(values):
    return np.asarray(values, dtype=float)


def test_positions_follow_the_sentence(explorer):
    opts = explorer.controls["positions"].options
    assert [label for label, _ in opts] == ["0: a", "1: wonderful", "2: film"]
    assert explorer.controls["positions"].value == (1,)


@pytest.mark.parametrize("method,p", [("crown", 2.0), ("baf", math.inf), ("forward", 1.0)])
def test_logit_intervals_equal_bounds(explorer, model, method, p):
    c = explorer.controls
    c["p"].value, c["eps"].value, c["method"].value = p, 0.02, method
    c["positions"].value = (0, 2)
    explorer.wait(120)  # CROWN and BaF are computed in the background
    e = _embed(model, SENTENCE)
    spec = LpBall(0.02, p=p, positions=[0, 2])
    lo, hi = bounds(model[0], e, spec, method)
    fig = explorer.figures["logits"]
    bar = _trace(fig, "certified interval")
    np.testing.assert_allclose(_arr(bar.base), lo.numpy(), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(_arr(bar.base) + _arr(bar.y), hi.numpy(), rtol=1e-9)
    clean = model[0].double()(e[None].double())[0].detach().numpy()
    np.testing.assert_allclose(_arr(_trace(fig, "clean logit").y), clean, rtol=1e-10)
    # the margin bounds behind the "certified" verdict are those of margin_bounds
    label = int(clean.argmax())
    mlo, _ = margin_bounds(model[0], e, spec, label, method)
    got = explorer.results[method]
    np.testing.assert_allclose(got.margin_lower, mlo.numpy(), rtol=1e-9, atol=1e-12)
    assert got.certified == bool((np.delete(mlo.numpy(), label) > 0).all())


def test_tiny_eps_shrinks_to_clean_logits(explorer):
    c = explorer.controls
    c["positions"].value = (1,)
    c["p"].value, c["method"].value = 2.0, "crown"
    c["eps"].value = 1e-6
    explorer.wait(120)
    fig = explorer.figures["logits"]
    bar, clean = _trace(fig, "certified interval"), _trace(fig, "clean logit")
    lo, width = _arr(bar.base), _arr(bar.y)
    assert np.all(width >= 0) and np.all(width < 1e-3)
    assert np.all(lo <= _arr(clean.y) + 1e-9)
    assert np.all(lo + width >= _arr(clean.y) - 1e-9)
    assert "certified" in fig.layout.title.text


def test_methods_view_and_ibp_looser_than_crown(explorer, model):
    c = explorer.controls
    c["positions"].value = (1,)
    c["p"].value, c["eps"].value = 2.0, 0.05
    explorer.wait(120)
    y = dict(zip(explorer.figures["methods"].data[0].x, explorer.figures["methods"].data[0].y))
    assert set(y) == {*METHODS, "alpha-crown"}
    assert y["alpha-crown"] is None or math.isnan(y["alpha-crown"])  # only while selected
    assert y["ibp"] >= y["crown"] and y["ibp"] >= y["baf"] and y["forward"] >= y["crown"]
    lo, hi = bounds(model[0], _embed(model, SENTENCE), LpBall(0.05, 2, [1]), "ibp")
    assert y["ibp"] == pytest.approx(float((hi - lo).mean()), rel=1e-9)


def test_layer_widths_equal_intermediate_bounds(explorer, model):
    c = explorer.controls
    c["positions"].value = (1,)
    c["p"].value, c["eps"].value = math.inf, 0.01
    explorer.wait(120)
    e = _embed(model, SENTENCE)
    fig = explorer.figures["layers"]
    for method in METHODS:
        _, _, inter = bounds(
            model[0], e, LpBall(0.01, "inf", [1]), method, return_intermediate=True
        )
        trace = _trace(fig, method)
        assert list(trace.x) == list(inter)
        expect = [float((u - l).mean()) for l, u in inter.values()]
        np.testing.assert_allclose(_arr(trace.y), expect, rtol=1e-9)
    c["method"].value = "baf"
    explorer.wait(120)
    assert _trace(fig, "baf").line.width > _trace(fig, "ibp").line.width


def test_run_fills_radius_heatmap(explorer, model):
    c = explorer.controls
    c["p"].value, c["method"].value = 2.0, "forward"
    explorer.wait(120)
    row = explorer.run()
    assert explorer.progress.value == explorer.progress.max == 3
    m, _ = model
    e = _embed(model, SENTENCE)
    label = int(m(e[None]).argmax())
    max_eps, tol = RADIUS_RANGE[2.0]
    expect = certified_radius(
        m, e, label, [0, 1, 2], p=2, method="forward", tol=tol, max_eps=max_eps
    ).numpy()
    np.testing.assert_allclose(row, expect)
    hm = explorer.figures["radius"].data[0]
    z = np.asarray(hm.z, dtype=float)
    np.testing.assert_allclose(z[list(hm.y).index("forward")], expect)
    assert np.isnan(z[list(hm.y).index("crown")]).all()  # not run yet
    # a new norm clears the stale radii
    c["p"].value = 1.0
    assert np.isnan(np.asarray(explorer.figures["radius"].data[0].z, dtype=float)).all()


def test_example_dropdown_sets_sentence(explorer):
    ex = explorer.controls["example"]
    ex.value = ex.options[1]
    assert explorer.controls["sentence"].value == ex.options[1]
    words = ex.options[1].split()
    assert len(explorer.controls["positions"].options) == len(words)
    explorer.controls["sentence"].value = SENTENCE


def test_bad_inputs_go_to_the_status_line(explorer):
    c = explorer.controls
    c["sentence"].value = "  ,, "
    assert "ValueError" in explorer.status.value and "sentence" in explorer.status.value
    c["sentence"].value = SENTENCE
    c["positions"].value = ()
    assert "ValueError" in explorer.status.value and "positions" in explorer.status.value
    c["positions"].value = (1,)
    assert "Error" not in explorer.status.value


def test_constructor_rejects_bad_arguments():
    with pytest.raises(ValueError, match="method must be one of"):
        BoundsExplorer(SENTENCE, method="alpha")
    with pytest.raises(ValueError, match="p must be"):
        BoundsExplorer(SENTENCE, p=3)
    with pytest.raises(ValueError, match="eps must be"):
        BoundsExplorer(SENTENCE, eps=-1.0)
    with pytest.raises(TypeError, match="model and vocab"):
        BoundsExplorer(SENTENCE, model=load_default_model()[0])


def test_alpha_crown_on_demand_matches_bounds(explorer, model):
    c = explorer.controls
    c["positions"].value = (1,)
    c["p"].value, c["eps"].value, c["method"].value = 2.0, 0.05, "alpha-crown"
    explorer.wait(120)  # alpha-CROWN is computed in the background
    assert explorer.bounds_task.state == "finished"
    e = _embed(model, SENTENCE)
    lo, hi = bounds(model[0], e, LpBall(0.05, 2, [1]), "alpha-crown")
    bar = explorer.figures["logits"].data[0]
    np.testing.assert_allclose(_arr(bar.base), lo.numpy(), rtol=1e-9)
    np.testing.assert_allclose(_arr(bar.base) + _arr(bar.y), hi.numpy(), rtol=1e-9)
    y = dict(zip(explorer.figures["methods"].data[0].x, explorer.figures["methods"].data[0].y))
    assert y["alpha-crown"] <= y["crown"] + 1e-12
    c["method"].value = "crown"  # no background job outlives the test
    explorer.wait(120)


def test_perturbed_word_follows_the_sentence_and_unknown_words_are_named():
    ex = BoundsExplorer("a wonderful film")
    assert ex.controls["positions"].value == (1,)  # "wonderful", the sentiment word
    # before Run, the radius heatmap says what fills it
    assert "Run radii" in ex.figures["radius"].layout.annotations[0].text
    ex.controls["sentence"].value = "the film was truly wonderful"
    labels = [label for label, _ in ex.controls["positions"].options]
    assert labels[3] == "3: truly (<unk>, not in the vocabulary)"
    assert ex.controls["positions"].value == (4,)  # still "wonderful", now at index 4
    assert "truly" in ex.status.value and "vocabulary" in ex.status.value


def test_default_sentence_has_no_unknown_word_and_hairlines_show_their_width(model):
    ex = BoundsExplorer(eps=1e-5)
    assert all("<unk>" not in label for label, _ in ex.controls["positions"].options)
    bar = ex.figures["logits"].data[0]
    widths = _arr(bar.y)
    assert list(bar.text) == [f"width {w:.2g}" for w in widths]
    lo, hi = ex.figures["logits"].layout.yaxis.range
    clean = _arr(ex.figures["logits"].data[1].y)
    assert lo < min(clean.min(), _arr(bar.base).min()) and hi > clean.max()


def test_a_loaded_certification_is_drawn_per_position(explorer, tmp_path):
    """The certification panel shows a certify_dataset result: every computed (sentence,
    position) value in the box of its position, the failed sentences named."""
    from toolkit.verify import Certification, ShardFailure, load_certification

    values = np.array([[0.5, 0.25, np.nan], [0.75, 0.125, 1.0], [np.nan] * 3])
    cert = Certification(
        "radius",
        values,
        np.array([2, 3, 3]),
        np.array([1, 0, -1]),
        (ShardFailure((2,), 1, "RuntimeError: boom"),),
        {"method": "crown", "p": 2.0, "max_eps": 1.0},
    )
    path = cert.save(tmp_path / "cert.npz")
    explorer.cert_path.value = str(path)
    explorer.cert_button.click()
    fig = explorer.figures["certification"]
    box = fig.data[0]
    assert box.name == "certified radius"
    assert list(box.x) == [0, 0, 1, 1, 2]
    np.testing.assert_array_equal(_arr(box.y), [0.5, 0.75, 0.25, 0.125, 1.0])
    assert "3 sentences" in fig.layout.title.text and "1 failed" in fig.layout.title.text
    assert "failed sentences: [2]" in explorer.cert_info.value
    assert explorer.certification.same_values(load_certification(path))
    explorer.cert_path.value = str(tmp_path / "missing.npz")
    explorer.cert_button.click()  # a bad path is reported in the panel, the figure is kept
    assert "FileNotFoundError" in explorer.cert_info.value
    assert list(fig.data[0].x) == [0, 0, 1, 1, 2]


def test_certification_of_margins_from_the_api(explorer):
    """A fixed-ball result from certify_dataset itself (margins, tiny model, one position)."""
    import torch

    from toolkit.verify import LpBall, TransformerClassifier, certify_dataset

    torch.manual_seed(0)
    m = TransformerClassifier(20, dim=8, heads=2, ffn_dim=16, max_len=8)
    cert = certify_dataset(m, [[1, 2, 3], [4, 5, 6, 7]], LpBall(0.01), positions=[1],
                           method="ibp", progress=False)  # fmt: skip
    explorer.load_certification(cert)
    box = explorer.figures["certification"].data[0]
    assert box.name == "margin lower bound"
    assert list(box.x) == [1, 1]
    np.testing.assert_array_equal(_arr(box.y), cert.values[:, 1])


def test_backward_methods_come_from_the_background_and_are_never_recomputed(model, monkeypatch):
    import threading

    import toolkit.widgets.verify as verify_widget

    ex = BoundsExplorer(SENTENCE, positions=[1], eps=0.01, method="crown")
    calls, release = [], threading.Event()
    real = verify_widget.method_bounds

    def counted(m, e, spec, method, label):
        calls.append((spec.eps, method))
        if method == "crown":
            assert release.wait(60)
        return real(m, e, spec, method, label)

    monkeypatch.setattr(verify_widget, "method_bounds", counted)
    ex.controls["eps"].value = 0.02
    # IBP and forward answered at once; CROWN is being computed: the tighter of the two is
    # drawn and the title says so.
    asked = {m for _, m in calls}
    assert {"ibp", "forward"} <= asked <= {"ibp", "forward", "crown"}  # BaF waits for CROWN
    fig = ex.figures["logits"]
    assert "computing crown in the background" in fig.layout.title.text
    shown = fig.layout.title.text.split("(")[-1].split(" shown")[0]
    assert shown in ("ibp", "forward")
    lo, _ = bounds(model[0], _embed(model, SENTENCE), LpBall(0.02, 2, [1]), shown)
    np.testing.assert_allclose(_arr(fig.data[0].base), lo.numpy(), rtol=1e-9, atol=1e-12)
    release.set()
    ex.wait(120)
    assert sorted(m for _, m in calls) == ["baf", "crown", "forward", "ibp"]
    lo, _ = bounds(model[0], _embed(model, SENTENCE), LpBall(0.02, 2, [1]), "crown")
    np.testing.assert_allclose(_arr(fig.data[0].base), lo.numpy(), rtol=1e-9, atol=1e-12)
    assert "computing" not in fig.layout.title.text
    # back to settings seen before: nothing is computed again
    calls.clear()
    ex.controls["eps"].value = 0.01
    ex.controls["method"].value = "baf"
    ex.wait(120)
    assert calls == []
