"""Explorers: one interactive widget per module (ipywidgets + plotly FigureWidget).

Explorers are imported on first use so that ``toolkit.widgets`` stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

#: Explorer name -> the module that defines it.  Each module issue adds its explorer here.
_EXPLORERS: dict[str, str] = {
    "IsometryExplorer": ".isometry",
    "BoundsExplorer": ".verify",
    "AttentionSparsityExplorer": ".attention",
}

__all__ = ["Explorer", *_EXPLORERS]


def __getattr__(name: str) -> Any:
    if name == "Explorer":
        from ._base import Explorer

        return Explorer
    if name in _EXPLORERS:
        return getattr(importlib.import_module(_EXPLORERS[name], __name__), name)
    raise AttributeError(f"module 'toolkit.widgets' has no attribute {name!r}")
