"""The embedded digits: shapes, scaling, stratified and zero-shot splits, clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from toolkit.data import digits


def test_stratified_split_partitions_the_data_set():
    s = digits(seed=3, test_fraction=0.2)
    assert s.x_train.shape[1:] == (1, 8, 8) and s.x_train.dtype == torch.float32
    assert len(s.x_train) + len(s.x_test) == 1797
    assert 0.0 <= float(s.x_train.min()) and float(s.x_train.max()) <= 1.0
    # each class contributes about a fifth of its images to the test part
    for c in range(10):
        n_test = int((s.y_test == c).sum())
        n_all = n_test + int((s.y_train == c).sum())
        assert abs(n_test - 0.2 * n_all) <= 1
    # the two parts hold every image exactly once: their pixel sums add up to the whole set
    whole = float(torch.cat([s.x_train, s.x_test]).double().sum())
    assert whole == pytest.approx(
        float(digits(seed=4).x_train.double().sum() + digits(seed=4).x_test.double().sum())
    )


def test_same_seed_same_split_and_other_seed_differs():
    a, b, c = digits(seed=5), digits(seed=5), digits(seed=6)
    assert torch.equal(a.y_test, b.y_test) and torch.equal(a.x_train, b.x_train)
    assert not torch.equal(a.y_test, c.y_test)


def test_zero_shot_split_has_disjoint_classes():
    s = digits(seed=0, train_classes=[0, 2, 4, 6, 8], test_classes=[1, 3, 5, 7, 9], limit=100)
    assert set(np.unique(s.y_train.numpy())) <= {0, 2, 4, 6, 8}
    assert set(np.unique(s.y_test.numpy())) <= {1, 3, 5, 7, 9}
    assert len(s.y_train) == 100 and len(s.y_test) == 100
    assert s.num_classes == 10


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"test_fraction": 0.0}, ValueError, "test_fraction"),
        ({"test_fraction": 1.5}, ValueError, "test_fraction"),
        ({"seed": -1}, ValueError, "seed"),
        ({"limit": 0}, ValueError, "limit"),
        ({"train_classes": [0, 1]}, ValueError, "both"),
        ({"train_classes": [0, 1], "test_classes": [1, 2]}, ValueError, "disjoint"),
        ({"train_classes": [0, 10], "test_classes": [1]}, ValueError, r"train_classes\[1\]"),
        ({"train_classes": 3, "test_classes": [1]}, TypeError, "train_classes"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs, error, match):
    with pytest.raises(error, match=match):
        digits(**kwargs)
