"""Where a module plugs in: each analysis subpackage declares itself once, in ``_card.py``.

A card names the module's report section, explorer and notebook.  The registries that used to
be written by hand are derived from the cards: ``toolkit.__all__``, the report's sections,
``toolkit.widgets``' explorers, and the checks that the README's module map and the
``notebooks/`` folder agree with them (``tests/test_modules.py``).

A card file imports nothing but this module, so reading the cards does not import torch or
the modules themselves: ``from toolkit.widgets import SNNExplorer`` imports the spiking-network
module and nothing else.

>>> [card.name for card in module_cards()][:3]
['isometry', 'attention', 'verify']
"""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path

__all__ = ["ModuleCard", "module_cards"]

_ROOT = Path(__file__).resolve().parent


@dataclass(frozen=True)
class ModuleCard:
    """How one analysis module appears in the toolkit.

    Parameters
    ----------
    name : str
        The subpackage, ``toolkit.<name>``.
    title : str
        Its title in the report and the docs.
    summary : str
        What it analyses, in one line (the README's module map).
    order : int
        Position in the report and in listings.
    section : str or None
        The module whose import registers the report section, for example
        ``"toolkit.isometry.report"``.
    explorer : str or None
        The explorer class in :mod:`toolkit.widgets`, for example ``"IsometryExplorer"``.
    explorer_module : str or None
        The module that defines the explorer, for example ``"toolkit.widgets.isometry"``.
    notebook : str or None
        The notebook's file stem in ``notebooks/``, for example
        ``"01_block_dynamical_isometry"``.
    """

    name: str
    title: str
    summary: str
    order: int
    section: str | None = None
    explorer: str | None = None
    explorer_module: str | None = None
    notebook: str | None = None


def _load_card(path: Path) -> ModuleCard:
    dotted = f"toolkit.{path.parent.name}._card"
    module = sys.modules.get(dotted)
    if module is None:
        spec = importlib.util.spec_from_file_location(dotted, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[dotted] = module
        spec.loader.exec_module(module)
    card = getattr(module, "CARD", None)
    if not isinstance(card, ModuleCard):
        raise TypeError(f"{path} must define CARD = ModuleCard(...)")
    if card.name != path.parent.name:
        raise ValueError(f"{path} declares name={card.name!r}, expected {path.parent.name!r}")
    return card


@cache
def module_cards() -> tuple[ModuleCard, ...]:
    """Every analysis module's card, in report order.

    Reads ``toolkit/*/_card.py`` without importing the modules themselves.

    Returns
    -------
    tuple of ModuleCard
        Sorted by ``order``, then ``name``.

    Raises
    ------
    TypeError
        If a ``_card.py`` does not define ``CARD = ModuleCard(...)``.
    ValueError
        If a card's ``name`` is not its folder's name.
    """
    cards = [_load_card(p) for p in sorted(_ROOT.glob("*/_card.py"))]
    return tuple(sorted(cards, key=lambda c: (c.order, c.name)))
