"""An independent LIF loop: the Heaviside step with a straight-through surrogate written as the
primitive of each surrogate derivative, so plain autograd gives the surrogate gradients."""

from __future__ import annotations

import math

import torch


def primitive(u: torch.Tensor, kind: str, a: float) -> torch.Tensor:
    if kind == "atan":
        return torch.atan(math.pi / 2 * a * u) / math.pi + 0.5
    if kind == "sigmoid":
        return torch.sigmoid(a * u)
    if kind == "rectangular":
        return torch.clamp(u / a + 0.5, 0.0, 1.0)
    assert kind == "triangle"
    left = torch.clamp(a + u, min=0.0) ** 2 / (2 * a * a)
    right = 1 - torch.clamp(a - u, min=0.0) ** 2 / (2 * a * a)
    return torch.where(u < 0, left, right)


def step(u: torch.Tensor, kind: str, a: float) -> torch.Tensor:
    p = primitive(u, kind, a)
    return (u >= 0).to(u.dtype) + (p - p.detach())  # value exactly 0 or 1


def lif_loop(x, tau, vth, vr, kind, a, detach, decay, v0):
    """Spikes and membrane trace; ``vr=None`` is the soft reset."""
    rest = 0.0 if vr is None else vr
    v = v0
    spikes, trace = [], []
    for t in range(x.shape[0]):
        if decay:
            h = v + (x[t] - (v - rest)) / tau
        else:
            h = v - (v - rest) / tau + x[t]
        s = step(h - vth, kind, a)
        sr = s.detach() if detach else s
        v = h * (1 - sr) + vr * sr if vr is not None else h - vth * sr
        spikes.append(s)
        trace.append(v)
    return torch.stack(spikes), torch.stack(trace)
