"""Rendering report blocks into one self-contained HTML page (plotly's JavaScript inline)."""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["Table", "render_block", "render_page"]

_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; color: #222; }
h1 { border-bottom: 2px solid #444; } h2 { margin-top: 2em; border-bottom: 1px solid #ccc; }
table.tk { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
table.tk th, table.tk td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
table.tk th { background: #f3f3f3; } table.tk td:first-child { text-align: left; }
.tk-pass { color: #176f2c; font-weight: bold; } .tk-fail { color: #b00020; font-weight: bold; }
.tk-note { color: #555; font-size: 0.9em; } nav a { margin-right: 1em; }
"""


@dataclass
class Table:
    """A report table: rows of values by column name, rendered as escaped HTML.

    Booleans render as a green *pass* or a red *FAIL*, floats with ``float_format``.

    Parameters
    ----------
    rows : sequence of mapping
        One mapping from column name to value per row.
    columns : sequence of str or None
        Columns to show, in order; None takes the first row's keys.
    caption : str
        The table's caption.
    float_format : str
        Format of float cells.

    Examples
    --------
    >>> Table([{"a": 1.23456, "ok": True}]).to_html().count("<td>")
    2
    """

    rows: Sequence[Mapping[str, Any]]
    columns: Sequence[str] | None = None
    caption: str = ""
    float_format: str = "{:.4g}"

    def _cell(self, value: Any) -> str:
        if isinstance(value, bool):
            css = "tk-pass" if value else "tk-fail"
            return f'<span class="{css}">{"pass" if value else "FAIL"}</span>'
        if isinstance(value, float):
            return html.escape(self.float_format.format(value))
        return html.escape(str(value))

    def to_html(self) -> str:
        """The table as an HTML ``<table>`` element."""
        columns = list(self.columns or (self.rows[0].keys() if self.rows else []))
        head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
        body = "".join(
            "<tr>" + "".join(f"<td>{self._cell(row.get(c, ''))}</td>" for c in columns) + "</tr>"
            for row in self.rows
        )
        caption = f"<caption>{html.escape(self.caption)}</caption>" if self.caption else ""
        return (
            f'<table class="tk">{caption}<thead><tr>{head}</tr></thead>'
            f"<tbody>{body}</tbody></table>"
        )


def render_block(block: Any) -> str:
    """HTML for one report block.

    Parameters
    ----------
    block : str, Table or plotly figure
        A string is trusted HTML; a figure becomes a plotly ``<div>`` (without plotly.js,
        which the page carries once); any other object with ``to_html()`` is asked for it.

    Returns
    -------
    str
        The block's HTML.

    Raises
    ------
    TypeError
        If the block is none of these.
    """
    if isinstance(block, str):
        return block
    if isinstance(block, Table):
        return block.to_html()
    if hasattr(block, "to_html") and hasattr(block, "layout"):
        import plotly.io as pio

        return pio.to_html(block, full_html=False, include_plotlyjs=False)
    if hasattr(block, "to_html"):
        return block.to_html()
    raise TypeError(f"a report block must be HTML, a Table or a plotly figure, got {type(block)}")


def render_page(title: str, sections: Sequence[tuple[str, str, str]], footer: str = "") -> str:
    """A full HTML page with plotly.js inline and a navigation bar.

    Parameters
    ----------
    title : str
        The page's title.
    sections : sequence of (str, str, str)
        ``(key, title, body_html)`` per section; ``key`` is the anchor.
    footer : str
        A line at the bottom.

    Returns
    -------
    str
        The page.
    """
    from plotly.offline import get_plotlyjs

    nav = "".join(f'<a href="#{html.escape(k)}">{html.escape(t)}</a>' for k, t, _ in sections)
    body = "".join(
        f'<section id="{html.escape(k)}"><h2>{html.escape(t)}</h2>{b}</section>'
        for k, t, b in sections
    )
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style>"
        f'<script type="text/javascript">{get_plotlyjs()}</script></head>'
        f"<body><h1>{html.escape(title)}</h1><nav>{nav}</nav>{body}"
        f'<p class="tk-note">{footer}</p></body></html>\n'
    )
