"""CPU-side logic of issue 14's CUDA paths: mask strides, memoised checks, dispatch rules."""

from __future__ import annotations

import pytest
import torch

from toolkit.attention import _fused, nm_attention, nm_mask
from toolkit.attention import sparse as sparse_mod
from toolkit.attention._fused import _fused_takes, _mask_args, fused_supported, sparse_supported
from toolkit.attention._nm import check_nm
from toolkit.attention.sparse import _check_qkv_cached
from toolkit.models._attention import check_qkv


@pytest.mark.parametrize(
    ("lead", "mask_shape"),
    [
        ((2, 3), (5, 7)),
        ((2, 3), (2, 1, 1, 7)),
        ((2, 3), (2, 3, 5, 7)),
        ((3,), (1, 5, 7)),
        ((2, 2, 3), (2, 1, 3, 5, 7)),
        ((), (5, 7)),
    ],
)
@pytest.mark.parametrize("dtype", [torch.bool, torch.float16, torch.float64])
def test_mask_strides_address_the_broadcast_mask(lead, mask_shape, dtype):
    lq, lk = 5, 7
    gen = torch.Generator().manual_seed(len(mask_shape))
    mask = torch.randn(mask_shape, generator=gen)
    mask = mask > 0 if dtype == torch.bool else mask.to(dtype)
    flat, kind, heads, (sb, sh, sq, sk) = _mask_args(mask, lead, lq, lk)
    assert kind == (1 if dtype == torch.bool else 2)
    expected = mask.expand(*lead, lq, lk).reshape(-1, lq, lk)
    for r in range(expected.shape[0]):
        b, h = divmod(r, heads)
        for i in range(lq):
            for j in range(lk):
                off = b * sb + h * sh + i * sq + j * sk
                # the kernel reads element `off` of the mask's storage, from its data pointer
                got = flat.as_strided((1,), (1,), flat.storage_offset() + off)[0]
                want = expected[r, i, j]
                if dtype == torch.bool:
                    assert bool(got) == bool(want)
                else:
                    assert float(got) == float(want.float())  # float masks go to float32
    assert _mask_args(None, lead, lq, lk)[1] == 0


def test_memoised_qkv_check_equals_the_check_and_still_refuses():
    q, k, v = torch.zeros(2, 3, 5, 8), torch.zeros(2, 3, 7, 8), torch.zeros(2, 3, 7, 4)
    assert _check_qkv_cached(q, k, v) == check_qkv(q, k, v) == (2, 3, 5, 7)
    assert _check_qkv_cached(q, k, v) == (2, 3, 5, 7)  # from the memo
    with pytest.raises(ValueError, match="v must have as many rows as k"):
        _check_qkv_cached(q, k, torch.zeros(2, 3, 6, 4))
    with pytest.raises(TypeError, match="k must have dtype"):
        _check_qkv_cached(q, k.double(), v)
    p = torch.nn.Parameter(torch.zeros(2, 3, 5, 8))  # a subclass takes the full check
    assert _check_qkv_cached(p, k, v) == (2, 3, 5, 7)
    with pytest.raises(TypeError, match="q must be a torch.Tensor"):
        _check_qkv_cached([1.0], k, v)


def test_memoised_nm_check_still_refuses_bad_values():
    assert check_nm(2, 4) == (2, 4) and check_nm(2, 4) == (2, 4)
    with pytest.raises(TypeError, match="n must be an int"):
        check_nm(True, 4)
    for _ in range(2):  # errors are never memoised
        with pytest.raises(ValueError, match="n must satisfy 1 <= n <= 4"):
            check_nm(5, 4)
    with pytest.raises(ValueError, match="m must satisfy"):
        check_nm(1, 33)


def test_kernels_only_take_cuda_inputs_they_support():
    q = torch.zeros(1, 2, 8, 64, dtype=torch.float16)
    assert not fused_supported(q, q, q, 4, False, None)  # CPU tensors: reference path
    keep = torch.ones(1, 2, 8, 8, dtype=torch.bool)
    assert not sparse_supported(q, q, q, keep, False, None)
    # The public function on the CPU is the reference: unchanged results.
    out = nm_attention(q.float(), q.float(), q.float(), 2, 4)
    assert out.shape == (1, 2, 8, 64) and torch.isfinite(out).all()


def test_which_inputs_take_the_fused_kernels_when_grad_is_needed():
    # _fused_takes is fused_supported apart from the device check (CUDA only).
    q = torch.zeros(1, 2, 8, 64, dtype=torch.float16)
    qg = q.clone().requires_grad_(True)
    assert _fused_takes(q, q, q, 4, False, None)
    assert _fused_takes(qg, q, q, 4, False, None)  # autograd: the fused forward + backward
    assert _fused_takes(q, qg, qg, 2, False, torch.zeros(8, 8))  # a plain mask is fine
    assert _fused_takes(q, q, q, 4, False, torch.ones(8, 8, dtype=torch.bool))
    mask = torch.zeros(8, 8, requires_grad=True)  # the kernels compute no mask gradient
    assert not _fused_takes(qg, q, q, 4, False, mask)
    with torch.no_grad():  # no graph wanted: the mask's flag does not matter
        assert _fused_takes(qg, q, q, 4, False, mask)
    assert not _fused_takes(qg, q, q, 4, True, None)  # probabilities: the reference
    for d in (16, 32, 128):
        t = torch.zeros(1, 2, 8, d, dtype=torch.bfloat16, requires_grad=True)
        assert _fused_takes(t, t, t, 2, False, None)
    for bad in (
        torch.zeros(1, 2, 8, 48, dtype=torch.float16),  # head dim
        torch.zeros(1, 2, 8, 64, dtype=torch.float32),  # dtype
    ):
        assert not _fused_takes(bad, bad, bad, 4, False, None)
    assert not _fused_takes(q, q, q, 3, False, None)  # m not a power of two


class _Recorder:
    def __init__(self, name):
        self.name, self.calls = name, 0

    def __call__(self, q, *args):
        self.calls += 1
        return torch.full(q.shape, float(len(self.name)), dtype=q.dtype)


@pytest.mark.parametrize("grad", [False, True])
def test_cuda_dispatch_picks_the_backward_capable_path_when_grad_is_needed(monkeypatch, grad):
    plain, with_grad = _Recorder("plain"), _Recorder("with_grad")
    monkeypatch.setattr(sparse_mod, "fused_supported", lambda *a: True)
    monkeypatch.setattr(sparse_mod, "fused_nm_attention", plain)
    monkeypatch.setattr(sparse_mod, "fused_nm_attention_grad", with_grad)
    q = torch.zeros(1, 2, 8, 64, dtype=torch.float16, requires_grad=grad)
    sparse_mod._nm_attention_cuda(q, q, q, 2, 4, 0.125, None, False)
    assert (plain.calls, with_grad.calls) == ((0, 1) if grad else (1, 0))
    with torch.no_grad():
        sparse_mod._nm_attention_cuda(q, q, q, 2, 4, 0.125, None, False)
    assert plain.calls == (1 if grad else 2)


def test_fused_autograd_function_routes_gradients(monkeypatch):
    # The autograd.Function's plumbing (saved tensors, the order of dq, dk, dv, the mask and
    # the non-tensor arguments), with the two kernel launches replaced by float64 reference
    # computations on the CPU.
    from toolkit.attention.sparse import _nm_attention_op

    def fake_forward(q, k, v, n, m, scale, attn_mask=None, out=None, lse=None):
        s = torch.matmul(q.double(), k.double().transpose(-1, -2)) * scale + attn_mask
        keep = nm_mask(s, n, m)
        lse.copy_(torch.logsumexp(s.masked_fill(~keep, -torch.inf), -1))
        return _nm_attention_op.reference(q, k, v, n, m, scale, attn_mask, False)

    def fake_backward(q, k, v, out, lse, dout, n, m, scale, attn_mask=None):
        assert torch.isfinite(lse).all()
        qq, kk, vv = (t.detach().requires_grad_(True) for t in (q, k, v))
        with torch.enable_grad():  # a Function's backward runs without grad mode
            o = _nm_attention_op.reference(qq, kk, vv, n, m, scale, attn_mask, False)
            return torch.autograd.grad(o, (qq, kk, vv), dout)

    monkeypatch.setattr(_fused, "fused_nm_attention", fake_forward)
    monkeypatch.setattr(_fused, "fused_nm_attention_backward", fake_backward)
    gen = torch.Generator().manual_seed(3)
    q, k, v = (torch.randn(2, 3, 12, 16, generator=gen, dtype=torch.float64) for _ in range(3))
    mask = torch.randn(12, 12, generator=gen, dtype=torch.float64)
    dout = torch.randn(2, 3, 12, 16, generator=gen, dtype=torch.float64)
    leaves = [t.clone().requires_grad_(True) for t in (q, k, v)]
    _fused.fused_nm_attention_grad(*leaves, 2, 4, 0.25, mask).backward(dout)
    refs = [t.clone().requires_grad_(True) for t in (q, k, v)]
    _nm_attention_op.reference(*refs, 2, 4, 0.25, mask, False).backward(dout)
    for got, want in zip(leaves, refs, strict=True):
        torch.testing.assert_close(got.grad, want.grad, rtol=1e-12, atol=1e-12)
