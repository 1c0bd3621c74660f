"""Shared test set-up.  Imports only torch, so GPU tests run where plotly is absent."""

from __future__ import annotations

import contextlib

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


@pytest.fixture(autouse=True)
def _one_thread():
    """Every test on one torch thread and one BLAS thread: the sizes here gain nothing from
    more, and CI's two shared cores make extra threads several times slower."""
    from toolkit._backend import single_thread

    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # the test extra brings threadpoolctl; scripts/gpu-tests may lack it
        limits = contextlib.nullcontext()
    else:
        limits = threadpool_limits(1)
    with single_thread(), limits:
        yield


@pytest.fixture
def generator():
    """A seeded torch generator; tests check properties, not a seed's particular draws."""
    return torch.Generator().manual_seed(1234)
