"""The fused CUDA kernels (kernels/bn_sampling.cu) against the reference path, on fresh random
inputs, with NaN-poisoned outputs so that an unwritten element shows."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from toolkit.norm import (
    BatchSamplingBN2d,
    FeatureSamplingBN2d,
    SecondMomentNorm2d,
    VirtualDatasetNorm2d,
    batch_sample,
    feature_sample,
    full_sample,
    sampled_batch_norm,
    virtual_sample,
)
from toolkit.norm._cuda import (
    HASH_ROWS,
    _backward,
    _forward,
    draw_index,
    hashed_draw,
    hashed_rows,
)

pytestmark = pytest.mark.gpu

SHAPES = [
    (8, 3, 5, 7),  # odd planes: the scalar (VEC = 1) paths
    (16, 64, 14, 14),  # planes of 196: packs of 4 in the reductions and elementwise passes
    (32, 256, 7, 7),  # many channels, 49-element planes
    (6, 4, 40, 40),  # windows above the block size: the row-loop sampled reduction
    (9, 5, 1, 33),  # a 1-d input seen as H = 1
    (64, 8, 32, 32),  # many blocks per channel, several unrolled trips per thread
]
KINDS = ("full", "batch", "feature", "virtual")
TOL = {
    torch.float64: 1e-9,
    torch.float32: 2e-5,
    torch.float16: 4e-3,
    torch.bfloat16: 3e-2,
}


def _sample(kind, shape, gen):
    n, _, h, w = shape
    s = (n, h, w)
    if kind == "full":
        return full_sample(s)
    if kind == "batch":
        return batch_sample(s, 0.25 if n >= 8 else 0.5, gen)
    if kind == "feature":
        return feature_sample(s, 0.2, gen)
    return virtual_sample(s, 2, 0.25, gen)


def _close(got, ref, dtype, what):
    scale = max(1.0, float(ref.abs().max()))
    err = float((got.double().cpu() - ref.double().cpu()).abs().max())
    assert err <= TOL[dtype] * scale, f"{what}: max error {err:.3g} (scale {scale:.3g}) in {dtype}"


@pytest.mark.parametrize("dtype", list(TOL))
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("center", [True, False])
def test_forward_backward_match_reference(dtype, shape, kind, center):
    gen = torch.Generator().manual_seed(hash((str(dtype), shape, kind, center)) % 2**31)
    sample = _sample(kind, shape, gen)
    c = shape[1]
    x = (0.7 + 1.3 * torch.randn(shape, generator=gen)).to(dtype)
    dy = torch.randn(shape, generator=gen).to(dtype)
    sdt = torch.float64 if dtype == torch.float64 else torch.float32
    gamma = 1 + 0.3 * torch.randn(c, generator=gen, dtype=sdt)
    beta = 0.2 * torch.randn(c, generator=gen, dtype=sdt)
    eps = 1e-4

    # reference in float64 on the CPU, from the same (rounded) inputs
    # clone: for float64 inputs .double() would alias them and requires_grad_ leak into them
    xr = x.double().clone().requires_grad_()
    gr, br = gamma.double().clone().requires_grad_(), beta.double().clone().requires_grad_()
    y_ref, mean_ref, var_ref = sampled_batch_norm(
        xr, sample, gr, br, eps, center=center, backend="cpu"
    )
    dx_ref, dg_ref, db_ref = torch.autograd.grad((y_ref * dy.double()).sum(), (xr, gr, br))

    xc = x.cuda()
    y_out = torch.full_like(xc, float("nan"))
    y, stats, _, h0, w0 = _forward(xc, gamma.cuda(), beta.cuda(), sample, eps, center, out=y_out)
    dx_out = torch.full_like(xc, float("nan"))
    dx, dg, db = _backward(dy.cuda(), xc, gamma.cuda(), stats, h0, w0, sample, center, out=dx_out)
    torch.cuda.synchronize()
    assert y.data_ptr() == y_out.data_ptr() and dx.data_ptr() == dx_out.data_ptr()
    assert not y.isnan().any() and not dx.isnan().any(), "unwritten output elements"
    _close(stats[0], mean_ref, dtype, "mean")
    _close(stats[1], var_ref, dtype, "var")
    _close(y, y_ref.detach(), dtype, "y")
    _close(dx, dx_ref, dtype, "dx")
    _close(dg, dg_ref, dtype, "grad weight")
    _close(db, db_ref, dtype, "grad bias")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("kind", ["full", "batch"])
def test_misaligned_input_takes_the_scalar_path(dtype, kind):
    # A view one element into its buffer is contiguous but not 16-byte aligned: the kernels
    # must not use pack loads on it (a wrong guess faults or reads shifted data).
    gen = torch.Generator().manual_seed(5)
    shape = (16, 6, 12, 12)
    sample = _sample(kind, shape, gen)
    x = (0.5 + torch.randn(shape, generator=gen)).to(dtype)
    dy = torch.randn(shape, generator=gen).to(dtype)
    gamma = 1 + 0.3 * torch.randn(shape[1], generator=gen)
    beta = 0.2 * torch.randn(shape[1], generator=gen)
    xr = x.double().clone().requires_grad_()
    y_ref, mean_ref, var_ref = sampled_batch_norm(
        xr, sample, gamma.double(), beta.double(), 1e-5, backend="cpu"
    )
    (dx_ref,) = torch.autograd.grad((y_ref * dy.double()).sum(), (xr,))

    def offset(t):
        buf = torch.empty(t.numel() + 1, dtype=t.dtype, device="cuda")
        view = buf[1:].view(t.shape)
        view.copy_(t)
        return view

    xc, dyc = offset(x), offset(dy)
    assert xc.data_ptr() % 16 != 0
    y, stats, _, h0, w0 = _forward(xc, gamma.cuda(), beta.cuda(), sample, 1e-5, True)
    dx, _, _ = _backward(dyc, xc, gamma.cuda(), stats, h0, w0, sample, True)
    _close(stats[0], mean_ref, dtype, "mean")
    _close(stats[1], var_ref, dtype, "var")
    _close(y, y_ref.detach(), dtype, "y")
    _close(dx, dx_ref, dtype, "dx")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_autograd_dispatch_on_cuda(dtype):
    gen = torch.Generator().manual_seed(0)
    shape = (12, 8, 9, 9)
    sample = feature_sample((12, 9, 9), 0.3, gen)
    x = torch.randn(shape, generator=gen).to(dtype)
    w = (torch.rand(8, generator=gen) + 0.5).to(dtype)
    b = torch.randn(8, generator=gen).to(dtype)
    dy = torch.randn(shape, generator=gen).to(dtype)
    ref_in = [t.double().requires_grad_() for t in (x, w, b)]
    y_ref = sampled_batch_norm(ref_in[0], sample, ref_in[1], ref_in[2])[0]
    ref_grads = torch.autograd.grad((y_ref * dy.double()).sum(), ref_in)
    cuda_in = [t.cuda().requires_grad_() for t in (x, w, b)]
    y = sampled_batch_norm(cuda_in[0], sample, cuda_in[1], cuda_in[2])[0]
    assert y.is_cuda and y.dtype == dtype
    grads = torch.autograd.grad((y.float() * dy.cuda().float()).sum(), cuda_in)
    assert [g.dtype for g in grads] == [dtype] * 3
    _close(y, y_ref.detach(), dtype, "y")
    for got, ref, what in zip(grads, ref_grads, ("dx", "dw", "db")):
        _close(got, ref, dtype, what)


def test_module_matches_cudnn_batchnorm():
    torch.manual_seed(0)
    ours = BatchSamplingBN2d(32, sample_ratio=1.0, seed=0).cuda()
    ref = nn.BatchNorm2d(32).cuda()
    for _ in range(3):
        x = (1 + 2 * torch.randn(16, 32, 12, 12, device="cuda")).requires_grad_()
        x2 = x.detach().clone().requires_grad_()
        dy = torch.randn_like(x)
        y, y2 = ours(x), ref(x2)
        (y * dy).sum().backward()
        (y2 * dy).sum().backward()
        torch.testing.assert_close(y, y2, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(x.grad, x2.grad, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(ours.running_mean, ref.running_mean)
    torch.testing.assert_close(ours.running_var, ref.running_var, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ours.weight.grad, ref.weight.grad, atol=1e-3, rtol=1e-4)


def test_module_cumulative_momentum_matches_cudnn():
    ours = BatchSamplingBN2d(16, sample_ratio=1.0, momentum=None, seed=0).cuda()
    ref = nn.BatchNorm2d(16, momentum=None).cuda()
    for _ in range(4):
        x = 0.5 + 3 * torch.randn(8, 16, 5, 5, device="cuda")
        ours(x), ref(x)
    torch.cuda.synchronize()
    assert int(ours.num_batches_tracked) == int(ref.num_batches_tracked) == 4
    torch.testing.assert_close(ours.running_mean, ref.running_mean, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ours.running_var, ref.running_var, atol=1e-5, rtol=1e-5)


LAYERS = {
    "bs-1/4": lambda c: BatchSamplingBN2d(c, sample_ratio=0.25, seed=1),
    "fs-1/4": lambda c: FeatureSamplingBN2d(c, patch_ratio=0.25, seed=2),
    "fs-0.3": lambda c: FeatureSamplingBN2d(c, patch_ratio=0.3, momentum=None, seed=2),
    "vdn": lambda c: VirtualDatasetNorm2d(c, num_virtual=3, real_ratio=0.4, seed=3),
    "smn-1/2": lambda c: SecondMomentNorm2d(c, sample_ratio=0.5, seed=4),
    "smn": lambda c: SecondMomentNorm2d(c, momentum=None),
}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.float64])
@pytest.mark.parametrize("name", list(LAYERS))
def test_layer_matches_reference_on_its_own_sample(dtype, name):
    # The layer draws on the device and updates its running statistics in the finalize
    # kernel: its output, gradients and buffers must equal the float64 reference computed
    # from exactly the sample it reports.
    gen = torch.Generator().manual_seed(hash((name, str(dtype))) % 2**31)
    c = 24
    layer = LAYERS[name](c).cuda()
    if dtype == torch.float64:
        layer = layer.double()
    ref = copy.deepcopy(layer).cpu().double()
    smn = isinstance(layer, SecondMomentNorm2d)
    for step in range(3):
        x = (0.7 + 1.3 * torch.randn(32, c, 14, 14, generator=gen)).to(dtype)
        dy = torch.randn(32, c, 14, 14, generator=gen).to(dtype)
        xc = x.cuda().requires_grad_()
        y = layer(xc)
        (dx, dw) = torch.autograd.grad((y * dy.cuda()).float().sum(), (xc, layer.weight))
        sample = layer.last_sample.to("cpu")
        xr = x.double().requires_grad_()
        y_ref, mean, var = sampled_batch_norm(
            xr, sample, ref.weight, ref.bias, ref.eps, center=not smn, backend="cpu"
        )
        if smn:
            ref._update_running(var)
        else:
            ref._update_running(mean, var, sample.count)
        dx_ref, dw_ref = torch.autograd.grad((y_ref * dy.double()).sum(), (xr, ref.weight))
        _close(y, y_ref.detach(), dtype, f"y step {step}")
        _close(dx, dx_ref, dtype, f"dx step {step}")
        _close(dw, dw_ref, dtype, f"grad weight step {step}")
        for key, want in ref.state_dict().items():
            got = layer.state_dict()[key]
            if key == "num_batches_tracked":
                assert int(got) == int(want) == step + 1
            else:
                _close(got, want, torch.float32 if dtype != torch.float64 else dtype, key)


@pytest.mark.parametrize(
    ("n", "picks", "tail", "windows"),
    [(128, 32, 0, None), (128, 16, 0, None), (40, 5, 8, None), (40, 0, 8, None),
     (33, 33, 0, (4, 7, 3, 1)), (5000, 5000, 0, (3, 2, 5, 1)), (4096, 1024, 0, None)],
)  # fmt: skip
def test_device_draw_matches_its_host_formula(n, picks, tail, windows):
    k = picks + tail
    device = torch.device("cuda")
    for call in range(3):
        torch.cuda.empty_cache()
        poison = torch.full((k + 2 * n + 64,), -7, dtype=torch.int32, device=device)
        del poison  # the caching allocator hands this block out again: unwritten shows as -7
        index = draw_index((n, 7, 9), k, picks, tail, windows, 1234, call, device)
        got = index.cpu().tolist()
        if k < n:
            rows = hashed_rows(n, picks, tail, 1234, call)
        else:
            rows = list(range(n))
        h0 = [-1] * n
        w0 = [0] * n
        for r in rows:
            h0[r] = 0
            if windows is not None:
                hr, hm, wr, wm = windows
                h0[r] = hashed_draw(1234, call, n + r) % hr * hm
                w0[r] = hashed_draw(1234, call, 2 * n + r) % wr * wm
        assert got[:k] == rows
        assert got[k : k + n] == h0
        assert got[k + n :] == w0


def test_device_draw_with_a_permutation_beyond_the_hashed_rows():
    n = HASH_ROWS + 500
    k = n // 4
    gen = torch.Generator(device="cuda").manual_seed(0)
    index = draw_index((n, 1, 1), k, k, 0, None, 0, 0, torch.device("cuda"), gen)
    got = index.cpu()
    rows, h0, w0 = got[:k], got[k : k + n], got[k + n :]
    assert bool((rows[1:] > rows[:-1]).all()) and 0 <= int(rows[0]) and int(rows[-1]) < n
    member = torch.full((n,), -1, dtype=torch.int32)
    member[rows.long()] = 0
    assert torch.equal(h0, member) and not w0.any()


def test_launch_validation():
    x = torch.randn(4, 3, 5, 5, device="cuda")
    s = full_sample((4, 5, 5))
    g, b = torch.ones(3, device="cuda"), torch.zeros(3, device="cuda")
    with pytest.raises(TypeError, match="weight must have dtype"):
        _forward(x, g.double(), b, s, 1e-5, True)
    with pytest.raises(ValueError, match="out must have shape"):
        _forward(x, g, b, s, 1e-5, True, out=torch.empty(3, device="cuda"))
    with pytest.raises(ValueError, match="must be contiguous"):
        _forward(x.transpose(2, 3), g, b, s, 1e-5, True)
