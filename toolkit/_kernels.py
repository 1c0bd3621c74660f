"""Loading and launching the CUDA kernels in ``kernels/*.cu`` through CuPy.

A kernel file is self-contained CUDA C++ (it may include the project's own ``*.cuh`` headers
from the same folder, never CuPy's).  The loader prepends ``#line 1 "kernels/<name>.cu"`` so
that compiler diagnostics point at the real file and line, compiles with NVRTC through
``cupy.RawModule`` and memoises the module per device.  Any compilation or launch failure
becomes a :class:`KernelError` that carries the compiler log.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ._backend import _require_cupy, torch_stream

__all__ = [
    "TEMPLATE_TYPES",
    "KernelError",
    "grid_size",
    "kernel_dir",
    "kernel_source",
    "launch",
    "load_module",
    "require_cuda_tensor",
]

DEFAULT_OPTIONS = ("-std=c++17",)
DEFAULT_BLOCK = 256

#: The C++ type a kernel template is instantiated with, for each torch dtype.  Half types are
#: carried as tagged 16-bit words (``tk_half``, ``tk_bfloat16`` in ``kernels/tk_dtypes.cuh``) so
#: that kernels compile without CUDA's own half headers under both NVRTC and nvcc.
TEMPLATE_TYPES: dict[torch.dtype, str] = {
    torch.float32: "float",
    torch.float64: "double",
    torch.float16: "tk_half",
    torch.bfloat16: "tk_bfloat16",
}


class KernelError(RuntimeError):
    """A CUDA kernel failed to compile or launch.

    Parameters
    ----------
    message : str
        What failed.
    log : str
        The compiler's output, appended to the message when not empty.

    Attributes
    ----------
    log : str
        The compiler's output (empty for launch errors).

    Examples
    --------
    >>> KernelError("compiling kernels/x.cu failed", "x.cu(3): error").log
    'x.cu(3): error'
    """

    def __init__(self, message: str, log: str = "") -> None:
        super().__init__(message if not log else f"{message}\n--- compiler log ---\n{log}")
        self.log = log


@functools.lru_cache(maxsize=1)
def kernel_dir() -> Path:
    """The folder holding the ``.cu`` sources: inside the installed package, else the checkout.

    Returns
    -------
    pathlib.Path
        The folder.

    Raises
    ------
    KernelError
        If neither place holds the sources.
    """
    packaged = Path(str(resources.files("toolkit"))) / "kernels"
    if packaged.is_dir():
        return packaged
    source_tree = Path(__file__).resolve().parent.parent / "kernels"
    if source_tree.is_dir():
        return source_tree
    raise KernelError(f"kernel sources not found in {packaged} nor {source_tree}")


def kernel_source(name: str) -> str:
    """The source of ``kernels/<name>.cu`` with the ``#line`` directive in front.

    Parameters
    ----------
    name : str
        The file's stem, for example ``"nm_prune"``.

    Returns
    -------
    str
        ``#line 1 "kernels/<name>.cu"`` and the file's text.

    Raises
    ------
    KernelError
        If there is no such file; the message lists the available ones.

    Examples
    --------
    >>> kernel_source("nm_prune").splitlines()[0]
    '#line 1 "kernels/nm_prune.cu"'
    """
    path = kernel_dir() / f"{name}.cu"
    if not path.is_file():
        available = sorted(p.stem for p in kernel_dir().glob("*.cu"))
        raise KernelError(f"no kernel file {name}.cu; available: {available}")
    return f'#line 1 "kernels/{name}.cu"\n' + path.read_text()


@functools.cache
def _compiled(
    name: str, device: int, name_expressions: tuple[str, ...], options: tuple[str, ...]
) -> Any:
    cupy = _require_cupy()
    with cupy.cuda.Device(device):
        module = cupy.RawModule(
            code=kernel_source(name),
            options=(*options, f"-I{kernel_dir()}"),
            name_expressions=name_expressions or None,
        )
        try:
            module.compile()
        except cupy.cuda.compiler.CompileException as exc:
            raise KernelError(f"compiling kernels/{name}.cu failed", exc.get_message()) from exc
        except Exception as exc:
            raise KernelError(f"loading kernels/{name}.cu failed: {exc}") from exc
    return module


def load_module(
    name: str,
    name_expressions: Sequence[str] = (),
    options: Sequence[str] = DEFAULT_OPTIONS,
    device: int | None = None,
) -> Any:
    """Compile (once per device) and return the ``cupy.RawModule`` for ``kernels/<name>.cu``.

    Parameters
    ----------
    name : str
        The kernel file's stem.
    name_expressions : sequence of str
        Template instantiations to compile, for example ``("nm_prune<float>",)``.
    options : sequence of str
        NVRTC options; the kernels folder is always on the include path.
    device : int or None
        The CUDA device; None means torch's current device.

    Returns
    -------
    cupy.RawModule
        The compiled module, cached per (name, device, expressions, options).

    Raises
    ------
    KernelError
        If compiling or loading fails; ``log`` holds the compiler's output.
    """
    if device is None:
        device = torch.cuda.current_device()
    return _compiled(name, int(device), tuple(name_expressions), tuple(options))


@functools.cache
def _function(
    name: str, function: str, device: int, name_expressions: tuple[str, ...], options: tuple
) -> Any:
    # RawModule.get_function builds a new kernel object (and looks the symbol up) every call.
    return _compiled(name, device, name_expressions, options).get_function(function)


def _kernel_arg(value: Any, device: torch.device) -> Any:
    """A tensor travels as its raw device pointer: validated, ordered on torch's stream, and
    kept alive by the caller, it needs none of DLPack's per-tensor export (tens of us each)."""
    if not isinstance(value, torch.Tensor):
        return value
    if value.device != device:
        raise ValueError(f"kernel argument on {value.device}, expected {device}")
    return np.uint64(value.data_ptr())


def grid_size(n: int, block: int = DEFAULT_BLOCK, max_blocks: int | None = None) -> int:
    """The number of blocks giving ``n`` work items a thread each.

    Parameters
    ----------
    n : int
        Work items, at least 0.
    block : int
        Threads per block, at least 1.
    max_blocks : int or None
        A cap, for kernels with grid-stride loops.

    Returns
    -------
    int
        ``ceil(n / block)``, at least 1, at most ``max_blocks``.

    Raises
    ------
    ValueError
        If ``n < 0`` or ``block < 1``.

    Examples
    --------
    >>> grid_size(257, 256), grid_size(10**9, 256, max_blocks=1024)
    (2, 1024)
    """
    if n < 0 or block < 1:
        raise ValueError(f"need n >= 0 and block >= 1, got n={n}, block={block}")
    blocks = max(1, math.ceil(n / block))
    return min(blocks, max_blocks) if max_blocks else blocks


def require_cuda_tensor(
    tensor: torch.Tensor, name: str, dtypes: Sequence[torch.dtype], device: torch.device
) -> None:
    """Validate a tensor right before a launch: type, dtype, device and contiguity.

    Parameters
    ----------
    tensor : torch.Tensor
        The kernel argument.
    name : str
        Its name in error messages.
    dtypes : sequence of torch.dtype
        The dtypes the kernel accepts.
    device : torch.device
        The device the launch runs on.

    Raises
    ------
    TypeError
        If ``tensor`` is not a tensor or has another dtype.
    ValueError
        If it is on another device or not contiguous.
    """
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(tensor).__name__}")
    if tensor.dtype not in dtypes:
        raise TypeError(f"{name} must have dtype in {list(dtypes)}, got {tensor.dtype}")
    if tensor.device != device:
        raise ValueError(f"{name} must be on {device}, got {tensor.device}")
    if not tensor.is_contiguous():
        raise ValueError(f"{name} must be contiguous before a kernel launch")


def launch(
    module_name: str,
    function: str,
    n_threads: int,
    args: Sequence[Any],
    device: torch.device,
    name_expressions: Sequence[str] = (),
    block: int = DEFAULT_BLOCK,
    shared_mem: int = 0,
    sync: bool = False,
    grid: int | None = None,
) -> None:
    """Launch ``function`` from ``kernels/<module_name>.cu`` with one thread per work item.

    Tensor arguments (validated beforehand, e.g. by :func:`require_cuda_tensor`) are passed as
    raw device pointers; the launch goes on torch's current stream, which orders it with the
    tensors' producers and keeps their memory from being reused too early.  Dynamic shared
    memory above the 48 KB default is requested from the driver.

    Parameters
    ----------
    module_name : str
        The kernel file's stem.
    function : str
        The entry point (a name expression for templates).
    n_threads : int
        Work items; the grid is ``grid_size(n_threads, block)``.
    args : sequence
        Kernel arguments: tensors (validated beforehand with :func:`require_cuda_tensor`)
        and numpy scalars.
    device : torch.device
        The CUDA device.
    name_expressions : sequence of str
        Template instantiations to compile.
    block : int
        Threads per block.
    shared_mem : int
        Dynamic shared memory in bytes.
    sync : bool
        Synchronise after the launch, so that asynchronous faults surface here.
    grid : int or None
        Overrides the block count (for kernels that give a whole block to one item).

    Raises
    ------
    KernelError
        If compiling or launching fails, or, with ``sync=True``, the kernel faults.
    """
    cupy = _require_cupy()
    index = device.index if device.index is not None else torch.cuda.current_device()
    kernel = _function(module_name, function, int(index), tuple(name_expressions), DEFAULT_OPTIONS)
    if shared_mem > 48 * 1024 and kernel.max_dynamic_shared_size_bytes < shared_mem:
        kernel.max_dynamic_shared_size_bytes = shared_mem
    where = torch.device("cuda", index)
    converted = tuple(_kernel_arg(a, where) for a in args)
    grid = grid_size(n_threads, block) if grid is None else grid
    with torch_stream(device) as stream:
        try:
            kernel((grid,), (block,), converted, shared_mem=shared_mem)
            if sync:
                stream.synchronize()
        except cupy.cuda.driver.CUDADriverError as exc:
            msg = f"launching {function} from kernels/{module_name}.cu failed: {exc}"
            raise KernelError(msg) from exc
        except cupy.cuda.runtime.CUDARuntimeError as exc:
            msg = f"running {function} from kernels/{module_name}.cu failed: {exc}"
            raise KernelError(msg) from exc
