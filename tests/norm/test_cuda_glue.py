"""The CUDA path's Python side on the CPU: argument order, buffer layouts, the autograd function
and the dtype handling, with a NumPy stand-in for each kernel of kernels/bn_sampling.cu.

The stand-ins compute what each kernel's comment says it computes (not how a thread does it),
so this test catches glue errors (a swapped argument, a wrong row of ``stats``/``coef``, a
tensor left requiring grad) without a GPU; the kernels themselves are checked on the GPU by
test_bn_sampling_gpu.py.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import toolkit.norm._cuda as cu
from toolkit.norm import (
    batch_sample,
    feature_sample,
    full_sample,
    sampled_batch_norm,
    virtual_sample,
)


def _np(t):
    return t.detach().numpy()


def _window_mask(n, h, w, h0, w0, ph, pw):
    mask = np.zeros((n, h, w), dtype=bool)
    for i in range(n):
        if h0[i] >= 0:
            mask[i, h0[i] : h0[i] + ph, w0[i] : w0[i] + pw] = True
    return mask


def _fake_launch(function, grid, block, sig, args, device):
    assert function in cu._INSTANCES, function
    assert len(sig) == len(args), function
    # (tensor, offset) is a pointer offset elements into tensor: the rest of it from there
    args = [a[0].view(-1)[a[1] :] if isinstance(a, tuple) else a for a in args]
    for kind, a in zip(sig, args):
        assert (kind == "p") == (a is None or isinstance(a, torch.Tensor)), (function, kind, a)
    name = function.split("<")[0]
    vec = int(function.split(",")[1].rstrip(">")) if "," in function else 1
    if name == "bn_build_index":
        perm, index, n, subset, picks, tail, k, seed, call, windows, hr, hm, wr, wm = args
        assert grid == 1
        h0 = np.zeros(n, dtype=np.int64)
        if subset:
            if perm is not None:
                rows = sorted(_np(perm)[:picks].tolist()) + list(range(n - tail, n))
            else:
                rows = cu.hashed_rows(n, picks, tail, seed, call)
            h0[:] = -1
            h0[rows] = 0
        w0 = np.zeros(n, dtype=np.int64)
        if windows:
            for i in np.flatnonzero(h0 >= 0):
                h0[i] = cu.hashed_draw(seed, call, n + i) % hr * hm
                w0[i] = cu.hashed_draw(seed, call, 2 * n + i) % wr * wm
        rows = np.flatnonzero(h0 >= 0)
        assert len(rows) == k
        index.copy_(torch.from_numpy(np.concatenate([rows, h0, w0]).astype(np.int32)))
    elif name == "bn_sample_stats":
        x, rows, h0, w0, partial, c, h, w, k, ph, pw, splits, center = args
        xs = _np(x).astype(np.float64)
        h0n, w0n = _np(h0), _np(w0)
        assert len(_np(rows)) >= k and grid == c * splits
        n = xs.shape[0]
        mask = _window_mask(n, h, w, h0n, w0n, ph, pw)
        part = np.zeros((c, splits, 2))
        for ch in range(c):
            r0 = _np(rows)[0]
            shift = xs[r0, ch, h0n[r0], w0n[r0]] if center else 0.0
            d = xs[:, ch][mask] - shift
            part[ch, 0] = d.sum(), (d * d).sum()
        _np(partial)[:] = part.ravel()
    elif name == "bn_stats_finalize":
        (x, rows, h0, w0, partial, weight, bias, stats, rmean, rvar, tracked, c, h, w, splits,
         count, eps, momentum, center, unbias) = args  # fmt: skip
        assert grid == 1
        part = _np(partial).reshape(c, splits, 2).sum(1)
        a, b = part[:, 0] / count, part[:, 1] / count
        r0, xs = _np(rows)[0], _np(x).astype(np.float64)
        shift = xs[r0, :, _np(h0)[r0], _np(w0)[r0]] if center else np.zeros(c)
        mean = shift + a if center else np.zeros(c)
        var = np.maximum(b - a * a, 0) if center else b
        invstd = 1 / np.sqrt(var + eps)
        scale = (1.0 if weight is None else _np(weight)) * invstd
        beta = 0.0 if bias is None else _np(bias)
        _np(stats)[:] = np.stack([mean, var, invstd, scale, beta - mean * scale])
        if rvar is not None:
            factor = momentum if momentum >= 0 else 1 / (int(tracked) + 1)
            v = var * count / (count - 1) if unbias and count > 1 else var
            _np(rvar)[:] += factor * (v - _np(rvar))
            if rmean is not None:
                _np(rmean)[:] += factor * (mean - _np(rmean))
        if tracked is not None:
            tracked += 1
    elif name == "bn_normalize":
        x, y, stats, packs, c, hw = args
        assert packs * vec == x.numel()
        st = _np(stats)
        ch = (np.arange(x.numel()) // hw) % c
        y.view(-1).copy_(
            torch.from_numpy(_np(x).ravel().astype(np.float64) * st[3, ch] + st[4, ch])
        )
    elif name == "bn_backward_reduce":
        dy, x, stats, partial, n, c, hw, splits = args
        g = _np(dy).astype(np.float64).reshape(n, c, hw)
        xc = _np(x).astype(np.float64).reshape(n, c, hw) - _np(stats)[0][None, :, None]
        part = np.zeros((c, splits, 2))
        part[:, 0, 0], part[:, 0, 1] = g.sum((0, 2)), (g * xc).sum((0, 2))
        _np(partial)[:] = part.ravel()
    elif name == "bn_backward_finalize":
        partial, stats, weight, coef, c, splits, count, center = args
        sdy, sdyx = _np(partial).reshape(c, splits, 2).sum(1).T
        r = _np(stats)[2]
        gr = (1.0 if weight is None else _np(weight)) * r
        b = gr * sdy / count if center else np.zeros(c)
        _np(coef)[:] = np.stack([sdyx * r, sdy, gr, b, gr * r * r * sdyx / count])
    elif name == "bn_backward_dx":
        dy, x, dx, stats, coef, h0, w0, packs, c, h, w, ph, pw, whole = args
        n = x.numel() // (c * h * w)
        st, co = _np(stats), _np(coef)
        mask = _window_mask(n, h, w, _np(h0), _np(w0), ph, pw)[:, None]
        if whole:
            assert (mask == (_np(h0)[:n] >= 0)[:, None, None, None]).all()
        ch = (slice(None), None, None)
        g = _np(dy).astype(np.float64).reshape(n, c, h, w)
        xc = _np(x).astype(np.float64).reshape(n, c, h, w) - st[0][ch]
        out = co[2][ch] * g - mask * (co[3][ch] + co[4][ch] * xc)
        dx.view(-1).copy_(torch.from_numpy(out.ravel()))
    else:  # pragma: no cover
        raise AssertionError(function)


@pytest.fixture()
def fake_gpu(monkeypatch):
    monkeypatch.setattr(cu, "_launch", _fake_launch)
    monkeypatch.setattr(cu, "_sm_count", lambda device: 132)
    cu._plan.cache_clear()


def _samples(shape, gen):
    n, _, h, w = shape
    return {
        "full": full_sample((n, h, w)),
        "batch": batch_sample((n, h, w), 0.5, gen),
        "feature": feature_sample((n, h, w), 0.3, gen),
        "virtual": virtual_sample((n, h, w), 2, 0.5, gen),
    }


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16])
@pytest.mark.parametrize("center", [True, False])
@pytest.mark.parametrize("shape", [(6, 3, 5, 4), (8, 2, 1, 9)])
def test_cuda_glue_matches_reference(fake_gpu, dtype, center, shape):
    gen = torch.Generator().manual_seed(0)
    for kind, sample in _samples(shape, gen).items():
        x = (0.5 + torch.randn(shape, generator=gen)).to(dtype)
        w = (1 + 0.2 * torch.randn(shape[1], generator=gen)).to(dtype)
        b = (0.1 * torch.randn(shape[1], generator=gen)).to(dtype)
        dy = torch.randn(shape, generator=gen).to(dtype)
        ref_in = [t.double().clone().requires_grad_() for t in (x, w, b)]
        y_ref, m_ref, v_ref = sampled_batch_norm(*ref_in[:1], sample, *ref_in[1:], center=center)
        ref_grads = torch.autograd.grad((y_ref * dy.double()).sum(), ref_in)
        ins = [t.clone().requires_grad_() for t in (x, w, b)]
        y, m, v = cu._sampled_norm_cuda(ins[0], ins[1], ins[2], sample, 1e-5, center)
        grads = torch.autograd.grad((y.double() * dy.double()).sum(), ins)
        tol = 1e-9 if dtype == torch.float64 else 2e-5 if dtype == torch.float32 else 4e-3
        assert y.dtype == dtype and [g.dtype for g in grads] == [dtype] * 3
        for got, want, what in (
            (y, y_ref, "y"),
            (m, m_ref, "mean"),
            (v, v_ref, "var"),
            *zip(grads, ref_grads, ("dx", "dw", "db")),
        ):
            scale = max(1.0, float(want.detach().abs().max()))
            err = float((got.double() - want.double()).abs().max().detach())
            assert err <= tol * scale, f"{kind} {what}: {err}"


def test_no_affine_and_2d_input(fake_gpu):
    x = torch.randn(10, 4, dtype=torch.float64, requires_grad=True)
    s = batch_sample((10, 1, 1), 0.5, torch.Generator().manual_seed(0))
    y, _, _ = cu._sampled_norm_cuda(x, None, None, s, 1e-5, True)
    y_ref, _, _ = sampled_batch_norm(x, s)
    torch.testing.assert_close(y, y_ref)
    (g,) = torch.autograd.grad(y.square().sum(), x)
    (g_ref,) = torch.autograd.grad(y_ref.square().sum(), x)
    torch.testing.assert_close(g, g_ref)
