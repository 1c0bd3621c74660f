"""The CUDA path of DSA's prediction against the reference, with poisoned outputs."""

from __future__ import annotations

import pytest
import torch

from toolkit.attention._dsa_predict import (
    _bits_cuda,
    _bits_launch,
    _bits_plan,
    _mma_launch,
    _mma_plan,
    _predict_cuda,
    _predict_cuda_rowwise,
    pack_bits,
    predict_topk_bits,
    predict_topk_mask,
    unpack_bits,
)

from .._gpu import assert_matches_reference, assert_written, generator, poisoned

pytestmark = pytest.mark.gpu


CASES = [
    ((2, 3), 7, 64, 16, torch.int8, 8, 3),
    ((1,), 33, 257, 32, torch.int8, 40, 127),
    ((4,), 16, 1000, 64, torch.int8, 100, 1),
    ((2,), 5, 300, 128, torch.int16, 299, 1000),
    ((1,), 3, 13000, 32, torch.int8, 1300, 127),
    ((1,), 4, 1, 8, torch.int8, 1, 127),
    ((3,), 9, 511, 7, torch.int16, 77, 30000),
]


def _assert_kernel_matches_reference(q, k, scale, keep):
    """Both kernels' masks and the packed bits, into poisoned buffers, equal the reference's
    bit for bit."""
    expected = predict_topk_mask(q, k, scale, keep, backend="cpu")
    qc, kc, sc = q.cuda(), k.cuda(), scale.cuda()
    for path in (_predict_cuda, _predict_cuda_rowwise):
        out = path(qc, kc, sc, keep, out=poisoned(expected.shape, torch.bool))
        torch.cuda.synchronize()
        assert_written(out)
        assert_matches_reference(out, expected, exact=True, msg=path.__name__)
    _assert_bits_match(qc, kc, sc, keep, expected)
    return out


def _assert_bits_match(qc, kc, sc, keep, expected, kernel=None, plan=None):
    """Every bits path (or ``kernel`` with ``plan``), into a poisoned buffer, equals the
    packed reference mask: the dispatch (``_bits_cuda``), the dp4a tile kernel and the
    tensor-core kernel where their plans fit.  The poison word 0xA5A5A5A5 differs from the
    reference wherever a word is left unwritten (no case here keeps that exact pattern), so
    equality shows every word was written."""
    packed = pack_bits(expected)
    assert not (packed == -0x5A5A5A5B).any(), "the reference holds the poison word"
    if kernel is not None:
        runs = [(kernel, plan, f) for f in (True, False)]
    else:
        plans = {"dp4a": _bits_plan(qc, kc), "mma": _mma_plan(qc, kc)}
        runs = [("dispatch", None, None)]
        runs += [(name, p, f) for name, p in plans.items() for f in (True, False)]
    for name, p, filtered in runs:
        if name != "dispatch" and p is None:
            continue  # this kernel's shared memory does not fit
        out = poisoned(packed.shape, torch.int32)
        if name == "dispatch":
            _bits_cuda(qc, kc, sc, keep, out=out)
        elif name == "dp4a":
            _bits_launch(qc, kc, sc, keep, p, out=out, filter=filtered)
        else:
            _mma_launch(qc, kc, sc, keep, p, out=out, filter=filtered)
        torch.cuda.synchronize()
        msg = f"bits {name}, plan {p}, candidate filter {filtered}"
        assert_matches_reference(out, packed, exact=True, msg=msg)
        assert torch.equal(unpack_bits(out, expected.shape[-1]).cpu(), expected)


@pytest.mark.parametrize(("lead", "lq", "lk", "rank", "dtype", "keep", "amp"), CASES)
def test_cuda_equals_reference(lead, lq, lk, rank, dtype, keep, amp):
    gen = generator(lead, lq, lk, rank, dtype, keep, amp)
    q = torch.randint(-amp, amp + 1, (*lead, lq, rank), generator=gen).to(dtype)
    k = torch.randint(-amp, amp + 1, (*lead, lk, rank), generator=gen).to(dtype)
    scale = torch.rand(*lead, lk, generator=gen) + 0.25
    if amp < 5:  # coarse codes and equal scales: many exact ties
        scale = torch.ones(*lead, lk)
    _assert_kernel_matches_reference(q, k, scale, keep)


def test_auto_dispatch_and_errors():
    gen = generator("auto dispatch")
    q = torch.randint(-9, 10, (2, 8, 16), generator=gen).to(torch.int8).cuda()
    k = torch.randint(-9, 10, (2, 40, 16), generator=gen).to(torch.int8).cuda()
    s = (torch.rand(2, 40, generator=gen) + 0.1).cuda()
    expected = predict_topk_mask(q.cpu(), k.cpu(), s.cpu(), 5)
    assert_matches_reference(predict_topk_mask(q, k, s, 5), expected, exact=True)
    with pytest.raises(ValueError, match="code rank r <= 128"):
        predict_topk_mask(
            torch.zeros(1, 2, 129, dtype=torch.int8, device="cuda"),
            torch.zeros(1, 3, 129, dtype=torch.int8, device="cuda"),
            torch.ones(1, 3, device="cuda"),
            1,
            backend="cuda",
        )


def _scales(kind: str, lead: tuple, lk: int, gen: torch.Generator) -> torch.Tensor:
    if kind == "huge-range":  # scores over ~60 decades: the bucket ranges must not overflow
        return torch.pow(10.0, torch.rand(*lead, lk, generator=gen) * 60 - 30)
    if kind == "cluster":  # hundreds of distinct scores a few ulps apart: many narrowing passes
        steps = torch.randperm(lk, generator=gen).reshape(1, lk).expand(*lead, lk)
        return 1.0 + steps.float() * 2.0**-22
    return torch.rand(*lead, lk, generator=gen) + 0.25


@pytest.mark.parametrize(
    ("lk", "keep", "kind"),
    [
        (2048, 205, "huge-range"),
        (2048, 2048, "uniform"),  # keep everything
        (2048, 1, "uniform"),
        (4096, 410, "cluster"),
        (300, 150, "cluster"),
        (64, 13, "cluster"),  # few enough keys to be ranked at once
        (65, 64, "uniform"),
    ],
)
def test_cuda_selection_edge_cases(lk, keep, kind):
    lead, lq, rank = (2,), 6, 16
    gen = generator(lk, keep, kind)
    if kind == "cluster":  # one code row for every key: the scale alone orders them
        q = torch.randint(1, 8, (*lead, lq, rank), generator=gen).to(torch.int8)
        k = torch.randint(1, 8, (*lead, 1, rank), generator=gen).expand(*lead, lk, rank)
        k = k.to(torch.int8).contiguous()
    else:
        q = torch.randint(-127, 128, (*lead, lq, rank), generator=gen).to(torch.int8)
        k = torch.randint(-127, 128, (*lead, lk, rank), generator=gen).to(torch.int8)
    scale = _scales(kind, lead, lk, gen)
    out = _assert_kernel_matches_reference(q, k, scale, keep)
    assert (out.sum(-1) == keep).all()


@pytest.mark.parametrize(
    ("lead", "lq", "lk", "rank", "dtype"),
    [
        ((2,), 5, 100, 1, torch.int8),  # one code: a word with one byte
        ((2,), 37, 70, 7, torch.int8),  # rank not a multiple of 4: padded key rows
        ((3,), 20, 129, 12, torch.int8),  # 3 words a key: the word loop
        ((1,), 8, 96, 20, torch.int8),
        ((2,), 9, 300, 128, torch.int8),  # the largest rank: 8 16-byte loads a key
        ((2,), 11, 77, 3, torch.int16),
    ],
)
def test_bits_ranks_and_tails(lead, lq, lk, rank, dtype):
    gen = generator("bits ranks", lead, lq, lk, rank, dtype)
    amp = 127 if dtype == torch.int8 else 30000
    q = torch.randint(-amp, amp + 1, (*lead, lq, rank), generator=gen).to(dtype)
    k = torch.randint(-amp, amp + 1, (*lead, lk, rank), generator=gen).to(dtype)
    scale = torch.rand(*lead, lk, generator=gen) + 0.25
    for keep in (1, max(1, lk // 10), lk - 1, lk):
        _assert_kernel_matches_reference(q, k, scale, keep)


@pytest.mark.parametrize(
    ("kernel", "plan"),
    [
        ("dp4a", (1, 1)),
        ("dp4a", (1, 7)),
        ("dp4a", (4, 64)),
        ("dp4a", (16, 16)),
        ("mma", (1, 16, 16)),
        ("mma", (4, 32, 16)),
        ("mma", (16, 48, 16)),
        ("mma", (2, 8, 8)),
        ("mma", (8, 64, 8)),
    ],
)
def test_bits_tiles(kernel, plan):
    """Explicit block plans ((warps, rows a block) for dp4a, (warps, rows a block, row group)
    for mma): one row a block, rows shared by fewer warps than rows, tiles larger than Lq,
    many warps, groups of 8 and 16 rows with a partial last group; warps reuse their
    buffers from row to row."""
    lead, lq, lk, rank, keep = (3,), 50, 333, 16, 34
    gen = generator("bits tiles", kernel, plan)
    q = torch.randint(-7, 8, (*lead, lq, rank), generator=gen).to(torch.int8)
    k = torch.randint(-7, 8, (*lead, lk, rank), generator=gen).to(torch.int8)
    scale = torch.rand(*lead, lk, generator=gen) + 0.25
    expected = predict_topk_mask(q, k, scale, keep, backend="cpu")
    full = (plan[0], plan[1], -(-lq // plan[1]), *plan[2:])
    _assert_bits_match(q.cuda(), k.cuda(), scale.cuda(), keep, expected, kernel, full)


def test_bits_issue_configuration():
    """B 4 x H 2 slices of the issue's L 2048, r 16, 4-bit codes, keep 205: the kernel's own
    plan puts several rows on every warp."""
    lead, length, rank, keep = (4, 2), 2048, 16, 205
    gen = generator("bits issue")
    q = torch.randint(-7, 8, (*lead, length, rank), generator=gen).to(torch.int8)
    k = torch.randint(-7, 8, (*lead, length, rank), generator=gen).to(torch.int8)
    scale = torch.rand(*lead, length, generator=gen) * 0.1 + 0.01
    assert _bits_plan(q.cuda(), k.cuda()) is not None
    assert _mma_plan(q.cuda(), k.cuda()) is not None
    expected = predict_topk_mask(q, k, scale, keep, backend="cpu")
    _assert_bits_match(q.cuda(), k.cuda(), scale.cuda(), keep, expected)
    bits = predict_topk_bits(q.cuda(), k.cuda(), scale.cuda(), keep)
    assert bits.shape == (*lead, length, length // 32) and bits.dtype == torch.int32


def test_bits_fallback_where_keys_do_not_fit():
    """int16 codes of rank 128 at Lk 2048 (512 KB of keys): the row-wise kernel, packed."""
    gen = generator("bits fallback")
    q = torch.randint(-300, 301, (1, 4, 128), generator=gen).to(torch.int16)
    k = torch.randint(-300, 301, (1, 2048, 128), generator=gen).to(torch.int16)
    scale = torch.rand(1, 2048, generator=gen) + 0.5
    assert _bits_plan(q.cuda(), k.cuda()) is None and _mma_plan(q.cuda(), k.cuda()) is None
    expected = predict_topk_mask(q, k, scale, 100, backend="cpu")
    _assert_bits_match(q.cuda(), k.cuda(), scale.cuda(), 100, expected)


def test_bits_unaligned_views():
    """Views that start off a 16-byte boundary are copied to aligned memory first."""
    gen = generator("bits unaligned")
    q = torch.randint(-9, 10, (1, 6, 16), generator=gen).to(torch.int8)
    k_all = torch.randint(-9, 10, (1, 41, 16), generator=gen).to(torch.int8)
    s_all = torch.rand(1, 41, generator=gen) + 0.25
    k = k_all.cuda().view(-1)[1 * 16 - 1 : -1].view(1, 40, 16)  # offset 15 bytes
    s = s_all.cuda().view(-1)[1:].view(1, 40)  # offset 4 bytes
    assert k.data_ptr() % 16 and s.data_ptr() % 16
    expected = predict_topk_mask(q, k.cpu(), s.cpu(), 6, backend="cpu")
    _assert_bits_match(q.cuda(), k, s, 6, expected)


def _filter_inputs(kind: str, lead: tuple, lq: int, lk: int, rank: int, gen):
    """Codes and scales whose score distributions stress the candidate filter
    (kernels/dsa_predict.cu, select_row), which runs where Lk >= 512 and 4 keep <= Lk."""
    shape_q, shape_k = (*lead, lq, rank), (*lead, lk, rank)
    q = torch.randint(-7, 8, shape_q, generator=gen).to(torch.int8)
    k = torch.randint(-7, 8, shape_k, generator=gen).to(torch.int8)
    scale = torch.rand(*lead, lk, generator=gen) + 0.25
    if kind == "equal":  # every score equal: all keys are candidates, ties to the lowest index
        q, k = torch.ones(shape_q, dtype=torch.int8), torch.ones(shape_k, dtype=torch.int8)
        scale = torch.ones(*lead, lk)
    elif kind == "zero-queries":  # q codes 0: every score 0 (mixed with normal rows)
        q[..., ::2, :] = 0
    elif kind == "coarse":  # codes in {-1, 0, 1}, equal scales: many exact ties at the cut
        q = torch.randint(-1, 2, shape_q, generator=gen).to(torch.int8)
        k = torch.randint(-1, 2, shape_k, generator=gen).to(torch.int8)
        scale = torch.ones(*lead, lk)
    elif kind == "outliers":  # a few huge scores
        scale[..., torch.randint(0, lk, (5,), generator=gen)] = 1e20
    elif kind == "huge-range":  # 60 decades
        scale = torch.pow(10.0, torch.rand(*lead, lk, generator=gen) * 60 - 30)
    elif kind == "overshoot":
        # Positive scores, 1000x larger at the sampled keys (multiples of Lk // 256): the
        # sample's threshold then leaves about 2 keep 256 / Lk candidates, fewer than keep,
        # and the kernel must recompute the row and run the full selection.
        q, k = q.abs() + 1, k.abs() + 1
        scale = torch.ones(*lead, lk)
        scale[..., :: lk // 256] = 1000.0
    return q, k, scale


@pytest.mark.parametrize(
    "kind", ["uniform", "equal", "zero-queries", "coarse", "outliers", "huge-range", "overshoot"]
)
@pytest.mark.parametrize("lk", [512, 2048, 3000])
def test_bits_candidate_filter(kind, lk):
    """The candidate filter and its fallbacks bit for bit against the reference, with the
    filter on and off, at keep = 1, ~Lk / 10, Lk / 4 (the largest with the filter) and just
    above it (the full selection)."""
    lead, lq, rank = (2,), 12, 16
    gen = generator("candidate filter", kind, lk)
    q, k, scale = _filter_inputs(kind, lead, lq, lk, rank, gen)
    for keep in (1, lk // 10, lk // 4, lk // 4 + 1):
        expected = predict_topk_mask(q, k, scale, keep, backend="cpu")
        _assert_bits_match(q.cuda(), k.cuda(), scale.cuda(), keep, expected)


@pytest.mark.parametrize("bits", [1, 4, 8, 12])
@pytest.mark.parametrize(
    ("dtype", "d", "rank"),
    [
        (torch.float16, 64, 16),
        (torch.bfloat16, 128, 32),
        (torch.float32, 48, 7),
        (torch.float16, 256, 128),
        (torch.float32, 1, 1),
        (torch.float16, 33, 40),
    ],
)
def test_codes_kernel_against_float64(bits, dtype, d, rank):
    """dsa_codes (projection + per-row quantization in one kernel) against float64: the scale
    within float32 rounding of max|x| / qmax (mean|x| for 1 bit), every code within 1 of the
    float64 code and equal to it wherever x / s is not within 1e-3 of a rounding boundary,
    zero rows with scale 0 and codes 0, and no row counted as bad."""
    from toolkit.attention._dsa_predict import dsa_codes_cuda
    from toolkit.attention.dsa import dsa_projection

    gen = generator("codes", bits, dtype, d, rank)
    x = torch.randn(3, 37, d, generator=gen).to(dtype)
    x[1, 5] = 0  # a zero row
    proj = dsa_projection(d, rank, seed=7)
    bad = torch.zeros(2, dtype=torch.int32, device="cuda")
    codes, scale = dsa_codes_cuda(x.cuda(), proj.cuda(), bits, bad, 1)
    torch.cuda.synchronize()
    assert bad.tolist() == [0, 0]
    assert codes.dtype == (torch.int8 if bits <= 8 else torch.int16)
    x64 = x.double() @ proj.double()
    codes, scale = codes.cpu().double(), scale.cpu().double()
    if bits == 1:
        s64 = x64.abs().mean(-1)
        torch.testing.assert_close(scale, s64, rtol=1e-5, atol=1e-30)
        sure = x64.abs() > 1e-4 * x64.abs().amax(-1, keepdim=True)
        assert torch.equal(codes[sure], torch.where(x64 >= 0, 1.0, -1.0)[sure])
        return
    qmax = 2 ** (bits - 1) - 1
    s64 = x64.abs().amax(-1) / qmax
    torch.testing.assert_close(scale, s64, rtol=1e-5, atol=0.0)
    ratio = x64 / torch.where(s64 > 0, s64, 1.0)[..., None]
    ref = ratio.round().clamp(-qmax, qmax)
    assert (codes - ref).abs().max() <= 1
    sure = ((ratio - ratio.floor() - 0.5).abs() > 1e-3) & (ratio.abs() < qmax - 1e-3)
    assert torch.equal(codes[sure], ref[sure])
    assert scale[1, 5] == 0 and (codes[1, 5] == 0).all()


def test_codes_kernel_counts_bad_rows_and_dsa_mask_raises():
    from toolkit.attention import dsa_mask
    from toolkit.attention._dsa_predict import dsa_codes_cuda
    from toolkit.attention.dsa import dsa_projection

    x = torch.randn(2, 9, 64, dtype=torch.float16)
    x[0, 3, 5] = float("nan")
    x[1, 0, 0] = float("inf")
    bad = torch.zeros(2, dtype=torch.int32, device="cuda")
    codes, scale = dsa_codes_cuda(x.cuda(), dsa_projection(64, 16).cuda(), 4, bad, 0)
    assert bad.tolist() == [2, 0]
    # bad rows are written as zero rows (the prediction may run on them before the raise)
    assert scale[0, 3].item() == 0 and scale[1, 0].item() == 0
    assert (codes[0, 3] == 0).all() and (codes[1, 0] == 0).all()
    assert torch.isfinite(scale).all()
    with pytest.raises(ValueError, match="q must be finite, got 2 NaN or infinite"):
        dsa_mask(x.cuda(), torch.randn(2, 9, 64, dtype=torch.float16).cuda())
    with pytest.raises(ValueError, match="k must be finite"):
        dsa_mask(torch.randn(2, 9, 64).cuda(), x.float().cuda())
    # dsa_attention's fused path checks after its launches (deferred): the same errors
    from toolkit.attention import dsa_attention

    y = torch.randn(2, 9, 64, dtype=torch.float16).cuda()
    with pytest.raises(ValueError, match="q must be finite, got 2 NaN or infinite"):
        dsa_attention(x.cuda(), y, y, sparsity=0.9)
    with pytest.raises(ValueError, match="k must be finite, got 2 NaN or infinite"):
        dsa_attention(y, x.cuda(), y, sparsity=0.9)


def test_dsa_mask_codes_kernel_agrees_with_torch_codes(monkeypatch):
    """The codes kernel and the torch codes (the same rule, other float32 summation orders)
    give nearly the same pattern; each pattern is exactly the reference top-k of its codes."""
    from toolkit.attention import dsa as dsa_mod
    from toolkit.attention import dsa_mask

    gen = generator("codes vs torch")
    q, k = (torch.randn(2, 4, 300, 64, generator=gen).half().cuda() for _ in range(2))
    fast = dsa_mask(q, k, sparsity=0.9)
    monkeypatch.setattr(dsa_mod, "_CODES_KERNEL", False)
    slow = dsa_mask(q, k, sparsity=0.9)
    assert (fast == slow).float().mean() > 0.995
