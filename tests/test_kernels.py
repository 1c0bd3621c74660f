"""The kernel loader's CPU-side behaviour: sources, line directives, grid sizes, errors."""

from __future__ import annotations

import pytest
import torch

from toolkit import KernelError
from toolkit._kernels import grid_size, kernel_dir, kernel_source, require_cuda_tensor


def test_every_kernel_source_gets_a_line_directive():
    sources = sorted(kernel_dir().glob("*.cu"))
    assert sources, "no kernels found"
    for path in sources:
        text = kernel_source(path.stem)
        assert text.splitlines()[0] == f'#line 1 "kernels/{path.stem}.cu"'
        assert text.endswith(path.read_text())
        assert "cupy" not in path.read_text().lower()


def test_missing_kernel_names_the_available_ones():
    with pytest.raises(KernelError, match="no kernel file nope.cu; available: .*nm_prune"):
        kernel_source("nope")


def test_kernel_error_keeps_log():
    err = KernelError("compiling failed", "kernels/x.cu(3): error: expected an expression")
    assert err.log.startswith("kernels/x.cu(3)") and "compiler log" in str(err)


@pytest.mark.parametrize(
    ("n", "block", "expected"),
    [(0, 256, 1), (1, 256, 1), (256, 256, 1), (257, 256, 2), (64 << 20, 256, 262144)],
)
def test_grid_size(n, block, expected):
    assert grid_size(n, block) == expected


def test_grid_size_cap_and_errors():
    assert grid_size(10**9, 256, max_blocks=1024) == 1024
    with pytest.raises(ValueError, match="need n >= 0"):
        grid_size(-1)


def test_require_cuda_tensor_checks_dtype_device_contiguity():
    x = torch.zeros(4, 4)
    with pytest.raises(TypeError, match="x must have dtype"):
        require_cuda_tensor(x, "x", (torch.float16,), x.device)
    with pytest.raises(ValueError, match="x must be contiguous"):
        require_cuda_tensor(x.t(), "x", (torch.float32,), x.device)
    with pytest.raises(ValueError, match="x must be on meta"):
        require_cuda_tensor(x, "x", (torch.float32,), torch.device("meta"))
    with pytest.raises(TypeError, match="x must be a torch.Tensor"):
        require_cuda_tensor([1.0], "x", (torch.float32,), x.device)
