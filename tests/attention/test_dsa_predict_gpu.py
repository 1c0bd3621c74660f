"""The CUDA path of DSA's prediction against the reference, with poisoned outputs."""

from __future__ import annotations

import pytest
import torch

from toolkit.attention._dsa_predict import _predict_cuda, predict_topk_mask

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
    """The kernel's mask, into a poisoned buffer, equals the reference's bit for bit."""
    expected = predict_topk_mask(q, k, scale, keep, backend="cpu")
    out = _predict_cuda(
        q.cuda(), k.cuda(), scale.cuda(), keep, out=poisoned(expected.shape, torch.bool)
    )
    torch.cuda.synchronize()
    assert_written(out)
    assert_matches_reference(out, expected, exact=True)
    return out


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
