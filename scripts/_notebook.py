"""Shared by the notebook generators: write cells as a notebook without outputs.

Cell ids are numbered, not random, so regenerating a notebook changes only what its cells say.
"""

from __future__ import annotations

from pathlib import Path

import nbformat as nbf

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"


def write_notebook(cells: list, name: str) -> Path:
    """Write ``cells`` to ``notebooks/<name>`` with the python3 kernel and numbered cell ids."""
    for i, cell in enumerate(cells):
        cell.id = f"cell-{i:02d}"
    nb = nbf.v4.new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    out = NOTEBOOKS / name
    nbf.write(nb, out)
    print("wrote", out)
    return out
