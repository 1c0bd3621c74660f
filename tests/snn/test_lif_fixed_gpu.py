"""The specialised LIF backward (``lif_backward_fixed``, kernels/lif.cu) on the GPU against the
torch reference, with poisoned outputs on fresh random inputs.

The cases are an all-pairs selection (``_pairwise``) over dtype, sequence length (the register
sizes 8, 16, 32, full and partial: the chunk-ahead loads must skip the missing steps),
surrogate, reset, detach_reset, decay_input, trace gradient, chunk-ahead loads and an initial
potential with its gradient: every pair of values meets in some case.  Each case compiles its
instance on first launch; run with ``scripts/gpu-tests tests/snn``."""

from __future__ import annotations

import pytest
import torch

from toolkit.snn import SURROGATES, lif_multistep
from toolkit.snn import _lif_cuda as L
from toolkit.snn.neuron import LIFParams

from ._pairwise import all_pairs

pytestmark = pytest.mark.gpu

FACTORS = (
    (torch.float32, torch.float16),
    (5, 13, 27, 32),  # register sizes 8, 16, 32, 32
    SURROGATES,
    (0.0, None),  # hard, soft reset
    (False, True),  # detach_reset
    (False, True),  # decay_input
    (False, True),  # a gradient into the membrane trace
    (False, True),  # dL/dS loaded a chunk ahead
    (False, True),  # v0 given, and its gradient asked for
)
CASES = all_pairs(FACTORS)


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double().cpu(), b.double().cpu()
    return float((a - b).norm() / b.norm().clamp_min(1e-30))


@pytest.mark.parametrize(
    ("dtype", "steps", "surrogate", "v_reset", "detach", "decay", "trace", "ahead", "with_v0"),
    CASES,
)
def test_fixed_backward_matches_reference(
    dtype, steps, surrogate, v_reset, detach, decay, trace, ahead, with_v0
):
    seed = hash((str(dtype), steps, surrogate, v_reset, detach, decay, trace, ahead)) % 2**31
    g = torch.Generator().manual_seed(seed)
    n = 5 * 263  # not a multiple of the block: the exact grid's last block is partial
    x = (torch.rand(steps, n, generator=g) * 2.5 - 0.3).to(dtype)
    v0 = (torch.rand(n, generator=g) * 0.6).to(dtype) if with_v0 else None
    grad_s = torch.randn(steps, n, generator=g).to(dtype)
    grad_v = torch.randn(steps, n, generator=g).to(dtype) if trace else None
    p = LIFParams.make(1.8, 0.9, v_reset, surrogate, None, detach, decay)

    xr = x.clone().requires_grad_()
    v0r = v0.clone().requires_grad_() if with_v0 else None
    s_ref, v_ref = lif_multistep(
        xr, 1.8, 0.9, v_reset, surrogate, None, detach, decay, v0r,
        return_membrane=True, backend="cpu",
    )  # fmt: skip
    outs, ups = ([s_ref, v_ref], [grad_s, grad_v]) if trace else ([s_ref], [grad_s])
    refs = torch.autograd.grad(outs, [xr, v0r] if with_v0 else [xr], ups)

    xc = x.cuda()
    v0c = v0.cuda() if with_v0 else None
    spikes = torch.full((steps, n), float("nan"), dtype=dtype, device="cuda")
    bits = torch.full(((steps + 7) // 8, n), 0xA5, dtype=torch.uint8, device="cuda")
    L.lif_forward_kernel(xc, v0c, 0.0, p, spikes, bits)
    assert torch.equal(spikes.cpu(), s_ref.detach())

    gs = grad_s.cuda()
    gv = grad_v.cuda() if trace else None
    name = L._backward_name(dtype, steps, p, trace, n, True, ahead)
    assert name.startswith("lif_backward_fixed<")
    grad_x = torch.full((steps, n), float("nan"), dtype=dtype, device="cuda")
    grad_v0 = torch.full((n,), float("nan"), dtype=dtype, device="cuda") if with_v0 else None
    L._launch_backward(xc, v0c, 0.0, p, bits, gs, gv, grad_x, grad_v0, instance=name)
    torch.cuda.synchronize()
    tol = 3e-3 if dtype == torch.float16 else 1e-5
    assert bool(torch.isfinite(grad_x).all()), name
    assert _rel(grad_x, refs[0]) < tol, name
    if with_v0:
        assert bool(torch.isfinite(grad_v0).all()), name
        assert _rel(grad_v0, refs[1]) < tol, name


@pytest.mark.parametrize("dtype", (torch.float32, torch.float16))
@pytest.mark.parametrize("steps", (4, 8, 16, 32))
def test_default_path_uses_fixed_instance_and_matches(dtype, steps):
    # the public call with default options, as benchmarks/snn.py times it: the instance the
    # host picks (chunk-ahead per _AHEAD_MAXT) against the reference
    g = torch.Generator().manual_seed(steps)
    x = (torch.rand(steps, 2, 700, generator=g) * 1.5).to(dtype)
    w = torch.randn(steps, 2, 700, generator=g).to(dtype)
    out = {}
    for backend, device in (("cpu", "cpu"), ("cuda", "cuda")):
        xi = x.to(device).requires_grad_()
        s = lif_multistep(xi, backend=backend)
        (gx,) = torch.autograd.grad((s * w.to(device)).sum(), xi)
        out[backend] = (s.detach().cpu(), gx.cpu())
    assert torch.equal(out["cpu"][0], out["cuda"][0])
    assert _rel(out["cuda"][1], out["cpu"][1]) < (3e-3 if dtype == torch.float16 else 1e-5)
