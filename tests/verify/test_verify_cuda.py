"""The bound engine on a CUDA device gives the CPU's numbers (same float64 arithmetic).

Bounds are compared with a tolerance that allows for the different summation order of
the GPU's matrix products; soundness is checked on the GPU itself.
"""

from __future__ import annotations

import pytest
import torch

from toolkit.verify import (
    METHODS,
    LpBall,
    Synonyms,
    bounds,
    certified_radius,
    check_soundness,
    margin_bounds,
)

from .._gpu import assert_matches_reference, generator
from ._helpers import tiny_model

pytestmark = pytest.mark.gpu


def _close(a, b):
    # float64 on both devices: only the GPU's summation order differs.
    assert_matches_reference(a, b, dtype=torch.float64)


@pytest.fixture(scope="module")
def pair():
    model = tiny_model(
        seed=3, layers=2, layernorm="standard", activation="gelu", dim=16, heads=4, ffn_dim=32
    )
    ids = torch.randint(0, 20, (2, 5), generator=generator("verify cuda"))
    return model, model.embed(ids).detach(), ids


@pytest.mark.parametrize("method", METHODS)
def test_bounds_and_intermediates_match_cpu(pair, method):
    model, e, _ids = pair
    spec = LpBall(0.05, p=2, positions=[1, 3])
    lo, hi, inter = bounds(model, e, spec, method, return_intermediate=True)
    glo, ghi, ginter = bounds(model.cuda(), e.cuda(), spec, method, return_intermediate=True)
    model.cpu()
    assert glo.device.type == "cuda"
    _close(glo, lo)
    _close(ghi, hi)
    assert list(ginter) == list(inter)
    for k in inter:
        _close(ginter[k][0], inter[k][0])
        _close(ginter[k][1], inter[k][1])


def test_margins_synonyms_and_radius_match_cpu(pair):
    model, e, ids = pair
    y = model(e).argmax(-1)
    spec = Synonyms.nearest(model, ids, [1, 3], k=2, budget=1)
    m_cpu = margin_bounds(model, e, spec, y, "crown")
    r_cpu = certified_radius(model, e, y, [0, 2], p=float("inf"), method="crown", tol=1e-3)
    model.cuda()
    try:
        m_gpu = margin_bounds(model, e.cuda(), spec, y.cuda(), "crown")
        r_gpu = certified_radius(
            model, e.cuda(), y, [0, 2], p=float("inf"), method="crown", tol=1e-3
        )
    finally:
        model.cpu()
    for a, b in zip(m_gpu, m_cpu):
        _close(a, b)
    # bisection decisions can flip only where a margin is within rounding of zero
    torch.testing.assert_close(r_gpu.cpu(), r_cpu, rtol=0, atol=1e-3)


@pytest.mark.parametrize("p", [1, 2, float("inf")])
def test_soundness_on_the_gpu(pair, p):
    model, e, _ids = pair
    model.cuda()
    try:
        ec = e.cuda()
        spec = LpBall(0.1, p=p, positions=[2])
        lo, hi = bounds(model, ec, spec, "crown")
        res = check_soundness(model, ec, spec, lo, hi, samples=64, pgd_steps=5, seed=1)
    finally:
        model.cpu()
    assert res.ok, res.violations[:3]
    assert res.observed_min.device.type == "cuda"
