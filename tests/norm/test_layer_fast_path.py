"""The layers' fused-kernel path on the CPU: the device-side draw, the running statistics
updated by the finalize kernel, the lean autograd function, with the NumPy kernel stand-ins of
test_cuda_glue.py in place of kernels/bn_sampling.cu (the kernels themselves are checked on
the GPU by test_bn_sampling_gpu.py).

Each layer's output, gradients and running statistics must equal the reference computed from
exactly the sample the layer reports (``last_sample``) with the torch reference path.
"""

from __future__ import annotations

import copy

import pytest
import torch

import toolkit.norm._cuda as cu
from toolkit.norm import (
    BatchSamplingBN1d,
    BatchSamplingBN2d,
    FeatureSamplingBN2d,
    SecondMomentNorm2d,
    VirtualDatasetNorm2d,
    sampled_batch_norm,
)

from .test_cuda_glue import _fake_launch


@pytest.fixture()
def fast_path(monkeypatch):
    calls = []

    def launch(function, *args):
        calls.append(function)
        _fake_launch(function, *args)

    monkeypatch.setattr(cu, "_launch", launch)
    monkeypatch.setattr(cu, "_sm_count", lambda device: 132)
    monkeypatch.setattr(cu, "layer_path", lambda x: x.dtype in cu.CUDA_DTYPES)
    cu._plan.cache_clear()
    return calls


LAYERS = {
    "bs-1/4": lambda: BatchSamplingBN2d(5, sample_ratio=0.25, seed=1),
    "bs-full": lambda: BatchSamplingBN2d(5, sample_ratio=1.0, seed=1),
    "bs-cumulative": lambda: BatchSamplingBN2d(5, sample_ratio=0.5, momentum=None, seed=1),
    "fs-tiles": lambda: FeatureSamplingBN2d(5, patch_ratio=0.25, seed=2),
    "fs-any": lambda: FeatureSamplingBN2d(5, patch_ratio=0.3, seed=2),
    "vdn": lambda: VirtualDatasetNorm2d(5, num_virtual=3, real_ratio=0.4, seed=3),
    "vdn-virtual-only": lambda: VirtualDatasetNorm2d(5, num_virtual=2, seed=3),
    "smn": lambda: SecondMomentNorm2d(5, sample_ratio=0.5, seed=4),
    "smn-cumulative": lambda: SecondMomentNorm2d(5, momentum=None),
    "no-affine": lambda: BatchSamplingBN2d(5, sample_ratio=0.5, affine=False, seed=5),
}


def _reference_step(ref, x, sample, dy):
    """The reference layer's forward on exactly ``sample``: y, dx, dweight, running buffers."""
    smn = isinstance(ref, SecondMomentNorm2d)
    xr = x.detach().clone().requires_grad_()
    y, mean, var = sampled_batch_norm(
        xr, sample, ref.weight, ref.bias, ref.eps, center=not smn, backend="cpu"
    )
    if smn:
        ref._update_running(var)
    else:
        ref._update_running(mean, var, sample.count)
    params = [xr] + ([ref.weight] if ref.weight is not None else [])
    grads = torch.autograd.grad((y * dy).sum(), params)
    return y, grads


@pytest.mark.parametrize("name", list(LAYERS))
def test_layer_fast_path_matches_reference_on_its_sample(fast_path, name):
    gen = torch.Generator().manual_seed(0)
    layer = LAYERS[name]().double()
    ref = copy.deepcopy(layer)
    with torch.no_grad():
        if layer.weight is not None:
            for p in (layer.weight, layer.bias, ref.weight, ref.bias):
                p.copy_(torch.linspace(0.5, 1.5, 5, dtype=torch.float64))
    for step in range(3):
        x = (1 + 2 * torch.randn(12, 5, 8, 8, generator=gen, dtype=torch.float64)).requires_grad_()
        dy = torch.randn(12, 5, 8, 8, generator=gen, dtype=torch.float64)
        fast_path.clear()
        y = layer(x)
        assert "bn_normalize<double, 4>" in fast_path, fast_path
        sample = layer.last_sample
        params = [x] + ([layer.weight] if layer.weight is not None else [])
        grads = torch.autograd.grad((y * dy).sum(), params)
        y_ref, grads_ref = _reference_step(ref, x, sample, dy)
        torch.testing.assert_close(y, y_ref, rtol=1e-10, atol=1e-10)
        for g, gr in zip(grads, grads_ref, strict=True):
            torch.testing.assert_close(g, gr, rtol=1e-10, atol=1e-10)
        for key, value in ref.state_dict().items():
            torch.testing.assert_close(layer.state_dict()[key], value, rtol=1e-12, atol=1e-12)
        assert int(layer.num_batches_tracked) == step + 1


def test_device_draws_are_valid_samples(fast_path):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(16, 2, 12, 10, generator=gen)
    bs = BatchSamplingBN2d(2, sample_ratio=0.25, seed=0)
    fs = FeatureSamplingBN2d(2, patch_ratio=0.25, seed=0)  # a 6x5 window tiles 12x10
    vdn = VirtualDatasetNorm2d(2, num_virtual=4, real_ratio=0.5, seed=0)
    seen_rows, seen_corners = set(), set()
    for _ in range(20):
        bs(x), fs(x), vdn(x)
        rows = bs.last_sample.rows.tolist()
        assert len(rows) == 4 and rows == sorted(set(rows)) and 0 <= rows[0] and rows[-1] < 16
        seen_rows.update(rows)
        s = fs.last_sample
        assert s.rows.tolist() == list(range(16)) and s.patch == (6, 5)
        assert set(s.starts[:, 0].tolist()) <= {0, 6} and set(s.starts[:, 1].tolist()) <= {0, 5}
        seen_corners.update(map(tuple, s.starts.tolist()))
        v = vdn.last_sample.rows.tolist()
        assert len(v) == 6 + 4 and v[-4:] == [12, 13, 14, 15] and v == sorted(set(v))
    assert len(seen_rows) == 16 and len(seen_corners) == 4  # every row and tile drawn


def test_same_seed_same_draws_and_eval_uses_running_stats(fast_path):
    x = torch.randn(16, 3, 4, 4)
    a, b = (BatchSamplingBN2d(3, sample_ratio=0.25, seed=9) for _ in range(2))
    for _ in range(3):
        torch.testing.assert_close(a(x), b(x))
        assert a.last_sample.rows.tolist() == b.last_sample.rows.tolist()
    a.eval()
    fast_path.clear()
    ref = torch.nn.functional.batch_norm(x, a.running_mean, a.running_var, a.weight, a.bias)
    torch.testing.assert_close(a(x), ref)
    assert fast_path == []  # eval mode does not launch the sampling kernels


def test_half_layer_and_1d_input(fast_path):
    # buffers in float16 (a model cast with .half()): torch ops update the running statistics
    layer = BatchSamplingBN1d(4, sample_ratio=0.5, seed=0).half()
    x = torch.randn(20, 4, dtype=torch.float16)
    y = layer(x)
    assert y.shape == x.shape and y.dtype == torch.float16
    ref, _, var = sampled_batch_norm(x.double(), layer.last_sample, backend="cpu")
    torch.testing.assert_close(y.double(), ref, atol=4e-3, rtol=4e-3)
    want = 0.9 + 0.1 * var * 10 / 9
    torch.testing.assert_close(layer.running_var.double(), want, atol=2e-3, rtol=2e-3)


def test_fast_path_errors(fast_path):
    with pytest.raises(ValueError, match="too small"):
        BatchSamplingBN2d(3, sample_ratio=0.25, seed=0)(torch.randn(2, 3, 4, 4))
    with pytest.raises(ValueError, match="num_features=3"):
        BatchSamplingBN2d(3, seed=0)(torch.randn(8, 4, 4, 4))
    with pytest.raises(ValueError, match="num_virtual=4"):
        VirtualDatasetNorm2d(3, num_virtual=4, seed=0)(torch.randn(4, 3, 2, 2))
    with pytest.raises(ValueError, match="at least 2"):
        BatchSamplingBN2d(3, sample_ratio=0.5, seed=0)(torch.randn(2, 3, 1, 1))


def test_hashed_draw_is_uniform_over_rows():
    # the host copy of the kernel's draw (the GPU test checks the kernel against it): over
    # many calls every row is picked with probability picks / rows
    counts = [0] * 16
    calls = 4000
    for call in range(calls):
        rows = cu.hashed_rows(16, 4, 0, seed=123, call=call)
        assert len(rows) == 4 and rows == sorted(set(rows))
        for r in rows:
            counts[r] += 1
    expected = calls * 4 / 16  # 1000, binomial sd about 27
    assert all(abs(c - expected) < 5 * 27 for c in counts), counts
    assert cu.hashed_rows(10, 2, 3, seed=1, call=0)[-3:] == [7, 8, 9]


def test_large_batch_draws_with_a_permutation(fast_path):
    layer = BatchSamplingBN1d(2, sample_ratio=0.25, seed=0)
    x = torch.randn(cu.HASH_ROWS + 100, 2)
    y = layer(x)
    rows = layer.last_sample.rows
    assert rows.numel() == (cu.HASH_ROWS + 100) // 4 and bool((rows[1:] > rows[:-1]).all())
    ref, _, _ = sampled_batch_norm(x, layer.last_sample, layer.weight, layer.bias, backend="cpu")
    torch.testing.assert_close(y, ref)
