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
    """What every section receives.

    Parameters
    ----------
    quick : bool
        Shrink sizes for a fast run.
    seed : int
        Seed of the section's randomness.
    device : str
        ``"cuda"`` when the GPU path is usable, else ``"cpu"``.
    """

    quick: bool = False
    seed: int = 0
    device: str = "cpu"


@dataclass(frozen=True)
class Section:
    """A titled part of the report.

    Parameters
    ----------
    key : str
        The section's key (``--sections`` and the page anchor).
    title : str
        Its heading.
    build : callable
        ``build(ctx)`` returns a list of blocks: HTML strings, plotly figures or
        :class:`toolkit.report.Table` objects.
    order : int
        Position in the report.
    summary : str
        One line about the section.
    """

    key: str
    title: str
    build: Callable[[ReportContext], list[Any]]
    order: int = 100
    summary: str = field(default="")


_SECTIONS: dict[str, Section] = {}
#: A section's build function.
SectionBuilder = Callable[[ReportContext], list[Any]]


def register_section(
    key: str, title: str, order: int = 100, summary: str = ""
) -> Callable[[SectionBuilder], SectionBuilder]:
    """Register ``build(ctx) -> list[block]`` as the report section ``key`` (a decorator).

    A module registers its section in the module named by its card's ``section``; the report
    imports that module before it runs the sections.

    Parameters
    ----------
    key : str
        The section's key; registering a key again replaces the section.
    title : str
        Its heading.
    order : int
        Position in the report (the environment is 0, modules take their card's order).
    summary : str
        One line about the section.

    Returns
    -------
    callable
        A decorator that registers ``build`` and returns it unchanged.

    Examples
    --------
    >>> @register_section("demo", "A demo section", order=999)
    ... def _demo(ctx):
    ...     return ["<p>hello</p>"]
    >>> all_sections(["demo"])[0].title
    'A demo section'
    """

    def decorator(build: SectionBuilder) -> SectionBuilder:
        _SECTIONS[key] = Section(key=key, title=title, build=build, order=order, summary=summary)
        return build

    return decorator


def all_sections(keys: list[str] | None = None) -> list[Section]:
    """The registered sections in report order, or those named in ``keys``.

    Parameters
    ----------
    keys : list of str or None
        Section keys, in the order wanted (at least one); None gives every section.

    Returns
    -------
    list of Section
        The sections.

    Raises
    ------
    ValueError
        If ``keys`` is empty or a key is not registered; the message lists the available keys.
    """
    for module in SECTION_MODULES:
        importlib.import_module(module)
    if keys is None:
        return sorted(_SECTIONS.values(), key=lambda s: (s.order, s.key))
    if not keys:
        raise ValueError(f"sections must name at least one section; available: {sorted(_SECTIONS)}")
    unknown = [k for k in keys if k not in _SECTIONS]
    if unknown:
        raise ValueError(f"sections {unknown} are not registered; available: {sorted(_SECTIONS)}")
    return [_SECTIONS[k] for k in keys]
