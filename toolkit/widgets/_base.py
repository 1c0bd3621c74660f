"""The common shape of every explorer: controls + plotly FigureWidgets, model kept apart.

A subclass builds its controls and figures in ``_build`` and redraws them in ``_update`` from
arrays that its *model* (plain functions elsewhere in the toolkit) returns.  Every redraw goes
through ``figure.batch_update()`` with numpy arrays, so a headless test can set a control's
``.value`` and read the figure's ``data`` straight back.
"""

from __future__ import annotations

from typing import Any

import ipywidgets as W

__all__ = ["Explorer"]


class Explorer:
    """Base class of the explorers: controls and figures, with the model kept apart.

    ``Explorer(...)`` displays in Jupyter as its ``widget``.  A subclass builds its controls
    (into ``controls``) and figures (into ``figures``) in ``_build`` and redraws them in
    ``_update``; a change of any control in ``live_controls`` calls :meth:`update`.

    Attributes
    ----------
    controls : dict of str to ipywidgets.Widget
        The controls by name; a headless test sets their ``.value``.
    figures : dict of str to plotly.graph_objects.FigureWidget
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
        self.status = W.HTML()
        self.widget = self._build()
        for name in self.live_controls or tuple(self.controls):
            self.controls[name].observe(self._on_change, names="value")
        self.update()

    # -- to be written by subclasses -------------------------------------------------------
    def _build(self) -> W.Widget:  # pragma: no cover - abstract
        raise NotImplementedError

    def _update(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    # -- common flow -----------------------------------------------------------------------
    def _on_change(self, _change: dict) -> None:
        self.update()

    def update(self) -> None:
        """Recompute from the current control values and redraw.

        A ``ValueError`` or ``TypeError`` from the settings goes to the status line instead
        of the notebook, and the status clears on the next good update.
        """
        try:
            self._update()
        except (ValueError, TypeError) as exc:
            self.status.value = f"<span style='color:#b00020'>{type(exc).__name__}: {exc}</span>"
        else:
            if self.status.value.startswith("<span style='color:#b00020'>"):
                self.status.value = ""

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
