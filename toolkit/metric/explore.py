"""The explorer's model: a 2-D view of embeddings and of one synthetic negative's path.

Pure computation returning numpy arrays; :class:`toolkit.widgets.MetricLearningExplorer`
draws them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .._checks import check_int, check_positive, check_tensor
from .synthesis import hardness, hardness_aware_negative

__all__ = ["Projection", "SynthesisView", "pca_2d", "smooth", "synthesis_view"]


@dataclass(frozen=True)
class Projection:
    """A 2-D principal-component projection: ``coords = (x - mean) @ basis``."""

    mean: np.ndarray  # [D]
    basis: np.ndarray  # [D, 2]
    coords: np.ndarray  # [N, 2]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return (np.atleast_2d(x) - self.mean) @ self.basis


def pca_2d(embeddings: torch.Tensor) -> Projection:
    """Project ``[N, D]`` embeddings on their two leading principal directions.

    >>> p = pca_2d(torch.tensor([[0.0, 0, 0], [2, 0, 0], [0, 1, 0]]))
    >>> p.coords.shape
    (3, 2)
    """
    check_tensor("embeddings", embeddings, ndim=2, nonempty=True)
    x = embeddings.detach().cpu().double().numpy()
    mean = x.mean(0)
    _, _, vt = np.linalg.svd(x - mean, full_matrices=False)
    basis = np.zeros((x.shape[1], 2))
    basis[:, : min(2, vt.shape[0])] = vt[:2].T
    return Projection(mean=mean, basis=basis, coords=(x - mean) @ basis)


@dataclass(frozen=True)
class SynthesisView:
    """One tuple and its synthetic negative, in embedding space and in 2-D."""

    d_pos: float
    d_neg: float
    d_synth: float  # distance from the anchor to the synthetic negative
    hardness: float  # lambda = exp(-alpha / J_avg)
    points: dict[str, np.ndarray]  # anchor, positive, negative, synthetic -> [2]
    path: np.ndarray  # [P, 2]: the synthetic negative for J_avg over ``j_grid``
    j_grid: np.ndarray


def synthesis_view(
    embeddings: torch.Tensor,
    projection: Projection,
    anchor: int,
    positive: int,
    negative: int,
    j_avg: float,
    alpha: float,
    points: int = 60,
) -> SynthesisView:
    """The synthetic negative of one tuple for ``j_avg``, and its path as ``J_avg`` varies.

    The path spans ``J_avg`` from ``alpha / 20`` (lambda near 0) to ``20 alpha`` (near 1).

    >>> e = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 4.0]])
    >>> v = synthesis_view(e, pca_2d(e), 0, 1, 2, j_avg=1e-3, alpha=1.0)
    >>> round(v.d_synth, 6), v.d_pos
    (1.0, 1.0)
    """
    check_tensor("embeddings", embeddings, ndim=2, nonempty=True)
    n = embeddings.shape[0]
    idx = [
        check_int(name, v, 0, n - 1)
        for name, v in zip(("anchor", "positive", "negative"), (anchor, positive, negative))
    ]
    j = check_positive("j_avg", j_avg)
    a = check_positive("alpha", alpha)
    e = embeddings.detach().cpu().double()
    z, zp, zn = (e[i : i + 1] for i in idx)
    synth = hardness_aware_negative(z, zp, zn, j, a)
    grid = a * np.logspace(np.log10(1 / 20), np.log10(20), check_int("points", points, 2))
    path = torch.cat([hardness_aware_negative(z, zp, zn, float(g), a) for g in grid])
    pts = {
        "anchor": projection(z.numpy())[0],
        "positive": projection(zp.numpy())[0],
        "negative": projection(zn.numpy())[0],
        "synthetic": projection(synth.numpy())[0],
    }
    return SynthesisView(
        d_pos=float((zp - z).norm()),
        d_neg=float((zn - z).norm()),
        d_synth=float((synth - z).norm()),
        hardness=hardness(j, a),
        points=pts,
        path=projection(path.numpy()),
        j_grid=grid,
    )


def smooth(values: np.ndarray, window: int = 10) -> np.ndarray:
    """Trailing moving average (the first points average what exists so far).

    >>> smooth(np.array([1.0, 3.0, 5.0]), 2).tolist()
    [1.0, 2.0, 4.0]
    """
    v = np.asarray(values, dtype=float)
    w = check_int("window", window, 1)
    c = np.concatenate([[0.0], np.cumsum(v)])
    i = np.arange(1, len(v) + 1)
    lo = np.maximum(i - w, 0)
    return (c[i] - c[lo]) / (i - lo)
