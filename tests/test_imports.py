"""Every toolkit module imports first and alone: no import cycles, no import-time errors.

A cycle between two modules hides when some third module happens to import one of them first,
so each module is imported as the *first* toolkit module of a fresh interpreter state.  To
keep this fast on two cores, one helper process imports the third-party libraries once (they
cannot take part in a toolkit cycle) and then forks a child per module; a child starts with
no ``toolkit`` module loaded, imports its one module and reports the traceback on failure.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from toolkit._modules import module_cards

ROOT = Path(__file__).resolve().parent.parent


def toolkit_modules() -> list[str]:
    """Every module and package under ``toolkit/``, found by walking the source tree."""
    names = []
    for path in sorted((ROOT / "toolkit").rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        # Only folders that are packages: toolkit/verify/data holds build scripts, not modules.
        folders = (ROOT.joinpath(*parts[:i]) for i in range(1, len(parts)))
        if not all((folder / "__init__.py").is_file() for folder in folders):
            continue
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


_RUNNER = textwrap.dedent(
    """
    import importlib, json, os, sys, traceback
    for lib in ("torch", "numpy", "scipy", "sympy", "plotly.graph_objects", "ipywidgets", "tqdm"):
        try:
            importlib.import_module(lib)
        except ImportError:
            pass
    assert not [m for m in sys.modules if m == "toolkit" or m.startswith("toolkit.")]
    names, results, running = sys.argv[1:], {}, {}

    def reap():
        pid, status = os.wait()
        name, read_end = running.pop(pid)
        chunks = []
        while chunk := os.read(read_end, 1 << 16):
            chunks.append(chunk)
        os.close(read_end)
        report = b"".join(chunks).decode(errors="replace")
        results[name] = json.loads(report) if status == 0 else report or f"exit status {status}"

    for name in names:
        if len(running) >= 2:
            reap()
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(read_end)
            try:
                importlib.import_module(name)
                loaded = sorted(m for m in sys.modules if m.startswith("toolkit."))
                out, code = json.dumps(loaded), 0
            except BaseException:
                out, code = traceback.format_exc()[-60000:], 1
            data = out.encode()
            while data:
                data = data[os.write(write_end, data):]
            os._exit(code)
        os.close(write_end)
        running[pid] = (name, read_end)
    while running:
        reap()
    print(json.dumps(results))
    """
)


@pytest.fixture(scope="module")
def imports() -> dict[str, list[str] | str]:
    """For each module: the toolkit modules loaded by importing it alone, or the traceback."""
    proc = subprocess.run(
        [sys.executable, "-c", _RUNNER, *toolkit_modules()],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-5000:]
    return json.loads(proc.stdout)


def test_module_list_is_complete():
    names = toolkit_modules()
    assert {"toolkit", "toolkit.report", "toolkit._modules", "toolkit.widgets._base"} <= set(names)
    assert not any(n.startswith("toolkit.verify.data") for n in names)  # build scripts
    assert "toolkit.data" in names


def test_every_module_imports_first_and_alone(imports):
    failed = {name: result for name, result in imports.items() if isinstance(result, str)}
    assert set(imports) == set(toolkit_modules())
    assert not failed, "\n".join(f"--- import {n} failed ---\n{tb}" for n, tb in failed.items())


def test_import_toolkit_loads_no_subpackage(imports):
    assert not [m for m in imports["toolkit"] if m.count(".") == 1 and not m[8:].startswith("_")]


@pytest.mark.parametrize(
    "layer", ["toolkit._modules", "toolkit.report", "toolkit.report.environment", "toolkit.widgets"]
)
def test_registries_import_no_module_code(imports, layer):
    """The report and the registries read the cards; they import no analysis module."""
    modules = [f"toolkit.{card.name}" for card in module_cards()]
    loaded = imports[layer]
    assert not isinstance(loaded, str), loaded
    assert not [m for m in loaded if m in modules], f"{layer} imported {loaded}"
