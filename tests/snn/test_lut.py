"""LUT accumulation: exact against the dense product, counts against brute force."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from toolkit.snn import lut_accumulate, lut_counts
from toolkit.snn.lut import lut_table


def _dyadic(shape, g):
    # Multiples of 2^-10 below 2^3: every partial sum of up to 1000 terms is exact in float64.
    return torch.randint(-8192, 8192, shape, generator=g).double() / 1024


@pytest.mark.parametrize("group", range(1, 9))
@pytest.mark.parametrize("n", [1, 5, 37, 64])
def test_exact_in_float64(group, n):
    g = torch.Generator().manual_seed(group * 100 + n)
    w = _dyadic((9, n), g)
    s = (torch.rand(2, 6, n, generator=g) < 0.35).double()
    assert torch.equal(lut_accumulate(s, w, group), F.linear(s, w))


def test_general_weights_and_dtypes():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(7, 50, generator=g, dtype=torch.float64)
    s = torch.rand(20, 50, generator=g) < 0.2  # bool spikes
    torch.testing.assert_close(
        lut_accumulate(s, w, 5), F.linear(s.double(), w), rtol=1e-14, atol=1e-13
    )
    out = lut_accumulate(s.float(), w.float(), 3)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, F.linear(s.float(), w.float()), rtol=1e-5, atol=1e-5)


def test_table_entries_are_subset_sums():
    g = torch.Generator().manual_seed(1)
    w = _dyadic((3, 6), g)
    table = lut_table(w, group=3)  # [3, 2, 8]
    for o in range(3):
        for k in range(2):
            for p in range(8):
                expected = sum(float(w[o, 3 * k + j]) for j in range(3) if p >> j & 1)
                assert float(table[o, k, p]) == expected


def test_exact_counts_by_brute_force():
    g = torch.Generator().manual_seed(2)
    n, m, group = 23, 4, 4
    s = (torch.rand(11, n, generator=g) < 0.3).double()
    _, c = lut_accumulate(
        s, torch.randn(m, n, generator=g, dtype=torch.float64), group, return_counts=True
    )
    nnz = int(s.sum())
    nonzero_groups = sum(
        int(s[i, k : k + group].any()) for i in range(11) for k in range(0, n, group)
    )
    assert c.dense_adds == 11 * n * m and c.skip_adds == nnz * m
    assert c.lut_lookup_adds == nonzero_groups * m
    # Groups of 4,4,4,4,4,3: build = m * (5 * (16-4-1) + (8-3-1)).
    assert c.lut_build_adds == m * (5 * 11 + 4)


@pytest.mark.parametrize(("group", "density"), [(2, 0.05), (4, 0.2), (8, 0.5)])
def test_expected_counts_match_monte_carlo(group, density):
    g = torch.Generator().manual_seed(3)
    n, m, samples = 40, 3, 4000
    s = (torch.rand(samples, n, generator=g) < density).double()
    _, measured = lut_accumulate(
        s, torch.ones(m, n, dtype=torch.float64), group, return_counts=True
    )
    expected = lut_counts(n, m, group, density, samples)
    for field in ("skip_adds", "lut_lookup_adds", "lut_lookup_reads", "skip_reads"):
        assert getattr(measured, field) == pytest.approx(getattr(expected, field), rel=0.03)
    for field in ("dense_adds", "dense_reads", "lut_build_adds", "lut_build_accesses"):
        assert getattr(measured, field) == getattr(expected, field)


def test_savings_trends():
    # Denser spikes favour the LUT over zero-skipping; a larger group needs fewer lookups.
    sparse, dense = lut_counts(256, 64, 4, 0.02, 512), lut_counts(256, 64, 4, 0.4, 512)
    assert dense.add_saving_vs_skip > 1 > sparse.add_saving_vs_skip
    assert lut_counts(256, 64, 8, 0.4, 512).lut_lookup_adds < dense.lut_lookup_adds


def test_errors():
    w = torch.randn(3, 4)
    with pytest.raises(ValueError, match="spikes must be binary"):
        lut_accumulate(torch.tensor([[0.0, 1.0, 0.5, 1.0]]), w)
    with pytest.raises(ValueError, match="group must satisfy 1 <= group <= 8"):
        lut_accumulate(torch.ones(1, 4), w, group=9)
    with pytest.raises(ValueError, match="group must satisfy 1 <= group <= 8"):
        lut_accumulate(torch.ones(1, 4), w, group=0)
    with pytest.raises(TypeError, match="group must be an int"):
        lut_accumulate(torch.ones(1, 4), w, group=2.0)
    with pytest.raises(ValueError, match="must equal weight's in_features"):
        lut_accumulate(torch.ones(1, 5), w)
    with pytest.raises(ValueError, match="density must lie in"):
        lut_counts(4, 3, 2, 1.5)
