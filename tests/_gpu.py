"""The one helper for "the CUDA path equals the reference" checks, used by every GPU test.

A GPU test draws fresh random inputs (:func:`generator`, seeded from the test's own case so a
failure reproduces), runs the CUDA path into a *poisoned* output (:func:`poisoned`: bytes that
no kernel writes, so an element the kernel skipped shows), checks that every element was
written (:func:`assert_written`) and compares with the torch reference at the tolerance of the
dtype (:func:`assert_matches_reference`).

Imports only torch: ``scripts/gpu-tests`` runs where plotly and Jupyter are absent.
"""

from __future__ import annotations

import zlib
from typing import Any

import torch

__all__ = [
    "POISON_BYTE",
    "assert_matches_reference",
    "assert_written",
    "generator",
    "poisoned",
    "tolerance",
]

#: The byte that fills poisoned boolean and integer outputs: as a bool, 0xA5 is neither False
#: nor True.  Floating outputs are poisoned with NaN, which no finite result equals.
POISON_BYTE = 0xA5

# (rtol, atol) per dtype for results that differ from the reference only in rounding
# (summation order of matrix products, fused multiply-adds).
_TOLERANCES: dict[torch.dtype, tuple[float, float]] = {
    torch.float64: (1e-8, 1e-9),
    torch.float32: (2e-4, 2e-4),
    torch.float16: (2e-2, 2e-2),
    torch.bfloat16: (2e-2, 2e-2),
}


def generator(*case: Any) -> torch.Generator:
    """A CPU generator seeded from the test case, stable across processes (unlike ``hash``).

    Inputs are drawn on the CPU and moved to the GPU, so both paths see the same numbers.
    """
    return torch.Generator().manual_seed(zlib.crc32(repr(case).encode()))


def tolerance(dtype: torch.dtype) -> dict[str, float]:
    """``rtol``/``atol`` keywords for :func:`torch.testing.assert_close` at ``dtype``."""
    if dtype not in _TOLERANCES:
        raise ValueError(f"dtype must be a floating dtype in {list(_TOLERANCES)}, got {dtype}")
    rtol, atol = _TOLERANCES[dtype]
    return {"rtol": rtol, "atol": atol}


def poisoned(shape: tuple[int, ...] | torch.Size, dtype: torch.dtype, device: Any = "cuda"):
    """An output buffer whose every element is a value no correct kernel leaves behind.

    Booleans and integers get the byte pattern ``0xA5`` (for a bool neither 0 nor 1; for an
    integer output, pick a case whose correct results cannot equal it); floating dtypes get
    NaN.
    """
    out = torch.empty(tuple(shape), dtype=dtype, device=device)
    if dtype.is_floating_point:
        out.fill_(float("nan"))
    else:
        out.view(torch.uint8).fill_(POISON_BYTE)
    return out


def assert_written(out: torch.Tensor, reference: torch.Tensor | None = None) -> None:
    """Fail if an element of ``out`` (from :func:`poisoned`) still holds the poison.

    For floating outputs a NaN counts as poison only where ``reference`` is not NaN itself.
    """
    if out.dtype == torch.bool:
        bytes_ = set(out.view(torch.uint8).unique().tolist())
        assert bytes_ <= {0, 1}, f"unwritten output bytes: {sorted(bytes_ - {0, 1})}"
    elif out.dtype.is_floating_point:
        nan = torch.isnan(out.detach().cpu())
        if reference is not None:
            nan &= ~torch.isnan(reference.detach().cpu())
        assert not nan.any(), f"{int(nan.sum())} output element(s) left unwritten (NaN poison)"
    else:
        pattern = torch.full_like(out.view(torch.uint8), POISON_BYTE)
        element_bytes = out.element_size()
        hits = (out.view(torch.uint8) == pattern).reshape(-1, element_bytes).all(-1)
        assert not hits.any(), f"{int(hits.sum())} output element(s) left unwritten"


def assert_matches_reference(
    actual: torch.Tensor,
    expected: torch.Tensor,
    *,
    exact: bool = False,
    dtype: torch.dtype | None = None,
    msg: str = "",
) -> None:
    """The CUDA result ``actual`` equals the reference ``expected``.

    ``exact=True`` demands equality bit for bit (masks, integer codes, results that the two
    paths compute with the same operations); otherwise the tolerance of ``dtype`` (default:
    ``expected.dtype``) applies.  Both tensors are compared on the CPU.
    """
    actual, expected = actual.detach().cpu(), expected.detach().cpu()
    assert actual.shape == expected.shape, f"{msg} shape {actual.shape} != {expected.shape}"
    assert actual.dtype == expected.dtype, f"{msg} dtype {actual.dtype} != {expected.dtype}"
    if exact:
        if actual.dtype.is_floating_point:
            torch.testing.assert_close(
                actual, expected, rtol=0, atol=0, equal_nan=True, msg=msg or None
            )
        else:
            differ = actual != expected
            assert not differ.any(), (
                f"{msg} {int(differ.sum())} element(s) differ from the reference"
            )
        return
    tol = tolerance(dtype or expected.dtype)
    torch.testing.assert_close(
        actual.double(), expected.double(), equal_nan=True, msg=msg or None, **tol
    )
