"""The common shape of every explorer: controls + plotly FigureWidgets, model kept apart.

A subclass builds its controls and *complete* ``go.Figure`` s (every trace, name, colour and
the layout) in ``_build``, registering each with :meth:`Explorer._figure`, and redraws them
in ``_update`` from arrays that its *model* (plain functions elsewhere in the toolkit)
returns.  The base draws the first frame into the plain figures and only then wraps each
in a :class:`LiveFigure`, so the widget is born with its data; later redraws change trace
data and layout in place inside ``figure.batch_update()`` and never add or remove traces.

Why: JupyterLab rebuilds a widget after a page reload (or when a notebook is reopened while
its kernel runs) from the state the kernel holds.  plotly's ``FigureWidget`` sets that state
only when it is constructed, so a figure built empty and filled later came back empty.
:class:`LiveFigure` also hands out its *current* data when the front end asks for the state,
and replaces NaN/inf by ``None`` in everything it sends (JSON has no NaN; an ipywidgets
message holding one fails with "Out of range float values are not JSON compliant").
"""

from __future__ import annotations

import copy
import csv
import importlib.util
import math
import os
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any

import ipywidgets as W
import numpy as np
import plotly.graph_objects as go

from .._backend import single_thread

__all__ = ["Explorer", "LiveFigure", "figure_rows", "json_safe", "row"]


def json_safe(value: Any) -> Any:
    """``value`` with every NaN or infinite float replaced by ``None`` (JSON's null).

    Dicts, lists and tuples are walked; a float array that holds a non-finite value becomes a
    nested list (finite arrays are returned as they are, so plotly still sends them as binary
    buffers).

    Parameters
    ----------
    value : object
        A plotly property value, trace dict or message.

    Returns
    -------
    object
        The same structure, safe for ``json.dumps(..., allow_nan=False)`` once arrays are
        turned into lists.

    Examples
    --------
    >>> json_safe({"y": [1.0, float("nan")], "z": np.array([[0.5, np.inf]])})
    {'y': [1.0, None], 'z': [[0.5, None]]}
    """
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, np.ndarray):
        if value.dtype.kind in "fc" and not np.isfinite(value).all():
            return json_safe(value.tolist())
        return value
    if isinstance(value, (float, np.floating)) and not math.isfinite(value):
        return None
    return value


class LiveFigure(go.FigureWidget):
    """A ``FigureWidget`` that survives a browser reload and never sends NaN.

    Build it from a complete ``go.Figure`` (all traces, with data) and update it in place.
    The state the front end rebuilds a reloaded view from is refreshed from the current
    figure whenever it is requested, and every message is passed through :func:`json_safe`.

    Examples
    --------
    >>> fig = LiveFigure(go.Figure(go.Scatter(x=[0, 1], y=[1.0, 2.0], name="a")))
    >>> with fig.batch_update():
    ...     fig.data[0].y = np.array([3.0, np.nan])
    >>> fig.get_state()["_widget_data"][0]["y"]
    [3.0, None]
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._refresh_widget_state()

    def _refresh_widget_state(self, keys: Any = None) -> None:
        # Written straight into the trait storage: the front end already holds these values
        # (it applies every restyle/relayout to its copy), so there is nothing to send now;
        # only a state request after a reload needs them.  Only the keys asked for: a silent
        # write of ``_widget_data`` while plotly sends ``_widget_layout`` at construction made
        # plotly's own ``_widget_data`` assignment compare equal and never reach the front end
        # (figures of plain lists then showed no data until a reload).
        if getattr(self, "_layout_obj", None) is None:
            return  # ipywidgets asks for the state once before plotly has set the figure up
        if keys is None or "_widget_data" in keys:
            self._trait_values["_widget_data"] = json_safe(copy.deepcopy(self._data))
        if keys is None or "_widget_layout" in keys:
            self._trait_values["_widget_layout"] = json_safe(copy.deepcopy(self._layout_obj._props))

    def get_state(self, key: Any = None, drop_defaults: bool = False) -> dict:
        """The widget state, with the figure's current data and layout (see the class)."""
        self._refresh_widget_state(
            None if key is None else {key} if isinstance(key, str) else set(key)
        )
        return super().get_state(key, drop_defaults)

    def _send_restyle_msg(self, restyle_data: Any, *args: Any, **kwargs: Any) -> None:
        super()._send_restyle_msg(json_safe(restyle_data), *args, **kwargs)

    def _send_relayout_msg(self, layout_data: Any, *args: Any, **kwargs: Any) -> None:
        super()._send_relayout_msg(json_safe(layout_data), *args, **kwargs)

    def _send_update_msg(
        self, restyle_data: Any, relayout_data: Any, *args: Any, **kwargs: Any
    ) -> None:
        super()._send_update_msg(json_safe(restyle_data), json_safe(relayout_data), *args, **kwargs)

    def _send_addTraces_msg(self, new_traces_data: Any) -> None:
        super()._send_addTraces_msg(json_safe(new_traces_data))


def row(*children: W.Widget, gap: str = "8px") -> W.Box:
    """A row that wraps: its children stack below one another when the notebook is narrow.

    Parameters
    ----------
    *children : ipywidgets.Widget
        The row's items, left to right.
    gap : str
        CSS gap between items.

    Returns
    -------
    ipywidgets.Box
    """
    return W.Box(
        list(children),
        layout=W.Layout(
            display="flex",
            flex_flow="row wrap",
            align_items="flex-start",
            width="100%",
            max_width="100%",
            grid_gap=gap,
        ),
    )


def controls_column(*children: W.Widget) -> W.VBox:
    """The controls column: never narrower than 260 px, never wider than the notebook."""
    return W.VBox(
        list(children),
        layout=W.Layout(min_width="260px", max_width="100%", flex="0 1 360px"),
    )


def text_box(widget: W.Widget, width: str = "360px") -> W.Widget:
    """Give an HTML/HTMLMath widget a box that wraps and scrolls instead of overflowing."""
    widget.layout = W.Layout(
        min_width="250px", max_width="100%", flex=f"1 1 {width}", overflow="auto"
    )
    return widget


def figure_rows(fig: go.Figure) -> list[dict[str, Any]]:
    """The numbers of a figure as table rows: one per point (per cell of a heatmap).

    Columns: ``trace`` (its name), ``index``, and whichever of ``x``, ``y``, ``z``, ``base``,
    ``error_y`` and ``text`` the trace has; a heatmap gives ``row``, ``column``, its row and
    column labels as ``y`` and ``x``, and the value as ``z``.

    Examples
    --------
    >>> fig = go.Figure(go.Bar(x=["a", "b"], y=[1.0, 2.0], name="bars"))
    >>> figure_rows(fig)[1]
    {'trace': 'bars', 'index': 1, 'x': 'b', 'y': 2.0}
    """
    rows: list[dict[str, Any]] = []
    for trace in fig.data:
        name = trace.name or trace.type
        z = getattr(trace, "z", None)
        if trace.type == "heatmap" and z is not None:
            z = np.asarray(z, dtype=float)
            if z.ndim != 2:
                continue
            xs, ys = trace.x, trace.y
            for i in range(z.shape[0]):
                for j in range(z.shape[1]):
                    rows.append(
                        {
                            "trace": name,
                            "index": i * z.shape[1] + j,
                            "row": i,
                            "column": j,
                            "y": ys[i] if ys is not None and i < len(ys) else i,
                            "x": xs[j] if xs is not None and j < len(xs) else j,
                            "z": z[i, j],
                        }
                    )
            continue
        columns: dict[str, Any] = {}
        for key in ("x", "y", "base", "text"):
            value = getattr(trace, key, None)
            if value is not None and not isinstance(value, str) and len(value):
                columns[key] = list(value)
        err = getattr(trace, "error_y", None)
        if err is not None and err.array is not None and len(err.array):
            columns["error_y"] = list(err.array)
        n = max((len(v) for v in columns.values()), default=0)
        for i in range(n):
            out: dict[str, Any] = {"trace": name, "index": i}
            out.update({k: v[i] for k, v in columns.items() if i < len(v)})
            rows.append(out)
    return rows


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    fields: list[str] = []
    for r in rows:
        fields += [k for k in r if k not in fields]
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields or ["trace", "index"])
        writer.writeheader()
        for r in rows:
            writer.writerow({k: ("" if _missing(v) else v) for k, v in r.items()})


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, (float, np.floating)) and not math.isfinite(value))


class Explorer:
    """Base class of the explorers: controls and figures, with the model kept apart.

    ``Explorer(...)`` displays in Jupyter as its ``widget``.  A subclass builds its controls
    (into ``controls``) and complete figures (each through :meth:`_figure`) in ``_build`` and
    redraws them in ``_update``; a change of any control in ``live_controls`` calls
    :meth:`update`.

    Attributes
    ----------
    controls : dict of str to ipywidgets.Widget
        The controls by name; a headless test sets their ``.value``.
    figures : dict of str to LiveFigure
        The figures by name; a headless test reads their ``data``.
    status : ipywidgets.HTML
        A status line where errors in the current settings are shown.
    widget : ipywidgets.Widget
        The layout that Jupyter displays.
    """

    #: Names of controls whose change triggers ``_update`` (all of ``self.controls`` if None).
    live_controls: tuple[str, ...] | None = None

    def __init__(self) -> None:
        self.controls: dict[str, W.Widget] = {}
        self.figures: dict[str, Any] = {}
        self._slots: dict[str, W.Box] = {}
        self.status = W.HTML()
        # one redraw at a time: background jobs redraw too when their results arrive
        self._update_lock = threading.RLock()
        self.export_button = W.Button(description="Export", icon="download")
        self.export_button.on_click(lambda _b: self._export_clicked())
        self.export_info = W.HTML()
        self.widget = W.VBox(
            [self._build(), row(self.export_button, self.export_info)],
            layout=W.Layout(max_width="100%"),
        )
        for name in self.live_controls or tuple(self.controls):
            self.controls[name].observe(self._on_change, names="value")
        self.update()  # the first frame is drawn into the plain go.Figures
        for name, fig in self.figures.items():
            if not isinstance(fig, LiveFigure):
                self.figures[name] = LiveFigure(fig)
            self._slots[name].children = (self.figures[name],)

    # -- to be written by subclasses -------------------------------------------------------
    def _build(self) -> W.Widget:  # pragma: no cover - abstract
        raise NotImplementedError

    def _update(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    # -- for subclasses --------------------------------------------------------------------
    def _figure(self, name: str, fig: go.Figure, basis: str = "560px") -> W.Box:
        """Register the complete figure ``name``; returns the box that will show it.

        ``fig`` must already hold every trace (with its name and colour) and the layout:
        redraws only change data.  The box grows from ``basis`` and wraps below its
        neighbours when the notebook is narrower.
        """
        # The toolbar stands upright at the right edge, where it cannot cover the title.
        fig.update_layout(autosize=True, width=None, modebar=dict(orientation="v"))
        self.figures[name] = fig
        box = W.Box(layout=W.Layout(flex=f"1 1 {basis}", min_width="320px", max_width="100%"))
        self._slots[name] = box
        return box

    # -- common flow -----------------------------------------------------------------------
    def _on_change(self, _change: dict) -> None:
        self.update()

    def update(self) -> None:
        """Recompute from the current control values and redraw.

        A ``ValueError`` or ``TypeError`` from the settings goes to the status line instead
        of the notebook, and the status clears on the next good update.  torch runs on one
        thread meanwhile (:func:`~toolkit._backend.single_thread`): an update's sizes gain
        nothing from intra-op threads, and on busy cores the threads cost several times the
        work (a norm explorer's batch-size change took 5-9 s with two threads on two loaded
        cores, 0.5-0.7 s with one).
        """
        try:
            with self._update_lock, single_thread():
                self._update()
        except (ValueError, TypeError) as exc:
            self.status.value = f"<span style='color:#b00020'>{type(exc).__name__}: {exc}</span>"
        else:
            if self.status.value.startswith("<span style='color:#b00020'>"):
                self.status.value = ""

    def export(self, path: str | os.PathLike, *, images: bool | None = None) -> list[Path]:
        """Write every figure as it is now: HTML, CSV of its numbers, and PNG when possible.

        For each figure ``name``: ``name.html`` (self-contained, opens offline), ``name.csv``
        (:func:`figure_rows`) and, when ``images`` (default: when ``kaleido`` is installed,
        which plotly's static export needs), ``name.png``.  Everything is written to a
        temporary folder inside ``path`` first and moved into place at the end, so a failure
        leaves no half-written file.

        Parameters
        ----------
        path : str or os.PathLike
            The folder to write into (created if missing).
        images : bool, optional
            Also write PNGs (default: when ``kaleido`` is importable).

        Returns
        -------
        list of pathlib.Path
            The files written.

        Raises
        ------
        TypeError
            If ``path`` is not a path.
        """
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
        if images is None:
            images = importlib.util.find_spec("kaleido") is not None
        target = Path(path)
        target.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".export-", dir=target))
        try:
            for name, fig in self.figures.items():
                plain = go.Figure(fig)
                plain.write_html(staging / f"{name}.html", include_plotlyjs=True, full_html=True)
                _write_csv(staging / f"{name}.csv", figure_rows(plain))
                if images:
                    plain.write_image(staging / f"{name}.png")
            written = []
            for item in sorted(staging.iterdir()):
                os.replace(item, target / item.name)
                written.append(target / item.name)
            return written
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def _export_clicked(self) -> None:
        folder = Path(f"{type(self).__name__}-export")
        try:
            files = self.export(folder)
        except (OSError, ValueError, RuntimeError) as exc:
            self.export_info.value = f"<span style='color:#b00020'>export failed: {exc}</span>"
        else:
            self.export_info.value = f"wrote {len(files)} files to <code>{folder}/</code>"

    def values(self) -> dict[str, Any]:
        """The current value of every control, by name.

        Returns
        -------
        dict
            Control name to value, for controls that have a value.
        """
        return {name: c.value for name, c in self.controls.items() if hasattr(c, "value")}

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)
