"""Regression tests for the bad inputs that ``toolkit.metric`` accepted silently, answered
with an obscure error, or hung on before issue 10's sweep (one test per defect found)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import toolkit.metric as tm

G = torch.Generator().manual_seed(0)
A, P, N = (torch.randn(4, 3, generator=G) for _ in range(3))
E = torch.randn(8, 3, generator=G)
L = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])


@pytest.mark.parametrize("loss", [tm.triplet_loss, tm.npair_loss])
def test_tuple_losses_refuse_non_finite_and_empty_tuples(loss):
    bad = P.clone()
    bad[0, 0] = math.nan
    with pytest.raises(ValueError, match="positive must be finite"):
        loss(A, bad, N)  # returned NaN (or inf, or a finite number for an Inf negative)
    with pytest.raises(ValueError, match="anchor must not be empty"):
        loss(A[:0], P[:0], N[:0])  # the mean over no tuples: NaN


@pytest.mark.parametrize(
    "fn",
    [tm.triplet_loss, tm.npair_loss, lambda a, p, n: tm.hardness_aware_negative(a, p, n, 1.0)],
)
def test_tuple_tensors_share_dtype(fn):
    # float64 among float32 was promoted silently, or failed deep in einsum
    with pytest.raises(TypeError, match="negative must have dtype in \\(float32\\)"):
        fn(A, P, N.double())


def test_npair_negatives_is_a_reindexing_on_any_device():
    # the boolean mask failed on the meta device ("register_meta ... nonzero")
    assert tm.npair_negatives(torch.zeros(4, 3, device="meta")).shape == (4, 3, 3)


def test_retrieval_names_the_argument_at_fault():
    with pytest.raises(ValueError, match="embeddings must be finite"):
        tm.recall_at_k(torch.full((4, 2), math.nan), L[:4])  # blamed "queries"
    with pytest.raises(ValueError, match="2 queries"):
        tm.retrieval_topk(E[:1], 1)  # "needs at least 2 embeddings"
    with pytest.raises(ValueError, match="references must not be empty"):
        tm.retrieval_topk(E, 1, E[:0])
    with pytest.raises(TypeError, match="labels must be a tensor"):
        tm.map_at_r(E, None)  # RuntimeError: Could not infer dtype of NoneType
    with pytest.raises(TypeError, match="labels must be a tensor"):
        tm.recall_at_k(E, ["a"] * 8)  # ValueError: too many dimensions 'str'


def test_nmi_refuses_one_class_and_caps_restarts():
    with pytest.raises(ValueError, match="at least 2 classes"):
        tm.nmi(E, torch.zeros(8, dtype=torch.long))  # returned a perfect 1.0
    with pytest.raises(ValueError, match="n_init"):
        tm.nmi(E, L, n_init=10**6)  # ran k-means a million times


def test_running_mean_takes_finite_numbers_only():
    r = tm.RunningMean(3)
    for bad in (math.nan, math.inf, True):
        with pytest.raises((TypeError, ValueError), match="value"):
            r.push(bad)  # NaN poisoned every later J_avg; True counted as 1.0
    with pytest.raises(TypeError, match="value"):
        r.push("a")  # "could not convert string to float"
    r.push(1.0)
    r.push(2)
    assert r.value == 1.5


def test_sample_triplets_checks_labels_and_generator():
    with pytest.raises(TypeError, match="labels"):
        tm.sample_triplets(L.float(), torch.Generator())  # compared floats silently
    with pytest.raises(TypeError, match="generator"):
        tm.sample_triplets(L, None)  # drew from torch's global generator


def test_hdml_checks_seed_and_inputs():
    with pytest.raises(ValueError, match="seed"):
        tm.HDML(tm.EmbeddingNet(), 4, seed=-1)  # accepted silently
    with pytest.raises(TypeError, match="seed"):
        tm.HDML(tm.EmbeddingNet(), 4, seed="0")  # torch's RuntimeError
    h = tm.HDML(tm.EmbeddingNet(embed_dim=4), 4, config=tm.DIGITS_CONFIG)
    x = torch.rand(8, 64)
    bad = x.clone()
    bad[0, 0] = math.nan
    with pytest.raises(ValueError, match="x must be finite"):
        h.step(bad, L)  # "j_avg must be finite": blamed an internal value
    with pytest.raises(ValueError, match="in_dim=64"):
        h.step(x[:, :10], L)  # "mat1 and mat2 shapes cannot be multiplied"
    with pytest.raises(TypeError, match="x must have dtype"):
        h.embed(x.long())
    assert h.embed(x).shape == (8, 4)


def test_train_on_digits_needs_two_classes_each_side():
    with pytest.raises(ValueError, match="test_classes"):
        tm.train_on_digits(steps=1, test_classes=(5,))  # a trivially perfect evaluation
    with pytest.raises(ValueError, match="train_classes"):
        tm.train_on_digits(steps=1, train_classes=(0,))  # blamed num_classes


def test_compare_on_digits_checks_every_seed_first():
    with pytest.raises(ValueError, match=r"seeds\[1\]"):
        tm.compare_on_digits([0, -1], steps=1, progress=False)  # failed after seed 0 trained
    with pytest.raises(TypeError, match="seeds must be a sequence"):
        tm.compare_on_digits(0, steps=1, progress=False)
    with pytest.raises(TypeError, match="progress"):
        tm.compare_on_digits([0], steps=1, progress="no")


def test_explorer_model_checks_its_inputs():
    with pytest.raises(TypeError, match="embeddings must have dtype"):
        tm.pca_2d(E.long())  # projected integers silently
    with pytest.raises(ValueError, match="embeddings must be finite"):
        tm.pca_2d(torch.full((3, 2), math.nan))  # LinAlgError: SVD did not converge
    with pytest.raises(TypeError, match="projection"):
        tm.synthesis_view(E, None, 0, 1, 2, 1.0, 1.0)
    with pytest.raises(ValueError, match="projection was fitted to D=2"):
        tm.synthesis_view(E, tm.pca_2d(E[:, :2]), 0, 1, 2, 1.0, 1.0)
    with pytest.raises(ValueError, match="points"):
        tm.synthesis_view(E, tm.pca_2d(E), 0, 1, 2, 1.0, 1.0, points=10**5)  # ran > 10 s


def test_smooth_keeps_nan_in_its_window_and_refuses_non_numbers():
    out = tm.smooth(np.array([math.nan, 1.0, 2.0, 3.0]), 2)  # was all NaN
    assert math.isnan(out[0]) and math.isnan(out[1]) and out[2:].tolist() == [1.5, 2.5]
    with pytest.raises(TypeError, match="values"):
        tm.smooth([1.0, None], 2)  # None became NaN silently
    with pytest.raises(TypeError, match="values"):
        tm.smooth(np.ones((3, 2)), 2)  # flattened silently
