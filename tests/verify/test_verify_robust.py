"""Regression tests of issue 10 for toolkit.verify: devices, the device policy, a soundness
check that cannot be fooled, bounded cost, memory limits and non-finite input."""

from __future__ import annotations

import math

import pytest
import torch

import toolkit.verify as V
from toolkit.verify import api

from ._helpers import tiny_input, tiny_model


def _op_tensors(graph):
    for name, node in graph.nodes.items():
        if node.op is not None:
            for key, val in vars(node.op).items():
                if isinstance(val, torch.Tensor):
                    yield f"{name}.{key}", val


@pytest.mark.parametrize("layernorm", ["standard", "no_var", "none"])
@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_graph_constants_follow_the_model_device(layernorm, activation):
    # The meta device stands in for CUDA: a constant built without device= lands on the CPU
    # (and a CPU constant times a meta weight fails), as it did with a CUDA model.
    model = tiny_model(layernorm=layernorm, activation=activation).to("meta")
    graph = V.build_graph(model, 4)
    wrong = [(n, t.device, t.dtype) for n, t in _op_tensors(graph) if t.device.type != "meta"]
    assert not wrong
    assert {t.dtype for _, t in _op_tensors(graph)} == {torch.float64}


def test_toolkit_device_is_honoured_and_checked(monkeypatch):
    model = tiny_model()
    e = tiny_input(model, B=1, T=3)
    spec = V.LpBall(0.01, positions=[1])
    monkeypatch.setenv("TOOLKIT_DEVICE", "gpu")
    with pytest.raises(ValueError, match="TOOLKIT_DEVICE"):
        V.bounds(model, e, spec, "ibp")
    monkeypatch.setenv("TOOLKIT_DEVICE", "cpu")
    lo, _ = V.bounds(model, e, spec, "ibp")
    assert lo.device.type == "cpu"
    if not torch.cuda.is_available():
        monkeypatch.setenv("TOOLKIT_DEVICE", "cuda")
        with pytest.raises(ValueError, match="needs a CUDA GPU"):
            V.bounds(model, e, spec, "ibp")
        monkeypatch.delenv("TOOLKIT_DEVICE")
        for call in (
            lambda: V.bounds(model, e, spec, "ibp", device="cuda"),
            lambda: V.certified_radius(model, e, 0, [1], method="ibp", device="cuda"),
            lambda: V.check_soundness(model, e, spec, lo, lo, device="cuda"),
        ):
            with pytest.raises(ValueError, match=r"device='cuda' needs a CUDA GPU"):
                call()


def test_nan_or_inf_embeddings_are_refused():
    model = tiny_model()
    e = tiny_input(model, B=2, T=3)
    for bad in (math.nan, math.inf, -math.inf):
        x = e.clone()
        x[1, 2, 0] = bad
        with pytest.raises(ValueError, match="e must be finite"):
            V.bounds(model, x, V.LpBall(0.01, positions=[1]), "crown")
        with pytest.raises(ValueError, match="e must be finite"):
            V.graph_bounds(V.build_graph(model, 3), x, V.LpBall(0.01), "ibp")


def test_soundness_check_cannot_be_fooled():
    model = tiny_model()
    e = tiny_input(model, B=1, T=3)
    spec = V.LpBall(0.02, positions=[1])
    lo, hi = V.bounds(model, e, spec, "crown")
    kw = dict(samples=8, pgd_steps=2, seed=0)
    assert V.check_soundness(model, e, spec, lo, hi, **kw).ok
    # NaN and infinite bounds fail, with the reason
    for bad in (math.nan, math.inf, -math.inf):
        res = V.check_soundness(model, e, spec, torch.full_like(lo, bad), hi, **kw)
        assert not res.ok and res.problems and "lower" in res.problems[0]
        res = V.check_soundness(model, e, spec, lo, torch.full_like(hi, bad), **kw)
        assert not res.ok and "upper" in res.problems[0]
    # bounds wrong by 1.0 fail at any valid atol; atol=nan and atol<0 are errors
    assert not V.check_soundness(model, e, spec, lo + 1.0, hi, atol=0.0, **kw).ok
    for atol in (math.nan, -1.0, math.inf):
        with pytest.raises(ValueError, match="atol"):
            V.check_soundness(model, e, spec, lo + 1.0, hi, atol=atol, **kw)
    for name, value in (("samples", -1), ("samples", 0), ("pgd_steps", -1), ("pgd_restarts", 0)):
        with pytest.raises(ValueError, match=name):
            V.check_soundness(model, e, spec, lo, hi, **{**kw, name: value})


def test_certified_radius_with_tol_below_the_float_spacing_returns():
    model = tiny_model()
    e = tiny_input(model, B=1, T=3)
    y = int(model(e).argmax())
    coarse = V.certified_radius(model, e, y, [1], method="ibp", tol=1e-4, max_eps=1.0)
    fine = V.certified_radius(model, e, y, [1], method="ibp", tol=1e-300, max_eps=1.0)
    assert float(coarse) <= float(fine) <= float(coarse) + 1e-4
    # the returned radius is itself certified, and one ulp above it is not
    r = float(fine)
    up = math.nextafter(r, math.inf)
    for eps, want in ((r, True), (up * (1 + 1e-12), False)):
        lo, _ = V.margin_bounds(model, e, V.LpBall(eps, positions=[1]), y, "ibp")
        assert bool((torch.cat([lo[0, :y], lo[0, y + 1 :]]) > 0).all()) == want
    with pytest.raises(ValueError, match="tol must be smaller than max_eps"):
        V.certified_radius(model, e, y, [1], method="ibp", tol=2.0, max_eps=1.0)


def test_synonym_subsets_are_capped_with_the_count():
    cands = {t: torch.zeros(1, 4) for t in range(20)}
    with pytest.raises(ValueError, match=r"184756 position subsets.*max_subsets=1000"):
        V.Synonyms(cands, budget=10)
    assert len(V.Synonyms(cands, budget=2).domains(torch.zeros(1, 20, 4))) == 190
    with pytest.raises(ValueError, match="max_subsets"):
        V.Synonyms(cands, budget=2, max_subsets=100)


def test_margin_bounds_needs_a_label():
    model = tiny_model()
    e = tiny_input(model, B=1, T=3)
    with pytest.raises(TypeError, match="label must be"):
        V.margin_bounds(model, e, V.LpBall(0.01), None)
    with pytest.raises(ValueError, match=r"label must lie in \[0, 3\)"):
        V.margin_bounds(model, e, V.LpBall(0.01), 3)


def test_bad_sizes_are_errors():
    model = tiny_model()
    e = tiny_input(model, B=1, T=3)
    for T in (0, model.max_len + 1, "4"):
        with pytest.raises((TypeError, ValueError), match="T"):
            V.build_graph(model, T)
    with pytest.raises(ValueError, match="batch"):
        V.estimate_memory(model, 3, batch=-2)
    for chunk in (0, "4", 1.5):
        with pytest.raises((TypeError, ValueError), match="chunk_size"):
            V.bounds(model, e, V.LpBall(0.01), chunk_size=chunk)
    with pytest.raises(ValueError, match="e must hold at least one sentence"):
        V.bounds(model, e[:0], V.LpBall(0.01))
    with pytest.raises(ValueError, match="min_len"):
        V.make_dataset(4, min_len=3)


def test_default_memory_limit_comes_from_free_memory(monkeypatch):
    avail = api._available_ram()
    with open("/proc/meminfo") as f:
        line = next(ln for ln in f if ln.startswith("MemAvailable:"))
    assert abs(avail - int(line.split()[1]) * 1024) < 0.2 * avail + 2**28
    assert V.api.default_memory_limit("cpu") == pytest.approx(
        api.MEMORY_FRACTION * api._available_ram(), rel=0.2
    )
    # without memory_limit a run that cannot fit the default fails at once, before work
    model = tiny_model()
    e = tiny_input(model, B=1, T=6)
    spec = V.LpBall(0.01)  # all positions: the forward method's linear bounds are large
    need = V.estimate_memory(model, 6, spec, "forward", chunk_size=1)
    monkeypatch.setattr(api, "_available_ram", lambda: need)  # the limit is half of it
    with pytest.raises(V.BoundMemoryError, match="default limit"):
        V.bounds(model, e, spec, "forward")
    monkeypatch.setattr(api, "_available_ram", lambda: 4 * need)
    lo, hi = V.bounds(model, e, spec, "forward")
    assert bool((lo <= hi).all())


def test_long_runs_show_progress_and_stop_cleanly_on_interrupt(monkeypatch, capsys):
    from tqdm.auto import tqdm

    from toolkit.verify import propagate

    model = tiny_model(layernorm="standard", activation="gelu")
    e = tiny_input(model, B=1, T=4)
    spec = V.LpBall(0.02, positions=[1])
    ref = V.bounds(model, e, spec, "crown")
    assert "backward passes" not in capsys.readouterr().err  # short: no bar
    monkeypatch.setattr(propagate, "PROGRESS_WORK", 0)  # every run counts as long
    V.bounds(model, e, spec, "crown")
    assert "crown: backward passes" in capsys.readouterr().err
    # Ctrl-C in the middle of the backward passes: raised, the bar closed, and the next
    # call gives the same bounds as before (nothing kept from the interrupted run)
    real = propagate.Propagator.backward_bounds
    calls = []

    def interrupted(self, *args, **kw):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(self, *args, **kw)

    monkeypatch.setattr(propagate.Propagator, "backward_bounds", interrupted)
    with pytest.raises(KeyboardInterrupt):
        V.bounds(model, e, spec, "crown")
    assert not [b for b in getattr(tqdm, "_instances", ()) if "backward" in str(b.desc)]
    monkeypatch.setattr(propagate.Propagator, "backward_bounds", real)
    again = V.bounds(model, e, spec, "crown")
    assert torch.equal(again[0], ref[0]) and torch.equal(again[1], ref[1])
