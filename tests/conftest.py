"""Shared test set-up.  Imports only torch, so GPU tests run where plotly is absent."""

from __future__ import annotations

import pytest
import torch


def _gpu_skip_reason() -> str | None:
    from toolkit import gpu_available
    from toolkit._backend import cupy_available

    if gpu_available():
        return None
    return (
        f"needs a CUDA GPU with CuPy (torch.cuda.is_available()={torch.cuda.is_available()}, "
        f"CuPy usable={cupy_available()}); run scripts/gpu-tests on a CUDA machine"
    )


def pytest_collection_modifyitems(config, items):
    reason = _gpu_skip_reason()
    if reason is None:
        return
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture
def generator():
    """A seeded torch generator; tests check properties, not a seed's particular draws."""
    return torch.Generator().manual_seed(1234)
