"""The sampling layers against nn.BatchNorm, brute-force statistics and the closed forms."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from toolkit.norm import (
    BatchSamplingBN1d,
    BatchSamplingBN2d,
    FeatureSamplingBN1d,
    FeatureSamplingBN2d,
    SecondMomentNorm2d,
    VirtualDataset,
    VirtualDatasetNorm2d,
    WeightStandardizedConv2d,
    batch_sample,
    feature_sample,
    sampled_batch_norm,
    standardize_weight,
    virtual_sample,
)


def _randn(*shape, seed=0, dtype=torch.float32):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def _affine(layer, seed=1):
    with torch.no_grad():
        layer.weight.copy_(1 + 0.3 * _randn(layer.num_features, seed=seed))
        layer.bias.copy_(0.2 * _randn(layer.num_features, seed=seed + 1))
    return layer


@pytest.mark.parametrize("momentum", [0.1, None])
@pytest.mark.parametrize(
    ("cls", "ref_cls", "shape"),
    [
        (BatchSamplingBN2d, nn.BatchNorm2d, (6, 3, 5, 4)),
        (BatchSamplingBN1d, nn.BatchNorm1d, (10, 4)),
        (BatchSamplingBN1d, nn.BatchNorm1d, (5, 4, 7)),
    ],
)
def test_full_ratio_matches_batchnorm(cls, ref_cls, shape, momentum):
    ours = _affine(cls(shape[1], sample_ratio=1.0, momentum=momentum, seed=0))
    ref = ref_cls(shape[1], momentum=momentum)
    ref.load_state_dict(ours.state_dict())
    for step in range(3):
        x = (2 + 3 * _randn(*shape, seed=step)).requires_grad_()
        x_ref = x.detach().clone().requires_grad_()
        upstream = _randn(*shape, seed=10 + step)
        y, y_ref = ours(x), ref(x_ref)
        torch.testing.assert_close(y, y_ref, atol=1e-5, rtol=1e-5)
        (y * upstream).sum().backward()
        (y_ref * upstream).sum().backward()
        torch.testing.assert_close(x.grad, x_ref.grad, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(ours.weight.grad, ref.weight.grad, atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(ours.bias.grad, ref.bias.grad, atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(ours.running_mean, ref.running_mean)
    torch.testing.assert_close(ours.running_var, ref.running_var)
    assert int(ours.num_batches_tracked) == int(ref.num_batches_tracked) == 3


def _brute_stats(x, rows, starts, patch):
    """Mean and biased variance per channel by explicit loops over the sampled data."""
    x4 = x.double()[:, :, None, :] if x.dim() == 3 else x.double()
    ph, pw = patch
    means, variances = [], []
    for c in range(x.shape[1]):
        vals = [
            float(x4[n, c, h0 + i, w0 + j])
            for n, (h0, w0) in zip(rows.tolist(), starts.tolist())
            for i in range(ph)
            for j in range(pw)
        ]
        m = sum(vals) / len(vals)
        means.append(m)
        variances.append(sum((v - m) ** 2 for v in vals) / len(vals))
    return torch.tensor(means, dtype=torch.float64), torch.tensor(variances, dtype=torch.float64)


@pytest.mark.parametrize(
    ("layer", "draw", "shape"),
    [
        (
            lambda g: BatchSamplingBN2d(3, sample_ratio=0.25, generator=g),
            lambda s, g: batch_sample(s, 0.25, g),
            (12, 3, 4, 5),
        ),
        (
            lambda g: FeatureSamplingBN2d(3, patch_ratio=0.3, generator=g),
            lambda s, g: feature_sample(s, 0.3, g),
            (5, 3, 7, 6),
        ),
        (
            lambda g: FeatureSamplingBN1d(3, patch_ratio=0.4, generator=g),
            lambda s, g: feature_sample(s, 0.4, g),
            (5, 3, 11),
        ),
        (
            lambda g: VirtualDatasetNorm2d(3, num_virtual=3, real_ratio=0.5, generator=g),
            lambda s, g: virtual_sample(s, 3, 0.5, g),
            (11, 3, 3, 3),
        ),
    ],
)
def test_statistics_come_from_exactly_the_sampled_data(layer, draw, shape):
    x = 1.5 + _randn(*shape, seed=3)
    bn = _affine(layer(torch.Generator().manual_seed(42)))
    y = bn(x)
    spatial = (shape[0], 1, shape[2]) if len(shape) == 3 else (shape[0], *shape[2:])
    expected = draw(spatial, torch.Generator().manual_seed(42))  # same generator stream
    got = bn.last_sample
    assert torch.equal(got.rows, expected.rows) and torch.equal(got.starts, expected.starts)
    assert got.patch == expected.patch
    mean, var = _brute_stats(x, got.rows, got.starts, got.patch)
    ext = (None,) * (len(shape) - 2)
    index = (slice(None), *ext)
    y_brute = (x.double() - mean[index]) / torch.sqrt(var[index] + bn.eps)
    y_brute = y_brute * bn.weight.double()[index] + bn.bias.double()[index]
    torch.testing.assert_close(y.double(), y_brute, atol=1e-5, rtol=1e-5)
    m = got.count
    expected_rv = 0.9 * torch.ones(3, dtype=torch.float64) + 0.1 * var * m / (m - 1)
    torch.testing.assert_close(bn.running_mean.double(), 0.1 * mean, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(bn.running_var.double(), expected_rv, atol=1e-6, rtol=1e-5)


def test_unsampled_rows_do_not_move_the_statistics():
    x = _randn(16, 2, 3, 3, seed=5)
    sample = batch_sample((16, 3, 3), 0.25, torch.Generator().manual_seed(0))
    outside = [i for i in range(16) if i not in sample.rows.tolist()]
    x2 = x.clone()
    x2[outside] = 100 * _randn(len(outside), 2, 3, 3, seed=6)
    _, m1, v1 = sampled_batch_norm(x, sample)
    _, m2, v2 = sampled_batch_norm(x2, sample)
    assert torch.equal(m1, m2) and torch.equal(v1, v2)


def test_eval_mode_uses_running_statistics():
    for layer in (
        BatchSamplingBN2d(3, 0.5, seed=0),
        FeatureSamplingBN2d(3, 0.25, seed=0),
        VirtualDatasetNorm2d(3, 2, seed=0),
    ):
        _affine(layer)
        layer(_randn(8, 3, 4, 4, seed=1))  # one training step moves the running stats
        layer.eval()
        x = _randn(3, 3, 4, 4, seed=2)  # any batch size works in eval mode
        rm, rv = layer.running_mean, layer.running_var
        expected = (x - rm[:, None, None]) / torch.sqrt(rv[:, None, None] + layer.eps)
        expected = expected * layer.weight[:, None, None] + layer.bias[:, None, None]
        torch.testing.assert_close(layer(x), expected)
        before = rm.clone()
        layer(x)
        assert torch.equal(layer.running_mean, before), "eval mode must not update the stats"


def test_state_dict_round_trips_with_batchnorm():
    ref = _affine(nn.BatchNorm2d(4))
    ref.train()
    ref(_randn(8, 4, 3, 3))
    ref.eval()
    for ours in (BatchSamplingBN2d(4, 0.25), FeatureSamplingBN2d(4), VirtualDatasetNorm2d(4, 2)):
        assert set(ours.state_dict()) == set(ref.state_dict())
        ours.load_state_dict(ref.state_dict())
        ours.eval()
        x = _randn(2, 4, 3, 3, seed=9)
        torch.testing.assert_close(ours(x), ref(x))
        assert isinstance(ours, nn.BatchNorm2d)


def _closed_form_dx(x4, dy, gamma, sample, eps, center):
    """The backward that the CUDA kernels compute, in float64 (see functional's docstring)."""
    data_mask = torch.zeros_like(x4, dtype=torch.bool)
    ph, pw = sample.patch
    for n, (h0, w0) in zip(sample.rows.tolist(), sample.starts.tolist()):
        data_mask[n, :, h0 : h0 + ph, w0 : w0 + pw] = True
    m = sample.count
    sampled = x4.transpose(0, 1)[data_mask.transpose(0, 1)].reshape(x4.shape[1], -1)
    mean = sampled.mean(1) if center else torch.zeros(x4.shape[1], dtype=x4.dtype)
    var = (sampled - mean[:, None]).square().mean(1)
    r = torch.rsqrt(var + eps)
    ch = (None, slice(None), None, None)
    xc = x4 - mean[ch]
    sdy, sdyx = dy.sum((0, 2, 3)), (dy * xc).sum((0, 2, 3))
    a = gamma * r
    b = gamma * r * sdy / m if center else torch.zeros_like(a)
    d = gamma * r * r * r * sdyx / m
    dx = a[ch] * dy - data_mask * (b[ch] + d[ch] * xc)
    return dx, sdyx * r, sdy


@pytest.mark.parametrize("center", [True, False])
@pytest.mark.parametrize("kind", ["batch", "feature", "virtual"])
def test_autograd_matches_the_kernels_closed_form(kind, center):
    shape = (9, 3, 5, 6)
    g = torch.Generator().manual_seed(7)
    sample = {
        "batch": lambda: batch_sample((9, 5, 6), 0.4, g),
        "feature": lambda: feature_sample((9, 5, 6), 0.2, g),
        "virtual": lambda: virtual_sample((9, 5, 6), 2, 0.3, g),
    }[kind]()
    x = (0.5 + _randn(*shape, seed=1, dtype=torch.float64)).requires_grad_()
    gamma = (1 + 0.3 * _randn(3, seed=2, dtype=torch.float64)).requires_grad_()
    beta = _randn(3, seed=3, dtype=torch.float64).requires_grad_()
    dy = _randn(*shape, seed=4, dtype=torch.float64)
    y, _, _ = sampled_batch_norm(x, sample, gamma, beta, 1e-3, center=center)
    dx, dgamma, dbeta = torch.autograd.grad((y * dy).sum(), (x, gamma, beta))
    ex, egamma, ebeta = _closed_form_dx(x.detach(), dy, gamma.detach(), sample, 1e-3, center)
    torch.testing.assert_close(dx, ex)
    torch.testing.assert_close(dgamma, egamma)
    torch.testing.assert_close(dbeta, ebeta)


@pytest.mark.parametrize("center", [True, False])
@pytest.mark.parametrize("kind", ["batch", "feature", "virtual", "full"])
def test_gradcheck_float64(kind, center):
    g = torch.Generator().manual_seed(3)
    sample = {
        "batch": lambda: batch_sample((6, 3, 3), 0.5, g),
        "feature": lambda: feature_sample((6, 3, 3), 0.45, g),
        "virtual": lambda: virtual_sample((6, 3, 3), 2, 0.5, g),
        "full": lambda: None,
    }[kind]()
    x = _randn(6, 2, 3, 3, seed=1, dtype=torch.float64).requires_grad_()
    gamma = (1 + 0.2 * _randn(2, seed=2, dtype=torch.float64)).requires_grad_()
    beta = _randn(2, seed=3, dtype=torch.float64).requires_grad_()

    def fn(x, gamma, beta):
        return sampled_batch_norm(x, sample, gamma, beta, 1e-3, center=center)[0]

    assert torch.autograd.gradcheck(fn, (x, gamma, beta))


def test_gradcheck_layers_float64():
    x = _randn(4, 2, 4, 4, seed=1, dtype=torch.float64).requires_grad_()
    conv = WeightStandardizedConv2d(2, 3, 3, padding=1, gain=1.3, dtype=torch.float64)
    assert torch.autograd.gradcheck(
        lambda x, w: conv._conv_forward(x, standardize_weight(w, 1.3), conv.bias),
        (x, conv.weight.detach().requires_grad_()),
    )
    smn = SecondMomentNorm2d(2, dtype=torch.float64)
    assert torch.autograd.gradcheck(smn, (x,))


def test_second_moment_norm_closed_form_and_eval():
    smn = _affine(SecondMomentNorm2d(3))
    x = 2 + _randn(6, 3, 4, 4, seed=4)
    y = smn(x)
    sm = x.double().square().mean((0, 2, 3))
    ch = (None, slice(None), None, None)
    expected = x.double() / torch.sqrt(sm[ch] + smn.eps) * smn.weight.double()[ch]
    torch.testing.assert_close(y.double(), expected + smn.bias.double()[ch], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(smn.running_second_moment.double(), 0.9 + 0.1 * sm)
    smn.eval()
    x2 = _randn(2, 3, 4, 4, seed=5)
    rs = smn.running_second_moment.double()
    eval_expected = x2.double() / torch.sqrt(rs[ch] + smn.eps) * smn.weight.double()[ch]
    torch.testing.assert_close(smn(x2).double(), eval_expected + smn.bias.double()[ch])


def test_weight_standardization_rows_and_conv():
    conv = WeightStandardizedConv2d(3, 5, 3, padding=1, gain=2**0.5, ws_eps=1e-12)
    w = conv.standardized_weight().detach().double().flatten(1)
    torch.testing.assert_close(w.sum(1), torch.zeros(5, dtype=torch.float64), atol=1e-6, rtol=0)
    torch.testing.assert_close(
        w.square().sum(1), torch.full((5,), 2.0, dtype=torch.float64), rtol=1e-5, atol=1e-6
    )
    raw = conv.weight.detach().double().flatten(1)
    fan_in = raw.shape[1]
    by_hand = (raw - raw.mean(1, keepdim=True)) / raw.std(1, unbiased=False, keepdim=True)
    by_hand = by_hand * math.sqrt(2) / math.sqrt(fan_in)
    torch.testing.assert_close(w, by_hand, atol=1e-6, rtol=1e-5)
    x = _randn(2, 3, 6, 6)
    expected = torch.nn.functional.conv2d(x, by_hand.float().reshape(5, 3, 3, 3), conv.bias, 1, 1)
    torch.testing.assert_close(conv(x), expected, atol=1e-5, rtol=1e-5)
    unscaled = WeightStandardizedConv2d(3, 5, 3, scaled=False, ws_eps=1e-12)
    norms = unscaled.standardized_weight().detach().flatten(1).square().sum(1)
    torch.testing.assert_close(norms, torch.full((5,), float(fan_in)), rtol=1e-4, atol=1e-4)


def test_virtual_dataset_wrapper():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3), VirtualDatasetNorm2d(4, num_virtual=3, seed=0))
    virtual = _randn(3, 1, 6, 6, seed=1)
    wrapped = VirtualDataset(net, virtual)
    x = _randn(5, 1, 6, 6, seed=2).requires_grad_()
    y = wrapped(x)
    assert y.shape == (5, 4, 4, 4)
    # statistics from the virtual rows only: the conv output of the virtual samples
    h = net[0](virtual).detach().double()
    mean, var = h.mean((0, 2, 3)), h.var((0, 2, 3), unbiased=False)
    ch = (None, slice(None), None, None)
    expected = (net[0](x).detach().double() - mean[ch]) / torch.sqrt(var[ch] + 1e-5)
    torch.testing.assert_close(y.detach().double(), expected, atol=1e-5, rtol=1e-5)
    y.sum().backward()
    assert x.grad is not None and net[0].weight.grad is not None
    wrapped.eval()
    assert wrapped(x).shape == (5, 4, 4, 4)


def test_virtual_with_all_real_rows_is_batchnorm_of_the_joint_batch():
    x = _randn(7, 3, 4, 4, seed=2)
    vdn = VirtualDatasetNorm2d(3, num_virtual=2, real_ratio=1.0, seed=0)
    ref = nn.BatchNorm2d(3)
    torch.testing.assert_close(vdn(x), ref(x), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(vdn.running_var, ref.running_var)


@pytest.mark.parametrize("ratio", [0, -0.5, 1.5, float("nan"), float("inf")])
def test_bad_ratios(ratio):
    with pytest.raises(ValueError, match="sample_ratio"):
        BatchSamplingBN2d(3, sample_ratio=ratio)
    with pytest.raises(ValueError, match="patch_ratio"):
        FeatureSamplingBN2d(3, patch_ratio=ratio)
    with pytest.raises(ValueError, match="sample_ratio"):
        SecondMomentNorm2d(3, sample_ratio=ratio)


def test_bad_arguments():
    with pytest.raises(TypeError, match="sample_ratio must be a real number"):
        BatchSamplingBN2d(3, sample_ratio="0.5")
    with pytest.raises(TypeError, match="num_features must be an int"):
        BatchSamplingBN2d(3.0)
    with pytest.raises(ValueError, match="real_ratio must lie in"):
        VirtualDatasetNorm2d(3, 2, real_ratio=1.2)
    with pytest.raises(ValueError, match="pass either seed or generator"):
        BatchSamplingBN2d(3, seed=1, generator=torch.Generator())


def test_batch_too_small_and_mismatched_channels():
    with pytest.raises(ValueError, match=r"batch of 3 is too small for sample_ratio=0.25"):
        BatchSamplingBN2d(3, 0.25, seed=0)(torch.randn(3, 3, 4, 4))
    with pytest.raises(ValueError, match="a variance needs at least 2"):
        BatchSamplingBN1d(3, 0.25, seed=0)(torch.randn(4, 3))
    with pytest.raises(ValueError, match="num_virtual=4 virtual samples, got a batch of only 4"):
        VirtualDatasetNorm2d(3, 4, seed=0)(torch.randn(4, 3, 2, 2))
    for layer in (BatchSamplingBN2d(3, 0.5), FeatureSamplingBN2d(3), SecondMomentNorm2d(3)):
        with pytest.raises(ValueError, match="num_features=3 channels, got an input with 5"):
            layer(torch.randn(8, 5, 4, 4))
    with pytest.raises(ValueError, match=r"needs a \[N, C, L\] input"):
        FeatureSamplingBN1d(3)(torch.randn(8, 3))
    with pytest.raises(ValueError, match="expected 4D input"):
        BatchSamplingBN2d(3)(torch.randn(8, 3, 4))
    sample = batch_sample((8, 4, 4), 0.5, torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="sample was drawn for a batch of"):
        sampled_batch_norm(torch.randn(6, 3, 4, 4), sample)
    with pytest.raises(ValueError, match="weight must have one entry per channel"):
        sampled_batch_norm(torch.randn(8, 3, 4, 4), sample, torch.ones(4))


def test_without_running_statistics_eval_uses_the_sample():
    bs = BatchSamplingBN2d(3, 0.5, track_running_stats=False, seed=0)
    assert bs.running_mean is None and "running_mean" not in bs.state_dict()
    bs.eval()
    x = _randn(8, 3, 4, 4, seed=1)
    y = bs(x)  # no running stats: eval still normalizes with the sample, like BatchNorm
    rows = bs.last_sample.rows
    mean, var = _brute_stats(x, rows, torch.zeros(len(rows), 2, dtype=torch.long), (4, 4))
    ch = (None, slice(None), None, None)
    expected = (x.double() - mean[ch]) / torch.sqrt(var[ch] + bs.eps)
    torch.testing.assert_close(y.double(), expected, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="momentum must lie in"):
        BatchSamplingBN2d(3, momentum=1.5)
