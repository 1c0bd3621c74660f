r"""Retrieval metrics: Recall@K (leave-one-out), NMI of k-means clusters, MAP@R.

All three rank neighbours by Euclidean distance through :func:`retrieval_topk`, which never
materialises the full distance matrix: the reference path works on blocks of queries, the CUDA
path on chunks of queries (a GEMM, then the selection kernel ``kernels/retrieval_topk.cu``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from .._checks import check_finite_tensor, check_int, check_seed, check_tensor
from ._retrieval import _topk_op

__all__ = ["map_at_r", "nmi", "recall_at_k", "retrieval_topk"]

_FLOATS = (torch.float32, torch.float64)


def retrieval_topk(
    queries: torch.Tensor,
    k: int,
    references: torch.Tensor | None = None,
    *,
    backend: str | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""The ``k`` nearest references of every query (Euclidean), without the full matrix.

    Without ``references`` the queries retrieve among themselves, leaving each query out of
    its own list (leave-one-out retrieval).  Ties go to the lower reference index.

    On a CUDA tensor with ``k <= MAX_K`` (32), queries go in chunks whose products with the
    references (at most 512 MiB) come from one cuBLAS GEMM (IEEE fp32/fp64 unless torch's
    TF32 matmul flag is set, as for :func:`torch.cdist`); the kernel
    ``kernels/retrieval_topk.cu`` reads each chunk once, keeps the ``L = min(32, 2k)``
    (rounded up to 8, 16 or 32) smallest keys ``||r||^2 - 2 q.r`` of each row, recomputes their
    distances from differences (as the reference path does: no cancellation for near
    neighbours) and returns the ``k`` best of them in that exact order.  Leave-one-out
    retrieval multiplies only the upper triangle of the symmetric product (about half the
    work) and passes each chunk's columns on to later queries through running lists of ``L``
    candidates.  Which references enter the ``L`` candidates is decided by the GEMM's
    rounding: where two references are closer than that rounding (about
    ``1e-6 * ||q||^2`` in float32) at the ``L``-th place, either may be chosen (as with
    :func:`torch.cdist`'s matrix-product mode).  Memory: the chunk, ``O(N L)`` and the
    outputs, never ``N x M``.  Larger ``k`` runs the reference path (blocks of 1024 queries)
    on the same device.

    Parameters
    ----------
    queries : torch.Tensor
        ``[N, D]`` float32 or float64, on any device.
    k : int
        Neighbours per query, ``1 <= k <= M`` (``M - 1`` when leaving one out).
    references : torch.Tensor, optional
        ``[M, D]``, same dtype and device as ``queries``.
    backend : {"cpu", "cuda"}, optional
        Force the reference or the CUDA path (see :func:`toolkit.use_backend`).

    Returns
    -------
    distances : torch.Tensor
        ``[N, k]``, ascending along each row.
    indices : torch.Tensor
        ``[N, k]`` int64 indices into the references.

    Examples
    --------
    >>> x = torch.tensor([[0.0], [1.0], [3.0]])
    >>> d, i = retrieval_topk(x, 1)
    >>> d.squeeze(1).tolist(), i.squeeze(1).tolist()
    ([1.0, 1.0, 2.0], [1, 0, 1])
    """
    check_tensor("queries", queries, dtypes=_FLOATS, ndim=2, nonempty=True)
    exclude_self = references is None
    refs = queries if references is None else references
    check_tensor(
        "references", refs, dtypes=(queries.dtype,), ndim=2, device=queries.device, nonempty=True
    )
    if refs.shape[1] != queries.shape[1]:
        raise ValueError(
            f"references must have D={queries.shape[1]} columns like queries, "
            f"got shape {tuple(refs.shape)}"
        )
    available = refs.shape[0] - (1 if exclude_self else 0)
    if available < 1:
        raise ValueError(
            f"leave-one-out retrieval needs at least 2 queries, got queries of shape "
            f"{tuple(queries.shape)}"
        )
    k = check_int("k", k, 1, available)
    check_finite_tensor("queries", queries)
    if references is not None:
        check_finite_tensor("references", refs)
    return _topk_op(queries, refs, k, exclude_self, backend=backend)


def _check_embeddings(embeddings: object) -> torch.Tensor:
    check_tensor("embeddings", embeddings, dtypes=_FLOATS, ndim=2, nonempty=True)
    return check_finite_tensor("embeddings", embeddings)  # type: ignore[arg-type]


def _as_labels(labels: object, n: int) -> torch.Tensor:
    if isinstance(labels, torch.Tensor):
        t = labels
    else:
        try:
            t = torch.as_tensor(labels)
        except (TypeError, ValueError, RuntimeError):
            raise TypeError(
                f"labels must be a tensor of integer labels, got {labels!r:.60}"
            ) from None
    check_tensor("labels", t, ndim=1)
    if t.dtype.is_floating_point or t.dtype == torch.bool:
        raise TypeError(f"labels must hold integers, got dtype {t.dtype}")
    if t.shape[0] != n:
        raise ValueError(f"labels must have one entry per embedding ({n}), got {t.shape[0]}")
    return t


def recall_at_k(
    embeddings: torch.Tensor,
    labels: torch.Tensor,
    ks: Sequence[int] = (1, 2, 4, 8),
    *,
    backend: str | None = None,
) -> dict[int, float]:
    r"""Recall@K of leave-one-out retrieval: the share of queries whose ``K`` nearest other
    embeddings hold at least one of the query's class.

    Parameters
    ----------
    embeddings : torch.Tensor
        ``[N, D]`` float32 or float64.
    labels : torch.Tensor
        ``[N]`` integer class labels.
    ks : sequence of int
        The ``K`` values, each in ``[1, N - 1]``.
    backend : {"cpu", "cuda"}, optional
        Path of the nearest-neighbour search.

    Returns
    -------
    dict
        ``{K: recall}`` with recalls in ``[0, 1]``.

    Examples
    --------
    >>> e = torch.tensor([[0.0], [0.1], [5.0], [5.2]])
    >>> recall_at_k(e, torch.tensor([0, 0, 1, 1]), ks=(1,))
    {1: 1.0}
    """
    _check_embeddings(embeddings)
    lab = _as_labels(labels, embeddings.shape[0])
    try:
        ks_t = tuple(ks)
    except TypeError:
        raise TypeError(f"ks must be a sequence of ints, got {ks!r}") from None
    if not ks_t:
        raise ValueError("ks must not be empty")
    n = embeddings.shape[0]
    ks_t = tuple(check_int(f"ks[{i}]", k, 1, max(n - 1, 1)) for i, k in enumerate(ks_t))
    _, idx = retrieval_topk(embeddings, max(ks_t), backend=backend)
    lab = lab.to(idx.device)
    hits = lab[idx] == lab.unsqueeze(1)  # [N, kmax]
    first = torch.cumsum(hits.int(), dim=1) > 0
    # an integer count over N: the same float on every device (no reduction-order rounding)
    return {k: int(first[:, k - 1].sum()) / n for k in ks_t}


def map_at_r(
    embeddings: torch.Tensor, labels: torch.Tensor, *, backend: str | None = None
) -> float:
    r"""Mean average precision at R (Musgrave et al., 2020), leave-one-out.

    For a query whose class holds ``R`` other embeddings,
    :math:`\text{AP@R} = \frac1R \sum_{i=1}^{R} P(i)\,\mathbb 1[\text{rank } i \text{ relevant}]`
    with :math:`P(i)` the precision of the first ``i`` neighbours; MAP@R averages over queries
    with ``R >= 1``.

    Parameters
    ----------
    embeddings : torch.Tensor
        ``[N, D]`` float32 or float64.
    labels : torch.Tensor
        ``[N]`` integer labels; at least one class must have two members.
    backend : {"cpu", "cuda"}, optional
        Path of the nearest-neighbour search.

    Returns
    -------
    float
        In ``[0, 1]``.

    Examples
    --------
    >>> e = torch.tensor([[0.0], [0.1], [0.2], [5.0]])
    >>> round(map_at_r(e, torch.tensor([0, 0, 1, 0])), 4)
    0.4167
    """
    _check_embeddings(embeddings)
    lab = _as_labels(labels, embeddings.shape[0])
    _, counts = torch.unique(lab, return_counts=True)
    r_max = int(counts.max()) - 1
    if r_max < 1:
        raise ValueError("labels must give at least one class two members for MAP@R")
    _, idx = retrieval_topk(embeddings, r_max, backend=backend)
    lab = lab.to(idx.device)
    _, inverse, cnt = torch.unique(lab, return_inverse=True, return_counts=True)
    r = cnt[inverse] - 1  # other members of each query's class
    hits = (lab[idx] == lab.unsqueeze(1)).double()  # [N, r_max]
    rank = torch.arange(1, r_max + 1, device=idx.device, dtype=torch.float64)
    within = rank.unsqueeze(0) <= r.unsqueeze(1)
    precision = torch.cumsum(hits, dim=1) / rank
    ap = (precision * hits * within).sum(1) / r.clamp(min=1)
    valid = r >= 1
    return float(ap[valid].mean())


def nmi(
    embeddings: torch.Tensor, labels: torch.Tensor, *, seed: int = 0, n_init: int = 10
) -> float:
    r"""Normalized mutual information between the labels and k-means clusters of the
    embeddings (as many clusters as classes; scikit-learn's ``KMeans`` and
    ``normalized_mutual_info_score`` with the arithmetic mean).

    Parameters
    ----------
    embeddings : torch.Tensor
        ``[N, D]``.
    labels : torch.Tensor
        ``[N]`` integer labels.
    seed : int
        Seeds k-means.
    n_init : int
        k-means restarts, 1 to 1000; the best inertia wins.

    Returns
    -------
    float
        In ``[0, 1]``.

    Raises
    ------
    ValueError
        For labels of a single class (one cluster agrees with them trivially: NMI 1).

    Examples
    --------
    >>> e = torch.tensor([[0.0], [0.1], [5.0], [5.2]])
    >>> nmi(e, torch.tensor([0, 0, 1, 1]))
    1.0
    """
    from sklearn.cluster import KMeans
    from sklearn.metrics import normalized_mutual_info_score

    _check_embeddings(embeddings)
    lab = _as_labels(labels, embeddings.shape[0]).cpu().numpy()
    check_seed(seed)
    check_int("n_init", n_init, 1, 1000)  # each restart is a full k-means run
    n_classes = len(np.unique(lab))
    if n_classes < 2:
        raise ValueError(f"labels must hold at least 2 classes for NMI, got only {lab[0]!r}")
    x = embeddings.detach().cpu().double().numpy()
    km = KMeans(n_clusters=n_classes, n_init=n_init, random_state=seed % 2**32).fit(x)
    return float(normalized_mutual_info_score(lab, km.labels_))
