"""Monte Carlo check of the mean-aware forward statistics and phi on residual ReLU + batch norm.

A ReLU branch adds a mean to the residual stream; the next layer's batch norm divides by the
variance q - c, not by q. The engine's prediction (``design_block`` with the batch size
used) must agree with sampled networks within a few Monte Carlo standard errors, where the
previous q-only engine was 30-50 % low.
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
    sample_input,
)

DESIGN = NetworkDesign(
    "residual", width=256, depth=6, gain=2**0.5, activation="relu", normalization="batchnorm"
)
BATCH, NETWORKS, DEPTHS = 128, 6, (2, 4, 6)


def _stream_stats(h: torch.Tensor) -> tuple[float, float, float]:
    """q, c (unbiased: the batch mean's own variance removed) and mean of a [B, n] batch."""
    b = h.shape[0]
    mu, var = h.mean(0), h.var(0, unbiased=True)
    return float((h**2).mean()), float((mu**2 - var / b).mean()), float(mu.mean())


def _mean_se(values: list[list[float]]) -> tuple[np.ndarray, np.ndarray]:
    a = np.array(values)
    return a.mean(0), a.std(0, ddof=1) / math.sqrt(a.shape[0])


@pytest.fixture(scope="module")
def forward():
    """q and c of every block's input: forward passes only (fast)."""
    gen = torch.Generator().manual_seed(1234)
    rows = []
    for _ in range(8):
        net = build_network(DESIGN, generator=gen, device="cpu")
        h = sample_input(DESIGN, BATCH, generator=gen, device="cpu")
        row = []
        with torch.no_grad():
            for block in net:
                row.append(_stream_stats(h))
                h = block(h)
        rows.append(row)
    a = np.array(rows)  # [networks, depth, (q, c, mean)]
    return _mean_se(a[:, :, 0]), _mean_se(a[:, :, 1])


@pytest.fixture(scope="module")
def phi():
    """End-to-end phi of the prefix networks at DEPTHS (Hutchinson; slow)."""
    gen = torch.Generator().manual_seed(4321)
    rows = []
    for _ in range(NETWORKS):
        net = build_network(DESIGN, generator=gen, device="cpu")
        x0 = sample_input(DESIGN, BATCH, generator=gen, device="cpu")
        rows.append([empirical(net[:d], x0, probes=4, generator=gen).m1 for d in DEPTHS])
    return _mean_se(rows)


@pytest.fixture(scope="module")
def predicted():
    return profile(design_block(DESIGN, batch=BATCH))


def test_forward_statistics_match_monte_carlo(forward, predicted):
    (q, q_se), (c, c_se) = forward
    for name, got, se, want in (("q", q, q_se, predicted.q_in), ("c", c, c_se, predicted.c_in)):
        for d in range(1, DESIGN.depth):
            tol = 4 * se[d] + 0.005 * want[d]  # a few standard errors (+0.5 % for O(1/width))
            assert abs(got[d] - want[d]) < tol, (name, d, got[d], se[d], want[d])
    # the stream's mean is ell E relu(y), y standardized over the batch (1/sqrt(2 pi) for a
    # large batch): c grows like ell^2, q - c only linearly
    relu_mean = math.sqrt(BATCH - 1) / (2 * math.sqrt(math.pi))
    relu_mean *= math.exp(math.lgamma((BATCH - 1) / 2) - math.lgamma(BATCH / 2))
    assert relu_mean == pytest.approx(1 / math.sqrt(2 * math.pi), rel=0.01)
    assert predicted.c_in[-1] == pytest.approx((5 * relu_mean) ** 2)
    # the q-only engine's stream, q = 1 + ell / 2, is far outside the error at depth 6
    assert q[-1] - 3.5 > 10 * q_se[-1] + 0.1


@pytest.mark.slow
def test_phi_matches_monte_carlo_at_several_depths(phi, predicted):
    got, se = phi
    old = np.cumprod(1 + 1 / (2 * (1 + 0.5 * np.arange(DESIGN.depth))))  # q-only engine
    for i, d in enumerate(DEPTHS):
        want = predicted.cumulative_m1[d - 1]
        assert abs(got[i] - want) < 4 * se[i] + 0.01 * want, (d, got[i], se[i], want)
        # the q-only prediction is far outside the Monte Carlo error
        assert got[i] - old[d - 1] > 4 * se[i] + 0.01 * want


def test_residual_relu_stream_without_normalization_grows_as_predicted():
    # each block adds q/2 * g^2 plus 2 * mean_x * mean_F: 1, 2, 4.9, 13.2, ... where the
    # q-only engine had 1, 2, 4, 8, ...
    design = NetworkDesign("residual", width=256, depth=5, gain=2**0.5)
    gen = torch.Generator().manual_seed(99)
    rows = []
    for _ in range(6):
        net = build_network(design, generator=gen, device="cpu")
        h = sample_input(design, 128, generator=gen, device="cpu")
        row = []
        with torch.no_grad():
            for block in net:
                row.append(float((h**2).mean()))
                h = block(h)
        rows.append(row)
    got, se = _mean_se(rows)
    want = profile(design_block(design)).q_in
    for d in range(1, design.depth):
        assert abs(got[d] - want[d]) < 4 * se[d] + 0.01 * want[d], (d, got[d], se[d], want[d])
    assert got[-1] - 2.0 ** (design.depth - 1) > 4 * se[-1] + 1.0
