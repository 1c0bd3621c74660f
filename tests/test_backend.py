"""Backend choice: explicit argument > use_backend() > TOOLKIT_DEVICE > auto."""

from __future__ import annotations

import re

import pytest
import torch

import toolkit
from toolkit._backend import active_backend, quick_mode, resolve_backend
from toolkit._dispatch import operation


def test_gpu_available_agrees_with_torch():
    if not torch.cuda.is_available():
        assert toolkit.gpu_available() is False


def test_context_manager_nests_and_restores():
    assert active_backend() == "auto"
    with toolkit.use_backend("cpu"):
        assert active_backend() == "cpu"
        with toolkit.use_backend("auto"):
            assert active_backend() == "auto"
        assert active_backend() == "cpu"
    assert active_backend() == "auto"


def test_environment_variable(monkeypatch):
    monkeypatch.setenv("TOOLKIT_DEVICE", "CPU")
    assert active_backend() == "cpu"
    with toolkit.use_backend("auto"):
        assert active_backend() == "auto"  # the context wins over the environment
    monkeypatch.setenv("TOOLKIT_DEVICE", "tpu")
    with pytest.raises(ValueError, match="TOOLKIT_DEVICE"):
        active_backend()


def test_bad_backend_name():
    with pytest.raises(ValueError, match="backend must be one of"):
        toolkit.use_backend("gpu").__enter__()
    with pytest.raises(ValueError, match="backend must be one of"):
        resolve_backend(torch.zeros(1), "metal", True)


def test_cpu_tensor_takes_reference_path_in_auto():
    assert resolve_backend(torch.zeros(1), None, has_cuda_path=True) == "cpu"
    assert resolve_backend(torch.zeros(1), "cpu", has_cuda_path=True) == "cpu"


def test_operation_dispatch_and_forcing():
    calls = []

    @operation
    def double(x):
        calls.append("reference")
        return 2 * x

    assert not double.has_cuda_path and "reference" in repr(double)
    assert torch.equal(double(torch.ones(2)), torch.full((2,), 2.0))
    with pytest.raises(RuntimeError, match="no CUDA kernel"):
        double(torch.ones(2), backend="cuda")

    @double.cuda
    def _double_cuda(x):
        calls.append("cuda")
        return 2 * x

    assert double.has_cuda_path
    double(torch.ones(2), backend="cpu")
    assert calls == ["reference", "reference"]
    if not toolkit.gpu_available():
        with pytest.raises(RuntimeError, match="needs the input on a CUDA device"):
            double(torch.ones(2), backend="cuda")


def test_quick_mode(monkeypatch):
    monkeypatch.setenv("TOOLKIT_QUICK", "1")
    assert quick_mode()
    monkeypatch.setenv("TOOLKIT_QUICK", "0")
    assert not quick_mode()


def test_to_cupy_rejects_cpu_tensors():
    from toolkit._backend import to_cupy

    with pytest.raises(ValueError, match="must be on a CUDA device"):
        to_cupy(torch.zeros(2))
    with pytest.raises(TypeError, match="must be a torch.Tensor"):
        to_cupy([1, 2])


def test_lazy_subpackages():
    import types

    subpackages = set(toolkit._SUBPACKAGES)
    assert {"attention", "isometry", "verify", "models", "report", "widgets"} <= subpackages
    for name in toolkit.__all__:
        value = getattr(toolkit, name)
        if name in subpackages:
            assert isinstance(value, types.ModuleType) and value.__name__ == f"toolkit.{name}"
        elif name == "__version__":
            assert re.fullmatch(r"\d+\.\d+\.\d+", value)
        else:
            assert callable(value) and value.__module__.startswith("toolkit."), name
    assert callable(toolkit.attention.nm_mask)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        toolkit.nope  # noqa: B018


def test_single_thread_restores_the_setting():
    from toolkit._backend import single_thread

    torch.set_num_threads(2)  # the suite's autouse fixture runs tests on one thread
    before = torch.get_num_threads()
    with single_thread():
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with pytest.raises(RuntimeError), single_thread():
        raise RuntimeError("restored even on errors")
    assert torch.get_num_threads() == before == 2
    with single_thread(enabled=False):
        assert torch.get_num_threads() == 2
