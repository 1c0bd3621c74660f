"""Regression tests for issue 10 (items 6-8): bad input to the attention API gets a clear
error naming the argument, and NaN is reported instead of hidden behind a valid-looking
number.  Each test states the defect it pins down."""

from __future__ import annotations

import math

import pytest
import torch

import toolkit.attention as ta
from toolkit.models._attention import check_padding_mask

NAN = float("nan")


# -- item 6: NaN is reported, not propagated silently --------------------------------------------
def test_output_error_nan_reference_is_nan_not_zero():
    # Was 0.0: NaN compared as "not positive" and fell into the zero-reference branch.
    out = torch.ones(2, 3, 4, dtype=torch.float64)
    ref = out.clone()
    ref[0, 1, 2] = NAN
    err = ta.output_error(out, ref)
    assert math.isnan(err[0]) and err[1] == 0.0
    out_nan = out.clone()
    out_nan[1, 0, 0] = NAN
    assert math.isnan(ta.output_error(out_nan, out)[1])
    # the documented finite cases still hold: 0 for two zeros, inf for a zero reference
    z = torch.zeros(2, 2)
    assert ta.output_error(z, z).item() == 0.0
    assert ta.output_error(torch.ones(2, 2), z).item() == math.inf


def test_kl_and_recall_report_nan_rows():
    # kl_divergence dropped NaN terms (NaN > 0 is False) and returned a finite number.
    p = torch.tensor([[0.5, 0.5], [NAN, 0.5]])
    q = torch.tensor([[0.5, 0.5], [0.5, 0.5]])
    kl = ta.kl_divergence(p, q)
    assert kl[0] == 0.0 and math.isnan(kl[1])
    # closed form of a finite case: KL([1,0] || [1/2,1/2]) = log 2
    assert ta.kl_divergence(torch.tensor([1.0, 0.0]), torch.tensor([0.5, 0.5])).item() == (
        pytest.approx(math.log(2))
    )
    scores = torch.tensor([[3.0, 2.0, 1.0], [NAN, 2.0, 1.0]])
    keep = torch.tensor([True, False, True])
    rec = ta.topk_recall(keep, scores)
    assert rec[0] == 0.5 and math.isnan(rec[1])


def test_attention_metrics_nan_input_gives_nan_metrics():
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 5, 4, generator=g, dtype=torch.float64) for _ in range(3))
    q[1, 2, 0] = NAN
    keep = ta.topk_mask(torch.randn(5, 5, generator=g), density=0.4)
    mets = ta.attention_metrics(q, k, v, keep)
    for key in ("mass", "kl", "error", "recall"):
        assert math.isfinite(mets[key][0]) and math.isnan(mets[key][1]), key


@pytest.mark.parametrize("bad", [NAN, math.inf, -math.inf])
def test_quantize_rows_refuses_non_finite(bad):
    # Was: a NaN row gave codes 0 and scale NaN (an Inf row the same), with no error.
    x = torch.tensor([[0.5, -1.0], [bad, 1.0]])
    with pytest.raises(ValueError, match=r"x must be finite"):
        ta.quantize_rows(x, 4)


def test_quantize_rows_refuses_float32_overflow():
    # float64 1e300 is finite but becomes inf in float32, the quantizer's dtype
    with pytest.raises(ValueError, match=r"x must be finite"):
        ta.quantize_rows(torch.tensor([[1e300, 1.0]], dtype=torch.float64), 8)


@pytest.mark.parametrize("bits", [0, 17, 24, -1])
def test_quantize_rows_bits_out_of_range(bits):
    # bits=0 gave a negative scale, 17 and 24 wrapped around int16 and flipped signs.
    with pytest.raises(ValueError, match=r"bits must satisfy 1 <= bits <= 16"):
        ta.quantize_rows(torch.randn(2, 4), bits)


def test_quantize_rows_16_bits_keeps_signs_and_bounds():
    # The widest allowed code: no wrap-around, codes within +-(2**15 - 1), x ~ c * s.
    x = torch.tensor([[1e5, -3.0, -1e5, 0.0]])
    codes, s = ta.quantize_rows(x, 16)
    assert codes.dtype == torch.int16
    assert codes.tolist() == [[32767, -1, -32767, 0]]
    assert torch.allclose(codes.float() * s[..., None], x, atol=float(s) / 2 + 1e-6)


@pytest.mark.parametrize("where", ["q", "k"])
@pytest.mark.parametrize("bad", [NAN, math.inf])
def test_dsa_refuses_non_finite_inputs(where, bad):
    # Was: a NaN key was kept by every query of dsa_mask (NaN ranks first in the top-k).
    g = torch.Generator().manual_seed(1)
    q, k, v = torch.randn(4, 8, generator=g), torch.randn(6, 8, generator=g), torch.randn(6, 8)
    (q if where == "q" else k)[2, 3] = bad
    for call in (
        lambda: ta.dsa_mask(q, k, 0.5),
        lambda: ta.dsa_scores(q, k),
        lambda: ta.dsa_attention(q, k, v, 0.5),
        lambda: ta.DSA(0.5).mask(q, k),
    ):
        with pytest.raises(ValueError, match=rf"^{where} must be finite"):
            call()


def test_dsa_projection_overflow_is_named():
    # Finite float64 inputs whose float32 projection overflows name the projection.
    q = torch.full((2, 4), 1e300, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"q @ P \(q projected\) must be finite"):
        ta.dsa_mask(q, torch.ones(3, 4, dtype=torch.float64))


# -- item 7: every public function checks its arguments --------------------------------------------
@pytest.mark.parametrize(
    "call, name",
    [
        (lambda: ta.retained_mass([0.5], torch.tensor([True])), "probs"),
        (lambda: ta.retained_mass(torch.rand(3, 4), torch.ones(5, dtype=torch.bool)), "probs"),
        (lambda: ta.retained_mass(torch.rand(4), torch.ones(4)), "keep"),
        (lambda: ta.kl_divergence([0.5], torch.rand(1)), "p"),
        (lambda: ta.kl_divergence(torch.rand(3), torch.rand(4)), "p and q"),
        (lambda: ta.kl_divergence(torch.rand(3), torch.ones(3, dtype=torch.int64)), "q"),
        (lambda: ta.output_error([1.0], torch.ones(2, 2)), "out"),
        (lambda: ta.output_error(torch.ones(3), torch.ones(3)), "out"),
        (lambda: ta.output_error(torch.ones(2, 3), torch.ones(2, 4)), "out and ref"),
        (lambda: ta.topk_recall([True], torch.rand(1)), "keep"),
        (lambda: ta.topk_recall(torch.ones(3), torch.rand(3)), "keep"),
        (lambda: ta.topk_recall(torch.ones(2, 3, dtype=torch.bool), torch.rand(3)), "keep"),
        (lambda: ta.attention_scores([1.0], torch.ones(2, 2), 1.0), "q"),
        (lambda: ta.attention_scores(torch.ones(2, 3), torch.ones(2, 2), 1.0), "k"),
        (lambda: ta.attention_scores(torch.ones(2, 2), torch.ones(2, 2), -1.0), "scale"),
        (lambda: ta.attention_scores(torch.ones(2, 2), torch.ones(2, 2), "1"), "scale"),
        (
            lambda: ta.attention_scores(torch.ones(2, 2), torch.ones(2, 2), 1.0, torch.ones(3)),
            "attn_mask",
        ),
        (lambda: ta.counting_task(2, length=3), "length"),
        (lambda: ta.counting_task(2, seed=2**64), "seed"),
        (lambda: ta.DSA(0.5, seed=2**64), "seed"),
        (lambda: ta.dsa_mask(torch.ones(2, 4), torch.ones(2, 4), seed=2**64), "seed"),
        (lambda: ta.finetune_demo(("2:4",), seeds=(), quick=True, progress=False), "seeds"),
        (lambda: ta.finetune_demo((), seeds=(0,), quick=True, progress=False), "patterns"),
        (lambda: ta.finetune_demo("2:4", seeds=(0,), quick=True, progress=False), "patterns"),
        (lambda: ta.finetune_demo(("2:4",), seeds=0, quick=True, progress=False), "seeds"),
        (lambda: ta.sweep_patterns("nm"), "methods"),
        (
            lambda: ta.attention_metrics(
                torch.ones(3, 2),
                torch.ones(3, 2),
                torch.ones(3, 2),
                torch.ones(3, 3, dtype=torch.bool),
                query_mask=torch.full((3,), 0.5),
            ),
            "query_mask",
        ),
    ],
)
def test_bad_argument_is_named(call, name):
    with pytest.raises((TypeError, ValueError)) as info:
        call()
    assert str(info.value).startswith(name), str(info.value)


def test_counting_task_shortest_length_is_valid():
    # length 5 is the documented minimum: the a/b counts must fit and decide the label.
    ids, y = ta.counting_task(200, length=5, seed=3)
    n_a, n_b = (ids[:, 1:] == 1).sum(1), (ids[:, 1:] == 2).sum(1)
    assert bool((n_a != n_b).all()) and torch.equal((n_a > n_b).long(), y)


def test_float_padding_mask_half_is_refused():
    # A float mask of 0.5 was read as True (.bool()) by the models.
    with pytest.raises(ValueError, match=r"attention_mask must hold only 0/1"):
        check_padding_mask(
            "attention_mask", torch.tensor([[1.0, 0.5]]), (1, 2), torch.device("cpu")
        )
    ok = check_padding_mask("m", torch.tensor([[1.0, 0.0]]), (1, 2), torch.device("cpu"))
    assert ok.dtype == torch.bool and ok.tolist() == [[True, False]]


@pytest.mark.parametrize("lk", [0])
def test_dsa_with_no_keys_is_empty_not_a_message_about_length(lk):
    # Was: "length must satisfy 1 <= length", naming an internal argument.
    q, k, v = torch.randn(4, 8), torch.randn(lk, 8), torch.randn(lk, 3)
    assert ta.dsa_mask(q, k).shape == (4, 0)
    assert ta.DSA(0.5).mask(q, k).shape == (4, 0)
    assert ta.TopK(0.5).mask(q, k).shape == (4, 0)
    out = ta.dsa_attention(q, k, v)
    assert out.shape == (4, 3) and not out.any()  # empty rows: zero output, as documented


# -- found by the sweep (tests/attention/test_bad_inputs.py) ----------------------------------
@pytest.mark.parametrize(
    "call, start",
    [
        # v=None slipped through the checks and failed with AttributeError in the matmul.
        (lambda q, k, v: ta.Local(0.5).attention(q, k, None), "v must be a torch.Tensor"),
        (lambda q, k, v: ta.masked_attention(q, k, None), "v must be a torch.Tensor"),
        # keep=None was read as "no mask" and failed on .expand.
        (lambda q, k, v: ta.attention_metrics(q, k, v, None), "keep must be a torch.Tensor"),
        # metrics of rows without keys were NaN averages
        (
            lambda q, k, v: ta.attention_metrics(q, k[:, :0], v[:, :0], torch.tensor(True)),
            "q and k must hold at least one",
        ),
        (
            lambda q, k, v: ta.tradeoff_curves((q[:0], k[:0], v[:0]), patterns=("2:4",)),
            "source layer 0",
        ),
        # a value inside a pattern string now names the string it came from
        (lambda q, k, v: ta.parse_pattern("5:4"), "pattern '5:4': n must satisfy"),
        (lambda q, k, v: ta.sweep_patterns(("nm",), nm=("5:4",)), "nm '5:4'"),
        # sizes past int64 overflowed inside torch; a rank of 2**70 was accepted
        (lambda q, k, v: ta.local_mask(2**70, 4, 0.5), "lq must satisfy"),
        (lambda q, k, v: ta.counting_task(2**70), "count must satisfy"),
        (lambda q, k, v: ta.DSA(0.5, rank=2**70), "rank must satisfy 1 <= rank <= 65536"),
        (lambda q, k, v: ta.dsa_projection(4, 2**16 + 1), "rank must satisfy"),
        # 2**70 epochs ran "forever"
        (
            lambda q, k, v: ta.finetune_demo(("2:4",), (0,), epochs=2**70, progress=False),
            "epochs must satisfy 0 <= epochs <= 1000",
        ),
    ],
)
def test_sweep_findings(call, start):
    q, k, v = torch.randn(2, 5, 4), torch.randn(2, 6, 4), torch.randn(2, 6, 3)
    with pytest.raises((TypeError, ValueError)) as info:
        call(q, k, v)
    assert str(info.value).startswith(start), str(info.value)
