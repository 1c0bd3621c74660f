"""scikit-learn's handwritten digits as torch tensors, with seeded and zero-shot splits."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

import numpy as np
import torch

from .._checks import check_int, check_real, check_seed

__all__ = ["DigitsSplit", "digits"]

_NUM_CLASSES = 10


@dataclass(frozen=True)
class DigitsSplit:
    """A train/test split of the digits.

    Attributes
    ----------
    x_train, x_test : torch.Tensor
        Images ``[N, 1, 8, 8]`` (float32, pixel values scaled to ``[0, 1]``).
    y_train, y_test : torch.Tensor
        Labels ``[N]`` (int64), the original digit classes.
    classes_train, classes_test : tuple of int
        The classes present in each part (disjoint for a zero-shot split).
    """

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    classes_train: tuple[int, ...]
    classes_test: tuple[int, ...]

    @property
    def num_classes(self) -> int:
        """Number of distinct classes over both parts."""
        return len(set(self.classes_train) | set(self.classes_test))


@cache
def _load() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits  # ships its data inside the package

    bunch = load_digits()
    x = (bunch.data.astype(np.float32) / 16.0).reshape(-1, 1, 8, 8)
    return x, bunch.target.astype(np.int64)


def _check_classes(name: str, classes: Sequence[int]) -> tuple[int, ...]:
    try:
        items = tuple(classes)
    except TypeError:
        raise TypeError(f"{name} must be a sequence of digit classes, got {classes!r}") from None
    out = tuple(check_int(f"{name}[{i}]", c, 0, _NUM_CLASSES - 1) for i, c in enumerate(items))
    if not out or len(set(out)) != len(out):
        raise ValueError(f"{name} must be a non-empty list of distinct classes, got {classes!r}")
    return out


def digits(
    seed: int = 0,
    test_fraction: float = 0.25,
    *,
    train_classes: Sequence[int] | None = None,
    test_classes: Sequence[int] | None = None,
    limit: int | None = None,
) -> DigitsSplit:
    """The digits, split into train and test parts.

    Without classes, a stratified random split: each class puts ``test_fraction`` of its
    images into the test part.  With ``train_classes`` and ``test_classes`` (disjoint), a
    zero-shot split: the train part holds every image of the train classes and the test part
    every image of the test classes (``test_fraction`` is then unused), as in the metric
    learning benchmarks where retrieval is evaluated on classes never seen in training.

    Parameters
    ----------
    seed : int
        Seeds the shuffle (the same seed gives the same split everywhere).
    test_fraction : float
        Share of each class in the test part, in ``(0, 1)``.
    train_classes, test_classes : sequence of int, optional
        Give both for a zero-shot split.
    limit : int, optional
        Keep at most this many images in each part (after shuffling), for quick runs.

    Returns
    -------
    DigitsSplit

    Examples
    --------
    >>> s = digits(seed=1, train_classes=range(5), test_classes=range(5, 10))
    >>> s.classes_train, s.classes_test
    ((0, 1, 2, 3, 4), (5, 6, 7, 8, 9))
    >>> bool(set(s.y_test.tolist()) & set(s.y_train.tolist()))
    False
    """
    check_seed(seed)
    check_real("test_fraction", test_fraction, 0.0, 1.0, lo_open=True, hi_open=True)
    if limit is not None:
        check_int("limit", limit, 1)
    x, y = _load()
    rng = np.random.default_rng(seed)
    if (train_classes is None) != (test_classes is None):
        raise ValueError(
            "give both train_classes and test_classes for a zero-shot split, or neither"
        )
    if train_classes is not None and test_classes is not None:
        tr = _check_classes("train_classes", train_classes)
        te = _check_classes("test_classes", test_classes)
        if set(tr) & set(te):
            both = sorted(set(tr) & set(te))
            raise ValueError(f"train_classes and test_classes must be disjoint, both hold {both}")
        train_idx = rng.permutation(np.flatnonzero(np.isin(y, tr)))
        test_idx = rng.permutation(np.flatnonzero(np.isin(y, te)))
    else:
        train_parts, test_parts = [], []
        for c in range(_NUM_CLASSES):
            idx = rng.permutation(np.flatnonzero(y == c))
            n_test = max(1, round(test_fraction * len(idx)))
            test_parts.append(idx[:n_test])
            train_parts.append(idx[n_test:])
        train_idx = rng.permutation(np.concatenate(train_parts))
        test_idx = rng.permutation(np.concatenate(test_parts))
        tr = te = tuple(range(_NUM_CLASSES))
    if limit is not None:
        train_idx, test_idx = train_idx[:limit], test_idx[:limit]
    return DigitsSplit(
        x_train=torch.from_numpy(x[train_idx]),
        y_train=torch.from_numpy(y[train_idx]),
        x_test=torch.from_numpy(x[test_idx]),
        y_test=torch.from_numpy(y[test_idx]),
        classes_train=tuple(sorted(tr)),
        classes_test=tuple(sorted(te)),
    )
