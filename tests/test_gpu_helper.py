"""The GPU tests' shared helper (tests/_gpu.py) catches what it is there to catch.

The helper runs on CPU tensors as well, so it is checked here without a GPU.
"""

from __future__ import annotations

import pytest
import torch

from ._gpu import assert_matches_reference, assert_written, generator, poisoned, tolerance


@pytest.mark.parametrize(
    "dtype", [torch.bool, torch.int8, torch.int32, torch.float16, torch.float32]
)
def test_a_skipped_element_is_caught(dtype):
    out = poisoned((3, 5), dtype, device="cpu")
    with pytest.raises(AssertionError, match="unwritten"):
        assert_written(out)
    out.view(-1)[:-1] = torch.ones(14, dtype=dtype)  # a kernel that misses the last element
    with pytest.raises(AssertionError, match="unwritten"):
        assert_written(out)
    out.view(-1)[-1] = torch.zeros((), dtype=dtype)
    assert_written(out)


def test_nan_in_the_reference_is_not_poison():
    out = poisoned((3,), torch.float32, device="cpu")
    out[:2] = 1.0
    assert_written(out, reference=torch.tensor([1.0, 1.0, float("nan")]))


def test_generator_is_stable_and_distinct_per_case():
    a = torch.rand(4, generator=generator(torch.float16, (3, 4), 2))
    b = torch.rand(4, generator=generator(torch.float16, (3, 4), 2))
    c = torch.rand(4, generator=generator(torch.float16, (3, 4), 3))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_exact_and_tolerant_comparison():
    x = torch.randn(100, generator=generator("x"))
    assert_matches_reference(x, x.clone(), exact=True)
    nudged = x + 1e-6 * x.abs().max()
    with pytest.raises(AssertionError):
        assert_matches_reference(nudged, x, exact=True)
    assert_matches_reference(nudged, x)  # within float32's tolerance
    with pytest.raises(AssertionError):
        assert_matches_reference(x + 1e-2, x)
    assert_matches_reference((x + 1e-2).half(), x.half())  # within float16's tolerance
    with pytest.raises(AssertionError, match="differ"):
        assert_matches_reference(
            torch.tensor([True, False]), torch.tensor([True, True]), exact=True
        )
    with pytest.raises(AssertionError, match="shape"):
        assert_matches_reference(x[:3], x)
    with pytest.raises(ValueError, match="floating dtype"):
        tolerance(torch.int8)
