"""Explorers: one interactive widget per module (ipywidgets + plotly FigureWidget).

Explorers are imported on first use so that ``toolkit.widgets`` stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

from .._modules import module_cards

#: Explorer name -> the module that defines it, from the modules' cards.
_EXPLORERS: dict[str, str] = {
    card.explorer: card.explorer_module
    for card in module_cards()
    if card.explorer and card.explorer_module
}

#: Shared pieces of the explorers that notebooks use too.
_SHARED = {"Explorer": "._base", "BackgroundTask": "._background", "ProgressBar": "._background"}

__all__ = [*_SHARED, *_EXPLORERS]


def __getattr__(name: str) -> Any:
    if name in _SHARED:
        return getattr(importlib.import_module(_SHARED[name], __name__), name)
    if name in _EXPLORERS:
        return getattr(importlib.import_module(_EXPLORERS[name]), name)
    raise AttributeError(f"module 'toolkit.widgets' has no attribute {name!r}")
