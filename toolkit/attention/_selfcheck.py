"""An independent, loop-based N:M mask and a self-check of both paths of ``nm_mask``."""

from __future__ import annotations

import math

import numpy as np
import torch

from .._backend import gpu_available
from ._nm import nm_mask

__all__ = ["nm_mask_bruteforce", "nm_mask_selfcheck"]


def _key(value: float) -> float:
    # NaN ranks above every number; -0.0 and +0.0 compare equal as floats already.
    return math.inf if math.isnan(value) else value


def nm_mask_bruteforce(scores: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """The N:M mask by plain Python loops over every group (slow; for checks only)."""
    values = scores.detach().to("cpu", torch.float64).reshape(-1, scores.shape[-1]).numpy()
    keep = np.zeros(values.shape, dtype=bool)
    for row, line in enumerate(values):
        for start in range(0, line.size, m):
            group = line[start : start + m]
            for i, v in enumerate(group):
                above = sum(
                    1
                    for j, u in enumerate(group)
                    if _key(u) > _key(v)
                    or (j < i and (_key(u) == _key(v) or (math.isnan(u) and math.isnan(v))))
                )
                keep[row, start + i] = above < min(n, group.size)
    return torch.from_numpy(keep).reshape(scores.shape)


_CASES = (((4, 37), 2, 4), ((2, 3, 64), 1, 2), ((5, 100), 3, 7), ((3, 96), 8, 32))


def nm_mask_selfcheck(seed: int = 0, device: str | None = None) -> list[dict]:
    """Run ``nm_mask`` on fresh random inputs (with ties) on every available path.

    Each row compares the reference path with the loop-based brute force and, when a GPU is
    usable, the CUDA path with the reference bit for bit.
    """
    gen = torch.Generator().manual_seed(seed)
    rows = []
    for dtype in (torch.float32, torch.float16, torch.bfloat16):
        for shape, n, m in _CASES:
            # Integer-valued scores on a small range force many ties.
            scores = torch.randint(-4, 5, shape, generator=gen).to(dtype)
            reference = nm_mask(scores, n, m, backend="cpu")
            row = {
                "dtype": str(dtype).removeprefix("torch."),
                "shape": "x".join(map(str, shape)),
                "N:M": f"{n}:{m}",
                "reference = brute force": bool(
                    torch.equal(reference, nm_mask_bruteforce(scores, n, m))
                ),
            }
            if gpu_available() and device != "cpu":
                cuda = nm_mask(scores.cuda(), n, m, backend="cuda").cpu()
                row["CUDA = reference"] = bool(torch.equal(cuda, reference))
            else:
                row["CUDA = reference"] = "skipped (no GPU)"
            rows.append(row)
    return rows
