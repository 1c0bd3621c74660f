"""Retrieval metrics against brute force and against pytorch-metric-learning."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from toolkit.metric import map_at_r, nmi, recall_at_k, retrieval_topk


def _clustered(gen, n=120, d=6, classes=5, spread=1.0):
    labels = torch.randint(classes, (n,), generator=gen)
    centres = 3.0 * torch.randn(classes, d, generator=gen, dtype=torch.float64)
    emb = centres[labels] + spread * torch.randn(n, d, generator=gen, dtype=torch.float64)
    return emb, labels


def _brute_ranking(emb, refs=None):
    """Full float64 distance matrix, self left out, stable argsort (ties: lower index)."""
    q = emb.numpy().astype(np.float64)
    r = q if refs is None else refs.numpy().astype(np.float64)
    d = np.sqrt(((q[:, None, :] - r[None, :, :]) ** 2).sum(-1))
    if refs is None:
        np.fill_diagonal(d, np.inf)
    order = np.argsort(d, axis=1, kind="stable")
    return d, order


def test_topk_brute_force(generator):
    emb, _ = _clustered(generator, n=50)
    refs = torch.randn(70, 6, generator=generator, dtype=torch.float64)
    for r in (None, refs):
        d, order = _brute_ranking(emb, r)
        dist, idx = retrieval_topk(emb, 7, r)
        assert np.array_equal(idx.numpy(), order[:, :7])
        assert np.allclose(dist.numpy(), np.take_along_axis(d, order[:, :7], 1), rtol=1e-12)


def test_topk_ties_go_to_lower_index():
    x = torch.tensor([[0.0], [1.0], [-1.0], [1.0], [-1.0]])
    _, idx = retrieval_topk(x, 4)
    assert idx[0].tolist() == [1, 2, 3, 4]


def test_topk_blocks_agree(generator, monkeypatch):
    from toolkit.metric import _retrieval

    emb = torch.randn(37, 3, generator=generator)
    full = retrieval_topk(emb, 5)
    monkeypatch.setattr(_retrieval, "_BLOCK", 8)  # several blocks, with self-exclusion offsets
    blocked = retrieval_topk(emb, 5)
    assert torch.equal(full[1], blocked[1]) and torch.equal(full[0], blocked[0])


def test_recall_at_k_brute_force(generator):
    emb, labels = _clustered(generator, spread=2.5)
    _, order = _brute_ranking(emb)
    lab = labels.numpy()
    got = recall_at_k(emb, labels, ks=(1, 2, 4, 8))
    for k in (1, 2, 4, 8):
        want = np.mean([(lab[order[i, :k]] == lab[i]).any() for i in range(len(lab))])
        assert got[k] == pytest.approx(want, abs=1e-12)
    assert 0.0 < got[1] < 1.0, "the draw must make retrieval imperfect"


def test_map_at_r_brute_force(generator):
    emb, labels = _clustered(generator, n=80, spread=2.5)
    _, order = _brute_ranking(emb)
    lab = labels.numpy()
    aps = []
    for i in range(len(lab)):
        r = int((lab == lab[i]).sum()) - 1
        if r == 0:
            continue
        rel = lab[order[i, :r]] == lab[i]
        prec = np.cumsum(rel) / np.arange(1, r + 1)
        aps.append((prec * rel).sum() / r)
    assert map_at_r(emb, labels) == pytest.approx(np.mean(aps), abs=1e-12)


def test_perfect_and_nmi_extremes(generator):
    emb, labels = _clustered(generator, spread=0.01)
    assert recall_at_k(emb, labels, ks=(1,))[1] == 1.0
    assert map_at_r(emb, labels) == 1.0
    assert nmi(emb, labels) == pytest.approx(1.0)
    noise = torch.randn(400, 4, generator=generator, dtype=torch.float64)
    assert nmi(noise, torch.randint(5, (400,), generator=generator)) < 0.1


def test_against_pytorch_metric_learning(generator):
    pytest.importorskip(
        "pytorch_metric_learning", reason="pytorch-metric-learning is an optional extra"
    )
    from pytorch_metric_learning.distances import LpDistance
    from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator
    from pytorch_metric_learning.utils.inference import CustomKNN
    from sklearn.cluster import KMeans

    def kmeans(x, n):  # the library's default k-means needs faiss, which is not installed
        return KMeans(n, n_init=10, random_state=1).fit_predict(x.cpu().numpy())

    emb, labels = _clustered(generator, n=150, spread=2.0)
    calc = AccuracyCalculator(
        include=("precision_at_1", "mean_average_precision_at_r", "NMI"),
        k="max_bin_count",
        knn_func=CustomKNN(LpDistance(normalize_embeddings=False)),
        kmeans_func=kmeans,
    )
    theirs = calc.get_accuracy(emb.float(), labels, emb.float(), labels, ref_includes_query=True)
    assert recall_at_k(emb, labels, ks=(1,))[1] == pytest.approx(theirs["precision_at_1"])
    assert map_at_r(emb, labels) == pytest.approx(theirs["mean_average_precision_at_r"], abs=1e-6)
    # k-means restarts may land in different local optima: NMI agrees to a few percent
    assert nmi(emb, labels) == pytest.approx(theirs["NMI"], abs=0.05)


@pytest.mark.parametrize(
    ("call", "exc", "match"),
    [
        (lambda e, y: recall_at_k(e, y[:-1]), ValueError, "one entry per embedding"),
        (lambda e, y: recall_at_k(e, y.float()), TypeError, "labels must hold integers"),
        (lambda e, y: recall_at_k(e, y, ks=(0,)), ValueError, r"ks\[0\]"),
        (lambda e, y: recall_at_k(e, y, ks=()), ValueError, "ks must not be empty"),
        (lambda e, y: retrieval_topk(e, 10), ValueError, "k must satisfy"),
        (lambda e, y: retrieval_topk(e, 1, e[:, :2]), ValueError, "references must have D=3"),
        (lambda e, y: retrieval_topk(e.long(), 1), TypeError, "queries must have dtype"),
        (lambda e, y: map_at_r(e, torch.arange(10)), ValueError, "two members"),
    ],
)
def test_errors(call, exc, match):
    e, y = torch.randn(10, 3), torch.arange(10) % 2
    with pytest.raises(exc, match=match):
        call(e, y)
