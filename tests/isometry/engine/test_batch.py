"""Finite-batch structure (engine/batch.py): standardized units and the batch-mean split."""

import math

import numpy as np
import pytest
import sympy as sp

from toolkit.isometry import (
    BatchNorm,
    Dropout,
    ForwardStats,
    LeakyReLU,
    Linear,
    NetworkDesign,
    ReLU,
    Residual,
    Serial,
    Tanh,
    design_block,
    profile,
    repeat,
)
from toolkit.isometry.engine.batch import BatchSplit, ChainMoments, standardized_law


def _standardized(batch: int, rows: int = 200_000, seed: int = 0) -> np.ndarray:
    """Rows of ``batch`` samples standardized exactly (zero mean, biased variance 1)."""
    z = np.random.default_rng(seed).standard_normal((rows, batch))
    y = z - z.mean(1, keepdims=True)
    return y / y.std(1, keepdims=True)


def _mc_law(f, fprime, y, gamma=1.0, beta=0.0):
    """Monte Carlo of the BatchLaw fields and their standard errors, from standardized rows."""
    B = y.shape[1]
    x = gamma * y + beta
    fx, d = f(x), fprime(x)
    d2 = d * d
    P_d = d2.sum(1) - d.sum(1) ** 2 / B - (y * d).sum(1) ** 2 / B  # ||P f'||^2 per row
    tr = ((1 - 1 / B) * d2 - d2 * y * y / B).sum(1)  # tr(D^2 P) per row
    samples = {
        "mean": fx[:, 0],
        "second": fx[:, 0] ** 2,
        "pair": fx[:, 0] * fx[:, 1],
        "batch_variance": fx.var(1),
    }
    out = {k: (v.mean(), v.std() / math.sqrt(v.size)) for k, v in samples.items()}
    out["leak"] = P_d.mean() / (B * tr.mean())
    out["coupling"] = tr.mean() / ((B - 2) * d2.mean())
    return out


@pytest.mark.parametrize(
    "name,f,fprime,gamma,beta",
    [
        ("relu", lambda h: np.maximum(h, 0), lambda h: 1.0 * (h > 0), 1.0, 0.0),
        ("tanh", np.tanh, lambda h: 1 - np.tanh(h) ** 2, 1.3, 0.4),
    ],
)
def test_standardized_law_matches_monte_carlo_of_standardized_batches(name, f, fprime, gamma, beta):
    B = 16
    law = standardized_law(f, fprime, B, gamma, beta, order=2)
    mc = _mc_law(f, fprime, _standardized(B), gamma, beta)
    for key in ("mean", "second", "pair"):
        got, (want, se) = getattr(law, key), mc[key]
        assert abs(got - want) < 4 * se + 1e-6, (name, key, got, want, se)
    # the unbiased batch variance the next batch norm sees
    want, se = mc["batch_variance"]
    assert law.variance * (B - 1) / B == pytest.approx(want, abs=4 * se)
    assert law.leak == pytest.approx(mc["leak"], rel=0.03)
    assert law.coupling == pytest.approx(mc["coupling"], rel=0.003)


def test_relu_after_batch_norm_is_not_an_independent_gaussian():
    # ReLU of a standardized batch of 16: biased batch variance 0.3348, where independent
    # Gaussian samples give (15/16)(1/2 - 1/(2 pi)) = 0.3195 and the population 0.3408
    law = standardized_law(lambda h: np.maximum(h, 0), lambda h: 1.0 * (h > 0), 16, 1, 0, 1)
    assert law.variance * 15 / 16 == pytest.approx(0.33484, abs=2e-5)
    assert law.leak == pytest.approx(0.011309, abs=2e-6)


@pytest.mark.parametrize("batch", [4, 16, 128])
@pytest.mark.parametrize("slope", [0.0, 0.2])
def test_prelu_closed_forms_match_quadrature(batch, slope):
    act = LeakyReLU(slope)
    s = BatchNorm(gamma=1.7, batch=batch).propagate_stats(3.0)
    assert s.standardized_batch == batch
    closed = act._batch_law(s, order=2)
    quad = standardized_law(act._f, act._fprime, batch, 1.7, 0.0, 2)
    assert closed.mean == pytest.approx(quad.mean, rel=2e-4)  # (quadrature: kink at 0)
    for key in ("second", "pair", "leak"):
        assert getattr(closed, key) == pytest.approx(getattr(quad, key), rel=1e-8, abs=1e-12)
    np.testing.assert_allclose(closed.derivative, quad.derivative, rtol=1e-10)
    assert closed.coupling == 1.0 and quad.coupling == pytest.approx(1.0, rel=1e-10)


def test_large_batch_recovers_the_gaussian_results():
    law = ReLU()._batch_law(BatchNorm(batch=10**6).propagate_stats(1.0))
    assert law.mean == pytest.approx(1 / math.sqrt(2 * math.pi), rel=1e-6)
    assert law.pair == pytest.approx(1 / (2 * math.pi), rel=1e-5)
    assert law.leak < 1e-6


def test_batch_norm_output_statistics():
    # the biased batch variance is gamma^2 exactly; the unbiased one B/(B-1) of it
    s = BatchNorm(gamma=2.0, beta=0.5, batch=16).propagate_stats(ForwardStats(3.0, 1.0, 0.2))
    assert s.unit_variance == pytest.approx(4.0 * 16 / 15)
    assert (s.c, s.mean, s.standardized_batch) == (0.25, 0.5, 16)
    # a large-batch batch norm and any other block drop the marker
    assert BatchNorm().propagate_stats(3.0).standardized_batch is None
    assert Linear(8, 8).propagate_stats(s).standardized_batch is None
    # ReLU after it: the law of the standardized batch, shifted by beta (quadrature)
    out = ReLU().propagate_stats(s)
    y = _standardized(16, rows=100_000)
    r = np.maximum(2.0 * y + 0.5, 0)
    assert out.mean == pytest.approx(r.mean(), rel=5e-3)
    assert out.unit_variance * 15 / 16 == pytest.approx(r.var(1).mean(), rel=5e-3)


def test_chain_moments_of_splits_follow_the_mixture():
    B = 8
    chain = ChainMoments(order=2)
    blocks = [BatchSplit(B, [1.5, 2.5], 0.0, 1.0), BatchSplit(B, [1.2, 1.5], 0.01, 1.0)]
    for split in blocks:
        chain.add([0.0, 0.0], split=split)  # (isotropic moments unused inside a run)
    m1, m2 = chain.moments()
    tau = (B - 1) * 0.01 * 1.5  # the leak of the second block on the first's output
    p1 = 1.5 * 1.2  # free product on the batch-mean-free part
    p2 = 2.5 * 1.2**2 + 1.5**2 * 1.5 - 1.5**2 * 1.2**2
    assert m1 == pytest.approx((1 + tau) / B + (B - 1) / B * p1)
    assert m2 == pytest.approx((1 + tau) ** 2 / B + (B - 1) / B * p2)
    # a batch norm on the way (keep 0) removes the batch mean's identity part
    chain.add([0.0, 0.0], split=BatchSplit(B, [2.0, 5.0], 0.0, 0.0))
    assert chain.moments()[0] == pytest.approx((B - 1) / B * p1 * 2.0)


def _residual(batch, act=ReLU):
    return Residual(Serial([Linear(64, 64, gain=2**0.5), BatchNorm(batch=batch), act()]))


def test_residual_batch_norm_chain_composes_in_the_batch_split():
    B, depth = 16, 10
    chain = Serial([_residual(B)] * depth)
    prof = profile(chain)
    # the isotropic (block by block) product misses the batch-mean subspace that the skip
    # connection carries unamplified: the split chain grows faster
    assert prof.cumulative_m1[-1] > 1.05 * np.prod(prof.m1)
    assert chain.moments().m1 == pytest.approx(prof.cumulative_m1[-1], rel=1e-12)
    np.testing.assert_allclose(
        repeat(_residual(B), depth).moments().values, chain.moments().values, rtol=1e-10
    )
    flat = profile(chain, flatten=True)  # (a Residual stays one item)
    np.testing.assert_allclose(flat.cumulative_m1, prof.cumulative_m1, rtol=1e-12)


def test_mlp_batch_norm_profiles_agree_nested_and_flattened():
    block = Serial([Linear(64, 64, gain=2**0.5), BatchNorm(batch=8), Tanh()])
    chain = Serial([block] * 4)
    nested, flat = profile(chain), profile(chain, flatten=True)
    assert flat.cumulative_m1[-1] == pytest.approx(nested.cumulative_m1[-1], rel=1e-10)
    assert flat.cumulative_variance[-1] == pytest.approx(nested.cumulative_variance[-1], rel=1e-10)


def test_without_batch_statistics_the_engine_is_unchanged():
    # large-batch batch norm: no split, exact free products as before
    block = Residual(Serial([Linear(64, 64, gain=2**0.5), BatchNorm(), ReLU()]))
    prof = profile(Serial([block] * 6))
    np.testing.assert_allclose(prof.cumulative_m1, np.cumprod(prof.m1), rtol=1e-12)


def test_symbolic_batch_norm_gain_and_other_maps_after_batch_norm():
    g = sp.Symbol("g", positive=True)
    s = BatchNorm(gamma=g, batch=16).propagate_stats(2.0)
    out = ReLU().propagate_stats(s)  # the PReLU family scales with g in closed form
    assert float(out.mean.subs(g, 2)) == pytest.approx(
        2 * ReLU()._batch_law(BatchNorm(batch=16).propagate_stats(2.0)).mean
    )
    m = Serial([Linear(8, 8), BatchNorm(gamma=g, batch=16), ReLU()]).moments()
    assert float(m.m1.subs(g, 1)) == pytest.approx(14 / 13 / 2)  # composes block by block
    with pytest.raises(TypeError, match="Tanh after batch norm"):
        Tanh().propagate_stats(s)
    # dropout after batch norm ends the split; the chain still composes
    m = Serial([Linear(8, 8), BatchNorm(batch=16), Dropout(0.5), Tanh()]).moments()
    assert 0 < float(m.m1) < 2


def test_cnn_batch_norm_statistics_run_over_the_batch_and_the_image():
    design = NetworkDesign("cnn", width=4, depth=1, image_size=5, normalization="batchnorm")
    block = design_block(design, batch=8).blocks[0]
    assert "BatchNorm(gamma=1, beta=0, eps=0, batch=200)" in repr(block)


@pytest.mark.parametrize("bad,error", [(2, ValueError), (16.0, TypeError), ("16", TypeError)])
def test_forward_stats_checks_standardized_batch(bad, error):
    with pytest.raises(error, match="standardized_batch"):
        ForwardStats(1.0, standardized_batch=bad)
