"""The report: ``python -m toolkit report --out report.html [--quick]``.

Each module registers a section with :func:`register_section`; :func:`build_report` runs
them all on embedded defaults and writes one HTML file that opens offline.
"""

from ._build import ReportError, build_report
from ._html import Table
from ._registry import ReportContext, Section, all_sections, register_section

__all__ = [
    "ReportContext",
    "ReportError",
    "Section",
    "Table",
    "all_sections",
    "build_report",
    "register_section",
]
