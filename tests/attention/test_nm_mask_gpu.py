"""The CUDA path of nm_mask against the reference, bit for bit, with poisoned outputs."""

from __future__ import annotations

import math

import pytest
import torch

from toolkit.attention import nm_mask
from toolkit.attention._nm import _nm_mask_cuda

from .._gpu import assert_matches_reference, assert_written, generator, poisoned

pytestmark = pytest.mark.gpu

DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)
SHAPES = [
    ((3, 16), 2, 4),
    ((2, 5, 37), 1, 2),
    ((7, 33), 3, 8),
    ((4, 70), 17, 32),
    ((1,), 1, 1),
    ((8, 12, 129), 2, 4),
    ((3, 1000), 5, 9),
    ((2, 4, 4099), 1, 2),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("shape", "n", "m"), SHAPES)
@pytest.mark.parametrize("ties", [False, True])
def test_cuda_equals_reference(dtype, shape, n, m, ties):
    gen = generator(dtype, shape, n, m, ties)
    scores = (
        torch.randint(-3, 4, shape, generator=gen) if ties else torch.randn(shape, generator=gen)
    ).to(dtype)
    out = _nm_mask_cuda(scores.cuda(), n, m, out=poisoned(shape, torch.bool))
    torch.cuda.synchronize()
    assert_written(out)
    assert_matches_reference(out, nm_mask(scores, n, m, backend="cpu"), exact=True)


def test_cuda_special_values():
    scores = torch.tensor(
        [
            [-math.inf, math.nan, math.inf, 1.0, -math.inf, -math.inf],
            [0.0, -0.0, 0.0, -0.0, math.nan, math.nan],
        ]
    )
    for dtype in DTYPES:
        s = scores.to(dtype)
        assert_matches_reference(
            nm_mask(s.cuda(), 2, 4, backend="cuda"), nm_mask(s, 2, 4, backend="cpu"), exact=True
        )


def test_auto_dispatch_uses_cuda_and_large_input():
    scores = torch.randn(64, 4096 + 3, generator=generator("large")).half().cuda()
    assert nm_mask(scores, 2, 4).device.type == "cuda"
    assert_matches_reference(nm_mask(scores, 2, 4), nm_mask(scores.cpu(), 2, 4), exact=True)


def test_reference_path_runs_on_cuda_tensors():
    scores = torch.randint(-3, 4, (6, 45), generator=generator("forced")).float()
    forced = nm_mask(scores.cuda(), 3, 8, backend="cpu")
    assert forced.is_cuda
    assert_matches_reference(forced, nm_mask(scores, 3, 8), exact=True)


def test_non_contiguous_and_strided_cuda():
    scores = torch.randn(40, 24, generator=generator("strided")).cuda().t()
    expected = nm_mask(scores.cpu(), 1, 4, backend="cpu")
    assert_matches_reference(nm_mask(scores, 1, 4, backend="cuda"), expected, exact=True)


def test_launch_validation_errors():
    with pytest.raises(ValueError, match="out must have shape"):
        _nm_mask_cuda(
            torch.randn(2, 8, device="cuda"),
            2,
            4,
            out=torch.empty(2, 7, dtype=torch.bool, device="cuda"),
        )
    with pytest.raises(TypeError, match="out must have dtype"):
        _nm_mask_cuda(torch.randn(2, 8, device="cuda"), 2, 4, out=torch.empty(2, 8, device="cuda"))


def test_dlpack_roundtrip_shares_memory():
    from toolkit._backend import to_cupy, to_torch

    x = torch.randn(1000, device="cuda")
    a = to_cupy(x)
    a[0] = 42.0
    torch.cuda.synchronize()
    assert x[0].item() == 42.0
    assert to_torch(a).data_ptr() == x.data_ptr()


def test_kernel_error_carries_compiler_log(tmp_path, monkeypatch):
    from toolkit import KernelError, _kernels

    (tmp_path / "broken.cu").write_text('extern "C" __global__ void f() { int x = ; }\n')
    monkeypatch.setattr(_kernels, "kernel_dir", lambda: tmp_path)
    _kernels._compiled.cache_clear()
    with pytest.raises(KernelError) as info:
        _kernels.load_module("broken")
    assert "kernels/broken.cu(1)" in info.value.log or "broken.cu" in info.value.log


@pytest.mark.parametrize("m", range(1, 33))
def test_every_group_size(m):
    gen = generator("group size", m)
    n = int(torch.randint(1, m + 1, (1,), generator=gen))
    scores = torch.randint(-2, 3, (5, 3 * m + m // 2 + 1), generator=gen).to(torch.bfloat16)
    out = _nm_mask_cuda(scores.cuda(), n, m, out=poisoned(scores.shape, torch.bool))
    assert_written(out)
    assert_matches_reference(out, nm_mask(scores, n, m, backend="cpu"), exact=True)
