"""The result of :func:`~toolkit.isometry.analyze`: one row per block, shown as a table or plot."""

from __future__ import annotations

import html
import importlib
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from ..engine.blocks import Block
from ..engine.moments import Moments
from .empirical import EmpiricalMoments

__all__ = ["AnalysisRow", "AnalysisTable"]


def _f(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


@dataclass(frozen=True)
class AnalysisRow:
    r"""One row of an :class:`AnalysisTable`: a block's measured and predicted moments.

    Attributes
    ----------
    name : str
        The block's name (``"total"`` for the whole model).
    kind : str
        The module's class name.
    q : float
        The block input's measured second moment :math:`\mathbb E[h^2]` (NaN if not measured).
    model : Block or None
        The engine block used for the prediction (``None`` if unrecognized).
    predicted : Moments or None
        Its moments at ``q``.
    measured : EmpiricalMoments or None
        The Hutchinson estimate.
    note : str
        Why something is missing.
    """

    name: str
    kind: str
    q: float
    model: Block | None
    predicted: Moments | None
    measured: EmpiricalMoments | None
    note: str = ""

    @property
    def predicted_m1(self) -> float:
        return _f(self.predicted.m1) if self.predicted is not None else math.nan

    @property
    def predicted_variance(self) -> float:
        return _f(self.predicted.variance) if self.predicted is not None else math.nan

    def _meas(self, field: str) -> float:
        return getattr(self.measured, field) if self.measured is not None else math.nan

    def as_dict(self) -> dict[str, Any]:
        """Flat dict of floats and strings (NaN where missing)."""
        return {
            "name": self.name,
            "kind": self.kind,
            "q": self.q,
            "predicted_m1": self.predicted_m1,
            "measured_m1": self._meas("m1"),
            "measured_m1_stderr": self._meas("m1_stderr"),
            "predicted_variance": self.predicted_variance,
            "measured_variance": self._meas("variance"),
            "measured_variance_stderr": self._meas("variance_stderr"),
            "model": "" if self.model is None else repr(self.model),
            "note": self.note,
        }


_COLUMNS = (
    ("block", 14),
    ("kind", 12),
    ("q", 8),
    ("pred m1", 9),
    ("meas m1", 18),
    ("pred var", 9),
    ("meas var", 18),
)


def _num(v: float) -> str:
    return "—" if math.isnan(v) else f"{v:.4g}"


def _pm(v: float, se: float) -> str:
    return "—" if math.isnan(v) else f"{v:.4g} ± {_num(se)}"


class AnalysisTable:
    """Rows of :func:`analyze`: the blocks in forward order, then the whole model as ``total``.

    Index by position or block name; iterate over the block rows. ``to_html()``
    gives a plain HTML table (also shown by Jupyter), ``to_pandas()`` a DataFrame
    (needs pandas), ``plot()`` a plotly figure.

    Parameters
    ----------
    rows : list of AnalysisRow
        The block rows.
    total : AnalysisRow, optional
        The whole model's row.
    """

    def __init__(self, rows: list[AnalysisRow], total: AnalysisRow | None = None) -> None:
        self.rows = tuple(rows)
        self.total = total

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self) -> Iterator[AnalysisRow]:
        return iter(self.rows)

    def __getitem__(self, key: int | str) -> AnalysisRow:
        if isinstance(key, str):
            for row in self._all():
                if row.name == key:
                    return row
            raise KeyError(f"no block named {key!r}; blocks are {[r.name for r in self.rows]}")
        return self.rows[key]

    def _all(self) -> list[AnalysisRow]:
        return list(self.rows) + ([self.total] if self.total is not None else [])

    def _cells(self, row: AnalysisRow) -> list[str]:
        d = row.as_dict()
        return [
            row.name,
            row.kind,
            _num(row.q),
            _num(d["predicted_m1"]),
            _pm(d["measured_m1"], d["measured_m1_stderr"]),
            _num(d["predicted_variance"]),
            _pm(d["measured_variance"], d["measured_variance_stderr"]),
        ]

    def __repr__(self) -> str:
        lines = ["  ".join(h.ljust(w) for h, w in _COLUMNS)]
        for row in self._all():
            lines.append("  ".join(c.ljust(w) for c, (_, w) in zip(self._cells(row), _COLUMNS)))
        return "\n".join(lines)

    def to_html(self) -> str:
        """A self-contained ``<table>`` (no external CSS or JS)."""
        head = "".join(f"<th>{html.escape(h)}</th>" for h, _ in _COLUMNS) + "<th>model</th>"
        body = []
        for row in self._all():
            cells = [*self._cells(row), repr(row.model) if row.model is not None else row.note]
            style = ' style="font-weight:bold"' if row is self.total else ""
            body.append(
                f"<tr{style}>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>"
            )
        return (
            '<table class="toolkit-analysis" border="1" style="border-collapse:collapse">'
            f"<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
        )

    def _repr_html_(self) -> str:
        return self.to_html()

    def to_pandas(self) -> Any:
        """The rows (and total) as a ``pandas.DataFrame``; raises ImportError without pandas."""
        try:  # pandas is optional: not a dependency of the toolkit
            pd = importlib.import_module("pandas")
        except ImportError as exc:
            raise ImportError("AnalysisTable.to_pandas needs pandas: pip install pandas") from exc
        return pd.DataFrame([r.as_dict() for r in self._all()])

    def plot(self) -> Any:
        """Plotly figure: measured (with error bars) and predicted m1 and variance per block."""
        # Lazy: plotly is needed only for this figure, and ``import toolkit.isometry`` (which
        # imports this module) stays free of it.
        import plotly.graph_objects as go
        from plotly.subplots import make_subplots

        names = [r.name for r in self.rows]
        d = [r.as_dict() for r in self.rows]
        fig = make_subplots(rows=1, cols=2, subplot_titles=("φ(JJᵀ) = m1", "variance m2 − m1²"))
        for col, key in ((1, "m1"), (2, "variance")):
            fig.add_trace(
                go.Scatter(
                    x=names,
                    y=[r[f"measured_{key}"] for r in d],
                    mode="markers",
                    name="measured",
                    error_y={"type": "data", "array": [r[f"measured_{key}_stderr"] for r in d]},
                    marker={"color": "#1f77b4"},
                    showlegend=col == 1,
                ),
                row=1,
                col=col,
            )
            fig.add_trace(
                go.Scatter(
                    x=names,
                    y=[r[f"predicted_{key}"] for r in d],
                    mode="markers",
                    name="predicted",
                    marker={"symbol": "x", "size": 10, "color": "#d62728"},
                    showlegend=col == 1,
                ),
                row=1,
                col=col,
            )
        fig.update_layout(title="Block Jacobian moments: measured vs free-probability prediction")
        return fig
