"""kernels/lif.cu's specialised backward (``lif_backward_fixed``: surrogate, reset,
detach_reset, decay_input and the trace gradient fixed at compile time, an exact grid) checked on
the CPU: the source compiled as host C++ with the shim of test_lif_kernel_host.py, one "block"
of one thread per neuron, against the torch reference and against the general kernel, for
every surrogate and every one of the 24 option sets (the 16 of reset, detach_reset,
decay_input and trace gradient, and dL/dS loaded a chunk ahead on the 8 without a trace
gradient), with and without v0 and its gradient."""

from __future__ import annotations

import ctypes
import itertools
import shutil
import subprocess

import numpy as np
import pytest
import torch

from toolkit._kernels import kernel_dir
from toolkit.snn import SURROGATES, lif_multistep
from toolkit.snn._lif_cuda import _SURROGATE_IDS, _backward_options
from toolkit.snn.neuron import LIFParams

from .test_lif_kernel_host import SHIM, _args, _ptr

pytestmark = pytest.mark.slow  # building the 288 instances takes 15-30 s

FIXED = r"""
#include <utility>
/* every (kind, options) instance of one (type, register size), walked block by block: the
   exact grid has no grid-stride loop, so each neuron is one block of one thread here */
template <typename T, int M, int K, int O>
void fixed_one(const T* x, const T* v0, const unsigned char* bits, const T* gs, const T* gv,
               T* gx, T* gv0, long long n, int steps, P) {
    for (long long block = 0; block < n; ++block) {  /* not b: P names the arguments a..k */
        blockIdx.x = static_cast<unsigned>(block);
        lif_backward_fixed<T, M, K, O>(x, v0, bits, gs, gv, gx, gv0, nullptr, n, steps, A);
    }
    blockIdx.x = 0;
}
using fixed_fn = void (*)(const float*, const float*, const unsigned char*, const float*,
                          const float*, float*, float*, long long, int, double, double, double,
                          double, double, int, int, int, int);
template <int M, std::size_t... I>
fixed_fn fixed_pick(int index, std::index_sequence<I...>) {
    static const fixed_fn table[] = {&fixed_one<float, M, int(I / 24), int(I % 24)>...};
    return table[index];
}
extern "C" {
#define FIXED_ENTRY(M)                                                                     \
    void fixed_f##M(int kind, int opts, const float* x, const float* v0,                  \
                    const unsigned char* bits, const float* gs, const float* gv, float* gx, \
                    float* gv0, long long n, int steps, P) {                              \
        fixed_pick<M>(24 * kind + opts, std::make_index_sequence<96>{})(                  \
            x, v0, bits, gs, gv, gx, gv0, n, steps, A);                                   \
    }
FIXED_ENTRY(8) FIXED_ENTRY(16) FIXED_ENTRY(32)
}
"""


@pytest.fixture(scope="module")
def lib(tmp_path_factory):
    cxx = shutil.which("g++") or shutil.which("clang++")
    if cxx is None:
        pytest.skip("no C++ compiler to build the kernel source for the host")
    d = tmp_path_factory.mktemp("lif_fixed_host")
    (d / "shim.cpp").write_text(SHIM + FIXED)
    cmd = [
        cxx,
        "-std=c++17",
        "-O0",  # -O0: 288 instances build in a fraction of the time
        "-ffp-contract=off",
        "-fPIC",
        "-shared",
    ]
    cmd += ["-D__CUDACC_RTC__", f"-I{kernel_dir()}", str(d / "shim.cpp"), "-o", str(d / "f.so")]
    subprocess.run(cmd, check=True, capture_output=True)
    return ctypes.CDLL(str(d / "f.so"))


def _call(lib, fn, kind, opts, x, v0, bits, gs, gv, gx, gv0, steps, n, p):
    getattr(lib, fn)(
        ctypes.c_int(kind),
        ctypes.c_int(opts),
        *(_ptr(a) for a in (x, v0, bits, gs, gv, gx, gv0)),
        ctypes.c_longlong(n),
        ctypes.c_int(steps),
        *_args(p, 0.0),
    )


CASES = list(
    itertools.product(SURROGATES, (0.0, None), (False, True), (False, True), (False, True))
)


@pytest.mark.parametrize(("surrogate", "v_reset", "detach", "decay", "trace"), CASES)
def test_fixed_backward_matches_reference(lib, surrogate, v_reset, detach, decay, trace):
    seed = hash((surrogate, v_reset, detach, decay, trace)) % 2**31
    g = torch.Generator().manual_seed(seed)
    n = 24
    p = LIFParams.make(1.8, 0.9, v_reset, surrogate, None, detach, decay)
    kind = _SURROGATE_IDS[surrogate]
    for (steps, maxt), ahead in itertools.product(((5, 8), (16, 16), (27, 32)), (False, True)):
        opts = _backward_options(p, trace, ahead)
        x = torch.rand(steps, n, generator=g) * 2.5 - 0.3
        v0 = torch.rand(n, generator=g) * 0.6
        gs = torch.randn(steps, n, generator=g)
        gv = torch.randn(steps, n, generator=g) if trace else None
        xr, v0r = x.clone().requires_grad_(), v0.clone().requires_grad_()
        s_ref, v_ref = lif_multistep(
            xr, 1.8, 0.9, v_reset, surrogate, None, detach, decay, v0r,
            return_membrane=True, backend="cpu",
        )  # fmt: skip
        outs, grads = [s_ref], [gs]
        if trace:
            outs.append(v_ref)
            grads.append(gv)
        gx_ref, gv0_ref = torch.autograd.grad(outs, [xr, v0r], grads)
        s = s_ref.detach().numpy()
        bits = np.zeros(((steps + 7) // 8, n), dtype=np.uint8)
        for t in range(steps):
            bits[t // 8] |= s[t].astype(np.uint8) << (t % 8)
        gva = None if gv is None else gv.numpy()
        gx = np.full((steps, n), np.nan, dtype=np.float32)
        gv0 = np.full(n, np.nan, dtype=np.float32)
        fn = f"fixed_f{maxt}"
        _call(
            lib, fn, kind, opts, x.numpy(), v0.numpy(), bits, gs.numpy(), gva, gx, gv0, steps, n, p
        )
        np.testing.assert_allclose(gx, gx_ref.numpy(), rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(gv0, gv0_ref.numpy(), rtol=1e-4, atol=1e-4)
        # without v0 (the rest level v_start = 0 here) and without its gradient: the poisoned
        # grad_x is overwritten everywhere, against the reference from a zero start
        xr = x.clone().requires_grad_()
        s0, v0_seq = lif_multistep(
            xr, 1.8, 0.9, v_reset, surrogate, None, detach, decay, None,
            return_membrane=True, backend="cpu",
        )  # fmt: skip
        outs = [s0, v0_seq] if trace else [s0]
        (gx0_ref,) = torch.autograd.grad(outs, [xr], grads)
        s = s0.detach().numpy()
        bits[:] = 0
        for t in range(steps):
            bits[t // 8] |= s[t].astype(np.uint8) << (t % 8)
        gx[:] = np.nan
        _call(lib, fn, kind, opts, x.numpy(), None, bits, gs.numpy(), gva, gx, None, steps, n, p)
        np.testing.assert_allclose(gx, gx0_ref.numpy(), rtol=1e-4, atol=1e-4)
