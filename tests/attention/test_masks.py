"""Static patterns (local, strided) against their definitions, and keep_count."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from toolkit.attention import keep_count, local_mask, strided_mask


@given(st.integers(1, 40), st.integers(1, 40), st.floats(0.01, 1.0))
def test_equal_density_and_definitions(lq, lk, density):
    k = keep_count(density, lk)
    assert (1 <= k <= lk and abs(k - density * lk) <= 0.5 + 1e-9) or k == 1
    local, strided = local_mask(lq, lk, density), strided_mask(lq, lk, density)
    assert (local.sum(1) == k).all() and (strided.sum(1) == k).all()
    s = lk // k
    for i in range(lq):
        c = i * lk // lq
        start = min(max(c - k // 2, 0), lk - k)
        assert local[i].nonzero().flatten().tolist() == list(range(start, start + k))
        assert sorted(strided[i].nonzero().flatten().tolist()) == sorted(
            (c + t * s) % lk for t in range(k)
        )
        assert strided[i, c]


def test_window_and_stride_arguments():
    assert local_mask(5, 5, window=3)[2].tolist() == [False, True, True, True, False]
    assert strided_mask(3, 9, stride=3).sum(1).tolist() == [3, 3, 3]
    assert torch.equal(local_mask(8, 8, density=0.5), local_mask(8, 8, window=4))
    assert local_mask(4, 4, window=2, device="cpu").device.type == "cpu"


@pytest.mark.parametrize(
    ("fn", "kwargs", "error", "match"),
    [
        (local_mask, dict(lq=4, lk=4), ValueError, "exactly one"),
        (local_mask, dict(lq=4, lk=4, density=0.5, window=2), ValueError, "exactly one"),
        (local_mask, dict(lq=4, lk=4, window=5), ValueError, "window must satisfy"),
        (strided_mask, dict(lq=0, lk=4, stride=1), ValueError, "lq must satisfy"),
        (strided_mask, dict(lq=4, lk=4, stride=0), ValueError, "stride must satisfy"),
        (strided_mask, dict(lq=4, lk=4, density=0.0), ValueError, "density must lie"),
        (keep_count, dict(density=0.5, length=1.5), TypeError, "length must be an int"),
    ],
)
def test_errors(fn, kwargs, error, match):
    with pytest.raises(error, match=match):
        fn(**kwargs)
