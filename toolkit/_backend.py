"""Device choice and the torch <-> CuPy bridge.

Every numerical operation has a torch *reference* path and, where a kernel exists, a *CUDA*
path.  This module decides which one runs:

1. an explicit ``backend=`` argument to the operation,
2. else the innermost :func:`use_backend` context,
3. else the ``TOOLKIT_DEVICE`` environment variable (``cpu``, ``cuda`` or ``auto``),
4. else ``auto``: the CUDA path when the input lives on a CUDA device and CuPy is usable.

``cpu`` forces the reference path (it runs wherever the tensor is); ``cuda`` demands the CUDA
path and raises a clear error when it cannot run.

Tensors cross into CuPy with zero copies through DLPack, and kernels are launched on torch's
current stream so that they order correctly with torch's own work.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import os
from collections.abc import Iterator
from typing import Any

import torch

__all__ = [
    "BACKENDS",
    "active_backend",
    "cupy_available",
    "gpu_available",
    "quick_mode",
    "resolve_backend",
    "resolve_device",
    "single_thread",
    "to_cupy",
    "to_torch",
    "torch_stream",
    "use_backend",
]

BACKENDS = ("auto", "cpu", "cuda")
_ENV_VAR = "TOOLKIT_DEVICE"
_context_backend: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "toolkit_backend", default=None
)


@functools.lru_cache(maxsize=1)
def _import_cupy() -> Any | None:
    try:
        import cupy
    except Exception:  # ImportError, or a CuPy that finds no CUDA libraries
        return None
    return cupy


def cupy_available() -> bool:
    """True when CuPy imports and reports at least one CUDA device."""
    cupy = _import_cupy()
    if cupy is None:
        return False
    try:
        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:
        return False


def gpu_available() -> bool:
    """True only when torch sees CUDA, CuPy imports and a CUDA device exists.

    >>> isinstance(gpu_available(), bool)
    True
    """
    return bool(torch.cuda.is_available() and cupy_available())


def _check_backend(value: object, name: str) -> str:
    if not isinstance(value, str) or value.lower() not in BACKENDS:
        raise ValueError(f"{name} must be one of {BACKENDS}, got {value!r}")
    return value.lower()


def active_backend() -> str:
    """The backend in force when no ``backend=`` argument is given.

    The innermost :func:`use_backend` context wins over ``TOOLKIT_DEVICE``.
    """
    from_context = _context_backend.get()
    if from_context is not None:
        return from_context
    env = os.environ.get(_ENV_VAR, "").strip()
    return _check_backend(env, f"environment variable {_ENV_VAR}") if env else "auto"


@contextlib.contextmanager
def use_backend(backend: str) -> Iterator[str]:
    """Force the ``"cpu"`` (reference) or ``"cuda"`` path, or restore ``"auto"``, in a block.

    >>> import toolkit
    >>> with toolkit.use_backend("cpu"):
    ...     toolkit.active_backend()
    'cpu'
    """
    choice = _check_backend(backend, "backend")
    token = _context_backend.set(choice)
    try:
        yield choice
    finally:
        _context_backend.reset(token)


def resolve_backend(tensor: torch.Tensor, backend: str | None, has_cuda_path: bool) -> str:
    """Return ``"cuda"`` or ``"cpu"`` for an operation on ``tensor``.

    Raises ``RuntimeError`` when the CUDA path is demanded but cannot run, naming why.
    """
    choice = active_backend() if backend is None else _check_backend(backend, "backend")
    if choice == "cpu":
        return "cpu"
    usable = has_cuda_path and tensor.is_cuda and gpu_available()
    if choice == "auto":
        return "cuda" if usable else "cpu"
    if not has_cuda_path:
        raise RuntimeError("backend='cuda' was requested but this operation has no CUDA kernel")
    if not tensor.is_cuda:
        raise RuntimeError(
            f"backend='cuda' needs the input on a CUDA device, got a tensor on {tensor.device}; "
            "move it with .cuda() or use backend='auto'"
        )
    if not gpu_available():
        raise RuntimeError(
            "backend='cuda' was requested but CuPy is not usable "
            "(install the `gpu` extra: pip install 'deepnet-toolkit[gpu]')"
        )
    return "cuda"


def resolve_device(device: object = None, name: str = "device") -> torch.device:
    """The torch device a model or a computation should live on, by one policy.

    An explicit ``device`` wins: ``"cpu"``, ``"cuda"``, ``"cuda:N"`` (or a
    :class:`torch.device` of those types), or ``"auto"``.  ``None`` follows the backend in
    force (:func:`active_backend`: the innermost :func:`use_backend`, else
    ``TOOLKIT_DEVICE``, else ``"auto"``).  ``"auto"`` is CUDA when torch sees a GPU, else
    the CPU; ``"cuda"`` demands a GPU.

    Parameters
    ----------
    device : str, torch.device or None
        The requested device.
    name : str
        The argument's name in error messages.

    Returns
    -------
    torch.device

    Raises
    ------
    TypeError
        If ``device`` is neither a str, a torch.device nor None.
    ValueError
        If it names no CPU or CUDA device, if CUDA is requested (by the argument or by
        ``TOOLKIT_DEVICE``) where torch has no usable GPU, or if ``TOOLKIT_DEVICE`` holds
        an invalid value.

    Examples
    --------
    >>> resolve_device("cpu")
    device(type='cpu')
    >>> with use_backend("cpu"):
    ...     resolve_device(None)
    device(type='cpu')
    >>> resolve_device("gpu")
    Traceback (most recent call last):
    ...
    ValueError: device must be 'auto', 'cpu', 'cuda', 'cuda:N' or a torch.device of those, got 'gpu'
    """
    expected = "'auto', 'cpu', 'cuda', 'cuda:N' or a torch.device of those"
    implicit = device is None
    if implicit:
        device = active_backend()
    if isinstance(device, str) and device.strip().lower() == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if isinstance(device, str):
        try:
            dev = torch.device(device.strip().lower())
        except RuntimeError:
            raise ValueError(f"{name} must be {expected}, got {device!r}") from None
    elif isinstance(device, torch.device):
        dev = device
    else:
        raise TypeError(
            f"{name} must be a str, a torch.device or None, got {device!r} "
            f"({type(device).__name__})"
        )
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"{name} must be {expected}, got {device!r}")
    if dev.type == "cuda":
        asked = (
            f"{name}=None with backend 'cuda' ({_ENV_VAR} or use_backend)"
            if implicit
            else f"{name}={str(dev)!r}"
        )
        if not torch.cuda.is_available():
            raise ValueError(
                f"{asked} needs a CUDA GPU, but torch sees none (torch {torch.__version__}, "
                f"CUDA build: {torch.version.cuda or 'none'}); use 'cpu' or 'auto'"
            )
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            raise ValueError(f"{asked} names a GPU that does not exist: torch sees {count}")
    return dev


def quick_mode() -> bool:
    """True when ``TOOLKIT_QUICK`` is set to a true value: notebooks and reports shrink sizes."""
    return os.environ.get("TOOLKIT_QUICK", "").strip().lower() in {"1", "true", "yes", "on"}


@contextlib.contextmanager
def single_thread(enabled: bool = True) -> Iterator[None]:
    """Run torch's CPU ops on one thread inside the block, then restore the setting.

    The toolkit's interactive sizes (one sentence, a small model) gain nothing from intra-op
    threads, and on shared or busy cores the threads cost several times the work.
    """
    threads = torch.get_num_threads()
    if enabled:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _require_cupy() -> Any:
    cupy = _import_cupy()
    if cupy is None:
        raise RuntimeError("CuPy is not installed; install the `gpu` extra for the CUDA path")
    return cupy


def to_cupy(tensor: torch.Tensor) -> Any:
    """View a CUDA tensor as a CuPy array, sharing memory (DLPack, no copy)."""
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"tensor must be a torch.Tensor, got {type(tensor).__name__}")
    if not tensor.is_cuda:
        raise ValueError(f"tensor must be on a CUDA device, got {tensor.device}")
    cupy = _require_cupy()
    if tensor.dtype == torch.bfloat16:
        # DLPack consumers without bfloat16 support still get the bits, as uint16.
        tensor = tensor.view(torch.int16)
    with torch_stream(tensor.device):
        return cupy.from_dlpack(tensor)


def to_torch(array: Any) -> torch.Tensor:
    """View a CuPy array as a torch tensor, sharing memory (DLPack, no copy)."""
    return torch.from_dlpack(array)


@contextlib.contextmanager
def torch_stream(device: torch.device | int | None = None) -> Iterator[Any]:
    """Make CuPy use torch's current stream (and device) inside the block."""
    cupy = _require_cupy()
    device = torch.device("cuda", torch.cuda.current_device()) if device is None else device
    index = device if isinstance(device, int) else device.index
    index = torch.cuda.current_device() if index is None else index
    stream = torch.cuda.current_stream(index)
    if hasattr(cupy.cuda.Stream, "from_external") and hasattr(stream, "__cuda_stream__"):
        external = cupy.cuda.Stream.from_external(stream)  # CuPy >= 14
    else:
        external = cupy.cuda.ExternalStream(stream.cuda_stream, index)
    with cupy.cuda.Device(index), external as s:
        yield s
