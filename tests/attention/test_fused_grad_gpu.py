"""The fused N:M attention backward (``kernels/nm_attention_bwd.cu``) against float64 autograd.

The reference is ``nm_attention``'s reference path run in float64 on the CPU, differentiated
by torch's autograd (same pattern rule, same mask).  On small-integer ``q`` and ``k`` every
score is exact in any precision, so the kernels prune exactly as the reference does (ties
included) and the gradients must match within the dtype's tolerance.  On Gaussian inputs the
backward must differentiate the kept set the *forward* used (it recomputes the forward's
scores bit for bit): checked through the identity ``sum(dV) = sum_i P_i^T dO_i`` with
``dO = 1``, which gives ``dV_j`` = the total probability the forward's rows gave key ``j``
(compared with the probabilities of the forward's own output: ``O = P V`` with ``V = I``).
"""

from __future__ import annotations

import math

import pytest
import torch

from toolkit.attention import nm_attention, nm_mask
from toolkit.attention._fused import (
    fused_nm_attention,
    fused_nm_attention_backward,
    fused_nm_attention_grad,
)
from toolkit.attention.sparse import _nm_attention_op

from .._gpu import assert_matches_reference, assert_written, generator, poisoned

pytestmark = pytest.mark.gpu

HALF = (torch.float16, torch.bfloat16)
# Gradient error relative to the largest reference gradient: P and dS are rounded to the
# input dtype before the tensor-core products (as flash kernels do), so the bound is a few
# units of the dtype's rounding (fp16 2^-11, bf16 2^-8) times the reduction's growth.
_REL = {torch.float16: 1e-2, torch.bfloat16: 4e-2}


def _ref_grads(q, k, v, dout, n, m, scale, mask=None):
    """Output and (dq, dk, dv) of the float64 reference path, by autograd."""
    q64, k64, v64 = (t.detach().double().cpu().requires_grad_(True) for t in (q, k, v))
    mask64 = None
    if mask is not None:
        mask64 = mask.cpu() if mask.dtype == torch.bool else mask.double().cpu()
    out = _nm_attention_op.reference(q64, k64, v64, n, m, scale, mask64, False)
    out.backward(dout.double().cpu())
    return out.detach(), (q64.grad, k64.grad, v64.grad)


def _assert_grads_close(got, want, dtype, what="", names=("dq", "dk", "dv")):
    for name, g, w in zip(names, got, want, strict=True):
        g = g.detach().double().cpu()
        assert g.shape == w.shape, f"{what} {name}: shape {g.shape} != {w.shape}"
        scale = max(float(w.abs().max()), 1e-3)
        err = float((g - w).abs().max())
        assert err <= _REL[dtype] * scale, (
            f"{what} {name}: max error {err:.3e} > {_REL[dtype]} x max |ref| {scale:.3e}"
        )


def _int_inputs(gen, lead, lq, lk, d, dtype):
    q = torch.randint(-2, 3, (*lead, lq, d), generator=gen).to(dtype)
    k = torch.randint(-2, 3, (*lead, lk, d), generator=gen).to(dtype)
    v = torch.randn((*lead, lk, d), generator=gen).to(dtype)
    dout = torch.randn((*lead, lq, d), generator=gen).to(dtype)
    return q, k, v, dout


CASES = [
    # (lead, lq, lk, d, n, m): tails (L not a multiple of 64), Lq != Lk, every group size
    ((2, 3), 100, 77, 64, 2, 4),
    ((1, 2), 64, 128, 64, 1, 2),
    ((3,), 130, 200, 128, 2, 4),
    ((2, 2), 65, 96, 64, 3, 8),
    ((1, 2), 33, 150, 128, 5, 16),
    ((2, 1), 70, 129, 64, 9, 32),
    ((1, 1), 17, 10, 64, 1, 1),
    ((2,), 1, 5, 128, 1, 4),
    ((1, 2), 150, 70, 128, 1, 2),
    ((2,), 64, 64, 128, 4, 4),
    # the small head dims (the fine-tuning demo's model has d = 16)
    ((2, 2), 40, 33, 16, 2, 4),
    ((1, 3), 90, 70, 32, 1, 2),
]


@pytest.mark.parametrize("dtype", HALF)
@pytest.mark.parametrize(("lead", "lq", "lk", "d", "n", "m"), CASES)
def test_fused_backward_exact_scores_match_float64_autograd(dtype, lead, lq, lk, d, n, m):
    gen = generator("fused grad int", dtype, lead, lq, lk, d, n, m)
    q, k, v, dout = _int_inputs(gen, lead, lq, lk, d, dtype)
    scale = 1.0 / math.sqrt(d)
    qc, kc, vc, dc = (t.cuda() for t in (q, k, v, dout))
    lse = torch.full(q.shape[:-1], math.nan, device="cuda")  # poisoned
    out = fused_nm_attention(qc, kc, vc, n, m, scale, out=poisoned(q.shape, dtype), lse=lse)
    dk, dv = poisoned(k.shape, dtype), poisoned(v.shape, dtype)
    grads = fused_nm_attention_backward(qc, kc, vc, out, lse, dc, n, m, scale, dk=dk, dv=dv)
    torch.cuda.synchronize()
    assert_written(lse)
    assert_written(dk)
    assert_written(dv)
    assert grads[1] is dk and grads[2] is dv
    ref_out, ref_grads = _ref_grads(q, k, v, dout, n, m, scale)
    assert_matches_reference(out.double(), ref_out, dtype=dtype)  # the forward is unchanged
    # the saved log-sum-exp is the reference's over the kept scores
    s64 = q.double() @ k.double().transpose(-1, -2) * scale
    keep = nm_mask(s64, n, m, backend="cpu")
    want_lse = torch.logsumexp(s64.masked_fill(~keep, -math.inf), -1)
    torch.testing.assert_close(lse.double().cpu(), want_lse, rtol=1e-4, atol=1e-4)
    _assert_grads_close(grads, ref_grads, dtype, f"{dtype} {lead} {lq}x{lk} d{d} {n}:{m}")


@pytest.mark.parametrize("dtype", HALF)
@pytest.mark.parametrize("kind", ["bool", "additive"])
@pytest.mark.parametrize(("n", "m"), [(2, 4), (1, 2), (3, 8)])
def test_fused_backward_masks_and_dead_rows_through_autograd(dtype, kind, n, m):
    gen = generator("fused grad mask", dtype, kind, n, m)
    lead, lq, lk, d = (2, 3), 90, 140, 64
    q, k, v, dout = _int_inputs(gen, lead, lq, lk, d, dtype)
    if kind == "bool":
        mask = torch.rand((2, 1, lq, lk), generator=gen) > 0.3
        mask[:, :, 5] = False  # dead rows: zero output, zero gradient
    else:
        mask = torch.randint(-4, 2, (lq, lk), generator=gen).float() * 0.5
        mask[7] = -math.inf
    qc, kc, vc = (t.cuda().requires_grad_(True) for t in (q, k, v))
    out = nm_attention(qc, kc, vc, n, m, attn_mask=mask.cuda())
    assert out.grad_fn is not None and "FusedNMAttention" in type(out.grad_fn).__name__
    out.backward(dout.cuda())
    _, ref_grads = _ref_grads(q, k, v, dout, n, m, 1 / 8, mask)
    _assert_grads_close((qc.grad, kc.grad, vc.grad), ref_grads, dtype, f"{kind} {n}:{m}")
    dead = 5 if kind == "bool" else 7
    assert (qc.grad[..., dead, :] == 0).all()


@pytest.mark.parametrize("dtype", HALF)
@pytest.mark.parametrize("d", [64, 128])
@pytest.mark.parametrize(("n", "m"), [(2, 4), (1, 2)])
def test_fused_backward_differentiates_the_forwards_kept_set(dtype, d, n, m):
    # Gaussian q, k: near-ties may be pruned differently from the float64 reference, but the
    # backward must use exactly the forward's kept set.  With V = I (first lk columns) the
    # forward's output rows are its probability rows P; with dO = 1, dV_j = sum_i P_ij (here
    # dV = P^T 1 broadcast over the head dim).  Any kept-set mismatch between the two kernels
    # moves a whole probability (~1/kept) to another key.
    gen = generator("fused grad kept", dtype, d, n, m)
    lead, lq, lk = (2, 2), 150, d  # lk = d: V = I fits
    q, k = (torch.randn((*lead, L, d), generator=gen).to(dtype).cuda() for L in (lq, lk))
    eye = torch.eye(d, dtype=dtype, device="cuda").expand(*lead, d, d).contiguous()
    scale = 1.0 / math.sqrt(d)
    lse = torch.empty((*lead, lq), device="cuda")
    probs = fused_nm_attention(q, k, eye, n, m, scale, lse=lse).double()  # rows = P
    dout = torch.ones((*lead, lq, d), dtype=dtype, device="cuda")
    _, _, dv = fused_nm_attention_backward(q, k, eye, probs.to(dtype), lse, dout, n, m, scale)
    want = probs.sum(-2)  # [lead, lk]: column sums of P
    got = dv.double()[..., 0]  # every column of dV_j is sum_i P_ij
    torch.testing.assert_close(got, want, rtol=2e-2, atol=2e-2 * lq / lk)
    # and the kept count: every row keeps n per group
    assert ((probs > 0).sum(-1) <= n * (lk // m)).all()


@pytest.mark.parametrize(("n", "m"), [(2, 4), (1, 2), (3, 8)])
def test_fused_backward_nan_rows(n, m):
    # A NaN score (from the mask) makes its row's output NaN; the reference's autograd then
    # gives NaN dq for that row and NaN dk, dv for the keys the row kept; every other row's
    # dq stays finite.  In the NaN's group the kernels keep the NaN and n of the others (no
    # comparison with a NaN is true; the reference keeps the NaN and n - 1 others), which
    # changes no output (the row is NaN anyway) but gives one more key of that group NaN
    # dk, dv.
    gen = generator("fused grad nan", n, m)
    q, k, v, dout = _int_inputs(gen, (1, 2), 70, 70, 64, torch.float16)
    mask = torch.zeros(70, 70)
    mask[9, 13] = math.nan
    qc, kc, vc = (t.cuda().requires_grad_(True) for t in (q, k, v))
    nm_attention(qc, kc, vc, n, m, attn_mask=mask.cuda()).backward(dout.cuda())
    _, (rq, rk, rv) = _ref_grads(q, k, v, dout, n, m, 1 / 8, mask)
    gq, gk, gv = (t.grad.cpu() for t in (qc, kc, vc))
    assert torch.isnan(gq[..., 9, :]).all() and torch.isnan(rq[..., 9, :]).all()
    others = torch.ones(70, dtype=torch.bool)
    others[9] = False
    assert torch.isfinite(gq[..., others, :]).all() and torch.isfinite(rq[..., others, :]).all()
    group = torch.zeros(70, dtype=torch.bool)
    group[13 // m * m : 13 // m * m + m] = True
    for got, want in ((gk, rk), (gv, rv)):
        g_nan, r_nan = torch.isnan(got).any(-1), torch.isnan(want).any(-1)
        assert (r_nan <= g_nan).all()  # every key the reference makes NaN
        extra = g_nan & ~r_nan
        assert (extra <= group).all() and (extra.sum(-1) <= 1).all()
        fin = ~g_nan[..., None]
        scale = float(want.nan_to_num().abs().max())
        err = (got.double() - want).masked_fill(~fin, 0).abs().max()
        assert float(err) <= 1e-2 * scale


def test_fused_grad_dispatch_and_mask_gradient_takes_the_reference():
    gen = generator("fused grad dispatch")
    q, k, v, dout = _int_inputs(gen, (1, 2), 40, 40, 64, torch.float16)
    qc = q.cuda().requires_grad_(True)
    out = nm_attention(qc, k.cuda(), v.cuda(), 2, 4)
    assert "FusedNMAttention" in type(out.grad_fn).__name__
    out.backward(dout.cuda())
    assert qc.grad is not None
    _, (rq, _, _) = _ref_grads(q, k, v, dout, 2, 4, 1 / 8)
    _assert_grads_close((qc.grad,), (rq,), torch.float16, "dispatch", names=("dq",))
    # a float mask that needs a gradient: the reference path, which differentiates the mask
    mask = torch.zeros(40, 40, device="cuda", requires_grad=True)
    out = nm_attention(qc, k.cuda(), v.cuda(), 2, 4, attn_mask=mask)
    assert "FusedNMAttention" not in type(out.grad_fn).__name__
    out.float().sum().backward()
    assert mask.grad is not None
    # no grad wanted: the plain forward, no graph
    with torch.no_grad():
        assert nm_attention(qc, k.cuda(), v.cuda(), 2, 4).grad_fn is None


@pytest.mark.parametrize("dtype", HALF)
def test_fused_grad_on_noncontiguous_model_layout(dtype):
    # A model's heads are transposed views of [B, T, H, d]; the fused path copies them.  q and
    # k are distinct tensors: with q = k the test would compare dq + dk, whose float64 sum
    # cancels to a fraction of either term, against the tolerance of a half-precision term.
    gen = generator("fused grad layout", dtype)
    xq, xk = (torch.randint(-2, 3, (2, 50, 3, 64), generator=gen).to(dtype) for _ in range(2))
    v = torch.randn((2, 50, 3, 64), generator=gen).to(dtype)
    dout = torch.randn((2, 3, 50, 64), generator=gen).to(dtype)
    leaves = [t.cuda().requires_grad_(True) for t in (xq, xk, v)]
    out = fused_nm_attention_grad(*(t.transpose(1, 2) for t in leaves), 2, 4, 1 / 8)
    out.backward(dout.cuda())
    refs = [t.double().requires_grad_(True) for t in (xq, xk, v)]
    ref = _nm_attention_op.reference(*(t.transpose(1, 2) for t in refs), 2, 4, 1 / 8, None, False)
    ref.backward(dout.double())
    got = tuple(t.grad for t in leaves)
    _assert_grads_close(got, tuple(t.grad for t in refs), dtype, "view")


def test_finetune_demo_takes_the_fused_path_on_cuda(monkeypatch):
    import sys
    import types

    from toolkit.attention import _fused, finetune

    try:
        import tqdm.auto  # noqa: F401
    except ImportError:  # the GPU machine may lack tqdm: a silent bar (progress=False anyway)

        class _Bar:
            def __init__(self, *a, **kw):
                pass

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                return False

            def update(self, n=1):
                pass

        monkeypatch.setitem(sys.modules, "tqdm", types.ModuleType("tqdm"))
        monkeypatch.setitem(sys.modules, "tqdm.auto", types.SimpleNamespace(tqdm=_Bar))

    calls = {"fwd": 0, "bwd": 0}
    fwd, bwd = _fused.fused_nm_attention, _fused.fused_nm_attention_backward

    def count_fwd(*a, **kw):
        calls["fwd"] += 1
        return fwd(*a, **kw)

    def count_bwd(*a, **kw):
        calls["bwd"] += 1
        return bwd(*a, **kw)

    monkeypatch.setattr(_fused, "fused_nm_attention", count_fwd)
    monkeypatch.setattr(_fused, "fused_nm_attention_backward", count_bwd)
    res = finetune.finetune_demo(
        ("2:4",), seeds=(0,), epochs=1, quick=True, progress=False, device="cuda"
    )
    assert calls["fwd"] > 0 and calls["bwd"] > 0, calls
    acc = res.table["after_acc"].astype(float)
    assert ((acc >= 0) & (acc <= 1)).all()
