"""Sections of the report: each module registers one, the report runs them in order."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .._modules import module_cards

__all__ = ["SECTION_MODULES", "ReportContext", "Section", "all_sections", "register_section"]

#: Modules whose import registers a section: the environment, then each module's card.
SECTION_MODULES = (
    "toolkit.report.environment",
    *(card.section for card in module_cards() if card.section),
)


@dataclass(frozen=True)
class ReportContext:
    """What every section receives: ``quick`` shrinks sizes, ``seed`` fixes randomness."""

    quick: bool = False
    seed: int = 0
    device: str = "cpu"


@dataclass(frozen=True)
class Section:
    """A titled part of the report.  ``build(ctx)`` returns a list of blocks: HTML strings,
    plotly figures, or :class:`toolkit.report.Table` objects."""

    key: str
    title: str
    build: Callable[[ReportContext], list[Any]]
    order: int = 100
    summary: str = field(default="")


_SECTIONS: dict[str, Section] = {}


def register_section(key: str, title: str, order: int = 100, summary: str = ""):
    """Decorator registering ``build(ctx) -> list[block]`` as the report section ``key``.

    >>> @register_section("demo", "A demo section", order=999)
    ... def _demo(ctx):
    ...     return ["<p>hello</p>"]
    >>> all_sections(["demo"])[0].title
    'A demo section'
    """

    def decorator(build: Callable[[ReportContext], list[Any]]):
        _SECTIONS[key] = Section(key=key, title=title, build=build, order=order, summary=summary)
        return build

    return decorator


def all_sections(keys: list[str] | None = None) -> list[Section]:
    """The registered sections in report order, or those named in ``keys``."""
    for module in SECTION_MODULES:
        importlib.import_module(module)
    if keys is None:
        return sorted(_SECTIONS.values(), key=lambda s: (s.order, s.key))
    unknown = [k for k in keys if k not in _SECTIONS]
    if unknown:
        raise ValueError(f"sections {unknown} are not registered; available: {sorted(_SECTIONS)}")
    return [_SECTIONS[k] for k in keys]
