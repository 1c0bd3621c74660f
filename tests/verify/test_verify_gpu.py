"""Every public bound function with the model and the embeddings on a CUDA device (issue 10
item 2) gives the CPU's numbers, and the memory estimate holds on the GPU (item 5).

float64 on both devices: only the GPU's summation order differs, so the tolerance is the
float64 one of ``tests/_gpu.py``.
"""

from __future__ import annotations

import copy

import pytest
import torch

import toolkit.verify as V

from .._gpu import assert_matches_reference, generator
from ._helpers import tiny_model

pytestmark = pytest.mark.gpu


def _close(gpu, cpu):
    assert gpu.device.type == "cuda"
    assert_matches_reference(gpu.cpu(), cpu, dtype=torch.float64)


@pytest.fixture(scope="module")
def models():
    cpu = tiny_model(
        seed=5, layers=2, layernorm="standard", activation="gelu", dim=16, heads=4, ffn_dim=32
    )
    ids = torch.randint(0, 20, (2, 5), generator=generator("verify gpu"))
    e = cpu.embed(ids).detach()
    return cpu, copy.deepcopy(cpu).cuda(), e, ids


@pytest.mark.parametrize("method", V.METHODS)
def test_bounds_profile_and_graph_bounds_on_a_cuda_model(models, method):
    cpu, gpu, e, _ = models
    spec = V.LpBall(0.05, p=2, positions=[1, 3])
    y = cpu(e).argmax(-1)
    kw = dict(alpha_steps=3)
    _close(V.bounds(gpu, e.cuda(), spec, method, **kw)[0], V.bounds(cpu, e, spec, method, **kw)[0])
    m_gpu = V.margin_bounds(gpu, e.cuda(), spec, y.cuda(), method, **kw)
    m_cpu = V.margin_bounds(cpu, e, spec, y, method, **kw)
    for a, b in zip(m_gpu, m_cpu):
        _close(a, b)
    p_gpu = V.bound_profile(gpu, e.cuda(), spec, y.cuda(), method, **kw)
    p_cpu = V.bound_profile(cpu, e, spec, y, method, **kw)
    for name in ("lower", "upper", "margin_lower", "margin_upper"):
        _close(getattr(p_gpu, name), getattr(p_cpu, name))
    assert torch.equal(p_gpu.certified.cpu(), p_cpu.certified)
    g_gpu = V.graph_bounds(V.build_graph(gpu, 5), e.cuda(), spec, method, **kw)
    g_cpu = V.graph_bounds(V.build_graph(cpu, 5), e, spec, method, **kw)
    for a, b in zip(g_gpu, g_cpu):
        _close(a, b)


def test_radius_and_soundness_on_a_cuda_model(models):
    cpu, gpu, e, ids = models
    y = cpu(e).argmax(-1)
    r_cpu = V.certified_radius(cpu, e, y, [0, 2], method="crown", tol=1e-3)
    r_gpu = V.certified_radius(gpu, e.cuda(), y.cuda(), [0, 2], method="crown", tol=1e-3)
    assert r_gpu.device.type == "cuda"
    # bisection decisions can flip only where a margin is within rounding of zero
    torch.testing.assert_close(r_gpu.cpu(), r_cpu, rtol=0, atol=1e-3)
    spec = V.LpBall(0.1, p="inf", positions=[2])
    lo, hi = V.bounds(gpu, e.cuda(), spec, "crown")
    res = V.check_soundness(gpu, e.cuda(), spec, lo, hi, samples=64, pgd_steps=5, seed=1)
    assert res.ok and res.observed_min.device.type == "cuda"
    syn = V.Synonyms.nearest(cpu, ids, [1, 3], k=2)
    _close(V.bounds(gpu, e.cuda(), syn, "crown")[0], V.bounds(cpu, e, syn, "crown")[0])


def test_device_argument_and_environment(models, monkeypatch):
    cpu, _gpu, e, _ = models
    spec = V.LpBall(0.05, positions=[1])
    ref = V.bounds(cpu, e, spec, "crown")
    _close(V.bounds(cpu, e, spec, "crown", device="cuda")[0], ref[0])
    monkeypatch.setenv("TOOLKIT_DEVICE", "cuda")
    _close(V.bounds(cpu, e, spec, "crown")[0], ref[0])
    monkeypatch.setenv("TOOLKIT_DEVICE", "cpu")
    assert V.bounds(cpu, e.cuda(), spec, "crown")[0].device.type == "cpu"
    with pytest.raises(ValueError, match="GPU that does not exist"):
        V.bounds(cpu, e, spec, "crown", device=f"cuda:{torch.cuda.device_count()}")


@pytest.mark.parametrize("method", ["crown", "forward"])
def test_estimate_within_25_percent_of_the_cuda_peak(method):
    torch.manual_seed(0)
    m = V.TransformerClassifier(20, dim=32, heads=2, ffn_dim=64, max_len=64).double().cuda()
    T = 24
    e = m.embed(torch.randint(0, 20, (1, T), device="cuda")).detach()
    spec = V.LpBall(0.01, positions=[1, 2])
    limit = 2**32  # unchunked
    V.bounds(m, e, spec, method, memory_limit=limit)  # warm-up (cuBLAS handles)
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    V.bounds(m, e, spec, method, memory_limit=limit)
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated() - base
    est = V.estimate_memory(m, T, spec, method, memory_limit=limit)
    assert 0.75 * peak <= est <= 1.25 * peak, (est, peak)


def test_chunked_cuda_run_stays_under_the_limit():
    torch.manual_seed(0)
    m = V.TransformerClassifier(20, dim=32, heads=2, ffn_dim=64, max_len=64).double().cuda()
    e = m.embed(torch.randint(0, 20, (1, 24), device="cuda")).detach()
    spec = V.LpBall(0.01, positions=[1])
    V.bounds(m, e, spec, "crown")
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    for limit in (8 * 2**20, 32 * 2**20):
        torch.cuda.reset_peak_memory_stats()
        V.bounds(m, e, spec, "crown", memory_limit=limit)
        torch.cuda.synchronize()
        assert torch.cuda.max_memory_allocated() - base <= limit


def test_default_limit_reads_the_free_gpu_memory():
    free, _total = torch.cuda.mem_get_info()
    got = V.api.default_memory_limit("cuda")
    assert abs(got - V.api.MEMORY_FRACTION * free) <= 0.05 * free
