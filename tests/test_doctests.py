"""Every docstring example in the package runs and prints what it shows."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import toolkit

_SKIP_PREFIXES = ("toolkit.widgets", "toolkit.__main__")


def _modules() -> list[str]:
    names = ["toolkit"]
    for info in pkgutil.walk_packages(toolkit.__path__, prefix="toolkit."):
        if not info.name.startswith(_SKIP_PREFIXES) and ".data." not in info.name:
            names.append(info.name)
    return sorted(names)


@pytest.mark.parametrize("name", _modules())
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} docstring example(s) failed in {name}"
