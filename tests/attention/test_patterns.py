"""Pattern values: masks against loop references, densities, labels that parse back, the
string API's equivalence, styles, and DSA's seed policy."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from toolkit.attention import (
    DSA,
    NM,
    PATTERN_KINDS,
    PATTERN_STYLES,
    Dense,
    Local,
    Strided,
    TopK,
    dsa_attention,
    dsa_mask,
    dsa_projection,
    dsa_scores,
    keep_count,
    method_mask,
    parse_pattern,
)

from ._reference import attention_ref, nm_keep_ref, scores_ref, topk_keep_ref


def _qkv(seed, lead=(2,), lq=6, lk=12, d=8):
    g = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(*lead, n, d, generator=g) for n in (lq, lk, lk))


def _rows(keep_fn, scores: np.ndarray) -> np.ndarray:
    return np.stack([[keep_fn(row) for row in block] for block in scores])


@settings(max_examples=20, deadline=None)
@given(st.integers(1, 8), st.integers(1, 8), st.integers(1, 20), st.integers(0, 10**6))
def test_nm_and_topk_masks_match_loops(n, m, lk, seed):
    n = min(n, m)
    q, k, _ = _qkv(seed, lq=5, lk=lk)
    drop = torch.rand(5, lk, generator=torch.Generator().manual_seed(seed)) < 0.2
    mask = torch.where(drop, -math.inf, 0.0)
    s = scores_ref(q, k, 0.7, mask)
    got = NM(n, m).mask(q, k, scale=0.7, attn_mask=mask)
    np.testing.assert_array_equal(
        got.numpy().reshape(s.shape), _rows(lambda r: nm_keep_ref(r, n, m), s)
    )
    density = n / m
    got = TopK(density).mask(q, k, scale=0.7, attn_mask=mask)
    kk = keep_count(density, lk)
    np.testing.assert_array_equal(
        got.numpy().reshape(s.shape), _rows(lambda r: topk_keep_ref(r, kk), s)
    )


@pytest.mark.parametrize("density", [0.125, 0.25, 0.5, 1.0])
def test_measured_density_is_the_nominal_one(density):
    q, k, _ = _qkv(1, lq=16, lk=16)
    for pattern in (TopK(density), DSA(density), Local(density), Strided(density)):
        keep = pattern.mask(q, k)
        assert keep.shape == (2, 16, 16) and keep.dtype == torch.bool
        assert (keep.sum(-1) == 16 * density).all(), pattern
    assert Dense().mask(q, k).all() and Dense().density == 1.0
    assert NM(1, 4).mask(q, k).double().mean().item() == NM(1, 4).density == 0.25


def test_pattern_attention_matches_the_loop_reference():
    q, k, v = _qkv(2)
    mask = torch.zeros(12)
    mask[9:] = -math.inf  # three padded keys
    for pattern, keep_fn in (
        (NM(2, 4), lambda r: nm_keep_ref(r, 2, 4)),
        (TopK(0.25), lambda r: topk_keep_ref(r, keep_count(0.25, 12))),
        (Dense(), lambda r: np.ones(len(r), dtype=bool)),
    ):
        out, p = pattern.attention(q, k, v, scale=0.5, attn_mask=mask, return_probs=True)
        ref_out, ref_p, _ = attention_ref(q, k, v, keep_fn, 0.5, mask)
        np.testing.assert_allclose(p.double().numpy().reshape(ref_p.shape), ref_p, atol=1e-6)
        np.testing.assert_allclose(out.double().numpy().reshape(ref_out.shape), ref_out, atol=1e-5)


def test_dsa_pattern_is_dsa_mask_and_dsa_attention():
    q, k, v = _qkv(3)
    pattern = DSA(0.25, rank=8, bits=2, seed=5)
    expected = dsa_mask(q, k, sparsity=0.75, rank=8, bits=2, seed=5)
    assert torch.equal(pattern.mask(q, k), expected)
    assert torch.equal(method_mask("dsa", q, k, 0.25, rank=8, bits=2, seed=5), expected)
    out = dsa_attention(q, k, v, sparsity=0.75, rank=8, bits=2, seed=5)
    assert torch.equal(pattern.attention(q, k, v), out)
    # Density 1 keeps everything (dsa_attention itself needs sparsity < 1).
    assert DSA(1.0).mask(q, k).all()
    assert torch.allclose(DSA(1.0).attention(q, k, v), Dense().attention(q, k, v))


def test_string_api_equals_the_values():
    q, k, _ = _qkv(4)
    for method, density, pattern in (
        ("dense", None, Dense()),
        ("2:4", None, NM(2, 4)),
        ("topk", 0.25, TopK(0.25)),
        ("dsa", 0.5, DSA(0.5)),
        ("local", 0.5, Local(0.5)),
        ("strided", 0.25, Strided(0.25)),
    ):
        assert torch.equal(method_mask(method, q, k, density), pattern.mask(q, k))
        assert torch.equal(method_mask(pattern, q, k), pattern.mask(q, k))
        spec = method if density is None else f"{method}@{density}"
        assert parse_pattern(spec) == pattern and parse_pattern(pattern) is pattern


patterns = st.one_of(
    st.just(Dense()),
    st.integers(1, 32).flatmap(lambda m: st.builds(NM, st.integers(1, m), st.just(m))),
    st.builds(TopK, st.floats(0.01, 1.0)),
    st.builds(Local, st.floats(0.01, 1.0)),
    st.builds(Strided, st.floats(0.01, 1.0)),
    st.builds(
        DSA, st.floats(0.01, 1.0), st.integers(1, 64), st.integers(1, 16), st.integers(0, 99)
    ),
)


@given(patterns)
def test_labels_parse_back(pattern):
    # Labels print densities with %g (6 significant digits); the parsed value is that.
    back = parse_pattern(pattern.label)
    assert type(back) is type(pattern) and back.label == pattern.label
    assert back.density == pytest.approx(pattern.density, rel=1e-5)
    if isinstance(pattern, (Dense, NM)):
        assert back == pattern
    else:  # every other parameter comes back exactly
        assert dataclasses.replace(back, density=pattern.density) == pattern
    assert str(pattern) == pattern.label
    assert pattern.style is PATTERN_STYLES[pattern.kind]


def test_values_are_frozen_hashable_and_normalised():
    assert NM(2, 4) == NM(np.int64(2), 4) and hash(NM(2, 4)) == hash(NM(2, 4))
    assert TopK(0.5) != Local(0.5) and len({DSA(0.5), DSA(0.5), DSA(0.5, seed=1)}) == 2
    assert isinstance(TopK(1).density, float)
    with pytest.raises(dataclasses.FrozenInstanceError):
        NM(2, 4).n = 3  # type: ignore[misc]
    assert NM(2, 4).name == "2:4 (DFSS)" and NM(2, 4).family == "N:M (DFSS)"
    assert DSA(0.5).name == DSA(0.5).family == "DSA (rank 16, 4 bits)"
    assert DSA(0.5, seed=2).name == "DSA (rank 16, 4 bits, seed 2)"
    assert DSA(0.25, rank=8, seed=3).label == "dsa@0.25 r=8 seed=3"


def test_styles_cover_every_kind_with_distinct_colours():
    assert set(PATTERN_STYLES) == set(PATTERN_KINDS)
    assert len({s.color for s in PATTERN_STYLES.values()}) == len(PATTERN_KINDS)
    assert len({s.name for s in PATTERN_STYLES.values()}) == len(PATTERN_KINDS)
    kinds = {Dense, NM, TopK, DSA, Local, Strided}
    assert {cls.kind for cls in kinds} == set(PATTERN_KINDS)


@pytest.mark.parametrize(
    ("build", "error", "match"),
    [
        (lambda: NM(5, 4), ValueError, "n must satisfy 1 <= n <= 4, got n=5"),
        (lambda: NM(2, 33), ValueError, "m must satisfy 1 <= m <= 32"),
        (lambda: NM(2.0, 4), TypeError, "n must be an int"),
        (lambda: TopK(0.0), ValueError, r"density must lie in \(0, 1\]"),
        (lambda: Local(1.5), ValueError, "density must lie in"),
        (lambda: Strided("half"), TypeError, "density must be a real number"),
        (lambda: DSA(0.5, rank=0), ValueError, "rank must satisfy 1 <= rank"),
        (lambda: DSA(0.5, bits=17), ValueError, "bits must satisfy 1 <= bits <= 16"),
        (lambda: DSA(0.5, seed=-1), ValueError, "seed must satisfy 0 <= seed"),
        (lambda: parse_pattern("2:x"), ValueError, "N:M pattern must look like '2:4'"),
        (lambda: parse_pattern("topk"), ValueError, "needs a density"),
        (lambda: parse_pattern("topk@"), ValueError, "needs a density"),
        (lambda: parse_pattern("foo@0.5"), ValueError, "got 'foo@0.5'"),
        (lambda: parse_pattern("2:4@0.5"), ValueError, "got '2:4@0.5'"),
        (lambda: parse_pattern("topk@0.5 r=8"), ValueError, "only DSA takes parameters"),
        (lambda: parse_pattern("dsa@0.5 r=x"), ValueError, "only DSA takes parameters"),
        (lambda: parse_pattern(0.5), TypeError, "pattern must be a Pattern or a str"),
        (lambda: method_mask(NM(2, 4), *_qkv(0)[:2], 0.5), ValueError, "fixes its density"),
    ],
)
def test_errors_name_the_argument(build, error, match):
    with pytest.raises(error, match=match):
        build()


def test_dsa_seed_policy():
    q, k, v = _qkv(6)
    g = torch.Generator().manual_seed(0)
    # seed=None means 0, and a generator seeded 0 draws the same projection.
    assert torch.equal(dsa_projection(8, 4), dsa_projection(8, 4, seed=0))
    assert torch.equal(dsa_projection(8, 4), dsa_projection(8, 4, generator=g))
    assert torch.equal(dsa_mask(q, k), dsa_mask(q, k, seed=0))
    gen = torch.Generator().manual_seed(0)
    assert torch.equal(dsa_scores(q, k, generator=gen), dsa_scores(q, k))
    for call in (
        lambda g: dsa_projection(8, 4, seed=1, generator=g),
        lambda g: dsa_mask(q, k, seed=1, generator=g),
        lambda g: dsa_scores(q, k, seed=1, generator=g),
        lambda g: dsa_attention(q, k, v, seed=1, generator=g),
    ):
        with pytest.raises(ValueError, match="pass either seed or generator, not both"):
            call(torch.Generator())
