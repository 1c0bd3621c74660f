"""nm_mask's reference path against a loop-based brute force, plus argument checking."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import toolkit
from toolkit.attention import nm_mask
from toolkit.attention._selfcheck import nm_mask_bruteforce, nm_mask_selfcheck

DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)


def test_docstring_example():
    scores = torch.tensor([0.1, 0.9, 0.5, 0.3, 0.7, 0.2])
    assert nm_mask(scores, 2, 4).tolist() == [False, True, True, False, True, True]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    ("shape", "n", "m"),
    [((3, 16), 2, 4), ((2, 5, 37), 1, 2), ((7, 33), 3, 8), ((4, 70), 17, 32), ((1,), 1, 1)],
)
def test_matches_bruteforce_with_ties(dtype, shape, n, m, generator):
    scores = torch.randint(-3, 4, shape, generator=generator).to(dtype)  # many ties
    mask = nm_mask(scores, n, m)
    assert mask.dtype == torch.bool and mask.shape == scores.shape
    assert torch.equal(mask, nm_mask_bruteforce(scores, n, m))


def test_tail_group_keeps_min_n_r(generator):
    scores = torch.randn(5, 4 * 3 + 2, generator=generator)  # tail of r = 2 entries
    mask = nm_mask(scores, 3, 4)
    assert (mask[:, :12].reshape(5, 3, 4).sum(-1) == 3).all()
    assert (mask[:, 12:].sum(-1) == 2).all()


def test_ties_go_to_lower_index():
    scores = torch.tensor([[1.0, 1.0, 1.0, 1.0], [0.0, -0.0, 0.0, -0.0]])
    assert nm_mask(scores, 2, 4).tolist() == [[True, True, False, False]] * 2


def test_nan_ranks_first_and_infinities_order():
    scores = torch.tensor([-math.inf, math.nan, math.inf, 1.0, -math.inf, -math.inf])
    assert nm_mask(scores, 2, 4).tolist() == [False, True, True, False, True, True]
    assert torch.equal(nm_mask(scores, 2, 4), nm_mask_bruteforce(scores, 2, 4))


def test_exact_count_and_keeps_largest(generator):
    scores = torch.randn(64, 128, generator=generator)
    mask = nm_mask(scores, 2, 4)
    grouped, kept = scores.reshape(64, 32, 4), mask.reshape(64, 32, 4)
    assert (kept.sum(-1) == 2).all()
    smallest_kept = torch.where(kept, grouped, torch.inf).amin(-1)
    largest_dropped = torch.where(kept, -torch.inf, grouped).amax(-1)
    assert (smallest_kept > largest_dropped).all()


def test_non_contiguous_and_empty(generator):
    scores = torch.randn(16, 12, generator=generator).t()
    assert torch.equal(nm_mask(scores, 1, 4), nm_mask_bruteforce(scores, 1, 4))
    assert nm_mask(torch.empty(0, 8), 2, 4).shape == (0, 8)
    assert nm_mask(torch.empty(3, 0), 2, 4).shape == (3, 0)


@settings(max_examples=60, deadline=None)
@given(
    lead=st.lists(st.integers(1, 3), min_size=0, max_size=2),
    cols=st.integers(1, 45),
    m=st.integers(1, 32),
    data=st.data(),
)
def test_property_any_shape(lead, cols, m, data):
    n = data.draw(st.integers(1, m))
    dtype = data.draw(st.sampled_from(DTYPES))
    seed = data.draw(st.integers(0, 2**31 - 1))
    gen = torch.Generator().manual_seed(seed)
    scores = torch.randint(-5, 6, (*lead, cols), generator=gen).to(dtype)
    assert torch.equal(nm_mask(scores, n, m), nm_mask_bruteforce(scores, n, m))


@pytest.mark.parametrize(
    ("n", "m", "error", "match"),
    [
        (3, 2, ValueError, "n must satisfy 1 <= n <= 2, got n=3"),
        (0, 4, ValueError, "n must satisfy"),
        (2, 33, ValueError, "m must satisfy 1 <= m <= 32"),
        (1, 0, ValueError, "m must satisfy"),
        (2.0, 4, TypeError, "n must be an int"),
        (2, True, TypeError, "m must be an int"),
    ],
)
def test_bad_n_m(n, m, error, match):
    with pytest.raises(error, match=match):
        nm_mask(torch.randn(2, 8), n, m)


def test_bad_scores():
    with pytest.raises(TypeError, match="scores must have dtype in"):
        nm_mask(torch.arange(8), 2, 4)
    with pytest.raises(TypeError, match="scores must be a torch.Tensor"):
        nm_mask([0.1, 0.2], 1, 2)
    with pytest.raises(ValueError, match="scores must have at least 1 dimensions"):
        nm_mask(torch.tensor(1.0), 1, 2)


def test_forcing_cuda_without_gpu_is_a_clear_error():
    if toolkit.gpu_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(RuntimeError, match="backend='cuda'"):
        nm_mask(torch.randn(2, 8), 2, 4, backend="cuda")
    with toolkit.use_backend("cuda"), pytest.raises(RuntimeError, match="backend='cuda'"):
        nm_mask(torch.randn(2, 8), 2, 4)


def test_selfcheck_passes_on_reference_path():
    rows = nm_mask_selfcheck(seed=3)
    assert rows and all(r["reference = brute force"] is True for r in rows)
