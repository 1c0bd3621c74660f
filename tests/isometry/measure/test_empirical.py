"""Hutchinson estimates of Jacobian moments against exact Jacobians (torch.func.jacrev)."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.func import jacrev, vmap

from toolkit.isometry import EmpiricalMoments, Moments, empirical

D = torch.float64


def exact_moments(module: nn.Module, x: torch.Tensor) -> tuple[float, float]:
    """Per-sample exact m1, m2 (normalized by the output dimension), batch-averaged."""
    x = x.to(D)
    jac = vmap(jacrev(lambda xb: module(xb[None])[0]))(x)  # [B, *out, *in]
    b = x.shape[0]
    out_dim = jac[0].numel() // x[0].numel()
    jac = jac.detach().reshape(b, out_dim, -1)
    a = jac @ jac.transpose(1, 2)
    m1 = a.diagonal(dim1=1, dim2=2).sum(-1) / out_dim
    m2 = (a * a).sum((1, 2)) / out_dim  # tr(A^2) for symmetric A
    return float(m1.mean()), float(m2.mean())


def _seeded(module: nn.Module, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return module.to(D)


MODULES = {  # name: (factory, input shape [B, ...])
    "mlp_tanh_gelu": (
        lambda: nn.Sequential(nn.Linear(10, 7), nn.Tanh(), nn.Linear(7, 9), nn.GELU()),
        (4, 10),
    ),
    "rectangular_wide_out": (lambda: nn.Linear(5, 12), (4, 5)),
    "rectangular_narrow_out": (lambda: nn.Linear(12, 3), (4, 12)),
    "conv_relu": (
        lambda: nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.ReLU(), nn.Flatten()),
        (4, 2, 5, 5),
    ),
    "conv_image_out": (lambda: nn.Conv2d(2, 3, 3, padding=1), (3, 2, 4, 4)),
    "layernorm": (lambda: nn.Sequential(nn.Linear(8, 8), nn.LayerNorm(8)), (4, 8)),
    "softmax": (lambda: nn.Softmax(dim=-1), (4, 8)),
    "leaky_selu": (
        lambda: nn.Sequential(nn.Linear(6, 6), nn.LeakyReLU(0.2), nn.Linear(6, 6), nn.SELU()),
        (4, 6),
    ),
}


@pytest.mark.parametrize("name", sorted(MODULES))
@pytest.mark.parametrize("distribution", ["rademacher", "gaussian"])
def test_matches_exact_jacobian(name: str, distribution: str) -> None:
    factory, shape = MODULES[name]
    module = _seeded(factory(), 0)
    x = torch.randn(shape, generator=torch.Generator().manual_seed(1), dtype=D)
    m1, m2 = exact_moments(module, x)
    est = empirical(module, x, probes=300, seed=2, distribution=distribution)
    assert isinstance(est, EmpiricalMoments)
    assert est.batch == shape[0] and est.probes == 300
    assert est.m1_stderr > 0 and est.m2_stderr > 0
    assert abs(est.m1 - m1) < 4 * est.m1_stderr, (est.m1, m1, est.m1_stderr)
    assert abs(est.m2 - m2) < 4 * est.m2_stderr, (est.m2, m2, est.m2_stderr)
    assert est.variance == pytest.approx(est.m2 - est.m1**2)
    assert est.normalized_variance == pytest.approx(est.m2 / est.m1**2 - 1)


def test_normalized_by_output_dimension() -> None:
    """For a linear map J = W, m1 = ||W||_F^2 / out and m2 = ||W W^T||_F^2 / out."""
    lin = _seeded(nn.Linear(12, 3, bias=False), 3)
    w = lin.weight.detach()
    est = empirical(lin, torch.randn(5, 12, dtype=D), probes=400, seed=0)
    assert est.out_dim == 3 and est.in_dim == 12
    ref1 = float((w**2).sum() / 3)
    ref2 = float(((w @ w.T) ** 2).sum() / 3)
    assert abs(est.m1 - ref1) < 4 * est.m1_stderr
    assert abs(est.m2 - ref2) < 4 * est.m2_stderr
    # normalizing by the input dimension would be 4x smaller: the test can tell
    assert abs(est.m1 - ref1 * 3 / 12) > 10 * est.m1_stderr


class _Scaled(nn.Module):
    def __init__(self, inner: nn.Module, c: float) -> None:
        super().__init__()
        self.inner, self.c = inner, c

    def forward(self, x):
        return self.c * self.inner(x)


@settings(max_examples=25, deadline=None)
@given(
    n_in=st.integers(1, 12),
    n_out=st.integers(1, 12),
    batch=st.integers(1, 5),
    c=st.floats(0.1, 10.0),
    seed=st.integers(0, 2**31 - 1),
)
def test_scaling_and_shapes_property(n_in: int, n_out: int, batch: int, c: float, seed: int):
    """J -> cJ multiplies m1 by c^2 and m2 by c^4 (same probes); dims are per sample."""
    gen = torch.Generator().manual_seed(seed)
    lin = nn.Linear(n_in, n_out, dtype=D)
    with torch.no_grad():
        lin.weight.normal_(generator=gen)
    x = torch.randn(batch, n_in, generator=gen, dtype=D)
    base = empirical(lin, x, probes=3, seed=seed)
    scaled = empirical(_Scaled(lin, c), x, probes=3, seed=seed)
    assert (base.in_dim, base.out_dim, base.batch) == (n_in, n_out, batch)
    assert base.m1_samples.shape == (3, batch)
    assert scaled.m1 == pytest.approx(c**2 * base.m1, rel=1e-10)
    assert scaled.m2 == pytest.approx(c**4 * base.m2, rel=1e-10)
    assert scaled.normalized_variance == pytest.approx(base.normalized_variance, rel=1e-8, abs=1e-9)


def test_orthogonal_is_exact_with_rademacher_probes() -> None:
    lin = nn.Linear(64, 64, bias=False, dtype=D)
    nn.init.orthogonal_(lin.weight, gain=1.7, generator=torch.Generator().manual_seed(0))
    est = empirical(lin, torch.randn(3, 64, dtype=D), probes=5, seed=0)
    assert est.m1 == pytest.approx(1.7**2, rel=1e-12)
    assert est.m2 == pytest.approx(1.7**4, rel=1e-12)
    assert abs(est.variance) < 1e-10 and est.m1_stderr < 1e-10


def test_stderr_is_calibrated() -> None:
    """Across independent seeds the reported stderr matches the actual spread of the estimate,
    and the estimates average to the exact moments (unbiased)."""
    module = _seeded(nn.Sequential(nn.Linear(6, 6), nn.Tanh(), nn.Linear(6, 4)), 5)
    x = torch.randn(3, 6, generator=torch.Generator().manual_seed(6), dtype=D)
    exact = exact_moments(module, x)
    runs = [empirical(module, x, probes=10, seed=seed) for seed in range(200)]
    for k, ref in zip(("m1", "m2"), exact):
        est = np.array([getattr(r, k) for r in runs])
        se = np.array([getattr(r, f"{k}_stderr") for r in runs])
        spread = est.std(ddof=1)
        assert abs(est.mean() - ref) < 4 * spread / np.sqrt(len(runs))  # unbiased
        assert 0.8 < spread / np.sqrt(np.mean(se**2)) < 1.25  # calibrated


def test_single_probe_uses_sample_spread() -> None:
    lin = _seeded(nn.Linear(8, 8), 0)
    est = empirical(lin, torch.randn(6, 8, dtype=D), probes=1, seed=0)
    assert math.isfinite(est.m1_stderr) and est.m1_stderr > 0
    assert np.allclose(est.m1_samples.mean(), est.m1)
    one = empirical(lin, torch.randn(1, 8, dtype=D), probes=1, seed=0)
    assert math.isnan(one.m1_stderr)


def test_train_mode_batchnorm_state_untouched_and_batch_jacobian() -> None:
    """Train-mode BN: running stats unchanged; estimate = batch-Jacobian moments per sample."""
    bn = nn.BatchNorm1d(5, dtype=D).train()
    x = torch.randn(4, 5, dtype=D) * 3 + 1
    before = [b.clone() for b in bn.buffers()]
    est = empirical(bn, x, probes=400, seed=0)
    for b0, b1 in zip(before, bn.buffers(), strict=True):
        assert torch.equal(b0, b1)
    ref = copy.deepcopy(bn)  # plain autograd: the full batch Jacobian [B*5, B*5]
    jac = torch.autograd.functional.jacobian(lambda z: ref(z).reshape(-1), x).reshape(20, 20)
    a = jac @ jac.T
    m1 = float(a.trace() / 20)
    assert abs(est.m1 - m1) < 4 * est.m1_stderr
    # batch statistics: per feature J = (I - 11^T/B - yy^T/B)/sigma, rank B - 2
    sigma2 = x.var(0, unbiased=False) + bn.eps
    assert m1 == pytest.approx(float((1 / sigma2).mean()) * (4 - 2) / 4, rel=1e-6)


def test_eval_mode_batchnorm_is_diagonal() -> None:
    bn = nn.BatchNorm1d(5, dtype=D).eval()
    with torch.no_grad():
        bn.running_var.copy_(torch.tensor([0.5, 1.0, 2.0, 4.0, 8.0]))
    est = empirical(bn, torch.randn(3, 5, dtype=D), probes=3, seed=0)
    d = 1 / (bn.running_var + bn.eps)
    assert est.m1 == pytest.approx(float(d.mean()), rel=1e-12)
    assert est.m2 == pytest.approx(float((d**2).mean()), rel=1e-12)


def test_dropout_mask_is_consistent_within_one_call() -> None:
    """One forward pass: the same mask in J^T v and J J^T v, so m2 / m1 = 1/(1-p)^2 exactly."""
    drop = nn.Dropout(0.5).train()
    est = empirical(drop, torch.randn(4, 50, dtype=D), probes=3, seed=0)
    assert est.m2 / est.m1 == pytest.approx(4.0, rel=1e-12)


def test_seed_and_generator_reproducible() -> None:
    module = _seeded(nn.Sequential(nn.Linear(5, 5), nn.Tanh()), 0)
    x = torch.randn(2, 5, dtype=D)
    a = empirical(module, x, probes=4, seed=11)
    b = empirical(module, x, probes=4, generator=torch.Generator().manual_seed(11))
    c = empirical(module, x, probes=4, seed=12)
    assert a.m1 == b.m1 and a.m2 == b.m2
    assert a.m1 != c.m1


def test_dtype_none_keeps_float32() -> None:
    lin = nn.Linear(16, 16)
    x = torch.randn(4, 16)
    est32 = empirical(lin, x, probes=50, seed=0, dtype=None)
    est64 = empirical(lin, x, probes=50, seed=0)
    assert est32.m1 == pytest.approx(est64.m1, rel=1e-4)
    assert lin.weight.dtype == torch.float32  # module not converted


def test_to_moments() -> None:
    est = empirical(_seeded(nn.Linear(8, 8), 0), torch.randn(3, 8, dtype=D), probes=10, seed=0)
    m = est.to_moments()
    assert isinstance(m, Moments)
    assert m.m1 == pytest.approx(est.m1) and m.m2 == pytest.approx(est.m2)
    assert m.variance == pytest.approx(est.variance)


class _Tuple(nn.Module):
    def forward(self, x):
        return x, x


class _Flatten(nn.Module):
    def forward(self, x):
        return x.reshape(-1)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"module": lambda x: x}, TypeError, "module"),
        ({"x": [[1.0, 2.0]]}, TypeError, "x"),
        ({"x": torch.ones(2, 4, dtype=torch.long)}, TypeError, "x"),
        ({"x": torch.ones(4)}, ValueError, r"x must have at least 2 dimensions"),
        ({"x": torch.ones(2, 5)}, ValueError, r"x of shape \(2, 5\)"),
        ({"probes": 0}, ValueError, "probes"),
        ({"probes": 2.5}, TypeError, "probes"),
        ({"probes": True}, TypeError, "probes"),
        ({"distribution": "cauchy"}, ValueError, "distribution"),
        ({"seed": 1, "generator": torch.Generator()}, ValueError, "seed or generator"),
        ({"seed": "1"}, TypeError, "seed"),
        ({"dtype": torch.int32}, TypeError, "dtype"),
        ({"module": _Tuple()}, TypeError, "single tensor"),
        ({"module": _Flatten()}, ValueError, "output"),
    ],
)
def test_bad_arguments(kwargs: dict, error: type, match: str) -> None:
    args = {"module": nn.Linear(4, 3), "x": torch.ones(2, 4), "probes": 2}
    args.update(kwargs)
    with pytest.raises(error, match=match):
        empirical(**args)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device for torch")
def test_cuda_device_matches_cpu() -> None:
    """Probes are drawn on the CPU generator, so a seed gives the same estimate on every device."""
    module = _seeded(MODULES["mlp_tanh_gelu"][0](), 0)
    x = torch.randn(4, 10, generator=torch.Generator().manual_seed(1), dtype=D)
    cpu = empirical(module, x, probes=16, seed=0)
    gpu = empirical(module.cuda(), x.cuda(), probes=16, seed=0)
    assert gpu.m1 == pytest.approx(cpu.m1, rel=1e-9) and gpu.m2 == pytest.approx(cpu.m2, rel=1e-9)
