"""Regression tests for the bad inputs that ``toolkit.norm`` accepted silently or answered
with an obscure error before issue 10's sweep (one test per defect found)."""

from __future__ import annotations

import math

import pytest
import torch

import toolkit.norm as tn

X = torch.randn(8, 3, 4, 4, generator=torch.Generator().manual_seed(0))


def _gen() -> torch.Generator:
    return torch.Generator().manual_seed(0)


def _sample(rows, starts=None, patch=(4, 4), shape=(8, 4, 4)) -> tn.Sample:
    starts = torch.zeros(len(rows), 2, dtype=torch.long) if starts is None else starts
    return tn.Sample(torch.tensor(rows, dtype=torch.long), starts, patch, shape)


@pytest.mark.parametrize(
    "rows, match",
    [
        ([0, 9], "sample.rows"),  # was an IndexError (and unchecked indices on the GPU)
        ([-1, 2], "sample.rows"),  # was an IndexError
        ([0, 0, 1], "sample.rows"),  # was silently double-weighted
        ([3, 1], "sample.rows"),  # was silently accepted
        ([], "sample.rows"),  # was "the sample holds 0 datum"
    ],
)
def test_a_hand_built_sample_must_fit_the_batch(rows, match):
    with pytest.raises(ValueError, match=match):
        tn.sampled_batch_norm(X, _sample(rows))


def test_a_sample_window_must_lie_inside_the_map():
    # corners (1, 1) with a 4x4 window on a 4x4 map read past the edge: silently wrong before
    bad = _sample([0, 1], starts=torch.ones(2, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="sample.starts"):
        tn.sampled_batch_norm(X, bad)
    with pytest.raises(ValueError, match=r"sample.patch\[0\]"):
        tn.sampled_batch_norm(X, _sample([0, 1], patch=(5, 4)))


def test_a_valid_hand_built_sample_matches_the_closed_form():
    s = _sample([1, 4], starts=torch.tensor([[0, 1], [2, 0]]), patch=(2, 3))
    _y, mean, var = tn.sampled_batch_norm(X.double(), s)
    data = torch.cat([X[1, :, 0:2, 1:4].reshape(3, -1), X[4, :, 2:4, 0:3].reshape(3, -1)], 1)
    assert torch.allclose(mean, data.double().mean(1))
    assert torch.allclose(var, data.double().var(1, unbiased=False))


@pytest.mark.parametrize("shape", [(0, 4, 4), (8, 0, 4), (8, 4), (8.0, 4, 4), (True, 4, 4)])
def test_sampler_shapes_are_checked(shape):
    # full_sample((0, 4, 4)) returned an empty sample; (8.0, 4, 4) failed inside torch
    with pytest.raises((TypeError, ValueError), match="shape"):
        tn.full_sample(shape)


@pytest.mark.parametrize("sampler", ["batch", "feature", "patch", "virtual"])
def test_samplers_refuse_a_missing_generator(sampler):
    # generator=None silently drew from torch's global generator
    call = {
        "batch": lambda: tn.batch_sample((8, 4, 4), 0.5, None),
        "feature": lambda: tn.feature_sample((8, 4, 4), 0.5, None),
        "patch": lambda: tn.patch_sample((8, 4, 4), (2, 2), None),
        "virtual": lambda: tn.virtual_sample((8, 4, 4), 2, 0.5, None),
    }[sampler]
    with pytest.raises(TypeError, match="generator"):
        call()


def test_patch_size_and_sample_count_check_their_sizes():
    with pytest.raises(ValueError, match="h must"):
        tn.patch_size(0, 4, 0.5)  # returned (1, 3) for an empty map
    with pytest.raises(TypeError, match="w must"):
        tn.patch_size(4, 2.5, 0.5)
    with pytest.raises(TypeError, match="batch must"):
        tn.sample_count(2.5, 0.5)  # returned 1
    with pytest.raises(ValueError, match="batch of at least inf"):
        tn.sample_count(1, 5e-324)  # was an OverflowError
    with pytest.raises(TypeError, match=r"patch\[0\]"):
        tn.patch_sample((8, 4, 4), (True, 1), _gen())  # bool accepted as 1


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"gain": math.nan}, "gain"),  # NaN weights
        ({"gain": -1.0}, "gain"),  # silently flipped signs
        ({"eps": -1.0}, "eps"),  # NaN weights
        ({"scaled": "no"}, "scaled"),  # truthy string
    ],
)
def test_standardize_weight_checks_its_parameters(kwargs, name):
    with pytest.raises((TypeError, ValueError), match=name):
        tn.standardize_weight(torch.randn(4, 3), **kwargs)


def test_standardize_weight_refuses_int_and_fan_in_one():
    with pytest.raises(TypeError, match="weight"):
        tn.standardize_weight(torch.ones(4, 3, dtype=torch.int64))  # deep torch error before
    with pytest.raises(ValueError, match="fan-in"):
        tn.standardize_weight(torch.randn(4, 1))  # returned zeros, not rows of norm g


def test_eval_mode_checks_the_input():
    bs = tn.BatchSamplingBN2d(3, seed=0).eval()
    with pytest.raises(TypeError, match="input"):
        bs(X.long())  # NotImplementedError from batch_norm before
    smn = tn.SecondMomentNorm2d(3).eval()
    with pytest.raises(TypeError, match="input"):
        smn(X.long())  # returned an int64 tensor of zeros


@pytest.mark.parametrize("layer", [tn.BatchSamplingBN2d, tn.SecondMomentNorm2d])
def test_layers_check_device_and_dtype(layer):
    with pytest.raises(ValueError, match="device"):
        layer(3, device="gpu")  # torch's RuntimeError before
    with pytest.raises(ValueError, match="dtype"):
        layer(3, dtype=torch.complex64)  # silently complex parameters
    assert layer(3, dtype=torch.float64).weight.dtype == torch.float64


def test_virtual_dataset_checks_its_samples():
    with pytest.raises(ValueError, match="virtual must be finite"):
        tn.VirtualDataset(torch.nn.Identity(), torch.full((2, 3), math.nan))
    with pytest.raises(TypeError, match="virtual"):
        tn.VirtualDataset(torch.nn.Identity(), torch.ones(2, 3, dtype=torch.int64))
    with pytest.raises(TypeError, match="x must"):
        tn.VirtualDataset(torch.nn.Identity(), torch.ones(2, 3))(None)


def test_weight_standardized_conv_checks_sizes_and_input():
    with pytest.raises(ValueError, match="kernel_size"):
        tn.WeightStandardizedConv2d(3, 4, 0)  # built a zero-size kernel
    with pytest.raises(ValueError, match=r"kernel_size\[1\]"):
        tn.WeightStandardizedConv2d(3, 4, (3, 0))
    conv = tn.WeightStandardizedConv2d(3, 4, 3)
    with pytest.raises(ValueError, match="in_channels=3"):
        conv(torch.randn(2, 4, 5, 5))
    with pytest.raises(ValueError, match="input of shape"):
        conv(torch.randn(2, 3, 2, 2))
    assert tn.WeightStandardizedConv2d(3, 4, 3, padding=1)(torch.randn(2, 3, 2, 2)).shape == (
        2,
        4,
        2,
        2,
    )


def test_nan_propagates_as_documented():
    x = X.clone()
    x[0, 1, 0, 0] = math.nan
    y, _, _ = tn.sampled_batch_norm(x)
    assert torch.isnan(y[:, 1]).all() and torch.isfinite(y[:, [0, 2]]).all()


def test_analysis_refuses_activations_it_cannot_measure():
    from toolkit.norm import analysis

    acts = torch.randn(16, 2, 4, 4, generator=torch.Generator().manual_seed(0))
    flat = acts.clone()
    flat[:, 1] = 3.0
    nan = acts.clone()
    nan[0, 0, 0, 0] = math.nan
    for fn in (
        lambda a: analysis.estimation_curves(a, trials=2),
        lambda a: analysis.sampling_error(a, "BS", 0.5, trials=2),
        analysis.correlation_profile,
    ):
        with pytest.raises(ValueError, match="constant channels \\[1\\]"):
            fn(flat)  # NaN errors and correlations, silently
        with pytest.raises(ValueError, match="acts must be finite"):
            fn(nan)
        with pytest.raises(TypeError, match="acts must have dtype"):
            fn(acts.long())  # integer "activations" measured silently
        with pytest.raises(ValueError, match="at least 2 samples"):
            fn(acts[:1])  # a zero error (the sample is the whole batch)


def test_analysis_checks_its_other_arguments():
    from toolkit.norm import analysis

    acts = torch.randn(16, 2, 4, 4, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="ratio must lie"):
        analysis.make_norm("bs", 4, ratio=0.0)  # blamed sample_ratio, a name it does not take
    with pytest.raises(ValueError, match="channels"):
        analysis.make_norm("bn", 0)
    with pytest.raises(ValueError, match="trials"):
        analysis.sampling_error(acts, "BS", 0.5, trials=10**6)  # ran for minutes
    with pytest.raises(TypeError, match="counts must be a non-empty sequence"):
        analysis.estimation_curves(acts, [], trials=2)  # returned empty curves
    with pytest.raises(ValueError, match="counts must each be a multiple"):
        analysis.estimation_curves(acts, [17], trials=2)
    with pytest.raises(TypeError, match="methods"):
        analysis.estimation_curves(acts, trials=2, methods=[])  # returned no curves
