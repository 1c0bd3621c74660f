"""Monte Carlo check of the finite-batch engine (engine/batch.py) on networks with batch norm.

Batch norm on the statistics of a batch of B samples annihilates a common shift of the
batch, and its output is standardized exactly over the batch. A residual chain then splits
into the batch mean, which the skip connections carry unamplified, and the batch-mean-free
part, where the branches act with B/(B-1) of their isotropic m1. At B = 8 the block-by-block
free product is far outside the Monte Carlo error; the split chain is inside it.
"""

import math

import numpy as np
import pytest
import torch

from toolkit.isometry import (
    NetworkDesign,
    build_network,
    design_block,
    empirical,
    profile,
    sample_block_moments,
    sample_input,
)


def _phi(design: NetworkDesign, batch: int, networks: int, seed: int):
    gen = torch.Generator().manual_seed(seed)
    values = []
    for _ in range(networks):
        net = build_network(design, generator=gen, device="cpu")
        x = sample_input(design, batch, generator=gen, device="cpu")
        values.append(empirical(net, x, probes=8, generator=gen).m1)
    return float(np.mean(values)), float(np.std(values, ddof=1) / math.sqrt(networks))


@pytest.mark.slow
@pytest.mark.parametrize(
    "activation,width,depth", [("relu", 512, 8), ("linear", 256, 6), ("tanh", 256, 6)]
)
def test_residual_batch_norm_phi_matches_monte_carlo_at_a_small_batch(activation, width, depth):
    batch = 8
    design = NetworkDesign(
        "residual",
        width=width,
        depth=depth,
        gain=2**0.5,
        activation=activation,
        normalization="batchnorm",
    )
    prof = profile(design_block(design, batch=batch))
    got, se = _phi(design, batch, networks=16, seed=7)
    want = prof.cumulative_m1[-1]
    assert abs(got - want) < 3 * se + 0.01 * want, (got, se, want)
    # the block-by-block product (every block isotropic in the batch) is far outside
    isotropic = float(np.prod(prof.m1))
    assert got - isotropic > 4 * se + 0.01 * want, (got, se, isotropic)


@pytest.mark.slow
def test_mlp_tanh_batch_norm_phi_matches_monte_carlo():
    # after the first batch norm the gradient lives in the batch-mean-free part, and tanh's
    # f'^2 is small where batch norm's projection removes the unit's direction
    design = NetworkDesign(
        "mlp", width=256, depth=6, gain=2**0.5, activation="tanh", normalization="batchnorm"
    )
    want = profile(design_block(design, batch=16)).cumulative_m1[-1]
    got, se = _phi(design, 16, networks=16, seed=3)
    assert abs(got - want) < 3 * se + 0.01 * want, (got, se, want)


@pytest.mark.slow
def test_at_a_small_width_each_residual_batch_norm_block_keeps_its_predicted_phi():
    # engine/batch.py, "Not modelled": at width 64 the end-to-end phi of this chain lies
    # ~3 % above the prediction at depth 8, yet every block's own phi (an isotropic probe at
    # the input the block actually receives) matches; the finite-width gap is between blocks
    design = NetworkDesign("residual", width=64, depth=8, gain=2**0.5, normalization="batchnorm")
    want = profile(design_block(design, batch=16)).m1
    got = sample_block_moments(design, samples=16, batch=16, cumulative=False, seed=5)
    assert np.all(np.abs(got.m1 - want) < 3 * got.m1_stderr + 0.005 * want), (got.m1, want)
