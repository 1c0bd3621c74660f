"""Sphinx configuration: API pages derived from the ``__all__`` lists, notebooks unexecuted.

Build with ``sphinx-build -W --keep-going -b html docs docs/_build/html`` (CI does, with
warnings as errors).  Two folders are written here at every build and ignored by git:
``docs/api/`` (one page per public subpackage, listing the names in its ``__all__``; the
autosummary extension then writes a page per name) and ``docs/notebooks/`` (copies of
``notebooks/*.ipynb``, rendered by myst-nb without running them).
"""

from __future__ import annotations

import importlib
import inspect
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from sphinx.errors import PycodeError  # noqa: E402
from sphinx.pycode import ModuleAnalyzer  # noqa: E402

import toolkit  # noqa: E402
from toolkit._modules import module_cards  # noqa: E402

project = "toolkit"
author = "toolkit developers"
copyright = "toolkit developers"
release = version = toolkit.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "myst_nb",
]
source_suffix = {".rst": "restructuredtext", ".md": "myst-nb", ".ipynb": "myst-nb"}
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store", "**.ipynb_checkpoints"]

# numpy-style docstrings (Parameters / Returns / Raises / Examples).
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_rtype = False
# Attributes sections as fields: autodoc also documents the attributes themselves.
napoleon_use_ivar = True
autosummary_generate = True
autosummary_imported_members = True
autodoc_default_options = {"members": True, "show-inheritance": True}
autodoc_typehints = "description"
autodoc_member_order = "bysource"
# Optional packages (CuPy, MiniLM) are imported inside functions only; nothing to mock.

# Notebooks are rendered as committed (without outputs): running them is the tests' job.
nb_execution_mode = "off"
myst_enable_extensions = ["dollarmath", "amsmath"]
myst_heading_anchors = 3

html_theme = "pydata_sphinx_theme"
html_title = f"toolkit {release}"
html_theme_options = {"navigation_with_keys": False, "show_toc_level": 2}
html_static_path: list[str] = []


def public_subpackages() -> list[str]:
    """``toolkit`` and each subpackage named in ``toolkit.__all__``."""
    return ["toolkit", *(f"toolkit.{name}" for name in toolkit._SUBPACKAGES)]


def _title(text: str) -> str:
    return f"{text}\n{'=' * len(text)}\n"


def _is_data(obj: object) -> bool:
    """A constant (a table, a tuple of names): its ``__doc__`` is its type's, not its own."""
    return not (callable(obj) or inspect.ismodule(obj))


def _attribute_doc(package: str, name: str) -> str:
    """The ``#:`` comment above ``name``'s assignment in the module of ``package`` defining it."""
    for dotted in sorted(m for m in sys.modules if m == package or m.startswith(package + ".")):
        try:
            docs = ModuleAnalyzer.for_module(dotted).find_attr_docs()
        except PycodeError:
            continue
        if ("", name) in docs:
            return " ".join(line.strip() for line in docs[("", name)] if line.strip())
    return ""


def _constant_lines(dotted: str, module: object, names: list[str]) -> list[str]:
    """Constants are listed with their ``#:`` comment (autosummary would show their type's
    docstring, for a dict the documentation of ``dict`` itself)."""
    if not names:
        return []
    lines = ["Constants\n---------\n"]
    for name in names:
        value = getattr(module, name)
        lines += [f".. py:data:: {name}", f"   :type: {type(value).__name__}", ""]
        doc = _attribute_doc(dotted, name)
        if doc:
            lines += [f"   {doc}", ""]
    return lines


def write_api_pages() -> None:
    """One page per public subpackage with an autosummary of every name in its ``__all__``."""
    api = HERE / "api"
    shutil.rmtree(api, ignore_errors=True)
    api.mkdir()
    cards = {f"toolkit.{card.name}": card for card in module_cards()}
    pages = []
    for dotted in public_subpackages():
        module = importlib.import_module(dotted)
        names = [
            n
            for n in module.__all__
            if not n.startswith("__") and not (dotted == "toolkit" and n in toolkit._SUBPACKAGES)
        ]
        title = f"{dotted}: {cards[dotted].title}" if dotted in cards else dotted
        documented = [n for n in names if not _is_data(getattr(module, n))]
        constants = [n for n in names if _is_data(getattr(module, n))]
        lines = [
            _title(title),
            f".. automodule:: {dotted}\n   :no-members:\n",
            f".. currentmodule:: {dotted}\n",
            ".. autosummary::\n   :toctree: generated\n   :nosignatures:\n",
            *(f"   {name}" for name in sorted(documented, key=str.lower)),
            "",
            *_constant_lines(dotted, module, sorted(constants, key=str.lower)),
        ]
        (api / f"{dotted}.rst").write_text("\n".join(lines))
        pages.append(dotted)
    index = [
        _title("API reference"),
        "Every public name of every public subpackage, as listed in its ``__all__``.\n",
        ".. toctree::\n   :maxdepth: 1\n",
        *(f"   {page}" for page in pages),
        "",
    ]
    (api / "index.rst").write_text("\n".join(index))


def copy_notebooks() -> None:
    """Copy the committed notebooks next to the docs, where myst-nb reads them."""
    target = HERE / "notebooks"
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir()
    stems = []
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        shutil.copy2(path, target / path.name)
        stems.append(path.stem)
    index = [
        _title("Notebooks"),
        "The tour and one notebook per module, shown without outputs: run them in Jupyter "
        "(``jupyter lab notebooks/``) to see the explorers.\n",
        ".. toctree::\n   :maxdepth: 1\n",
        *(f"   {stem}" for stem in stems),
        "",
    ]
    (target / "index.rst").write_text("\n".join(index))


write_api_pages()
copy_notebooks()


# -- docstrings of modules whose owners are converting them to numpy style ---------------------
# Each entry silences docutils' markup warnings in ONE object's docstring, nothing else.  The
# owners of these modules are rewriting the docstrings now; when an entry no longer matches, the
# build says so (as a message, not a warning) and the entry is to be deleted.
PENDING_DOCSTRINGS = {
    "toolkit.verify.minilm.MiniLMClassifier",
}


class _PendingDocstrings:
    """A logging filter dropping docutils warnings located in the docstrings listed above."""

    def __init__(self) -> None:
        self.matched: set[str] = set()

    def filter(self, record) -> bool:
        where = f"{getattr(record, 'location', '')} {record.getMessage()}"
        for name in PENDING_DOCSTRINGS:
            if f"docstring of {name}:" in where and getattr(record, "type", None) == "docutils":
                self.matched.add(name)
                return False
        return True


def setup(app):
    import logging

    pending = _PendingDocstrings()
    for handler in logging.getLogger("sphinx").handlers:
        if handler.level >= logging.WARNING:
            handler.filters.insert(0, pending)

    def report_stale(app, exception):
        stale = sorted(PENDING_DOCSTRINGS - pending.matched)
        if stale and exception is None:
            print(f"docs/conf.py: PENDING_DOCSTRINGS entries no longer needed: {stale}")

    app.connect("build-finished", report_stale)
