"""The one dispatch mechanism: a torch reference path plus an optional CUDA path.

Every operation is written as its torch reference function, decorated with
:func:`operation`; a CUDA implementation registers itself with ``@op.cuda``::

    @operation
    def _scale(x: torch.Tensor, factor: float) -> torch.Tensor:
        return x * factor

    @_scale.cuda
    def _scale_cuda(x, factor):
        ...  # launch a kernel from kernels/

    _scale(x, 2.0)                   # picks by x's device, use_backend() and TOOLKIT_DEVICE
    _scale(x, 2.0, backend="cpu")    # forces the reference path

The first positional argument is the tensor that decides.  Public functions validate their
arguments once, then call the operation, so both paths see the same checked inputs.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import torch

from ._backend import resolve_backend

__all__ = ["Operation", "operation"]


class Operation:
    """A computation with a reference path and, optionally, a CUDA path.

    Made by :func:`operation`; calling it runs one of the two paths.

    Parameters
    ----------
    reference : callable
        The torch reference function. Its first positional argument is the tensor whose
        device decides the path.

    Attributes
    ----------
    reference : callable
        The reference path.
    cuda_impl : callable or None
        The CUDA path, once registered with :meth:`cuda`.
    """

    def __init__(self, reference: Callable[..., Any]) -> None:
        self.reference = reference
        self.cuda_impl: Callable[..., Any] | None = None
        functools.update_wrapper(self, reference)

    def cuda(self, impl: Callable[..., Any]) -> Callable[..., Any]:
        """Register the CUDA implementation (used as a decorator).

        Parameters
        ----------
        impl : callable
            Takes the same arguments as the reference function.

        Returns
        -------
        callable
            ``impl`` unchanged.
        """
        self.cuda_impl = impl
        return impl

    @property
    def has_cuda_path(self) -> bool:
        """Whether a CUDA implementation is registered."""
        return self.cuda_impl is not None

    def path_for(self, tensor: torch.Tensor, backend: str | None = None) -> str:
        """The path a call on ``tensor`` would take: ``"cuda"`` or ``"cpu"``.

        See :func:`toolkit._backend.resolve_backend` for the rules.
        """
        return resolve_backend(tensor, backend, self.has_cuda_path)

    def __call__(
        self, tensor: torch.Tensor, *args: Any, backend: str | None = None, **kwargs: Any
    ) -> Any:
        if self.path_for(tensor, backend) == "cuda":
            assert self.cuda_impl is not None
            return self.cuda_impl(tensor, *args, **kwargs)
        return self.reference(tensor, *args, **kwargs)

    def __repr__(self) -> str:
        paths = "reference+cuda" if self.has_cuda_path else "reference"
        return f"<toolkit operation {self.reference.__name__} ({paths})>"


def operation(reference: Callable[..., Any]) -> Operation:
    """Turn a torch reference function into a dispatching :class:`Operation`.

    Parameters
    ----------
    reference : callable
        The reference path; its first positional argument decides the device.

    Returns
    -------
    Operation
        Callable like ``reference`` plus a ``backend=`` keyword (``"auto"``, ``"cpu"``,
        ``"cuda"`` or None for the context's choice).

    Examples
    --------
    >>> import torch
    >>> @operation
    ... def double(x):
    ...     return 2 * x
    >>> double(torch.ones(2)), double.has_cuda_path
    (tensor([2., 2.]), False)
    """
    return Operation(reference)
