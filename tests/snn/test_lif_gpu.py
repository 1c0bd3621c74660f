"""The fused LIF kernels against the torch reference, forward and gradients, with poisoned
outputs on fresh random inputs.

The cases are an all-pairs selection (``_pairwise``) over dtype, sequence length (the register
variants 8, 16, 32 and the scratch variant), surrogate, reset, detach and decay: each pair of
values meets in some case, in about 20 cases instead of the 480 of the full product.  Each
instance compiles on its first launch (1-4 s each with nvcc for sm_90, 15 in all); run
with ``scripts/gpu-tests tests/snn``."""

from __future__ import annotations

import pytest
import torch

from toolkit.snn import SURROGATES, lif_multistep
from toolkit.snn._lif_cuda import lif_backward_kernel, lif_forward_kernel
from toolkit.snn.neuron import LIFParams

from ._pairwise import all_pairs

pytestmark = pytest.mark.gpu

DTYPES = (torch.float32, torch.float16, torch.float64)
STEPS = (1, 5, 17, 32, 40)  # register variants 8, 8, 16, 32 and the scratch variant
FACTORS = (DTYPES, STEPS, SURROGATES, (0.0, None), (False, True), (False, True))
CASES = all_pairs(FACTORS)


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double().cpu(), b.double().cpu()
    return float((a - b).norm() / b.norm().clamp_min(1e-30))


@pytest.mark.parametrize(("dtype", "steps", "surrogate", "v_reset", "detach", "decay"), CASES)
def test_kernels_match_reference(dtype, steps, surrogate, v_reset, detach, decay):
    seed = hash((str(dtype), steps, surrogate, v_reset, detach, decay)) % 2**31
    g = torch.Generator().manual_seed(seed)
    shape = (steps, 3, 67)
    x = (torch.rand(shape, generator=g) * 2.5 - 0.3).to(dtype)
    v0 = (torch.rand(shape[1:], generator=g) * 0.6).to(dtype)
    grad_s = torch.randn(shape, generator=g).to(dtype)
    grad_v = torch.randn(shape, generator=g).to(dtype)
    p = LIFParams.make(1.8, 0.9, v_reset, surrogate, None, detach, decay)

    # Reference on the CPU (half inputs are integrated in float32 there too).
    xr = x.clone().requires_grad_()
    v0r = v0.clone().requires_grad_()
    s_ref, v_ref = lif_multistep(
        xr,
        1.8,
        0.9,
        v_reset,
        surrogate,
        None,
        detach,
        decay,
        v0r,
        return_membrane=True,
        backend="cpu",
    )
    gx_ref, gv0_ref = torch.autograd.grad([s_ref, v_ref], [xr, v0r], [grad_s, grad_v])

    n = 3 * 67
    xc, v0c = x.cuda().view(steps, n), v0.cuda().view(n)
    spikes = torch.full((steps, n), float("nan"), dtype=dtype, device="cuda")
    v_seq = torch.full((steps, n), float("nan"), dtype=dtype, device="cuda")
    bits = torch.full(((steps + 7) // 8, n), 0xA5, dtype=torch.uint8, device="cuda")
    lif_forward_kernel(xc, v0c, 0.0, p, spikes, bits, v_seq)
    torch.cuda.synchronize()
    assert torch.equal(spikes.cpu().view(shape), s_ref.detach())
    assert _rel(v_seq.view(shape), v_ref.detach()) < (2e-3 if dtype == torch.float16 else 1e-6)
    expected_bits = torch.zeros(((steps + 7) // 8, n), dtype=torch.int64)
    for t in range(steps):
        expected_bits[t // 8] |= s_ref.detach()[t].reshape(n).long() << (t % 8)
    assert torch.equal(bits.cpu().long(), expected_bits)

    grad_x = torch.full((steps, n), float("nan"), dtype=dtype, device="cuda")
    grad_v0 = torch.full((n,), float("nan"), dtype=dtype, device="cuda")
    gs, gv = grad_s.cuda().view(steps, n), grad_v.cuda().view(steps, n)
    lif_backward_kernel(xc, v0c, 0.0, p, bits, gs, gv, grad_x, grad_v0)
    torch.cuda.synchronize()
    tol = 3e-3 if dtype == torch.float16 else 1e-5
    assert bool(torch.isfinite(grad_x).all()) and bool(torch.isfinite(grad_v0).all())
    assert _rel(grad_x.view(shape), gx_ref) < tol
    assert _rel(grad_v0.view(shape[1:]), gv0_ref) < tol


@pytest.mark.parametrize("dtype", (torch.float32, torch.float16))
def test_public_api_on_cuda(dtype):
    g = torch.Generator().manual_seed(7)
    x = (torch.rand(12, 4, 1000, generator=g) * 2).to(dtype)
    w = torch.randn(12, 4, 1000, generator=g).to(dtype)
    out = {}
    for backend, device in (("cpu", "cpu"), ("cuda", "cuda")):
        xi = x.to(device).requires_grad_()
        s = lif_multistep(xi, surrogate="atan", backend=backend)
        (gx,) = torch.autograd.grad((s * w.to(device)).sum(), xi)
        out[backend] = (s.detach().cpu(), gx.cpu())
    assert torch.equal(out["cpu"][0], out["cuda"][0])
    assert _rel(out["cuda"][1], out["cpu"][1]) < (3e-3 if dtype == torch.float16 else 1e-5)


def test_kernel_validation():
    p = LIFParams.make()
    x = torch.zeros(4, 10, device="cuda")
    with pytest.raises(TypeError, match="bits must have dtype"):
        lif_forward_kernel(x, None, 0.0, p, torch.empty_like(x), torch.empty(1, 10, device="cuda"))
    with pytest.raises(ValueError, match="spikes must be"):
        lif_forward_kernel(
            x,
            None,
            0.0,
            p,
            torch.empty(4, 9, device="cuda"),
            torch.empty(1, 10, dtype=torch.uint8, device="cuda"),
        )
