"""toolkit: an interactive analysis toolkit for the design of deep networks.

Subpackages are imported on first use, so ``import toolkit`` stays light:

>>> import toolkit
>>> toolkit.gpu_available() in (True, False)
True
>>> with toolkit.use_backend("cpu"):
...     toolkit.active_backend()
'cpu'
"""

from __future__ import annotations

import importlib
from typing import Any

from ._backend import active_backend, gpu_available, quick_mode, use_backend
from ._kernels import KernelError
from ._modules import module_cards

__version__ = "0.1.0"

# The analysis modules declare themselves in their ``_card.py``; the shared layers are fixed.
_SUBPACKAGES = (
    *(card.name for card in module_cards()),
    "data",
    "models",
    "report",
    "widgets",
)

__all__ = [
    "KernelError",
    "__version__",
    "active_backend",
    "gpu_available",
    "quick_mode",
    "use_backend",
    *_SUBPACKAGES,
]


def __getattr__(name: str) -> Any:
    if name in _SUBPACKAGES:
        module = importlib.import_module(f"{__name__}.{name}")
        globals()[name] = module
        return module
    raise AttributeError(f"module 'toolkit' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
