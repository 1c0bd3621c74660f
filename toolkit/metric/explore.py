"""The explorer's model: a 2-D view of embeddings and of one synthetic negative's path.

Pure computation returning numpy arrays; :class:`toolkit.widgets.MetricLearningExplorer`
draws them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .._checks import check_finite_tensor, check_int, check_positive, check_tensor
from .synthesis import hardness, hardness_aware_negative

__all__ = ["Projection", "SynthesisView", "pca_2d", "smooth", "synthesis_view"]

_FLOATS = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
#: The most path points of :func:`synthesis_view` (each is one synthesis).
MAX_POINTS = 10_000


def _check_embeddings(embeddings: object) -> torch.Tensor:
    check_tensor("embeddings", embeddings, dtypes=_FLOATS, ndim=2, nonempty=True)
    return check_finite_tensor("embeddings", embeddings)  # type: ignore[arg-type]


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
    _check_embeddings(embeddings)
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

    The path spans ``J_avg`` from ``alpha / 20`` (lambda near 0) to ``20 alpha`` (near 1),
    in ``points`` steps (2 to :data:`MAX_POINTS`).

    >>> e = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 4.0]])
    >>> v = synthesis_view(e, pca_2d(e), 0, 1, 2, j_avg=1e-3, alpha=1.0)
    >>> round(v.d_synth, 6), v.d_pos
    (1.0, 1.0)
    """
    _check_embeddings(embeddings)
    if not isinstance(projection, Projection):
        raise TypeError(
            f"projection must be a Projection (pca_2d), got {type(projection).__name__}"
        )
    if projection.mean.shape != (embeddings.shape[1],):
        raise ValueError(
            f"projection was fitted to D={projection.mean.shape[0]} dimensions, got embeddings "
            f"of shape {tuple(embeddings.shape)}"
        )
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
    grid = a * np.logspace(
        np.log10(1 / 20), np.log10(20), check_int("points", points, 2, MAX_POINTS)
    )
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
    """Trailing moving average (the first points average what exists so far) of a 1-d
    sequence of real numbers; a NaN makes NaN only the averages whose window holds it.

    >>> smooth(np.array([1.0, 3.0, 5.0]), 2).tolist()
    [1.0, 2.0, 4.0]
    """
    v = np.asarray(values)
    if (
        v.ndim != 1
        or not (np.issubdtype(v.dtype, np.number) or v.dtype == bool)
        or v.dtype.kind == "c"
    ):
        raise TypeError(
            f"values must be a 1-d sequence of real numbers, got {type(values).__name__} of "
            f"dtype {v.dtype} and shape {v.shape}"
        )
    v = v.astype(float)
    w = check_int("window", window, 1)
    # A direct windowed sum, not differences of a cumulative sum (through which one NaN
    # would spread to every later point).
    if len(v) == 0:
        return v
    sums = np.convolve(v, np.ones(min(w, len(v))))[: len(v)]
    return sums / np.minimum(np.arange(1, len(v) + 1), w)
