"""The LIF reference path against an independent hand-written loop, for every option."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from toolkit.snn import SURROGATES, IFNeuron, LIFNeuron, lif_multistep, surrogate_grad

from ._loop import lif_loop

OPTIONS = list(itertools.product(SURROGATES, (0.0, -0.2, None), (False, True), (False, True)))


def _inputs(seed, shape=(7, 3, 5)):
    g = torch.Generator().manual_seed(seed)
    # Currents around the threshold so that neurons fire at different steps.
    x = (torch.rand(shape, generator=g, dtype=torch.float64) * 2.4).requires_grad_()
    v0 = (torch.rand(shape[1:], generator=g, dtype=torch.float64) * 0.5).requires_grad_()
    w_s = torch.randn(shape, generator=g, dtype=torch.float64)
    w_v = torch.randn(shape, generator=g, dtype=torch.float64)
    return x, v0, w_s, w_v


@pytest.mark.parametrize(("surrogate", "v_reset", "detach", "decay"), OPTIONS)
def test_reference_matches_loop(surrogate, v_reset, detach, decay):
    x, v0, w_s, w_v = _inputs(hash((surrogate, v_reset, detach, decay)) % 2**31)
    tau, vth, alpha = 1.7, 0.9, SURROGATES[surrogate] * 0.8
    s, v = lif_multistep(
        x, tau, vth, v_reset, surrogate, alpha, detach, decay, v0, return_membrane=True
    )
    loss = (s * w_s).sum() + (v * w_v).sum()
    gx, gv0 = torch.autograd.grad(loss, (x, v0))
    s_ref, v_ref = lif_loop(x, tau, vth, v_reset, surrogate, alpha, detach, decay, v0)
    assert 0 < float(s_ref.detach().mean()) < 1, "the inputs must make some neurons fire"
    loss_ref = (s_ref * w_s).sum() + (v_ref * w_v).sum()
    gx_ref, gv0_ref = torch.autograd.grad(loss_ref, (x, v0))
    assert torch.equal(s, s_ref.detach())
    torch.testing.assert_close(v, v_ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(gx, gx_ref, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(gv0, gv0_ref, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("surrogate", SURROGATES)
def test_default_alpha_and_scalar_v_init(surrogate):
    x, _, w_s, _ = _inputs(3)
    s = lif_multistep(x, surrogate=surrogate, v_init=0.25)
    (gx,) = torch.autograd.grad((s * w_s).sum(), x)
    v0 = torch.full(x.shape[1:], 0.25, dtype=torch.float64)
    s_ref, _ = lif_loop(x, 2.0, 1.0, 0.0, surrogate, SURROGATES[surrogate], False, True, v0)
    (gx_ref,) = torch.autograd.grad((s_ref * w_s).sum(), x)
    assert torch.equal(s, s_ref.detach())
    torch.testing.assert_close(gx, gx_ref, rtol=1e-10, atol=1e-12)


def test_surrogate_formulas():
    u = torch.tensor([-2.0, -0.4, 0.0, 0.3, 0.6], dtype=torch.float64)
    torch.testing.assert_close(surrogate_grad(u, "atan"), 1 / (1 + (math.pi * u) ** 2))
    s = 1 / (1 + torch.exp(-4 * u))
    torch.testing.assert_close(surrogate_grad(u, "sigmoid"), 4 * s * (1 - s))
    assert surrogate_grad(u, "rectangular").tolist() == [0, 1, 1, 1, 0]
    torch.testing.assert_close(
        surrogate_grad(u, "triangle"), torch.tensor([0, 0.6, 1, 0.7, 0.4], dtype=torch.float64)
    )


def test_exact_zeros_for_compact_surrogates():
    x, _, w_s, _ = _inputs(5, (6, 50))
    x = (x.detach() * 3).requires_grad_()  # far from the threshold often
    for kind in ("rectangular", "triangle"):
        (gx,) = torch.autograd.grad((lif_multistep(x, surrogate=kind) * w_s).sum(), x)
        assert 0 < int((gx == 0).sum()) < gx.numel()
    (gx,) = torch.autograd.grad((lif_multistep(x, surrogate="atan") * w_s).sum(), x)
    assert int((gx == 0).sum()) == 0


def test_module_forms_and_if_neuron():
    x, _, _, _ = _inputs(7)
    lif = LIFNeuron(tau=3.0, v_reset=None, surrogate="sigmoid", record=True)
    s = lif(x)
    s_ref, v_ref = lif_loop(x, 3.0, 1.0, None, "sigmoid", 4.0, False, True, torch.zeros(3, 5))
    assert torch.equal(s, s_ref.detach()) and torch.allclose(lif.membrane, v_ref.detach())
    # IF: no leak, the input is integrated as is; compare with a loop written out directly.
    i = IFNeuron()(x.detach())
    v = torch.zeros(3, 5, dtype=torch.float64)
    for t in range(x.shape[0]):
        h = v + x[t].detach()
        assert torch.equal(i[t], (h >= 1).double())
        v = torch.where(h >= 1, 0.0, h)


def test_half_is_integrated_in_float32():
    x, _, _, _ = _inputs(11, (9, 200))
    xh = x.detach().half()
    s, v = lif_multistep(xh, v_reset=None, return_membrane=True)
    s32, v32 = lif_multistep(xh.float(), v_reset=None, return_membrane=True)
    assert s.dtype == torch.float16 and torch.equal(s.float(), s32)
    torch.testing.assert_close(v.float(), v32, rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (dict(tau=0.5), ValueError, "tau must be >= 1"),
        (dict(surrogate="relu"), ValueError, "surrogate must be one of"),
        (dict(surrogate=3), TypeError, "surrogate must be a str"),
        (dict(alpha=0.0), ValueError, "alpha must be > 0"),
        (dict(v_reset=1.5), ValueError, "v_reset must be below v_threshold"),
        (dict(detach_reset=1), TypeError, "detach_reset must be a bool"),
        (dict(decay_input="yes"), TypeError, "decay_input must be a bool"),
        (dict(v_init=torch.zeros(4)), ValueError, "v_init must broadcast"),
        (dict(v_init="0"), TypeError, "v_init must be a real number"),
    ],
)
def test_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        lif_multistep(torch.zeros(3, 2, 5), **kwargs)


def test_input_errors():
    with pytest.raises(TypeError, match="x_seq must have dtype"):
        lif_multistep(torch.zeros(3, 2, dtype=torch.int64))
    with pytest.raises(ValueError, match="x_seq must have at least 1 dimensions"):
        lif_multistep(torch.tensor(1.0))
    with pytest.raises(ValueError, match="x_seq must not be empty"):
        lif_multistep(torch.zeros(0, 3))
    with pytest.raises(TypeError, match="x_seq must be a torch.Tensor"):
        lif_multistep([[1.0]])
