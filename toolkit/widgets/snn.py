"""SNNExplorer: LIF dynamics, BPTT training, dual sparsity, LUTs and the H2Learn cost model.

The model is :mod:`toolkit.snn` plus the pure functions :func:`neuron_demo` and
:func:`lut_savings` below (arrays in, arrays out); the explorer only lays out controls and
redraws.  On a GPU the network trains and is profiled on CUDA, so the neurons run the fused
kernels of ``kernels/lif.cu``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import ipywidgets as W
import numpy as np
import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots

from .. import gpu_available
from ..snn import (
    PHASES,
    SURROGATES,
    h2learn_cost,
    lif_multistep,
    lut_counts,
    sparsity_profile,
    spiking_mlp,
    surrogate_grad,
    train_bptt,
)
from ..snn.cost import CostBreakdown
from ..snn.profile import SparsityProfile
from ._background import BackgroundTask
from ._base import Explorer, row

#: The cost figure's last category: the whole BPTT step (pipelined or not).
_WHOLE_STEP = "whole step"

__all__ = ["SNNExplorer", "lut_savings", "neuron_demo"]

_DENSITIES = np.linspace(0.01, 0.6, 60)


def neuron_demo(
    tau: float = 2.0,
    surrogate: str = "atan",
    reset: str = "hard",
    current: float = 0.8,
    steps: int = 40,
    neurons: int = 16,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Spikes, membrane potential and surrogate derivative of ``neurons`` LIF neurons driven
    by noisy constant currents around ``current`` (the model behind the raster and traces).

    Returns a dict of ``[steps, neurons]`` arrays: ``spikes``, ``membrane``, ``surrogate``.

    >>> d = neuron_demo(current=2.0, steps=10, neurons=3)
    >>> d["spikes"].shape, bool(d["spikes"].any())
    ((10, 3), True)
    """
    g = torch.Generator().manual_seed(seed)
    base = current * torch.linspace(0.6, 1.4, neurons, dtype=torch.float64)
    x = base + 0.3 * torch.randn(steps, neurons, generator=g, dtype=torch.float64)
    v_reset = 0.0 if reset == "hard" else None
    s, v = lif_multistep(x, tau, 1.0, v_reset, surrogate, return_membrane=True, backend="cpu")
    # H[t] before the reset, recharged from V[t-1] (both resets leak towards 0 here).
    v_prev = torch.cat([torch.zeros(1, neurons, dtype=torch.float64), v[:-1]])
    h = v_prev + (x - v_prev) / tau
    return {
        "spikes": s.numpy(),
        "membrane": v.numpy(),
        "surrogate": surrogate_grad(h - 1.0, surrogate).numpy(),
    }


def lut_savings(
    group: int, in_features: int = 512, out_features: int = 128, samples: int = 1024
) -> dict[str, np.ndarray]:
    """Additions of dense, zero-skipping and LUT accumulation per density (``_DENSITIES``).

    >>> r = lut_savings(4)
    >>> bool((r["dense"] >= r["lut"]).all())
    True
    """
    rows = [lut_counts(in_features, out_features, group, float(d), samples) for d in _DENSITIES]
    return {
        "density": _DENSITIES.copy(),
        "dense": np.array([c.dense_adds for c in rows]),
        "skip": np.array([c.skip_adds for c in rows]),
        "lut": np.array([c.lut_adds for c in rows]),
    }


class SNNExplorer(Explorer):
    """Explore LIF neurons, train a spiking MLP on the digits by BPTT, and see where an
    H2Learn-style accelerator gains.

    Live controls redraw the neuron panel, the LUT curves and the cost breakdown; the Train
    button trains (``epochs``), profiles the trained network and fills the heatmaps.

    >>> ex = SNNExplorer()                                 # doctest: +SKIP
    >>> ex.controls["epochs"].value = 2; ex.train()        # doctest: +SKIP
    >>> ex.figures["cost"].data[0].y                       # doctest: +SKIP
    """

    # ``pipelined`` is a parameter of the cost model only, which needs the trained network's
    # profile: it acts after the background training run (see __init__), not on the analytic
    # panels, so it is not a live control.
    live_controls = ("tau", "surrogate", "reset", "current", "group")

    def __init__(self, *, epochs: int = 3, hidden: int = 128, steps: int = 8, seed: int = 0):
        self._epochs, self._hidden, self._steps, self.seed = epochs, hidden, steps, seed
        self.device = "cuda" if gpu_available() else "cpu"
        self.profile: SparsityProfile | None = None
        self.cost: CostBreakdown | None = None
        self.history: dict[str, list[float]] = {"loss": [], "test": []}
        super().__init__()
        self.controls["pipelined"].observe(lambda _change: self._draw_cost(), names="value")

    # -- layout ------------------------------------------------------------------------------
    def _build(self) -> W.Widget:
        style = {"style": {"description_width": "90px"}}
        slider = {"continuous_update": False, **style}
        c = self.controls
        c["tau"] = W.FloatSlider(value=2.0, min=1.0, max=10.0, step=0.5, description="τ", **slider)
        c["surrogate"] = W.Dropdown(
            options=list(SURROGATES), value="atan", description="surrogate", **style
        )
        c["reset"] = W.ToggleButtons(options=["hard", "soft"], value="hard", description="reset")
        c["current"] = W.FloatSlider(
            value=0.8, min=0.0, max=3.0, step=0.1, description="current", **slider
        )
        c["group"] = W.IntSlider(value=4, min=1, max=8, description="LUT group g", **slider)
        c["pipelined"] = W.Checkbox(value=True, description="pipelined engines")
        c["epochs"] = W.IntSlider(value=self._epochs, min=1, max=30, description="epochs", **slider)
        self.train_button = W.Button(description="Train + profile", button_style="primary")
        self.train_button.on_click(lambda _b: self.start_train())
        self.task = BackgroundTask("epoch")
        self.progress = self.task.bar.progress

        neuron = make_subplots(
            rows=1, cols=3, subplot_titles=("spike raster", "membrane V[t]", "surrogate σ'")
        )
        neuron.add_scatter(
            x=[],
            y=[],
            mode="markers",
            name="spikes",
            row=1,
            col=1,
            marker=dict(symbol="line-ns-open", size=10),
        )
        for k in range(3):
            neuron.add_scatter(x=[], y=[], mode="lines", name=f"neuron {k}", row=1, col=2)
        neuron.add_heatmap(
            z=[[0]], name="surrogate", colorscale="Viridis", showscale=False, row=1, col=3
        )
        neuron.update_layout(height=300, margin=dict(t=40, b=30))
        lut = go.Figure()
        for name in ("dense", "zero-skipping", "LUT"):
            lut.add_scatter(x=[], y=[], mode="lines", name=name)
        lut.update_layout(
            height=300,
            title="additions vs input density (512→128, 1024 samples)",
            xaxis_title="spike density",
            yaxis_title="additions",
            yaxis_type="log",
        )
        training = make_subplots(rows=1, cols=2, subplot_titles=("loss", "test accuracy"))
        training.add_scatter(x=[], y=[], mode="lines+markers", name="loss", row=1, col=1)
        training.add_scatter(x=[], y=[], mode="lines+markers", name="test accuracy", row=1, col=2)
        training.update_layout(height=260, margin=dict(t=40, b=30))
        sparsity = make_subplots(
            rows=1,
            cols=3,
            subplot_titles=("forward: spike density", "backward: dL/dX zeros", "dL/dX small"),
        )
        for k, name in enumerate(("spike density", "dL/dX zeros", "dL/dX small"), start=1):
            sparsity.add_heatmap(
                z=[[0]],
                name=name,
                zmin=0,
                zmax=1,
                colorscale="Blues",
                showscale=k == 3,
                row=1,
                col=k,
            )
        sparsity.update_xaxes(title_text="time step")
        sparsity.update_layout(height=280, margin=dict(t=40, b=30))
        cost = go.Figure()
        # The last bar pair is the whole BPTT step, where pipelining shows: the engines overlap
        # (the slowest phase sets the time) or run one after another (the phases add up).
        steps = [*PHASES, _WHOLE_STEP]
        cost.add_bar(x=steps, y=[0] * len(steps), name="baseline time")
        cost.add_bar(x=steps, y=[0] * len(steps), name="H2Learn-style time")
        cost.update_layout(
            height=300,
            barmode="group",
            yaxis_title="µs per sample",
            title="cost model (train first)",
        )
        f = {
            name: self._figure(name, fig, "640px")
            for name, fig in (
                ("neuron", neuron),
                ("lut", lut),
                ("training", training),
                ("sparsity", sparsity),
                ("cost", cost),
            )
        }
        return W.VBox(
            [
                W.HTML(f"<b>Spiking networks by BPTT</b> (device: {self.device})"),
                row(c["tau"], c["surrogate"], c["current"]),
                c["reset"],
                row(f["neuron"]),
                row(c["group"], c["pipelined"]),
                row(f["lut"]),
                row(c["epochs"], self.train_button, self.task.widget),
                row(f["training"]),
                row(f["sparsity"]),
                row(f["cost"]),
                self.status,
            ],
            layout=W.Layout(max_width="100%"),
        )

    # -- model -> view -----------------------------------------------------------------------
    def _update(self) -> None:
        v = self.values()
        demo = neuron_demo(v["tau"], v["surrogate"], v["reset"], v["current"], seed=self.seed)
        t_axis = np.arange(demo["spikes"].shape[0])
        ts, ns = np.nonzero(demo["spikes"])
        lut = lut_savings(v["group"])
        f = self.figures
        with f["neuron"].batch_update():
            f["neuron"].data[0].x, f["neuron"].data[0].y = ts, ns
            for k in range(3):
                f["neuron"].data[1 + k].x = t_axis
                f["neuron"].data[1 + k].y = demo["membrane"][:, 5 * k]
            f["neuron"].data[4].z = demo["surrogate"].T
        with f["lut"].batch_update():
            for k, key in enumerate(("dense", "skip", "lut")):
                f["lut"].data[k].x, f["lut"].data[k].y = lut["density"], lut[key]
        self._draw_cost()

    def _draw_cost(self) -> None:
        if self.profile is None:
            return
        v = self.values()
        self.cost = h2learn_cost(self.profile, group=v["group"], pipelined=v["pipelined"])
        fig = self.figures["cost"]
        base, accel = self.cost.baseline_time.sum(0), self.cost.accel_time.sum(0)
        whole = accel.max() if self.cost.pipelined else accel.sum()
        with fig.batch_update():
            fig.data[0].y = 1e6 * np.append(base, base.sum())
            fig.data[1].y = 1e6 * np.append(accel, whole)
            fig.layout.title.text = (
                f"estimated speed-up {self.cost.speedup:.2f}×, "
                f"energy saving {self.cost.energy_saving:.2f}×"
            )

    def start_train(self) -> None:
        """What the Train button does: :meth:`train` in the background, with progress and
        Cancel (which stops after the current epoch)."""
        self.train_button.disabled = True

        def job(step: Any) -> None:
            try:
                self.train(progress=step)
            finally:
                self.train_button.disabled = False

        self.task.start(job)

    def train(self, progress: Callable[[int, int], Any] | None = None) -> None:
        """Train the spiking MLP with the current surrogate and τ, then profile it.

        ``progress(done, total)`` follows the epochs (default: the explorer's bar).
        """
        v = self.values()
        from ..data import digits

        data = digits(seed=self.seed)
        net = spiking_mlp(
            (64, self._hidden, 10),
            steps=self._steps,
            seed=self.seed,
            tau=v["tau"],
            surrogate=v["surrogate"],
            v_reset=0.0 if v["reset"] == "hard" else None,
        ).to(self.device)
        step = self.task.bar if progress is None else progress
        step(0, v["epochs"])
        self.history = {"loss": [], "test": []}
        fig = self.figures["training"]

        def on_epoch(epoch: int, result: Any) -> None:
            step(epoch + 1, v["epochs"])
            self.history = {"loss": list(result.loss), "test": list(result.test_accuracy)}
            with fig.batch_update():
                epochs = np.arange(1, len(result.loss) + 1)
                fig.data[0].x, fig.data[0].y = epochs, np.array(result.loss)
                fig.data[1].x, fig.data[1].y = epochs, np.array(result.test_accuracy)

        train_bptt(
            net,
            data.x_train,
            data.y_train,
            data.x_test,
            data.y_test,
            epochs=v["epochs"],
            seed=self.seed,
            progress=False,
            callback=on_epoch,
        )
        self.profile = sparsity_profile(net, (data.x_test[:256], data.y_test[:256]))
        p = self.profile
        with self.figures["sparsity"].batch_update():
            for k, arr in enumerate((p.spike_density, p.grad_out_zero, p.grad_out_small)):
                trace = self.figures["sparsity"].data[k]
                trace.z, trace.y = np.nan_to_num(arr, nan=0.0), p.names
                trace.x = np.arange(p.steps)
        self._draw_cost()
