"""Random-network sampling vs closed forms (Marchenko-Pastur, Fuss-Catalan, Gaussian integrals)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from numpy.polynomial.hermite_e import hermegauss
from scipy import integrate, stats
from scipy.special import ndtr
from torch import nn

from toolkit.isometry import (
    NetworkDesign,
    ResidualBlock,
    build_network,
    design_block,
    profile,
    sample_block_moments,
    sample_input,
    sample_spectrum,
)

# ---------------------------------------------------------------- references


def gauss_mean(fn, var: float) -> float:
    """E[fn(z)], z ~ N(0, var), by Gauss-Hermite quadrature (independent of torch)."""
    nodes, weights = hermegauss(120)
    return float(np.sum(weights * fn(np.sqrt(var) * nodes)) / np.sqrt(2 * np.pi))


def _gelu_d(z):
    return ndtr(z) + z * np.exp(-z * z / 2) / np.sqrt(2 * np.pi)


SELU_A, SELU_L = 1.6732632423543772, 1.0507009873554805
DERIVATIVES = {  # f'(z) in numpy
    "relu": lambda z: (z > 0).astype(float),
    "leaky_relu": lambda z: np.where(z > 0, 1.0, 0.2),
    "tanh": lambda z: 1 - np.tanh(z) ** 2,
    "gelu": _gelu_d,
    "selu": lambda z: np.where(z > 0, SELU_L, SELU_L * SELU_A * np.exp(np.minimum(z, 0))),
    "linear": lambda z: np.ones_like(z),
}


def block_reference(activation: str, gain: float, q: float) -> tuple[float, float]:
    """Linear(gain) -> f block with freeness: m1 = g^2 E f'^2, var = g^4 E f'^4, z ~ N(0, g^2 q)."""
    d = DERIVATIVES[activation]
    e2 = gauss_mean(lambda z: d(z) ** 2, gain**2 * q)
    e4 = gauss_mean(lambda z: d(z) ** 4, gain**2 * q)
    return gain**2 * e2, gain**4 * e4


def mp_density(t: float) -> float:
    """Marchenko-Pastur density, ratio 1, unit scale: sqrt(t (4 - t)) / (2 pi t) on [0, 4]."""
    return math.sqrt(max(t * (4 - t), 0.0)) / (2 * math.pi * t)


def mp_cdf(x: np.ndarray) -> np.ndarray:
    """Its CDF: with t = 4 sin^2(theta), F = (2 / pi) (theta + sin(theta) cos(theta))."""
    theta = np.arcsin(np.sqrt(np.clip(x, 0, 4)) / 2)
    return 2 / np.pi * (theta + np.sin(theta) * np.cos(theta))


def test_mp_cdf_closed_form() -> None:
    for v in (0.01, 0.5, 1.0, 2.5, 3.9, 4.0):
        assert mp_cdf(np.array([v]))[0] == pytest.approx(
            integrate.quad(mp_density, 0, v)[0], abs=1e-8
        )


def within(value, reference, stderr, slack=0.0, dof: int | None = None) -> bool:
    """|value - reference| <= t * stderr + slack for every entry.

    ``t`` is the Student-t quantile for ``dof`` degrees of freedom (normal if ``None``) at a
    family-wise false-alarm rate of 1e-3 over the entries (Bonferroni), and at least 4.
    """
    value = np.atleast_1d(np.asarray(value, dtype=float))
    q = 1 - 0.0005 / value.size
    t = stats.norm.ppf(q) if dof is None else stats.t.ppf(q, dof)
    return bool(np.all(np.abs(value - reference) <= max(t, 4.0) * np.asarray(stderr) + slack))


# ---------------------------------------------------------------- design and networks


@pytest.mark.parametrize(
    ("field", "value", "error"),
    [
        ("architecture", "rnn", ValueError),
        ("width", 0, ValueError),
        ("depth", 2.0, TypeError),
        ("init", "xavier", ValueError),
        ("gain", -1.0, ValueError),
        ("gain", float("nan"), ValueError),  # right kind, wrong value
        ("activation", "swish", ValueError),
        ("normalization", "layernorm", ValueError),
        ("residual_scale", "1", TypeError),
    ],
)
def test_design_validation(field: str, value, error: type) -> None:
    with pytest.raises(error, match=field):
        NetworkDesign(**{field: value})


def test_build_network_structure_and_weights() -> None:
    design = NetworkDesign("mlp", width=256, depth=3, gain=1.5, activation="tanh")
    net = build_network(design, seed=0)
    assert [n for n, _ in net.named_children()] == ["block0", "block1", "block2"]
    lin = net.block1[0]
    assert isinstance(lin, nn.Linear) and lin.bias is None and lin.weight.dtype == torch.float64
    assert isinstance(net.block1[1], nn.Tanh)
    # entries N(0, gain^2 / fan_in): relative error of the variance ~ sqrt(2 / 65536)
    assert float(lin.weight.detach().var()) == pytest.approx(1.5**2 / 256, rel=0.03)
    same = build_network(design, seed=0)
    other = build_network(design, seed=1)
    assert torch.equal(lin.weight, same.block1[0].weight)
    assert not torch.equal(lin.weight, other.block1[0].weight)
    # width / depth overrides and mappings
    assert len(build_network({"width": 8, "depth": 5}, seed=0)) == 5
    assert build_network(design, width=16, depth=1, seed=0).block0[0].weight.shape == (16, 16)


def test_build_network_orthogonal_cnn_and_residual() -> None:
    cnn = build_network(NetworkDesign("cnn", width=6, depth=1, init="orthogonal", gain=2.0), seed=0)
    w = cnn.block0[0].weight.detach()
    centre = w[:, :, 1, 1]
    assert torch.allclose(centre @ centre.T, 4 * torch.eye(6, dtype=torch.float64), atol=1e-12)
    assert float(w.abs().sum() - centre.abs().sum()) == 0.0  # delta-orthogonal
    res = build_network(NetworkDesign("residual", width=8, depth=2, residual_scale=0.3), seed=0)
    assert isinstance(res.block0, ResidualBlock) and res.block0.scale == 0.3
    x = sample_input(NetworkDesign("residual", width=8), 3, seed=0)
    assert torch.allclose(res.block0(x), x + 0.3 * res.block0.branch(x))
    bn = build_network(NetworkDesign(width=8, depth=1, normalization="batchnorm"), seed=0)
    assert isinstance(bn.block0[1], nn.BatchNorm1d) and bn.training


# ---------------------------------------------------------------- spectra


def test_spectrum_marchenko_pastur() -> None:
    n, s, gain = 256, 6, 0.8
    eig = sample_spectrum(
        NetworkDesign(width=n, depth=1, activation="linear", gain=gain), samples=s, seed=0
    )
    assert eig.shape == (s, n) and np.all(eig >= 0)
    eig = eig / gain**2
    # moments: Catalan numbers 1, 2, 5 (finite-n expectations 1, 2 + 1/n, 5 + O(1/n))
    for k, ref, slack in ((1, 1.0, 0.0), (2, 2 + 1 / n, 0.0), (3, 5.0, 0.1)):
        per_net = (eig**k).mean(1)
        se = per_net.std(ddof=1) / math.sqrt(s)
        assert within(per_net.mean(), ref, se, slack, dof=s - 1), (k, per_net)
    # distribution: Kolmogorov-Smirnov distance to the MP law
    pooled = np.sort(eig.ravel())
    cdf = mp_cdf(pooled)
    emp = np.arange(1, pooled.size + 1) / pooled.size
    assert np.max(np.abs(cdf - emp)) < 0.03


def test_spectrum_product_of_gaussians_is_fuss_catalan() -> None:
    """Depth-L linear Gaussian network: m2 = L + 1, m3 = binom(3L + 3, 3) / (3L + 1)."""
    n, depth, s = 192, 3, 6
    eig = sample_spectrum(
        NetworkDesign(width=n, depth=depth, activation="linear"), samples=s, seed=1
    )
    m2, m3 = (eig**2).mean(1), (eig**3).mean(1)
    se2, se3 = m2.std(ddof=1) / math.sqrt(s), m3.std(ddof=1) / math.sqrt(s)
    assert within(m2.mean(), depth + 1, se2, slack=0.05 * (depth + 1), dof=s - 1)
    assert within(
        m3.mean(), math.comb(3 * depth + 3, 3) / (3 * depth + 1), se3, slack=2.2, dof=s - 1
    )


def test_spectrum_orthogonal_is_flat() -> None:
    for arch in ("mlp", "cnn"):
        design = NetworkDesign(
            arch, width=16, depth=3, init="orthogonal", gain=1.1, activation="linear", image_size=3
        )
        eig = sample_spectrum(design, samples=2, seed=0)
        assert np.allclose(eig, 1.1**6, rtol=1e-10)


def test_spectrum_batchnorm_is_diagonal_block_and_scale_invariant() -> None:
    design = NetworkDesign(width=12, depth=2, normalization="batchnorm", activation="tanh")
    eig = sample_spectrum(design, samples=1, inputs=2, batch=6, seed=3)
    assert eig.shape == (2, 12)
    gen = torch.Generator().manual_seed(3)  # same draw order: network, then inputs
    net = build_network(design, generator=gen)
    x = sample_input(design, 6, generator=gen)
    full = torch.autograd.functional.jacobian(net, x)  # plain autograd reference [6, 12, 6, 12]
    for b in range(2):
        jac = full[b, :, b, :]
        ref = np.sort(np.linalg.eigvalsh((jac @ jac.T).detach().numpy()))
        assert np.allclose(eig[b], np.clip(ref, 0, None), atol=1e-10)
    # batch norm removes the weight scale exactly
    scaled = sample_spectrum(
        NetworkDesign(width=12, depth=2, normalization="batchnorm", activation="tanh", gain=3.0),
        samples=1,
        inputs=2,
        batch=6,
        seed=3,
    )
    assert np.allclose(eig, scaled, rtol=1e-3, atol=1e-9)  # up to eps = 1e-5


# ---------------------------------------------------------------- per-block moments


@pytest.mark.parametrize(
    "depth",
    [1, 4, pytest.param(8, marks=pytest.mark.slow)],  # depth 8: ~6 s
)
def test_relu_kaiming_block_moments(depth: int) -> None:
    """ReLU + Kaiming Gaussian: every block m1 = 1, var = 2; the network m1 = 1, var = 2L."""
    samples = 12
    res = sample_block_moments(
        NetworkDesign(width=512, depth=depth, gain=math.sqrt(2)),
        samples=samples,
        batch=8,
        probes=8,
        seed=depth,
    )
    assert res.m1.shape == (depth,) and res.samples == samples
    dof = samples - 1
    assert within(res.m1, 1.0, res.m1_stderr, slack=0.01, dof=dof)
    assert within(res.variance, 2.0, res.variance_stderr, slack=0.04, dof=dof)
    assert within(res.total_m1, 1.0, res.total_m1_stderr, slack=0.01, dof=dof)
    layers = np.arange(1, depth + 1)
    assert within(
        res.total_variance,
        2.0 * layers,
        res.total_variance_stderr,
        slack=0.05 * 2 * layers,
        dof=dof,
    )
    assert np.all(res.m1_stderr > 0) and np.all(res.m1_stderr < 0.1)


@pytest.mark.parametrize("activation", ["leaky_relu", "tanh", "gelu", "selu", "linear"])
def test_activation_block_moments_match_gaussian_integrals(activation: str) -> None:
    gain = {"tanh": 1.3, "selu": 1.0, "leaky_relu": 1.2}.get(activation, 1.0)
    design = NetworkDesign(width=512, depth=3, gain=gain, activation=activation, slope=0.2)
    res = sample_block_moments(design, samples=6, batch=8, probes=8, cumulative=False, seed=0)
    assert res.total_m1 is None
    for l in range(3):
        m1, var = block_reference(activation, gain, float(res.q[l]))
        assert within(res.m1[l], m1, res.m1_stderr[l], slack=0.02 * m1, dof=5), (l, res.m1[l], m1)
        assert within(
            res.variance[l], var, res.variance_stderr[l], slack=0.04 * var + 1e-9, dof=5
        ), (l, res.variance[l], var)
    assert res.q[0] == pytest.approx(1.0, abs=0.05)  # standard normal input


def test_cnn_gaussian_blocks_circular_padding() -> None:
    """Circular 3x3 conv, taps N(0, g^2 / (9 c)): m1 = ||W||^2 / c_out, E m1 = g^2 exactly,
    m2 = g^4 (2 + O(1/c)) (Marchenko-Pastur per frequency); zero padding would lose ~20%."""
    g, c = 1.3, 16
    design = NetworkDesign("cnn", width=c, depth=2, gain=g, activation="linear", image_size=6)
    res = sample_block_moments(design, samples=6, batch=2, probes=8, cumulative=False, seed=0)
    assert within(res.m1, g**2, res.m1_stderr, slack=0.0, dof=5)
    assert within(res.m2, 2 * g**4, res.m2_stderr, slack=g**4 / c, dof=5)


def test_orthogonal_linear_blocks_have_zero_variance() -> None:
    design = NetworkDesign(width=128, depth=3, init="orthogonal", gain=0.9, activation="linear")
    res = sample_block_moments(design, samples=2, batch=4, probes=4, seed=0)
    assert np.allclose(res.m1, 0.81, rtol=1e-10) and np.allclose(res.variance, 0, atol=1e-10)
    assert np.allclose(res.total_m1, 0.81 ** np.arange(1, 4), rtol=1e-10)


def test_residual_block_moments() -> None:
    """y = x + a F(x), F Kaiming ReLU: m1 = 1 + a^2, var = 2 a^2 m1_F + a^4 var_F (R-diagonal F)."""
    a = 0.5
    design = NetworkDesign("residual", width=512, depth=2, gain=math.sqrt(2), residual_scale=a)
    res = sample_block_moments(design, samples=6, batch=8, probes=8, cumulative=False, seed=0)
    assert within(res.m1, 1 + a**2, res.m1_stderr, slack=0.01, dof=5)
    assert within(res.variance, 2 * a**2 + 2 * a**4, res.variance_stderr, slack=0.02, dof=5)


@pytest.mark.parametrize(
    "design",
    [
        NetworkDesign(width=512, depth=4, gain=1.3, activation="tanh"),
        NetworkDesign(
            "residual", width=512, depth=3, gain=1.2, activation="tanh", residual_scale=0.7
        ),
    ],
    ids=["tanh", "residual_tanh"],
)
def test_sampled_blocks_match_the_analytic_design(design: NetworkDesign) -> None:
    """Integration with the engine: profile(designs.design_block(d)) vs the sampled networks.

    Odd activations only: with GELU/ReLU branches the residual stream accumulates a mean
    and E[x F(x)] != 0, which mean-field q propagation (q + s^2 q_F) leaves out.
    """
    pred = profile(design_block(design), q=1.0)
    res = sample_block_moments(design, samples=6, batch=8, probes=8, seed=0)
    assert np.allclose(res.q, pred.q_in, rtol=0.03)  # mean-field q propagation
    assert within(res.m1, pred.m1, res.m1_stderr, slack=0.02 * pred.m1, dof=5)
    assert within(
        res.variance, pred.variance, res.variance_stderr, slack=0.05 * pred.variance, dof=5
    )
    assert within(
        res.total_m1,
        pred.cumulative_m1,
        res.total_m1_stderr,
        slack=0.03 * pred.cumulative_m1,
        dof=5,
    )
    assert within(
        res.total_variance,
        pred.cumulative_variance,
        res.total_variance_stderr,
        slack=0.08 * pred.cumulative_variance,
        dof=5,
    )


def test_progress_and_errors() -> None:
    calls = []
    design = NetworkDesign(width=8, depth=2)
    sample_block_moments(
        design,
        samples=3,
        batch=2,
        probes=2,
        seed=0,
        progress=lambda done, total: calls.append((done, total)),
    )
    assert calls == [(1, 3), (2, 3), (3, 3)]
    sample_spectrum(design, samples=2, seed=0, progress=True)  # tqdm bar or silent fallback
    with pytest.raises(ValueError, match="samples"):
        sample_spectrum(design, samples=0)
    with pytest.raises(ValueError, match="batch"):
        sample_block_moments(NetworkDesign(width=8, normalization="batchnorm"), batch=1)
    with pytest.raises(TypeError, match="design"):
        sample_spectrum("mlp")
    with pytest.raises(TypeError, match="probes"):
        sample_block_moments(design, probes=None)


def test_seed_reproducible_single_network_uses_probe_stderr() -> None:
    design = NetworkDesign(width=32, depth=2, activation="tanh")
    a = sample_block_moments(design, samples=1, batch=4, probes=4, seed=5)
    b = sample_block_moments(design, samples=1, batch=4, probes=4, seed=5)
    assert np.array_equal(a.m1, b.m1) and np.all(np.isfinite(a.m1_stderr))
    assert np.array_equal(
        sample_spectrum(design, samples=1, seed=2), sample_spectrum(design, samples=1, seed=2)
    )


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device for torch")
def test_cuda_device_matches_cpu() -> None:
    design = NetworkDesign(width=64, depth=3, gain=1.2, activation="tanh")
    cpu = sample_block_moments(design, samples=2, batch=4, probes=4, seed=0)
    gpu = sample_block_moments(design, samples=2, batch=4, probes=4, seed=0, device="cuda")
    assert np.allclose(gpu.m1, cpu.m1, rtol=1e-9) and np.allclose(
        gpu.total_variance, cpu.total_variance, rtol=1e-9
    )
    eig_cpu = sample_spectrum(design, samples=1, seed=0)
    eig_gpu = sample_spectrum(design, samples=1, seed=0, device="cuda")
    assert np.allclose(eig_cpu, eig_gpu, rtol=1e-8, atol=1e-12)
