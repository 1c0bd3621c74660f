"""kernels/lif.cu's logic checked on the CPU: the kernel source compiled as host C++ (a shim
maps the CUDA built-ins; one "thread" walks every neuron through the grid-stride loop) and run
against the torch reference for every option.  The GPU tests (test_lif_gpu.py) check the real
launches; this one runs wherever a C++ compiler exists."""

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
from toolkit.snn._lif_cuda import _scalars
from toolkit.snn.neuron import LIFParams

SHIM = r"""
#include <cmath>
#include <cstring>
#define __global__
#define __device__
#define __forceinline__ inline
#define __noinline__
#define __restrict__
#define asm(...) (void)0
struct tk_dim3 { unsigned x; };
static tk_dim3 blockIdx{0}, threadIdx{0}, blockDim{1}, gridDim{1};
inline float __uint_as_float(unsigned u) { float f; std::memcpy(&f, &u, 4); return f; }
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline float __fmul_rn(float a, float b) { return a * b; }
inline double __dadd_rn(double a, double b) { return a + b; }
inline double __dsub_rn(double a, double b) { return a - b; }
inline double __dmul_rn(double a, double b) { return a * b; }
using std::exp; using std::fabs;
#include "lif.cu"
#define P double a, double b, double c, double d, double e, int f, int g, int h, int k
#define A a, b, c, d, e, f, g, h, k
#define FWD(NAME, T)                                                                   \
    void NAME(const T* x, const T* v0, T* s, T* vs, unsigned char* bits, long long n,     \
              int steps, P) {                                                             \
        lif_forward<T>(x, v0, s, vs, bits, n, steps, A);                                  \
    }
#define ARGS x, v0, bits, gs, gv, gx, gv0, scratch, n, steps, A
/* float register paths take the compile-time surrogate instance, as the host asks for it */
#define BWD(NAME, T, M)                                                                \
    void NAME(const T* x, const T* v0, const unsigned char* bits, const T* gs,            \
              const T* gv, T* gx, T* gv0, void* scratch, long long n, int steps, P) {     \
        if (M > 0 && sizeof(T) == 4) {                                                    \
            switch (k) {                                                                  \
                case 0: lif_backward<T, M, 0>(ARGS); return;                              \
                case 1: lif_backward<T, M, 1>(ARGS); return;                              \
                case 2: lif_backward<T, M, 2>(ARGS); return;                              \
                default: lif_backward<T, M, 3>(ARGS); return;                             \
            }                                                                             \
        }                                                                                 \
        lif_backward<T, M>(ARGS);                                                         \
    }
extern "C" {
FWD(fwd_f, float) FWD(fwd_d, double)
BWD(bwd_f0, float, 0) BWD(bwd_f8, float, 8) BWD(bwd_f16, float, 16) BWD(bwd_f32, float, 32)
BWD(bwd_d0, double, 0) BWD(bwd_d8, double, 8) BWD(bwd_d16, double, 16) BWD(bwd_d32, double, 32)
}
"""


@pytest.fixture(scope="module")
def lib(tmp_path_factory):
    cxx = shutil.which("g++") or shutil.which("clang++")
    if cxx is None:
        pytest.skip("no C++ compiler to build the kernel source for the host")
    d = tmp_path_factory.mktemp("lif_host")
    (d / "shim.cpp").write_text(SHIM)
    cmd = [
        cxx,
        "-std=c++17",
        "-O1",
        "-ffp-contract=off",
        "-fPIC",
        "-shared",
        "-D__CUDACC_RTC__",
        f"-I{kernel_dir()}",
        str(d / "shim.cpp"),
        "-o",
        str(d / "lif.so"),
    ]
    subprocess.run(cmd, check=True, capture_output=True)
    return ctypes.CDLL(str(d / "lif.so"))


def _ptr(a):
    return ctypes.c_void_p(0) if a is None else a.ctypes.data_as(ctypes.c_void_p)


def _args(p, v_start):
    out = []
    for v in _scalars(p, v_start):
        out.append(
            ctypes.c_double(float(v)) if isinstance(v, np.floating) else ctypes.c_int(int(v))
        )
    return out


CASES = list(itertools.product(SURROGATES, (0.0, None), (False, True), (False, True)))


@pytest.mark.parametrize("dtype", ("f", "d"))
@pytest.mark.parametrize("steps", (1, 13, 32, 37))
@pytest.mark.parametrize(("surrogate", "v_reset", "detach", "decay"), CASES)
def test_host_kernel_matches_reference(lib, dtype, steps, surrogate, v_reset, detach, decay):
    seed = hash((dtype, steps, surrogate, v_reset, detach, decay)) % 2**31
    g = torch.Generator().manual_seed(seed)
    tdt = torch.float32 if dtype == "f" else torch.float64
    n = 40
    x = (torch.rand(steps, n, generator=g) * 2.5 - 0.3).to(tdt)
    v0 = (torch.rand(n, generator=g) * 0.6).to(tdt)
    gs = torch.randn(steps, n, generator=g).to(tdt)
    gv = torch.randn(steps, n, generator=g).to(tdt)
    p = LIFParams.make(1.8, 0.9, v_reset, surrogate, None, detach, decay)
    xr, v0r = x.clone().requires_grad_(), v0.clone().requires_grad_()
    s_ref, v_ref = lif_multistep(
        xr,
        1.8,
        0.9,
        v_reset,
        surrogate,
        None,
        detach,
        decay,
        v0r,
        return_membrane=True,
        backend="cpu",
    )
    gx_ref, gv0_ref = torch.autograd.grad([s_ref, v_ref], [xr, v0r], [gs, gv])

    xa, v0a = x.numpy(), v0.numpy()
    spikes = np.full((steps, n), np.nan, dtype=xa.dtype)
    v_seq = np.full((steps, n), np.nan, dtype=xa.dtype)
    bits = np.full(((steps + 7) // 8, n), 0xA5, dtype=np.uint8)
    getattr(lib, f"fwd_{dtype}")(
        _ptr(xa),
        _ptr(v0a),
        _ptr(spikes),
        _ptr(v_seq),
        _ptr(bits),
        ctypes.c_longlong(n),
        ctypes.c_int(steps),
        *_args(p, 0.0),
    )
    assert np.array_equal(spikes, s_ref.detach().numpy())
    np.testing.assert_allclose(v_seq, v_ref.detach().numpy(), rtol=1e-6, atol=1e-6)
    packed = np.zeros_like(bits)
    for t in range(steps):
        packed[t // 8] |= s_ref.detach().numpy()[t].astype(np.uint8) << (t % 8)
    assert np.array_equal(bits, packed)

    maxt = next((m for m in (8, 16, 32) if m >= steps), 0)
    grad_x = np.full((steps, n), np.nan, dtype=xa.dtype)
    grad_v0 = np.full(n, np.nan, dtype=xa.dtype)
    scratch = np.empty((steps, n), dtype=xa.dtype) if maxt == 0 else None
    getattr(lib, f"bwd_{dtype}{maxt}")(
        _ptr(xa),
        _ptr(v0a),
        _ptr(bits),
        _ptr(gs.numpy()),
        _ptr(gv.numpy()),
        _ptr(grad_x),
        _ptr(grad_v0),
        _ptr(scratch),
        ctypes.c_longlong(n),
        ctypes.c_int(steps),
        *_args(p, 0.0),
    )
    tol = 1e-4 if dtype == "f" else 1e-10
    np.testing.assert_allclose(grad_x, gx_ref.numpy(), rtol=tol, atol=tol)
    np.testing.assert_allclose(grad_v0, gv0_ref.numpy(), rtol=tol, atol=tol)
