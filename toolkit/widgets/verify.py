"""BoundsExplorer: certified bounds of a small transformer classifier, interactively.

The model is :mod:`toolkit.verify`'s public API (:func:`~toolkit.verify.bound_profile` for the
logits, margins and per-layer widths of one method, :func:`~toolkit.verify.certified_radius`;
the methods, their colours and which are computed on demand come from
:data:`~toolkit.verify.METHOD_TABLE`); this module adds two plain functions
(:func:`method_bounds`, :func:`radius_row`) and lays out controls and figures.  A
:func:`~toolkit.verify.certify_dataset` result (a whole data set's radii) is shown by
:meth:`BoundsExplorer.load_certification` (or the explorer's "certification" panel): one
box of radii per word position.
"""

from __future__ import annotations

import copy
import math
import os
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import ipywidgets as W
import numpy as np
import plotly.graph_objects as go
import torch

from .._backend import single_thread
from .._checks import check_choice, check_positive
from ..verify import (
    METHOD_TABLE,
    METHODS,
    Certification,
    LpBall,
    MethodName,
    VerifiableModel,
    Vocab,
    bound_profile,
    certification_figure,
    certified_radius,
    load_certification,
    load_default_model,
)
from ..verify.certify import certification_box_data, certification_title
from ..verify.specs import PNorm, normalize_p
from ..verify.task import EXAMPLES
from ._background import BackgroundTask
from ._base import Explorer, controls_column, row

__all__ = [
    "IN_BACKGROUND",
    "RADIUS_RANGE",
    "BoundsExplorer",
    "MethodBounds",
    "method_bounds",
    "radius_row",
]

#: p -> (max_eps, tol) of the explorer's coarse radius search (bisection, about 6 steps)
RADIUS_RANGE = {1.0: (2.0, 2.0 / 64), 2.0: (1.0, 1.0 / 64), math.inf: (0.25, 0.25 / 64)}
#: methods computed only while selected (slope optimisation takes seconds)
ON_DEMAND = tuple(m.name for m in METHOD_TABLE.values() if m.optimizes_slopes)
#: methods computed in the background after a control change, the selected one first, and
#: drawn as each finishes: their backward passes take about a second on a CPU even for the
#: default one-layer model; the others (IBP, forward: tens of ms) answer at once
IN_BACKGROUND = tuple(m.name for m in METHOD_TABLE.values() if m.backward)


@dataclass
class MethodBounds:
    """Bounds of one method for one sentence and perturbation.

    ``lower``/``upper`` [C]: logit bounds; ``margin_lower`` [C]: lower bounds on
    :math:`z_y - z_j` (0 at the label ``y``), computed inside the linear bounds;
    ``layers``: reported node names (:data:`toolkit.verify.graph.REPORTED`) and
    ``layer_width`` their mean bound width :math:`\\overline{u - l}`; ``seconds``: wall time.
    """

    method: str
    label: int
    lower: np.ndarray
    upper: np.ndarray
    margin_lower: np.ndarray
    layers: list[str]
    layer_width: np.ndarray
    seconds: float

    @property
    def width(self) -> float:
        """Mean width of the logit bounds."""
        return float(np.mean(self.upper - self.lower))

    @property
    def certified(self) -> bool:
        """True when every margin :math:`z_y - z_j` (j != y) is provably positive."""
        others = np.delete(self.margin_lower, self.label)
        return bool(np.all(others > 0))


def method_bounds(
    model: VerifiableModel, e: torch.Tensor, spec: LpBall, method: MethodName, label: int
) -> MethodBounds:
    """Logit bounds, margin bounds and per-layer widths of ``method`` in one propagation.

    ``e`` [T, D] word embeddings of one sentence, ``spec`` an :class:`~toolkit.verify.LpBall`;
    a numpy view of :func:`toolkit.verify.bound_profile` (whose docstring says how the
    bounds relate to :func:`~toolkit.verify.bounds` and :func:`~toolkit.verify.margin_bounds`).

    >>> model, vocab = load_default_model()                         # doctest: +SKIP
    >>> e = model.embed(vocab.encode("a wonderful film")).detach()  # doctest: +SKIP
    >>> method_bounds(model, e, LpBall(0.01, 2, [1]), "crown", 1).certified  # doctest: +SKIP
    True
    """
    prof = bound_profile(model, e, spec, label, method)
    return MethodBounds(
        prof.method,
        int(label),
        prof.lower.cpu().numpy(),
        prof.upper.cpu().numpy(),
        prof.margin_lower.cpu().numpy(),
        prof.layers,
        prof.layer_width.cpu().numpy(),
        prof.seconds,
    )


def radius_row(
    model: VerifiableModel,
    e: torch.Tensor,
    label: int,
    p: PNorm,
    method: MethodName,
    progress: Callable[[int, int], Any] | None = None,
) -> np.ndarray:
    """Certified radius of every position of one sentence ([T]), coarse (see RADIUS_RANGE).

    One :func:`~toolkit.verify.certified_radius` call per position so that ``progress(done,
    total)`` can follow; a value equal to ``max_eps`` means "at least max_eps".
    """
    p = normalize_p(p)
    max_eps, tol = RADIUS_RANGE[p]
    T = e.shape[0]
    out = np.zeros(T)
    for t in range(T):
        out[t] = float(
            certified_radius(model, e, label, [t], p=p, method=method, tol=tol, max_eps=max_eps)[0]
        )
        if progress is not None:
            progress(t + 1, T)
    return out


def _width_of(res: dict[str, MethodBounds]) -> Callable[[str], float]:
    return lambda m: res[m].width


def _words_typed(sentence: str, n: int) -> list[str]:
    """The words as typed (for labels of unknown words); ``"?"`` where they cannot be matched."""
    words = re.findall(r"[a-z0-9']+", sentence.lower())
    return words if len(words) == n else ["?"] * n


def _p_label(p: float) -> str:
    return "∞" if math.isinf(p) else str(int(p))


class BoundsExplorer(Explorer):
    """Certified logit bounds under an Lp ball on chosen word embeddings.

    Views: the logit intervals of the selected method beside the clean logits; the mean
    bound width after every layer for every method (which layer loosens the bound; alpha-CROWN,
    whose slope optimisation takes seconds, only while selected);
    the mean logit width per method at the current eps; and, behind **Run**, the certified
    radius of every position of the sentence for the selected method (a heatmap); and the
    certification of a whole data set (:func:`~toolkit.verify.certify_dataset`), one box of
    radii per position, from a file typed into its panel, :meth:`load_certification`, or
    the ``certification`` argument (a result or its file).

    >>> ex = BoundsExplorer("a really wonderful and moving film")  # doctest: +SKIP
    >>> ex.controls["eps"].value = 0.05                           # doctest: +SKIP
    >>> ex.figures["logits"].data[0].base                         # doctest: +SKIP
    """

    live_controls = ("sentence", "positions", "p", "eps", "method")

    def __init__(
        self,
        sentence: str | None = None,
        *,
        positions: Sequence[int] | None = None,
        p: PNorm = 2,
        eps: float = 0.01,
        method: str = "crown",
        model: VerifiableModel | None = None,
        vocab: Vocab | None = None,
        certification: str | os.PathLike | Certification | None = None,
    ) -> None:
        check_choice("method", method, METHODS)
        self._p = normalize_p(p)
        check_positive("eps", eps)
        if (model is None) != (vocab is None):
            raise TypeError("model and vocab must be given together (or neither)")
        if model is None or vocab is None:
            model, vocab = load_default_model()
        else:
            model = copy.deepcopy(model)
        self.model: VerifiableModel = model.double().eval()
        self.vocab: Vocab = vocab
        if sentence is None:  # the first example the model's vocabulary knows every word of
            unk = vocab.words.index("<unk>") if "<unk>" in vocab.words else -1
            known = [s for s, _ in EXAMPLES if unk not in vocab.encode(s).tolist()]
            sentence = (known or [EXAMPLES[0][0]])[0]
        self._sentence = sentence
        self._positions, self._eps, self._method = positions, float(eps), method
        self.classes = (
            ["negative", "positive"]
            if self.model.num_classes == 2
            else [f"class {c}" for c in range(self.model.num_classes)]
        )
        self._cache: dict[tuple[Any, ...], dict[str, MethodBounds]] = {}
        self._syncing = False
        self._radius_key: tuple[tuple[int, ...], float] | None = None
        self._lock = threading.Lock()
        self._wanted: tuple | None = None
        self._job_active = False
        self.results: dict[str, MethodBounds] = {}
        self.radii: dict[str, np.ndarray] = {}
        self.certification: Certification | None = None
        self._live = False  # the first frame computes every method before it is shown
        super().__init__()
        self._live = True
        if certification is not None:
            self.load_certification(certification)

    # -- layout ------------------------------------------------------------------------------
    def _build(self) -> W.Widget:
        c, style = self.controls, {"style": {"description_width": "80px"}}
        c["example"] = W.Dropdown(
            options=[s for s, _ in EXAMPLES], value=None, description="examples", **style
        )
        c["sentence"] = W.Text(
            value=self._sentence,
            description="sentence",
            continuous_update=False,
            layout=W.Layout(width="98%", max_width="420px"),
            **style,
        )
        c["positions"] = W.SelectMultiple(options=[], rows=6, description="perturb", **style)
        c["p"] = W.ToggleButtons(
            options=[("1", 1.0), ("2", 2.0), ("∞", math.inf)],
            value=self._p,
            description="norm p",
            **style,
        )
        c["eps"] = W.FloatLogSlider(
            value=self._eps,
            base=10,
            min=-6,
            max=0,
            step=0.05,
            readout_format=".2e",
            continuous_update=False,
            description="ε",
            **style,
        )
        c["method"] = W.ToggleButtons(
            options=list(METHODS), value=self._method, description="method", **style
        )
        c["example"].observe(self._on_example, names="value")
        self._sync_positions(self._sentence, self._positions)
        self.run_button = W.Button(description="Run radii", button_style="primary", icon="play")
        self.run_button.on_click(lambda _: self.start_run())
        self.task = BackgroundTask("positions")
        self.progress = self.task.bar.progress
        self.bounds_task = BackgroundTask("methods")
        top = dict(t=60, b=40)

        logits = go.Figure()
        logits.add_bar(
            x=[],
            y=[],
            name="certified interval",
            marker=dict(color="rgba(31,119,180,0.45)", line=dict(color="#1f77b4", width=2)),
            textposition="outside",
            cliponaxis=False,
        )
        logits.add_scatter(
            x=[],
            y=[],
            mode="markers",
            name="clean logit",
            marker=dict(color="#d62728", size=12, symbol="diamond"),
        )
        logits.update_layout(
            height=330,
            title="logit bounds",
            yaxis_title="logit",
            margin=top,
            modebar=dict(orientation="v"),
        )
        layers = go.Figure()
        for m in METHODS:
            layers.add_scatter(
                x=[], y=[], mode="lines+markers", name=m, line=dict(color=METHOD_TABLE[m].color)
            )
        layers.update_layout(
            height=330,
            title="mean bound width per layer",
            yaxis_type="log",
            margin=top,
            modebar=dict(orientation="v"),
        )
        methods = go.Figure()
        methods.add_bar(
            x=list(METHODS),
            y=np.zeros(len(METHODS)),
            name="mean logit width",
            marker=dict(color=[METHOD_TABLE[m].color for m in METHODS]),
            textposition="outside",
            cliponaxis=False,
        )
        methods.update_layout(
            height=330,
            title="methods at the current ε",
            yaxis_type="log",
            yaxis_title="mean width of the logit bounds",
            margin=top,
            modebar=dict(orientation="v"),
        )
        radius = go.Figure()
        radius.add_heatmap(
            x=[],
            y=list(METHODS),
            z=[[]],
            name="certified radius",
            colorscale="Viridis",
            colorbar=dict(title="radius"),
            zmin=0,
        )
        radius.update_layout(
            height=300,
            title="certified radius per position (Run)",
            margin=top,
            modebar=dict(orientation="v"),
            plot_bgcolor="white",
        )
        # A control, but not a live one: a path is read when Load is pressed.
        self.cert_path = c["certification"] = W.Text(
            placeholder="path of a certify_dataset result (.npz)",
            description="file",
            layout=W.Layout(width="98%", max_width="420px"),
            **style,
        )
        self.cert_button = W.Button(description="Load", icon="folder-open")
        self.cert_button.on_click(lambda _b: self._load_clicked())
        self.cert_info = W.HTML()
        controls = controls_column(
            c["example"],
            c["sentence"],
            c["positions"],
            c["p"],
            c["eps"],
            c["method"],
            self.run_button,
            self.task.widget,
            self.bounds_task.widget,
            self.status,
        )
        return W.VBox(
            [
                row(controls, self._figure("logits", logits, "520px")),
                row(
                    self._figure("layers", layers, "480px"),
                    self._figure("methods", methods, "420px"),
                ),
                row(self._figure("radius", radius, "640px")),
                row(
                    controls_column(
                        W.HTML("<b>certification of a data set</b>"),
                        self.cert_path,
                        self.cert_button,
                        self.cert_info,
                    ),
                    self._figure("certification", certification_figure(None), "640px"),
                ),
            ],
            layout=W.Layout(max_width="100%"),
        )

    # -- helpers -----------------------------------------------------------------------------
    def _on_example(self, change: dict) -> None:
        if change["new"]:
            self.controls["sentence"].value = change["new"]

    def _on_change(self, change: dict) -> None:
        if not self._syncing:
            self.update()

    def _sync_positions(self, sentence: str, positions=None) -> tuple[torch.Tensor, list[str]]:
        """Tokenise ``sentence``; rebuild the position options when the tokens changed."""
        ids = self.vocab.encode(sentence)
        if ids.numel() > self.model.max_len:
            raise ValueError(
                f"sentence must have at most {self.model.max_len} words, got {ids.numel()}"
            )
        words = [self.vocab.words[int(i)] for i in ids]
        typed = _words_typed(sentence, len(words))
        labels = [
            f"{t}: {w}" if w != "<unk>" else f"{t}: {typed[t]} (<unk>, not in the vocabulary)"
            for t, w in enumerate(words)
        ]
        sel = self.controls["positions"]
        if [o[0] for o in sel.options] != labels:
            if positions is None:
                # The perturbed words follow the sentence: the same words where they are now,
                # else its first sentiment word.
                old_words = [sel.options[t][0].split(": ", 1)[1] for t in sel.value]
                now = [lab.split(": ", 1)[1] for lab in labels]
                keep = sorted({now.index(w) for w in old_words if w in now})
                sentiment = set(self.vocab.positive) | set(self.vocab.negative)
                first = [t for t, i in enumerate(ids.tolist()) if i in sentiment][:1]
                positions = keep or first or [0]
            self._syncing = True
            try:
                sel.options = [(lab, t) for t, lab in enumerate(labels)]
                sel.value = tuple(int(t) for t in positions)
            finally:
                self._syncing = False
        return ids, labels

    def _bounds(self, ids, positions, p, eps, selected: str) -> dict[str, MethodBounds]:
        """The bounds of every method found so far for these settings.

        IBP and forward are computed here; the :data:`IN_BACKGROUND` methods (the selected
        one first; an :data:`ON_DEMAND` one only while selected) are requested from the
        background job, which redraws as each finishes (:meth:`wait` waits for it).  The
        first frame computes them all here.
        """
        key = (tuple(ids.tolist()), positions, p, eps)
        if key not in self._cache and len(self._cache) > 32:
            self._cache.clear()
        res = self._cache.setdefault(key, {})
        wanted = [m for m in METHODS if m == selected or m not in ON_DEMAND]
        wanted = sorted((m for m in wanted if m not in res), key=lambda m: m != selected)
        now = [
            m for m in wanted if m not in IN_BACKGROUND or (not self._live and m not in ON_DEMAND)
        ]
        if now:
            e, label, spec = self._problem(ids, positions, p, eps)
            for m in now:
                res[m] = method_bounds(self.model, e, spec, m, label)
        later = tuple(m for m in wanted if m not in now)
        if later:
            self._request((key, ids, positions, p, eps, later))
        return res

    def _problem(self, ids, positions, p, eps) -> tuple[torch.Tensor, int, LpBall]:
        e = self.model.embed(ids).detach()
        with torch.no_grad():
            label = int(self.model(e[None]).argmax())
        return e, label, LpBall(eps, p=p, positions=list(positions))

    def _request(self, request: tuple) -> None:
        """Compute methods in the background; the newest request wins."""
        with self._lock:
            current = self._wanted
            if (
                current is not None
                and current[0] == request[0]
                and set(request[-1]) <= set(current[-1])
            ):
                return  # asked for already
            self._wanted = request
            if self._job_active:
                return
            self._job_active = True
        self.bounds_task.join(5)  # a job that just finished may still be returning
        self.bounds_task.start(self._background_job)

    def _background_job(self, step: Callable[[int, int], None]) -> None:
        try:
            while True:
                with self._lock:
                    req = self._wanted
                    if req is None:
                        break
                key, ids, positions, p, eps, methods = req
                res = self._cache.setdefault(key, {})
                todo = [m for m in methods if m not in res]
                e, label, spec = self._problem(ids, positions, p, eps)
                for i, m in enumerate(todo):
                    step(i, len(todo))  # after Cancel this raises: nothing more is computed
                    if self._wanted is not req:
                        break  # the controls moved on: the newest request first
                    with single_thread():
                        res[m] = method_bounds(self.model, e, spec, m, label)
                    step(i + 1, len(todo))
                    self.update()  # draw it now (a newer request is drawn when it is done)
                with self._lock:
                    if self._wanted is req:
                        self._wanted = None
                        break
        finally:
            with self._lock:
                self._job_active = False
                self._wanted = None

    def wait(self, timeout: float | None = None) -> None:
        """Wait for background work (an on-demand method, a radius run) to finish."""
        self.bounds_task.join(timeout)
        self.task.join(timeout)

    # -- model -> view -----------------------------------------------------------------------
    def _update(self) -> None:
        v = self.values()
        ids, labels = self._sync_positions(v["sentence"])
        positions = tuple(self.controls["positions"].value)
        if not positions:
            raise ValueError("positions must select at least one token, got none")
        p, eps, method = float(v["p"]), float(v["eps"]), v["method"]
        self.results = res = self._bounds(ids, positions, p, eps, method)
        # While the selected method is computed in the background, the tightest bounds found
        # so far (CROWN for alpha-CROWN, which refines it) are drawn and the title says so:
        # every method's bounds are sound, the pending one only tighter.
        pending = method not in res
        shown = method
        if pending:
            shown = (
                "crown" if "crown" in res and method in ON_DEMAND else min(res, key=_width_of(res))
            )
        cur = res[shown]
        coming = [m for m in METHODS if m not in res and (m not in ON_DEMAND or m == method)]
        waiting = (
            "in the background…" if self._job_active else "(cancelled: move a control to retry)"
        )
        with torch.no_grad():
            clean = self.model(self.model.embed(ids)[None].double())[0].numpy()
        fig = self.figures["logits"]
        width = cur.upper - cur.lower
        lo = float(min(cur.lower.min(), clean.min()))
        hi = float(max(cur.upper.max(), clean.max()))
        pad = 0.15 * (hi - lo) + 1e-9
        with fig.batch_update():
            bar, dots = fig.data
            bar.x, bar.base, bar.y = self.classes, cur.lower, width
            # At a small ε an interval is a hairline on the logit scale: its width is written.
            bar.text = [f"width {w:.2g}" for w in width]
            dots.x, dots.y = self.classes, clean
            fig.layout.yaxis.range = [lo - pad, hi + pad]
            verdict = "certified" if cur.certified else "not certified"
            fig.layout.title.text = f"{method}: logit bounds at ε = {eps:.3g} (ℓ{_p_label(p)})" + (
                f"<br><sup>computing {method} {waiting} ({shown} shown)</sup>"
                if pending
                else f"<br><sup>{self.classes[cur.label]} {verdict}</sup>"
            )
        fig = self.figures["layers"]
        with fig.batch_update():
            for trace, m in zip(fig.data, METHODS):
                trace.x = res[m].layers if m in res else []
                trace.y = res[m].layer_width if m in res else np.zeros(0)
                trace.line.width = 4 if m == method else 1.5
        fig = self.figures["methods"]
        missing = [m for m in METHODS if m not in res]
        with fig.batch_update():
            fig.data[0].y = np.array([res[m].width if m in res else np.nan for m in METHODS])
            fig.data[0].text = [
                (("✓ " if res[m].certified else "✗ ") + f"{res[m].seconds:.2f}s")
                if m in res
                else ""
                for m in METHODS
            ]
            # A method computed only on demand gets a hint in its empty slot.
            fig.layout.annotations = [
                dict(
                    x=m,
                    y=0.5,
                    yref="paper",
                    text="computing…" if m in coming else f"select {m}<br>to compute",
                    showarrow=False,
                    font=dict(size=10, color="#555"),
                )
                for m in missing
            ]
        if self._radius_key != (tuple(ids.tolist()), p):
            self._radius_key, self.radii = (tuple(ids.tolist()), p), {}
            self._draw_radius(labels)
        if not self.task.running:
            self.task.bar.reset()
        good = [m for m in METHODS if m in res and res[m].certified]
        unknown = [lab.split(": ", 1)[1].split(" (")[0] for lab in labels if "(<unk>" in lab]
        self.status.value = (
            f"prediction: <b>{self.classes[cur.label]}</b>; certified at this ε "
            f"by: {', '.join(good) or 'none'}"
            + (f" (computing: {', '.join(coming)})" if coming else "")
            + (
                f"<br>not in the model's vocabulary (read as &lt;unk&gt;): {', '.join(unknown)}"
                if unknown
                else ""
            )
        )

    def _draw_radius(self, labels: list[str]) -> None:
        z = np.array([self.radii.get(m, np.full(len(labels), np.nan)) for m in METHODS])
        p = self._radius_key[1] if self._radius_key is not None else self._p
        fig = self.figures["radius"]
        with fig.batch_update():
            hm = fig.data[0]
            hm.x, hm.y, hm.z = labels, list(METHODS), z
            max_eps = RADIUS_RANGE[p][0]
            hm.zmax = max_eps
            fig.layout.title.text = (
                f"certified radius per position (ℓ{_p_label(p)}, searched up to {max_eps:g})"
            )
            fig.layout.annotations = (
                []
                if self.radii
                else [
                    dict(
                        x=0.5,
                        y=0.5,
                        xref="paper",
                        yref="paper",
                        showarrow=False,
                        text="press “Run radii” to fill the selected method's row",
                        font=dict(size=14, color="#555"),
                    )
                ]
            )

    def start_run(self) -> None:
        """What the Run button does: :meth:`run` in the background, with progress and Cancel."""
        self.run_button.disabled = True

        def job(step: Any) -> Any:
            try:
                return self.run(progress=step)
            finally:
                self.run_button.disabled = False

        self.task.start(job)

    def run(self, progress: Callable[[int, int], Any] | None = None) -> np.ndarray:
        """Certified radius of every position for the selected method; fills its heatmap row.

        ``progress(done, total)`` follows the positions (default: the explorer's bar).
        """
        v = self.values()
        ids, labels = self._sync_positions(v["sentence"])
        p, method = float(v["p"]), v["method"]
        e = self.model.embed(ids).detach()
        label = int(self.model(e[None].double()).argmax())
        step = self.task.bar if progress is None else progress
        step(0, len(labels))
        with single_thread():
            radii = radius_row(self.model, e, label, p, method, progress=step)
        now = self.values()
        if (now["sentence"], float(now["p"])) != (v["sentence"], p):
            return radii  # the controls moved on while it ran in the background
        if self._radius_key != (tuple(ids.tolist()), p):
            self._radius_key, self.radii = (tuple(ids.tolist()), p), {}
        self.radii[method] = radii
        self._draw_radius(labels)
        return radii

    # -- a data set's certification ----------------------------------------------------------
    def load_certification(self, source: str | os.PathLike | Certification) -> Certification:
        """Show a :func:`~toolkit.verify.certify_dataset` result: one box per position.

        Parameters
        ----------
        source : str or os.PathLike or Certification
            A result file (:func:`~toolkit.verify.load_certification`) or the result itself.

        Returns
        -------
        Certification
            The result shown (also ``self.certification``); the box trace of
            ``figures["certification"]`` holds :func:`~toolkit.verify.certification_figure`'s
            data.
        """
        cert = source if isinstance(source, Certification) else load_certification(source)
        x, y = certification_box_data(cert)
        name = certification_figure(cert).data[0].name
        fig = self.figures["certification"]
        with fig.batch_update():
            box = fig.data[0]
            box.x, box.y, box.name = x, y, name
            fig.layout.title.text = certification_title(cert)
            fig.layout.yaxis.title.text = name
        self.certification = cert
        bad = cert.failed_sentences
        self.cert_info.value = (
            f"{len(cert.lengths)} sentences, {int((~np.isnan(cert.values)).sum())} "
            "(sentence, position) values"
            + (f"; failed sentences: {bad[:10]}{'…' if len(bad) > 10 else ''}" if bad else "")
        )
        return cert

    def _load_clicked(self) -> None:
        try:
            self.load_certification(self.cert_path.value.strip())
        except (OSError, ValueError, TypeError) as exc:
            self.cert_info.value = f"<span style='color:#b00020'>{type(exc).__name__}: {exc}</span>"
