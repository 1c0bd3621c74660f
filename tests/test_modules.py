"""The module cards are the one list of analysis modules; the README and notebooks/ agree.

Each analysis module declares itself in ``toolkit/<name>/_card.py``.  The package's
``__all__``, the report's sections and the explorers are derived from the cards in code; the
README's module map and the notebooks folder are text, so these tests hold them to the cards.
"""

from __future__ import annotations

import re
from pathlib import Path

import toolkit
from toolkit._modules import ModuleCard, module_cards

ROOT = Path(__file__).resolve().parent.parent
#: Rows of the module map that are shared layers, not analysis modules with a card.
SHARED_ROWS = {"models", "report"}
TOUR = "00_tour"


def readme_module_map() -> dict[str, dict[str, str]]:
    """The README's module map: ``{name: {"summary", "explorer", "notebook"}}``."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## Module map", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        match = re.fullmatch(r"\|\s*`toolkit\.(\w+)`\s*\|(.*)\|(.*)\|(.*)\|", line.strip())
        if match:
            name, summary, explorer, notebook = (g.strip() for g in match.groups())
            rows[name] = {
                "summary": summary,
                "explorer": explorer.strip("`"),
                "notebook": notebook.strip("`"),
            }
    return rows


def _expected_row(card: ModuleCard) -> dict[str, str]:
    return {
        "summary": card.summary,
        "explorer": card.explorer or "",
        "notebook": card.notebook or "",
    }


def test_cards_are_well_formed():
    cards = module_cards()
    assert [c.name for c in cards][:3] == ["isometry", "attention", "verify"]
    assert len({c.name for c in cards}) == len(cards)
    assert len({c.order for c in cards}) == len(cards), "two cards share an order"
    for card in cards:
        assert (card.explorer is None) == (card.explorer_module is None), card.name
        if card.section:
            assert card.section.startswith(f"toolkit.{card.name}."), card.section
            assert (ROOT / (card.section.replace(".", "/") + ".py")).is_file(), card.section
        if card.explorer_module:
            assert card.explorer_module.startswith("toolkit.widgets."), card.explorer_module
            source = ROOT / (card.explorer_module.replace(".", "/") + ".py")
            assert re.search(rf"^class {card.explorer}\b", source.read_text(), re.M), card


def test_readme_module_map_rows_equal_the_cards():
    rows = readme_module_map()
    for card in module_cards():
        assert card.name in rows, f"README's module map has no row for toolkit.{card.name}"
        assert rows[card.name] == _expected_row(card), f"README row for {card.name}"
    for name, row in rows.items():
        if name in SHARED_ROWS or name in {c.name for c in module_cards()}:
            continue
        # A module announced before it lands: no explorer or notebook is claimed yet.
        assert row["explorer"] == row["notebook"] == "(coming)", f"README row for {name}"


def test_every_notebook_belongs_to_a_card_and_every_card_notebook_exists():
    stems = {p.stem for p in (ROOT / "notebooks").glob("*.ipynb")}
    sources = {p.stem for p in (ROOT / "notebooks").glob("*.py")}
    assert stems == sources, "every notebook is a jupytext pair (.py and .ipynb)"
    owned = {card.notebook for card in module_cards() if card.notebook}
    assert stems - {TOUR} == owned, f"notebooks without a card: {sorted(stems - {TOUR} - owned)}"
    assert TOUR in stems


def test_registries_are_derived_from_the_cards():
    from toolkit.report._registry import SECTION_MODULES
    from toolkit.widgets import _EXPLORERS

    cards = module_cards()
    assert {c.name for c in cards} <= set(toolkit.__all__)
    assert [c.section for c in cards if c.section] == list(SECTION_MODULES[1:])
    assert _EXPLORERS == {c.explorer: c.explorer_module for c in cards if c.explorer}
