// Fused multi-step LIF neuron: forward and backward through time, one thread per neuron.
//
// Layout: the input is [T, n] contiguous (time outermost), so that at each step the threads of
// a warp read consecutive neurons.  Each thread keeps its membrane potential in a register and
// loops over the T steps; nothing of the state goes through global memory.
//
// Arithmetic runs in float (double for double inputs) with explicitly rounded operations
// (__fadd_rn and friends), in the same order as the torch reference, so that the charge and the
// threshold test give the same spikes bit for bit.  Half inputs are integrated in float.
//
// The forward writes the spikes (in the input's dtype, the output the user sees), optionally the
// membrane trace, and the spikes once more as bits, [ceil(T/8), n] bytes: that is all the
// backward keeps besides the input.  The backward replays the charge from the input and the
// saved bits (registers hold the T membrane values when T <= MAXT), then runs the adjoint
// recurrence backwards in time:
//     dL/dH[t] = dL/dS[t] s'(H[t] - Vth) + dL/dV[t] dV[t]/dH[t]
//     dL/dX[t] = dL/dH[t] dH/dX,   dL/dV[t-1] = dL/dH[t] (1 - 1/tau) (+ dL/dV-trace[t-1])
// MAXT = 0 instantiates a variant that keeps the replayed membrane values in a scratch buffer
// [T, n] of the working type instead, for long sequences.
//
// Two backward kernels: lif_backward_fixed, what float and half calls with T <= 32 run, has the
// surrogate, the reset kind, detach_reset, decay_input and whether a trace gradient comes in
// fixed at compile time (one instance per combination, compiled on first use) and one thread
// per neuron on an exact grid; lif_backward reads those options at run time (float64, T > 32,
// and the benchmarks' comparison).  Saving H in the forward instead of the spike bits, as
// SpikingJelly does, would skip the replay but move more bytes: forward+backward reads and
// writes 6 planes of [T, n] then against 5 planes and two bit planes now.
#include "tk_dtypes.cuh"

// Built as host C++ (tests/snn/test_lif_kernel_host.py) the launch bounds mean nothing.
#if !defined(__CUDACC__) && !defined(__launch_bounds__)
#define __launch_bounds__(...)
#endif

namespace {

template <typename T> struct acc_of { using type = float; };
template <> struct acc_of<double> { using type = double; };

__device__ __forceinline__ float add_rn(float a, float b) { return __fadd_rn(a, b); }
__device__ __forceinline__ float sub_rn(float a, float b) { return __fsub_rn(a, b); }
__device__ __forceinline__ float mul_rn(float a, float b) { return __fmul_rn(a, b); }
__device__ __forceinline__ double add_rn(double a, double b) { return __dadd_rn(a, b); }
__device__ __forceinline__ double sub_rn(double a, double b) { return __dsub_rn(a, b); }
__device__ __forceinline__ double mul_rn(double a, double b) { return __dmul_rn(a, b); }

__device__ __forceinline__ float load(const float* p) { return *p; }
__device__ __forceinline__ double load(const double* p) { return *p; }
// One cvt instruction (exact for every binary16 value): the branchy bit-level tk_to_float,
// inlined at every unrolled load of the backward, made ptxas take minutes on tk_half.
__device__ __forceinline__ float load(const tk_half* p) {
    float v = 0.0f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(v) : "h"(p->bits));
    return v;
}

__device__ __forceinline__ void store(float* p, float v) { *p = v; }
__device__ __forceinline__ void store(double* p, double v) { *p = v; }
__device__ __forceinline__ void store(tk_half* p, float v) {
    unsigned short bits;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(bits) : "f"(v));  // round to nearest even
    p->bits = bits;
}

__device__ __forceinline__ float exp_(float a) { return expf(a); }
__device__ __forceinline__ double exp_(double a) { return exp(a); }
__device__ __forceinline__ float abs_(float a) { return fabsf(a); }
__device__ __forceinline__ double abs_(double a) { return fabs(a); }

// H[t] from V[t-1] and X[t]; soft reset charges towards 0 (v_reset is 0 in the charge then).
template <typename A>
__device__ __forceinline__ A charge(A v, A x, A inv_tau, A v_rest, int decay_input) {
    if (decay_input) return add_rn(v, mul_rn(sub_rn(x, sub_rn(v, v_rest)), inv_tau));
    return add_rn(sub_rn(v, mul_rn(sub_rn(v, v_rest), inv_tau)), x);
}

// Surrogate derivative at u = H - Vth.  0 atan, 1 sigmoid, 2 rectangular, 3 triangle.
template <int K, typename A>
__device__ __forceinline__ A surrogate_k(A u, A alpha) {
    if constexpr (K == 0) {
        const A z = A(1.5707963267948966) * alpha * u;
        return A(0.5) * alpha / (A(1) + z * z);
    } else if constexpr (K == 1) {
        const A s = A(1) / (A(1) + exp_(-alpha * u));
        return alpha * s * (A(1) - s);
    } else if constexpr (K == 2) {
        return abs_(u) < A(0.5) * alpha ? A(1) / alpha : A(0);
    } else {
        const A a = abs_(u);
        return a < alpha ? (alpha - a) / (alpha * alpha) : A(0);
    }
}

// The same with the kind known only at run time.  Not inlined: 32 inlined copies of all four
// branches (exp in double above all) made the compile take a minute per instance; the float
// register path inlines surrogate_k instead, in one kernel instance per kind.
template <typename A>
__device__ __noinline__ A surrogate_grad(A u, A alpha, int kind) {
    if (kind == 0) {
        const A z = A(1.5707963267948966) * alpha * u;
        return A(0.5) * alpha / (A(1) + z * z);
    }
    if (kind == 1) {
        const A s = A(1) / (A(1) + exp_(-alpha * u));
        return alpha * s * (A(1) - s);
    }
    const A a = abs_(u);
    if (kind == 2) return a < A(0.5) * alpha ? A(1) / alpha : A(0);
    return a < alpha ? (alpha - a) / (alpha * alpha) : A(0);
}

// The surrogate as a callable: the kind fixed at compile time (inlined), or read at run time.
template <int K, typename A>
struct SurrogateOf {
    A alpha;
    __device__ __forceinline__ A operator()(A u) const { return surrogate_k<K>(u, alpha); }
};
template <typename A>
struct SurrogateCall {
    A alpha;
    int kind;
    __device__ __forceinline__ A operator()(A u) const { return surrogate_grad(u, alpha, kind); }
};

// The options that shape the backward's arithmetic, known at compile time (OPTS >= 0, a sum
// of these bits) or read from the launch's arguments (OPTS = -1, the general kernel).
constexpr int kHard = 1;         // hard reset (else soft)
constexpr int kDetach = 2;       // detach_reset
constexpr int kDecayInput = 4;   // decay_input
constexpr int kTrace = 8;        // a gradient flows into the membrane trace (grad_v non-null)
constexpr int kAhead = 16;       // without kTrace: load each chunk's dL/dS a chunk ahead

template <int OPTS>
struct Options {
    int hard, detach_reset, decay_input, trace;
    __device__ __forceinline__ bool is_hard() const { return OPTS >= 0 ? (OPTS & kHard) : hard; }
    __device__ __forceinline__ bool detach() const {
        return OPTS >= 0 ? (OPTS & kDetach) : detach_reset;
    }
    __device__ __forceinline__ bool decay() const {
        return OPTS >= 0 ? (OPTS & kDecayInput) : decay_input;
    }
    __device__ __forceinline__ bool has_trace() const {
        return OPTS >= 0 ? (OPTS & kTrace) : trace;
    }
};

// The backward of one neuron with its T <= MAXT membrane values in registers.  Plain code, no
// lambdas: through a lambda's captures the pointers lose __restrict__, and the compiler then
// keeps every load behind the last step's store.  dL/dS (and dL/dV) are loaded eight steps at a
// time ahead of their part of the recurrence, so eight loads are in flight per thread.  With the
// options fixed at compile time (OPTS >= 0) the untaken branches and, without a trace gradient,
// its eight registers of dL/dV go away.  With kAhead (and no trace gradient) eight more
// registers hold the next chunk's dL/dS: the last chunk's loads go out with the replay's, and
// each chunk's while the one after it in time is worked on, so that a thread does not wait
// for memory once per chunk.
template <int MAXT, int OPTS, typename T, typename A, typename SG>
__device__ __forceinline__ void backward_in_registers(
    const T* __restrict__ x, const T* __restrict__ v0, const unsigned char* __restrict__ bits,
    const T* __restrict__ grad_s, const T* __restrict__ grad_v, T* __restrict__ grad_x,
    T* __restrict__ grad_v0, long long n, int steps, long long i, A inv_tau, A vth, A v_rest,
    A v_reset, A v_start, Options<OPTS> o, SG surrogate_at) {
    const bool hard = o.is_hard(), detach_reset = o.detach(), trace = o.has_trace();
    constexpr bool AHEAD = OPTS >= 0 && (OPTS & kAhead) && !(OPTS & kTrace);
    constexpr int TOP = (MAXT + 7) / 8 - 1;  // the last chunk of eight steps
    const A decay = A(1) - inv_tau;
    const A dh_dx = o.decay() ? inv_tau : A(1);
    A ahead[8];  // AHEAD: dL/dS of the chunk worked on next
    if constexpr (AHEAD) {
#pragma unroll
        for (int u = 0; u < 8; ++u) {
            const int t = 8 * TOP + u;
            if (t < steps) ahead[u] = load(grad_s + static_cast<long long>(t) * n + i);
        }
    }
    A h[MAXT];
    unsigned int spikes = 0u;  // bit t: S[t]
    A v = v0 ? load(v0 + i) : v_start;
    unsigned int byte = 0u;
#pragma unroll
    for (int t = 0; t < MAXT; ++t) {  // replay the forward: H[t] and S[t]
        if (t < steps) {
            if ((t & 7) == 0) byte = bits[static_cast<long long>(t >> 3) * n + i];
            h[t] = charge(v, load(x + static_cast<long long>(t) * n + i), inv_tau, v_rest,
                          static_cast<int>(o.decay()));
            const bool s = (byte >> (t & 7)) & 1u;
            spikes |= static_cast<unsigned int>(s) << t;
            v = s ? (hard ? v_reset : sub_rn(h[t], vth)) : h[t];
        }
    }
    A gv = A(0);
#pragma unroll
    for (int c = TOP; c >= 0; --c) {
        A gs[8], gtrace[8];
        if constexpr (AHEAD) {
#pragma unroll
            for (int u = 0; u < 8; ++u) {
                gs[u] = ahead[u];
                gtrace[u] = A(0);
                const int t = 8 * (c - 1) + u;
                if (c > 0 && t < steps) ahead[u] = load(grad_s + static_cast<long long>(t) * n + i);
            }
        } else {
#pragma unroll
            for (int u = 0; u < 8; ++u) {
                const int t = 8 * c + u;
                if (t < steps) {
                    gs[u] = load(grad_s + static_cast<long long>(t) * n + i);
                    gtrace[u] = trace ? load(grad_v + static_cast<long long>(t) * n + i) : A(0);
                }
            }
        }
#pragma unroll
        for (int u = 7; u >= 0; --u) {
            const int t = 8 * c + u;
            if (t < steps) {
                const A s = (spikes >> t) & 1u ? A(1) : A(0);
                const A sg = surrogate_at(h[t] - vth);
                if (trace) gv += gtrace[u];
                A dv_dh;
                if (hard) {
                    dv_dh = (A(1) - s) + (detach_reset ? A(0) : (v_reset - h[t]) * sg);
                } else {
                    dv_dh = A(1) - (detach_reset ? A(0) : vth * sg);
                }
                const A gh = gs[u] * sg + gv * dv_dh;
                store(grad_x + static_cast<long long>(t) * n + i, gh * dh_dx);
                gv = gh * decay;
            }
        }
    }
    if (grad_v0) store(grad_v0 + i, gv);
}

}  // namespace

template <typename T>
__global__ void lif_forward(const T* __restrict__ x, const T* __restrict__ v0,
                            T* __restrict__ spikes, T* __restrict__ v_seq,
                            unsigned char* __restrict__ bits, long long n, int steps,
    double inv_tau_, double v_threshold_, double v_reset_, double v_start_, double alpha_,
    int hard, int decay_input, int detach_reset, int surrogate) {
    using A = typename acc_of<T>::type;
    const A inv_tau = A(inv_tau_), vth = A(v_threshold_);
    const A v_rest = hard ? A(v_reset_) : A(0), v_reset = A(v_reset_);
    const long long stride = static_cast<long long>(gridDim.x) * blockDim.x;
    for (long long i = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
         i += stride) {
        A v = v0 ? load(v0 + i) : A(v_start_);
        unsigned int byte = 0;
        for (int t = 0; t < steps; ++t) {
            const long long k = static_cast<long long>(t) * n + i;
            const A h = charge(v, load(x + k), inv_tau, v_rest, decay_input);
            const bool s = h >= vth;
            store(spikes + k, s ? A(1) : A(0));
            v = s ? (hard ? v_reset : sub_rn(h, vth)) : h;
            if (v_seq) store(v_seq + k, v);
            byte |= static_cast<unsigned int>(s) << (t & 7);
            if ((t & 7) == 7 || t == steps - 1) {
                bits[static_cast<long long>(t >> 3) * n + i] = static_cast<unsigned char>(byte);
                byte = 0;
            }
        }
    }
}

// The specialised backward: register path, every option that shapes the arithmetic fixed at
// compile time (KIND the surrogate, OPTS a sum of the Options bits), and an exact grid, one
// thread per neuron, no grid-stride loop.  v0 and grad_v0 stay run-time pointers (one load and
// one store per neuron).  Without a trace gradient they are bounded to 64 registers, so four
// 256-thread blocks, half the SM's threads, are in flight per SM; with one, or with kAhead at
// MAXT 32 (68-80 registers), to 80 and three blocks.  ptxas -v on sm_90 over all 576 instances
// (nvcc -DTK_LIF_EVERY_INSTANCE): 34-80 registers; 32 instances spill 4-16 bytes (24 of them
// with a trace gradient; without one: float OPTS 4 and 6, half OPTS 0, at MAXT 32).
template <typename T, int MAXT, int KIND, int OPTS>
__global__ void __launch_bounds__(256, (OPTS & kTrace) || ((OPTS & kAhead) && MAXT > 16) ? 3 : 4)
    lif_backward_fixed(const T* __restrict__ x, const T* __restrict__ v0,
                       const unsigned char* __restrict__ bits, const T* __restrict__ grad_s,
                       const T* __restrict__ grad_v, T* __restrict__ grad_x,
                       T* __restrict__ grad_v0, void* __restrict__ scratch_, long long n,
                       int steps, double inv_tau_, double v_threshold_, double v_reset_,
                       double v_start_, double alpha_, int hard, int decay_input,
                       int detach_reset, int surrogate) {
    static_assert(MAXT > 0 && KIND >= 0 && OPTS >= 0 && OPTS < 32, "a register instance");
    using A = typename acc_of<T>::type;
    const long long i = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x;
    if (i >= n) return;
    const A inv_tau = A(inv_tau_), vth = A(v_threshold_), alpha = A(alpha_);
    const A v_rest = (OPTS & kHard) ? A(v_reset_) : A(0), v_reset = A(v_reset_);
    backward_in_registers<MAXT>(x, v0, bits, grad_s, grad_v, grad_x, grad_v0, n, steps, i,
                                inv_tau, vth, v_rest, v_reset, A(v_start_),
                                Options<OPTS>{0, 0, 0, 0}, SurrogateOf<KIND, A>{alpha});
}

// The general backward, every option read at run time (float64, the scratch path for T > 32,
// and any call the host does not specialise).  KIND >= 0 fixes the surrogate only.
template <typename T, int MAXT, int KIND = -1>
__global__ void lif_backward(const T* __restrict__ x, const T* __restrict__ v0,
                             const unsigned char* __restrict__ bits,
                             const T* __restrict__ grad_s, const T* __restrict__ grad_v,
                             T* __restrict__ grad_x, T* __restrict__ grad_v0,
                             void* __restrict__ scratch_, long long n, int steps,
    double inv_tau_, double v_threshold_, double v_reset_, double v_start_, double alpha_,
    int hard, int decay_input, int detach_reset, int surrogate) {
    using A = typename acc_of<T>::type;
    const A inv_tau = A(inv_tau_), vth = A(v_threshold_), alpha = A(alpha_);
    const A v_rest = hard ? A(v_reset_) : A(0), v_reset = A(v_reset_);
    const long long stride = static_cast<long long>(gridDim.x) * blockDim.x;
    const long long first = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x;
    if constexpr (MAXT > 0) {
        const Options<-1> o{hard, detach_reset, decay_input, grad_v != nullptr};
        for (long long i = first; i < n; i += stride) {
#define TK_LIF_NEURON(SG)                                                                     \
    backward_in_registers<MAXT>(x, v0, bits, grad_s, grad_v, grad_x, grad_v0, n, steps, i,    \
                                inv_tau, vth, v_rest, v_reset, A(v_start_), o, SG)
            if constexpr (KIND >= 0) {
                TK_LIF_NEURON((SurrogateOf<KIND, A>{alpha}));
            } else {
                TK_LIF_NEURON((SurrogateCall<A>{alpha, surrogate}));
            }
#undef TK_LIF_NEURON
        }
    } else {
        // Long sequences: the replayed H[t] go through the scratch buffer [T, n].
        A* scratch = static_cast<A*>(scratch_);
        const A decay = A(1) - inv_tau;
        const A dh_dx = decay_input ? inv_tau : A(1);
        for (long long i = first; i < n; i += stride) {
            A v = v0 ? load(v0 + i) : A(v_start_);
            unsigned int byte = 0u;
            for (int t = 0; t < steps; ++t) {
                const long long k = static_cast<long long>(t) * n + i;
                if ((t & 7) == 0) byte = bits[static_cast<long long>(t >> 3) * n + i];
                const A h = charge(v, load(x + k), inv_tau, v_rest, decay_input);
                scratch[k] = h;
                v = (byte >> (t & 7)) & 1u ? (hard ? v_reset : sub_rn(h, vth)) : h;
            }
            A gv = A(0);
            for (int t = steps - 1; t >= 0; --t) {
                const long long k = static_cast<long long>(t) * n + i;
                const A h = scratch[k];
                const A s = (bits[static_cast<long long>(t >> 3) * n + i] >> (t & 7)) & 1u ? A(1)
                                                                                            : A(0);
                const A sg = surrogate_grad(h - vth, alpha, surrogate);
                if (grad_v) gv += load(grad_v + k);
                A dv_dh;
                if (hard) {
                    dv_dh = (A(1) - s) + (detach_reset ? A(0) : (v_reset - h) * sg);
                } else {
                    dv_dh = A(1) - (detach_reset ? A(0) : vth * sg);
                }
                const A gh = load(grad_s + k) * sg + gv * dv_dh;
                store(grad_x + k, gh * dh_dx);
                gv = gh * decay;
            }
            if (grad_v0) store(grad_v0 + i, gv);
        }
    }
}

// Explicit instances for nvcc's compile check; at run time each launch compiles (through NVRTC,
// once per device) only the one instance that its name_expressions asks for.
#ifndef __CUDACC_RTC__
#define TK_LIF_INSTANCES(T)                                                                    \
    template __global__ void lif_forward<T>(const T* __restrict__, const T* __restrict__,      \
                                            T* __restrict__, T* __restrict__,                  \
                                            unsigned char* __restrict__, long long, int, double, \
                                            double, double, double, double, int, int, int,     \
                                            int);                                              \
    TK_LIF_BACKWARD(T, 0)                                                                      \
    TK_LIF_BACKWARD(T, 8)                                                                      \
    TK_LIF_BACKWARD(T, 16)                                                                     \
    TK_LIF_BACKWARD(T, 32)
#define TK_LIF_BACKWARD(T, MAXT) TK_LIF_BACKWARD_KIND(T, MAXT, -1)
#define TK_LIF_BACKWARD_KIND(T, MAXT, KIND)                                                    \
    template __global__ void lif_backward<T, MAXT, KIND>(                                      \
        const T* __restrict__, const T* __restrict__, const unsigned char* __restrict__,       \
        const T* __restrict__, const T* __restrict__, T* __restrict__, T* __restrict__,        \
        void* __restrict__, long long, int, double, double, double, double, double, int, int,  \
        int, int);
#define TK_LIF_BACKWARD_OPTS(T, MAXT, KIND, OPTS)                                              \
    template __global__ void lif_backward_fixed<T, MAXT, KIND, OPTS>(                          \
        const T* __restrict__, const T* __restrict__, const unsigned char* __restrict__,       \
        const T* __restrict__, const T* __restrict__, T* __restrict__, T* __restrict__,        \
        void* __restrict__, long long, int, double, double, double, double, double, int, int,  \
        int, int);
// The 24 option sets of one (type, register size, surrogate): 16, and kAhead on the 8 without
// a trace gradient.
#define TK_LIF_ALL_OPTS(T, MAXT, KIND)                                                         \
    TK_LIF_BACKWARD_OPTS(T, MAXT, KIND, 0) TK_LIF_BACKWARD_OPTS(T, MAXT, KIND, 1)              \
    TK_LIF_BACKWARD_OPTS(T, MAXT, KIND, 2) TK_LIF_BACKWARD_OPTS(T, MAXT, KIND, 3)              \
    TK_LIF_BACKWARD_OPTS(T, MAXT, KIND, 4) TK_LIF_BACKWARD_OPTS(T, MAXT, KIND, 5)              \
    TK_LIF_BACKWARD_OPTS(T, MAXT, KIND, 6) TK_LIF_BACKWARD_OPTS(T, MAXT, KIND, 7)              \
    TK_LIF_BACKWARD_OPTS(T, MAXT, KIND, 8) TK_LIF_BACKWARD_OPTS(T, MAXT, KIND, 9)              \
    TK_LIF_BACKWARD_OPTS(T, MAXT, KIND, 10) TK_LIF_BACKWARD_OPTS(T, MAXT, KIND, 11)            \
    TK_LIF_BACKWARD_OPTS(T, MAXT, KIND, 12) TK_LIF_BACKWARD_OPTS(T, MAXT, KIND, 13)            \
    TK_LIF_BACKWARD_OPTS(T, MAXT, KIND, 14) TK_LIF_BACKWARD_OPTS(T, MAXT, KIND, 15)          \
    TK_LIF_BACKWARD_OPTS(T, MAXT, KIND, 16) TK_LIF_BACKWARD_OPTS(T, MAXT, KIND, 17)            \
    TK_LIF_BACKWARD_OPTS(T, MAXT, KIND, 18) TK_LIF_BACKWARD_OPTS(T, MAXT, KIND, 19)            \
    TK_LIF_BACKWARD_OPTS(T, MAXT, KIND, 20) TK_LIF_BACKWARD_OPTS(T, MAXT, KIND, 21)            \
    TK_LIF_BACKWARD_OPTS(T, MAXT, KIND, 22) TK_LIF_BACKWARD_OPTS(T, MAXT, KIND, 23)

TK_LIF_INSTANCES(float)
TK_LIF_INSTANCES(double)
TK_LIF_INSTANCES(tk_half)
// The general kernel with the surrogate fixed (kept for comparison: benchmarks/snn.py times it
// against the specialised instances).
TK_LIF_BACKWARD_KIND(float, 32, 0)
TK_LIF_BACKWARD_KIND(tk_half, 32, 0)
#ifdef TK_LIF_EVERY_INSTANCE
// Every specialised instance the host can ask for (576; scripts/check-kernels builds a sample,
// `nvcc -DTK_LIF_EVERY_INSTANCE` builds them all).
#define TK_LIF_ALL_KINDS(T, MAXT)                                                              \
    TK_LIF_ALL_OPTS(T, MAXT, 0) TK_LIF_ALL_OPTS(T, MAXT, 1) TK_LIF_ALL_OPTS(T, MAXT, 2)        \
    TK_LIF_ALL_OPTS(T, MAXT, 3)
TK_LIF_ALL_KINDS(float, 8)
TK_LIF_ALL_KINDS(float, 16)
TK_LIF_ALL_KINDS(float, 32)
TK_LIF_ALL_KINDS(tk_half, 8)
TK_LIF_ALL_KINDS(tk_half, 16)
TK_LIF_ALL_KINDS(tk_half, 32)
#else
// A sample: every option set at the largest register size (the most registers), the default
// option set (hard reset, decay_input: 5, with kAhead 21) at every size and surrogate kind.
TK_LIF_ALL_OPTS(float, 32, 0)
TK_LIF_ALL_OPTS(tk_half, 32, 0)
TK_LIF_BACKWARD_OPTS(float, 8, 0, 5)
TK_LIF_BACKWARD_OPTS(float, 16, 0, 5)
TK_LIF_BACKWARD_OPTS(tk_half, 8, 0, 5)
TK_LIF_BACKWARD_OPTS(tk_half, 16, 0, 5)
TK_LIF_BACKWARD_OPTS(float, 8, 0, 21)
TK_LIF_BACKWARD_OPTS(float, 16, 0, 21)
TK_LIF_BACKWARD_OPTS(tk_half, 8, 0, 21)
TK_LIF_BACKWARD_OPTS(tk_half, 16, 0, 21)
TK_LIF_BACKWARD_OPTS(float, 32, 1, 5)
TK_LIF_BACKWARD_OPTS(float, 32, 2, 5)
TK_LIF_BACKWARD_OPTS(float, 32, 3, 5)
#endif
#endif
