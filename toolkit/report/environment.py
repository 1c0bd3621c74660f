"""The report's first section: versions, devices, and the analysis modules.

It reads the modules' cards (:func:`toolkit._modules.module_cards`) and imports no module
code: each module's own checks, such as the attention module's kernel self-check, live in that
module's section.
"""

from __future__ import annotations

import platform
from importlib import metadata
from typing import Any

import torch

from .._backend import active_backend, cupy_available, gpu_available
from .._modules import module_cards
from ._html import Table
from ._registry import ReportContext, register_section

__all__ = ["environment_rows", "environment_section", "module_rows"]

_PACKAGES = (
    "torch",
    "numpy",
    "scipy",
    "sympy",
    "plotly",
    "ipywidgets",
    "cupy-cuda12x",
    "cupy-cuda13x",
    "cupy",
)


def environment_rows() -> list[dict[str, str]]:
    """Describe the interpreter, the packages and the devices.

    Returns
    -------
    list of dict
        One ``{"item": ..., "value": ...}`` row per fact. CuPy rows appear only where a CuPy
        distribution is installed; the other packages say ``"not installed"`` when missing.

    Examples
    --------
    >>> rows = environment_rows()
    >>> rows[0]["item"], "backend in force" in [r["item"] for r in rows]
    ('python', True)
    """
    rows = [
        {"item": "python", "value": platform.python_version()},
        {"item": "platform", "value": platform.platform()},
    ]
    for name in _PACKAGES:
        try:
            rows.append({"item": name, "value": metadata.version(name)})
        except metadata.PackageNotFoundError:
            if not name.startswith("cupy"):
                rows.append({"item": name, "value": "not installed"})
    rows += [
        {"item": "torch sees CUDA", "value": str(torch.cuda.is_available())},
        {"item": "CuPy usable", "value": str(cupy_available())},
        {"item": "GPU path available", "value": str(gpu_available())},
        {"item": "backend in force", "value": active_backend()},
    ]
    if torch.cuda.is_available():
        rows.append({"item": "device", "value": torch.cuda.get_device_name()})
    return rows


def module_rows() -> list[dict[str, str]]:
    """One row per analysis module, read from the modules' cards.

    Returns
    -------
    list of dict
        Columns ``module``, ``what it analyses``, ``explorer`` and ``notebook``, in report
        order; a module without an explorer or notebook shows an empty cell.

    Examples
    --------
    >>> [row["module"] for row in module_rows()][:3]
    ['toolkit.isometry', 'toolkit.attention', 'toolkit.verify']
    """
    return [
        {
            "module": f"toolkit.{card.name}",
            "what it analyses": card.summary,
            "explorer": card.explorer or "",
            "notebook": card.notebook or "",
        }
        for card in module_cards()
    ]


@register_section("environment", "Environment and modules", order=0)
def environment_section(ctx: ReportContext) -> list[Any]:
    """The environment section: interpreter, packages, devices and the module map.

    Parameters
    ----------
    ctx : ReportContext
        The report's settings (unused: this section has no sizes to shrink).

    Returns
    -------
    list
        Two :class:`~toolkit.report.Table` blocks.
    """
    return [
        Table(environment_rows(), caption="Interpreter, packages and devices"),
        "<p>Each analysis module adds its own section below; those with GPU kernels check "
        "their CUDA path against the reference there.</p>",
        Table(module_rows(), caption="Analysis modules"),
    ]
