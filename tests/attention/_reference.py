"""Loop-based references for the attention tests (plain Python/numpy, float64, slow)."""

from __future__ import annotations

import math

import numpy as np
import torch


def _order(row: np.ndarray) -> list[int]:
    """Indices sorted by descending value, NaN first, ties to the lower index."""
    return sorted(
        range(len(row)),
        key=lambda j: (0 if math.isnan(row[j]) else 1, -row[j] if not math.isnan(row[j]) else 0, j),
    )


def scores_ref(q, k, scale, mask=None) -> np.ndarray:
    q64, k64 = q.double(), k.double()
    lead = torch.broadcast_shapes(q.shape[:-2], k.shape[:-2])
    q64 = q64.expand(*lead, *q.shape[-2:]).reshape(-1, *q.shape[-2:]).numpy()
    k64 = k64.expand(*lead, *k.shape[-2:]).reshape(-1, *k.shape[-2:]).numpy()
    out = np.zeros((q64.shape[0], q.shape[-2], k.shape[-2]))
    for b in range(q64.shape[0]):
        for i in range(q.shape[-2]):
            for j in range(k.shape[-2]):
                out[b, i, j] = scale * float(np.dot(q64[b, i], k64[b, j]))
    if mask is not None:
        m = mask.expand(*lead, q.shape[-2], k.shape[-2]).reshape(out.shape)
        if m.dtype == torch.bool:
            out = np.where(m.numpy(), out, -np.inf)
        else:
            out = out + m.double().numpy()
    return out


def nm_keep_ref(row: np.ndarray, n: int, m: int) -> np.ndarray:
    keep = np.zeros(len(row), dtype=bool)
    for start in range(0, len(row), m):
        group = row[start : start + m]
        for j in _order(group)[: min(n, len(group))]:
            keep[start + j] = True
    return keep


def topk_keep_ref(row: np.ndarray, k: int) -> np.ndarray:
    keep = np.zeros(len(row), dtype=bool)
    keep[_order(row)[:k]] = True
    return keep


def softmax_kept_ref(row: np.ndarray, keep: np.ndarray) -> np.ndarray:
    p = np.zeros(len(row))
    finite = [j for j in range(len(row)) if keep[j] and row[j] != -np.inf]
    if not finite:
        return p
    top = max(row[j] for j in finite)
    for j in finite:
        p[j] = math.exp(row[j] - top)
    return p / p.sum()


def attention_ref(q, k, v, keep_fn, scale, mask=None):
    """Output [B*, Lq, dv] and probs [B*, Lq, Lk] (flattened leading dims), float64."""
    s = scores_ref(q, k, scale, mask)
    lead = torch.broadcast_shapes(q.shape[:-2], k.shape[:-2], v.shape[:-2])
    v64 = v.double().expand(*lead, *v.shape[-2:]).reshape(-1, *v.shape[-2:]).numpy()
    probs = np.zeros_like(s)
    for b in range(s.shape[0]):
        for i in range(s.shape[1]):
            probs[b, i] = softmax_kept_ref(s[b, i], keep_fn(s[b, i]))
    out = np.einsum("bij,bjd->bid", probs, v64)
    return out, probs, s
