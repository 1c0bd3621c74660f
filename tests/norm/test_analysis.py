"""Estimation analysis against the design-effect closed form, and the training helpers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from toolkit.norm import feature_sample, patch_sample
from toolkit.norm.analysis import (
    SmallCNN,
    accuracy_table,
    correlation_profile,
    estimation_curves,
    microbatch_table,
    train_digits,
)


def _clustered(n, c, h, w, rho, seed=0):
    """Data with intra-map correlation rho: a per-map shared effect plus iid noise."""
    g = torch.Generator().manual_seed(seed)
    shared = torch.randn(n, c, 1, 1, generator=g) * math.sqrt(rho)
    return 3.0 + shared + torch.randn(n, c, h, w, generator=g) * math.sqrt(1 - rho)


@pytest.mark.parametrize("rho", [0.0, 0.5])
def test_errors_follow_the_design_effect(rho):
    acts = _clustered(512, 4, 4, 4, rho)
    prof = correlation_profile(acts)
    assert prof["rho_map"].mean() == pytest.approx(rho, abs=0.06)
    assert abs(prof["rho_across"]).max() < 0.15
    curves = estimation_curves(acts, counts=[512, 1024], trials=150, seed=1)
    m = np.array([512, 1024])
    bs_pred = np.sqrt((1 + 15 * rho) / m)
    # finite-population correction: sampling without replacement from 8192 data per channel
    fpc = np.sqrt(1 - m / 8192)
    np.testing.assert_allclose(curves.mean_error["BS"], bs_pred * np.sqrt(1 - m / 8192), rtol=0.2)
    np.testing.assert_allclose(curves.mean_error["random"], fpc / np.sqrt(m), rtol=0.2)
    # one datum per sample (FS at m = N) sees one shared effect per datum: iid-like
    assert curves.mean_error["FS"][0] < 1.25 * curves.mean_error["random"][0]
    if rho > 0:
        assert curves.mean_error["BS"][0] > 2 * curves.mean_error["FS"][0]
    np.testing.assert_allclose(curves.predicted_bs, np.sqrt((1 + 15 * curves.rho) / m))


def test_tiled_patches_cover_every_position_equally():
    g = torch.Generator().manual_seed(0)
    hits = torch.zeros(8, 8)
    draws = 4000
    s = feature_sample((draws, 8, 8), 0.25, g)
    for h0, w0 in s.starts.tolist():
        hits[h0 : h0 + 4, w0 : w0 + 4] += 1
    freq = hits / draws
    assert float((freq - 0.25).abs().max()) < 0.03
    s = patch_sample((draws, 7, 7), (3, 3), g)  # does not tile: every corner equally likely
    assert set(s.starts[:, 0].tolist()) == set(range(5))


def test_estimation_curves_checks_counts():
    with pytest.raises(ValueError, match="multiple of H\\*W=16 and of N=64"):
        estimation_curves(torch.randn(64, 2, 4, 4), counts=[100])
    with pytest.raises(ValueError, match="methods must be one of"):
        estimation_curves(torch.randn(64, 2, 4, 4), methods=["XS"])


def test_small_cnn_records_features():
    net = SmallCNN("fs", seed=0)
    net(torch.randn(8, 1, 8, 8))
    assert [tuple(f.shape) for f in net.features] == [(8, 16, 8, 8), (8, 32, 8, 8), (8, 32, 4, 4)]


def test_training_learns_and_errors():
    r = train_digits("bs", epochs=6, limit=256, batch_size=16, seed=0)
    assert r.losses[-1] < r.losses[0]
    assert r.test_accuracy > 0.5  # ten classes: chance is 0.1
    with pytest.raises(ValueError, match="norm must be one of"):
        train_digits("layernorm")
    with pytest.raises(ValueError, match="batch_size=64 exceeds the 32 training images"):
        train_digits("bn", batch_size=64, limit=32)


def test_tables_shapes():
    t = accuracy_table(("bn", "vdn"), (0,), epochs=1, limit=64, progress=False)
    assert set(t) == {"bn", "vdn"} and t["vdn"].shape == (1,)
    m = microbatch_table((1, 2), ("bn", "gn"), epochs=1, limit=16, progress=False)
    assert m["bn"].shape == (2, 1) and ((0 <= m["gn"]) & (m["gn"] <= 1)).all()
