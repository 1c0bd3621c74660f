"""Issue 10, item 8: isometry resolves devices through the one policy of toolkit._backend."""

from __future__ import annotations

import pytest
import torch

from toolkit.isometry import (
    NetworkDesign,
    build_network,
    sample_block_moments,
    sample_input,
    sample_spectrum,
)

_DESIGN = NetworkDesign(width=4, depth=1)
_CALLS = {
    "build_network": lambda **kw: build_network(_DESIGN, seed=0, **kw),
    "sample_input": lambda **kw: sample_input(_DESIGN, 2, seed=0, **kw),
    "sample_block_moments": lambda **kw: sample_block_moments(
        _DESIGN, samples=1, batch=2, probes=2, seed=0, **kw
    ),
    "sample_spectrum": lambda **kw: sample_spectrum(_DESIGN, samples=1, inputs=1, seed=0, **kw),
}


def _device_of(result):
    if isinstance(result, torch.nn.Module):
        return next(result.parameters()).device
    return result.device


@pytest.mark.parametrize("name", ["build_network", "sample_input"])
def test_toolkit_device_cpu_is_honoured(name, monkeypatch):
    monkeypatch.setenv("TOOLKIT_DEVICE", "cpu")
    assert _device_of(_CALLS[name]()) == torch.device("cpu")


@pytest.mark.parametrize("name", sorted(_CALLS))
def test_invalid_toolkit_device_is_an_error(name, monkeypatch):
    monkeypatch.setenv("TOOLKIT_DEVICE", "tpu")
    with pytest.raises(ValueError, match="TOOLKIT_DEVICE"):
        _CALLS[name]()


@pytest.mark.parametrize("name", sorted(_CALLS))
def test_invalid_device_argument_names_it(name):
    with pytest.raises(ValueError, match="device must be"):
        _CALLS[name](device="gpu")
    with pytest.raises(TypeError, match="device must be"):
        _CALLS[name](device=3)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error where CUDA is missing")
@pytest.mark.parametrize("name", sorted(_CALLS))
def test_cuda_without_a_gpu_is_a_clear_error(name, monkeypatch):
    # before: torch's "Torch not compiled with CUDA enabled" (AssertionError)
    with pytest.raises(ValueError, match="device='cuda' needs a CUDA GPU"):
        _CALLS[name](device="cuda")
    monkeypatch.setenv("TOOLKIT_DEVICE", "cuda")
    with pytest.raises(ValueError, match="TOOLKIT_DEVICE"):
        _CALLS[name]()


@pytest.mark.parametrize("dtype", [torch.int64, "float64", None])
def test_dtype_must_be_floating(dtype):
    for name in ("build_network", "sample_input"):
        with pytest.raises(TypeError, match="dtype"):
            _CALLS[name](dtype=dtype)
