// Batch normalization with statistics from a sample of the data (toolkit.norm).
//
// x is NCHW contiguous (1-d inputs use H = 1).  The sample is a set of rows n (batch indices)
// and, in each, one ph x pw window starting at (h0[n], w0[n]); h0[n] = -1 marks a row outside
// the sample.  Batch sampling takes whole rows, feature sampling one window in every row.
//
// Index:    bn_build_index    rows, h0, w0 from a device-side random permutation (layers).
// Forward:  bn_sample_stats   per-channel sums over the sample only (the cheap reduction),
//           bn_stats_finalize mean, variance, 1/sqrt(var + eps), the affine folded in, and the
//                             running statistics' update (momentum, unbiased variance),
//           bn_normalize      y = x * scale[c] + shift[c] over every datum.
// Backward: bn_backward_reduce    per-channel sums of dy and dy * (x - mean) over every datum
//                                 (the weight and bias gradients need them anyway),
//           bn_backward_finalize  the gradients of weight and bias and three coefficients,
//           bn_backward_dx        dx = A dy - [i in S] (B + D (x - mean)).
// With center = 0 the mean is zero and the "variance" is the second moment (SMN).
//
// Sums accumulate in double (shifted by the channel's first sampled datum when centring), so
// E[x^2] - E[x]^2 does not cancel; elementwise math runs in float (double for double inputs).
#include "tk_dtypes.cuh"

namespace {

template <typename T> struct compute_of { using type = float; };
template <> struct compute_of<double> { using type = double; };

// binary16 <-> binary32 with the hardware conversions (what cuda_fp16's __half2float and
// __float2half compile to): the branchy software versions in tk_dtypes.cuh cost a dozen integer
// instructions per datum and left the float16 passes instruction-bound (as slow as float32).
// cvt.f32.f16 is exact; cvt.rn.f16.f32 rounds to nearest even, overflow to inf, NaN stays NaN.
__device__ __forceinline__ float bn_to_float(tk_half x) {
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(x.bits));
    return f;
}
__device__ __forceinline__ float bn_to_float(tk_bfloat16 x) { return tk_to_float(x); }
__device__ __forceinline__ float bn_to_float(float x) { return x; }
__device__ __forceinline__ double bn_to_float(double x) { return x; }

__device__ __forceinline__ unsigned short bn_f32_to_f16(float f) {
    unsigned short h;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(f));
    return h;
}

__device__ __forceinline__ unsigned short bn_f32_to_bf16(float f) {
    const unsigned int x = __float_as_uint(f);
    if ((x & 0x7fffffffu) > 0x7f800000u) return static_cast<unsigned short>((x >> 16) | 0x40u);
    return static_cast<unsigned short>((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
}

__device__ __forceinline__ void bn_store(float& p, float v) { p = v; }
__device__ __forceinline__ void bn_store(double& p, double v) { p = v; }
__device__ __forceinline__ void bn_store(tk_half& p, float v) { p.bits = bn_f32_to_f16(v); }
__device__ __forceinline__ void bn_store(tk_bfloat16& p, float v) { p.bits = bn_f32_to_bf16(v); }

template <typename T, int VEC> struct alignas(sizeof(T) * VEC) bn_pack { T v[VEC]; };

// Sum two doubles over the block (blockDim.x a multiple of 32, at most 1024); thread 0 holds
// the result.
__device__ __forceinline__ void bn_block_sum2(double& a, double& b) {
    __shared__ double sa[32], sb[32];
    for (int off = 16; off > 0; off >>= 1) {
        a += __shfl_down_sync(0xffffffffu, a, off);
        b += __shfl_down_sync(0xffffffffu, b, off);
    }
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    if (lane == 0) { sa[warp] = a; sb[warp] = b; }
    __syncthreads();
    if (warp == 0) {
        const int warps = (blockDim.x + 31) >> 5;
        a = lane < warps ? sa[lane] : 0.0;
        b = lane < warps ? sb[lane] : 0.0;
        for (int off = 16; off > 0; off >>= 1) {
            a += __shfl_down_sync(0xffffffffu, a, off);
            b += __shfl_down_sync(0xffffffffu, b, off);
        }
    }
}

// The channel's first sampled datum: the shift of the sums (0 without centring).
template <typename T>
__device__ __forceinline__ double bn_shift(const T* x, const int* rows, const int* h0, const int* w0,
                                           int c, int C, int H, int W, int center) {
    if (!center) return 0.0;
    const long long n = rows[0];
    return static_cast<double>(bn_to_float(x[((n * C + c) * H + h0[n]) * W + w0[n]]));
}

// Unrolled loads of U packs of VEC data before any arithmetic keep U * 16 bytes per thread in
// flight (one scalar load per loop trip left the reductions latency-bound); the U * VEC values
// are summed in the compute type first and then added to the double accumulators, which keeps
// the double arithmetic off the critical rate.
constexpr int BN_UNROLL = 4;

// Per-thread sums over packs j = first, first + step, ... < total of one channel; pack j lives
// at plane plane_of(j) (in units of planes of HWp packs) and offset j mod HWp.  Sums v - shift
// and (v - shift)^2, or with a second input g: g and g * (v - shift).
template <typename T, int VEC, bool GRAD, typename PlaneOf>
__device__ __forceinline__ void bn_flat_sums(const T* __restrict__ x, const T* __restrict__ g,
                                             unsigned total, unsigned first, unsigned step,
                                             unsigned HWp, PlaneOf plane_of,
                                             typename compute_of<T>::type shift, double& s1,
                                             double& s2) {
    using S = typename compute_of<T>::type;
    using P = bn_pack<T, VEC>;
    const P* xp = reinterpret_cast<const P*>(x);
    const P* gp = reinterpret_cast<const P*>(g);
    unsigned j = first;
    for (; j + (BN_UNROLL - 1) * step < total; j += BN_UNROLL * step) {
        P xv[BN_UNROLL], gv[BN_UNROLL];
#pragma unroll
        for (int u = 0; u < BN_UNROLL; ++u) {
            const unsigned q = j + u * step;
            const unsigned r = q / HWp;
            const long long at = plane_of(r) * HWp + (q - r * HWp);
            xv[u] = xp[at];
            if (GRAD) gv[u] = gp[at];
        }
        S a = 0, b = 0;
#pragma unroll
        for (int u = 0; u < BN_UNROLL; ++u) {
#pragma unroll
            for (int e = 0; e < VEC; ++e) {
                const S d = static_cast<S>(bn_to_float(xv[u].v[e])) - shift;
                if (GRAD) {
                    const S gg = static_cast<S>(bn_to_float(gv[u].v[e]));
                    a += gg;
                    b += gg * d;
                } else {
                    a += d;
                    b += d * d;
                }
            }
        }
        s1 += static_cast<double>(a);
        s2 += static_cast<double>(b);
    }
    for (; j < total; j += step) {
        const unsigned r = j / HWp;
        const long long at = plane_of(r) * HWp + (j - r * HWp);
        const P xv = xp[at];
        P gv;
        if (GRAD) gv = gp[at];
        S a = 0, b = 0;
#pragma unroll
        for (int e = 0; e < VEC; ++e) {
            const S d = static_cast<S>(bn_to_float(xv.v[e])) - shift;
            if (GRAD) {
                const S gg = static_cast<S>(bn_to_float(gv.v[e]));
                a += gg;
                b += gg * d;
            } else {
                a += d;
                b += d * d;
            }
        }
        s1 += static_cast<double>(a);
        s2 += static_cast<double>(b);
    }
}

}  // namespace

// grid = C * splits blocks; block b sums channel b / splits over every splits-th piece.  Whole
// rows (the window is the map) are read as packs of VEC; windows keep the scalar path.
template <typename T, int VEC>
__global__ void bn_sample_stats(const T* __restrict__ x, const int* __restrict__ rows,
                                const int* __restrict__ h0, const int* __restrict__ w0,
                                double* __restrict__ partial, int C, int H, int W, int k,
                                int ph, int pw, int splits, int center) {
    using S = typename compute_of<T>::type;
    const int c = blockIdx.x / splits;
    const int s = blockIdx.x - c * splits;
    const double shift = bn_shift(x, rows, h0, w0, c, C, H, W, center);
    const int P = ph * pw;
    double s1 = 0.0, s2 = 0.0;
    if (ph == H && pw == W) {
        const unsigned HWp = static_cast<unsigned>(P / VEC);
        const auto plane_of = [=](unsigned r) {
            return static_cast<long long>(rows[r]) * C + c;
        };
        bn_flat_sums<T, VEC, false>(x, x, static_cast<unsigned>(k) * HWp,
                                    static_cast<unsigned>(s) * blockDim.x + threadIdx.x,
                                    static_cast<unsigned>(splits) * blockDim.x, HWp, plane_of,
                                    static_cast<S>(shift), s1, s2);
    } else if (P >= static_cast<int>(blockDim.x)) {
        // Large windows: the block walks its rows, threads stride along each window.
        for (int r = s; r < k; r += splits) {
            const long long n = rows[r];
            const T* base = x + ((n * C + c) * H + h0[n]) * W + w0[n];
            for (int t = threadIdx.x; t < P; t += blockDim.x) {
                const int hh = t / pw;
                const double v = static_cast<double>(bn_to_float(base[hh * W + (t - hh * pw)]))
                    - shift;
                s1 += v;
                s2 += v * v;
            }
        }
    } else {
        // Small windows: one flat index over (row, position) keeps threads busy.
        const long long total = static_cast<long long>(k) * P;
        const long long step = static_cast<long long>(splits) * blockDim.x;
        for (long long j = static_cast<long long>(s) * blockDim.x + threadIdx.x; j < total;
             j += step) {
            const int r = static_cast<int>(j / P);
            const int t = static_cast<int>(j - static_cast<long long>(r) * P);
            const long long n = rows[r];
            const int hh = t / pw;
            const long long at = ((n * C + c) * H + h0[n] + hh) * W + w0[n] + (t - hh * pw);
            const double v = static_cast<double>(bn_to_float(x[at])) - shift;
            s1 += v;
            s2 += v * v;
        }
    }
    bn_block_sum2(s1, s2);
    if (threadIdx.x == 0) {
        partial[2 * blockIdx.x] = s1;
        partial[2 * blockIdx.x + 1] = s2;
    }
}

// One block; its threads loop over the channels.  weight and bias may be null (no affine:
// ones and zeros).  With running_var given, the running statistics are updated as
// nn.BatchNorm does: factor = momentum, or 1 / (batches tracked) when momentum < 0 (momentum
// None, a cumulative average); the variance goes in unbiased (count / (count - 1)) when
// unbias is set (batch norm), as is when not (the second moment of SMN); running_mean may be
// null (SMN has none).  num_batches_tracked (may be null) is incremented once, after every
// thread has read it (one block, so __syncthreads orders it).
template <typename T>
__global__ void bn_stats_finalize(const T* __restrict__ x, const int* __restrict__ rows,
                                  const int* __restrict__ h0, const int* __restrict__ w0,
                                  const double* __restrict__ partial,
                                  const typename compute_of<T>::type* __restrict__ weight,
                                  const typename compute_of<T>::type* __restrict__ bias,
                                  typename compute_of<T>::type* __restrict__ stats,
                                  typename compute_of<T>::type* __restrict__ running_mean,
                                  typename compute_of<T>::type* __restrict__ running_var,
                                  long long* __restrict__ num_batches_tracked, int C, int H,
                                  int W, int splits, long long count, double eps,
                                  double momentum, int center, int unbias) {
    using S = typename compute_of<T>::type;
    double factor = momentum;
    if (num_batches_tracked != nullptr && momentum < 0.0) {
        factor = 1.0 / static_cast<double>(*num_batches_tracked + 1);
    }
    for (int c = threadIdx.x; c < C; c += blockDim.x) {
        double s1 = 0.0, s2 = 0.0;
        for (int s = 0; s < splits; ++s) {
            s1 += partial[2 * (c * splits + s)];
            s2 += partial[2 * (c * splits + s) + 1];
        }
        const double a = s1 / count, b = s2 / count;
        const double mean = center ? bn_shift(x, rows, h0, w0, c, C, H, W, center) + a : 0.0;
        const double var = center ? fmax(b - a * a, 0.0) : b;
        const double invstd = 1.0 / sqrt(var + eps);
        const double scale = (weight ? static_cast<double>(weight[c]) : 1.0) * invstd;
        const double beta = bias ? static_cast<double>(bias[c]) : 0.0;
        // stats rows: mean, var, invstd, scale, shift
        stats[c] = static_cast<S>(mean);
        stats[C + c] = static_cast<S>(var);
        stats[2 * C + c] = static_cast<S>(invstd);
        stats[3 * C + c] = static_cast<S>(scale);
        stats[4 * C + c] = static_cast<S>(beta - mean * scale);
        if (running_var != nullptr) {
            const double v = unbias && count > 1 ? var * count / (count - 1) : var;
            const double rv = static_cast<double>(running_var[c]);
            running_var[c] = static_cast<S>(rv + factor * (v - rv));
            if (running_mean != nullptr) {
                const double rm = static_cast<double>(running_mean[c]);
                running_mean[c] = static_cast<S>(rm + factor * (mean - rm));
            }
        }
    }
    if (num_batches_tracked != nullptr) {
        __syncthreads();
        if (threadIdx.x == 0) *num_batches_tracked += 1;
    }
}

// splitmix64's finalizer: the layers' random draws, a pure function of (seed, call, j) so that
// a draw needs no generator state on the device and the host can recompute it (tests).
__device__ __forceinline__ unsigned long long bn_mix(unsigned long long z) {
    z += 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

__device__ __forceinline__ unsigned long long bn_draw(unsigned long long seed,
                                                      unsigned long long call,
                                                      unsigned long long j) {
    return bn_mix(seed ^ bn_mix((call << 32) + j));
}

// Rows that the hashed subset draw handles (their keys sit in shared memory); beyond it the
// caller passes a permutation.
constexpr int BN_HASH_ROWS = 4096;

// The sample's index for the kernels, built on the device (no host copy per call): one block.
// index = rows [k] (increasing), h0 [N], w0 [N]; h0 = -1 marks a row outside the sample.  With
// subset = 0 every row is sampled; else `picks` of the first R = N - tail rows, at random, plus
// the last tail rows.  The random rows are perm[0..picks) when perm is given, else the picks
// rows of smallest key bn_draw(seed, call, i), i < R (ties to the lower index): a uniform
// random subset.  With windows = 1 each sampled row gets the corner
// ((bn_draw(.., N + i) mod hrange) * hmult, (bn_draw(.., 2N + i) mod wrange) * wmult).
__global__ void bn_build_index(const long long* __restrict__ perm, int* __restrict__ index,
                               int N, int subset, int picks, int tail, int k,
                               unsigned long long seed, unsigned long long call, int windows,
                               long long hrange, int hmult, long long wrange, int wmult) {
    __shared__ unsigned long long keys[BN_HASH_ROWS];
    int* rows = index;
    int* h0 = index + k;
    int* w0 = index + k + N;
    const int R = N - tail;
    for (int i = threadIdx.x; i < N; i += blockDim.x) h0[i] = subset && i < R ? -1 : 0;
    if (subset && picks > 0) {
        if (perm != nullptr) {
            __syncthreads();
            for (int i = threadIdx.x; i < picks; i += blockDim.x) h0[perm[i]] = 0;
        } else {
            for (int i = threadIdx.x; i < R; i += blockDim.x) keys[i] = bn_draw(seed, call, i);
            __syncthreads();
            for (int i = threadIdx.x; i < R; i += blockDim.x) {
                const unsigned long long key = keys[i];
                int rank = 0;
                for (int j = 0; j < R; ++j) {
                    const unsigned long long other = keys[j];
                    rank += other < key || (other == key && j < i);
                }
                if (rank < picks) h0[i] = 0;
            }
        }
    }
    __syncthreads();
    if (windows) {
        for (int i = threadIdx.x; i < N; i += blockDim.x) {
            if (h0[i] >= 0) {
                h0[i] = static_cast<int>(bn_draw(seed, call, N + i) % hrange) * hmult;
                w0[i] = static_cast<int>(bn_draw(seed, call, 2LL * N + i) % wrange) * wmult;
            } else {
                w0[i] = 0;
            }
        }
    } else {
        for (int i = threadIdx.x; i < N; i += blockDim.x) w0[i] = 0;
    }
    __syncthreads();
    // Compact the sampled rows in increasing order: a block-wide prefix count per chunk.
    __shared__ int warp_counts[32];
    __shared__ int base;
    if (threadIdx.x == 0) base = 0;
    __syncthreads();
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    for (int start = 0; start < N; start += blockDim.x) {
        const int i = start + threadIdx.x;
        const bool in = i < N && h0[i] >= 0;
        const unsigned mask = __ballot_sync(0xffffffffu, in);
        if (lane == 0) warp_counts[warp] = __popc(mask);
        __syncthreads();
        int before = base + __popc(mask & ((1u << lane) - 1u));
        for (int v = 0; v < warp; ++v) before += warp_counts[v];
        if (in) rows[before] = i;
        __syncthreads();
        if (threadIdx.x == 0) {
            int total = 0;
            for (int v = 0; v < static_cast<int>(blockDim.x >> 5); ++v) total += warp_counts[v];
            base += total;
        }
        __syncthreads();
    }
}

// y = x * scale[c] + shift[c]; each thread handles VEC consecutive data of one plane (HW % VEC
// == 0 and 16-byte-friendly alignment are checked by the caller).  I is the index type:
// unsigned when the tensor has under 2^32 data (64-bit division costs several times more).
template <typename I, typename T, int VEC>
__device__ __forceinline__ void bn_normalize_loop(const T* __restrict__ x, T* __restrict__ y,
                                                  const typename compute_of<T>::type* stats,
                                                  I packs, I C, I HWp) {
    using S = typename compute_of<T>::type;
    using P = bn_pack<T, VEC>;
    const I stride = static_cast<I>(gridDim.x) * blockDim.x;
    for (I v = static_cast<I>(blockIdx.x) * blockDim.x + threadIdx.x; v < packs; v += stride) {
        const int c = static_cast<int>((v / HWp) % C);
        const S scale = stats[3 * C + c], shift = stats[4 * C + c];
        const P in = reinterpret_cast<const P*>(x)[v];
        P out;
#pragma unroll
        for (int e = 0; e < VEC; ++e) {
            bn_store(out.v[e], static_cast<S>(bn_to_float(in.v[e])) * scale + shift);
        }
        reinterpret_cast<P*>(y)[v] = out;
    }
}

template <typename T, int VEC>
__global__ void bn_normalize(const T* __restrict__ x, T* __restrict__ y,
                             const typename compute_of<T>::type* __restrict__ stats,
                             long long packs, int C, long long HW) {
    if (packs * VEC < (1LL << 31)) {
        bn_normalize_loop<unsigned, T, VEC>(x, y, stats, static_cast<unsigned>(packs),
                                            static_cast<unsigned>(C),
                                            static_cast<unsigned>(HW / VEC));
    } else {
        bn_normalize_loop<long long, T, VEC>(x, y, stats, packs, C, HW / VEC);
    }
}

// grid = C * splits blocks: sums of dy and dy * (x - mean) over every datum of channel c, read
// as packs of VEC (HW % VEC == 0 and alignment checked by the caller).
template <typename T, int VEC>
__global__ void bn_backward_reduce(const T* __restrict__ dy, const T* __restrict__ x,
                                   const typename compute_of<T>::type* __restrict__ stats,
                                   double* __restrict__ partial, int N, int C, long long HW,
                                   int splits) {
    const int c = blockIdx.x / splits;
    const int s = blockIdx.x - c * splits;
    const unsigned HWp = static_cast<unsigned>(HW / VEC);
    const auto plane_of = [=](unsigned n) { return static_cast<long long>(n) * C + c; };
    double s1 = 0.0, s2 = 0.0;
    bn_flat_sums<T, VEC, true>(x, dy, static_cast<unsigned>(N) * HWp,
                               static_cast<unsigned>(s) * blockDim.x + threadIdx.x,
                               static_cast<unsigned>(splits) * blockDim.x, HWp, plane_of,
                               stats[c], s1, s2);
    bn_block_sum2(s1, s2);
    if (threadIdx.x == 0) {
        partial[2 * blockIdx.x] = s1;
        partial[2 * blockIdx.x + 1] = s2;
    }
}

// One thread per channel (weight may be null: ones): grad_weight, grad_bias, and coef rows A, B, D of bn_backward_dx.
template <typename T>
__global__ void bn_backward_finalize(const double* __restrict__ partial,
                                     const typename compute_of<T>::type* __restrict__ stats,
                                     const typename compute_of<T>::type* __restrict__ weight,
                                     typename compute_of<T>::type* __restrict__ coef, int C,
                                     int splits, long long count, int center) {
    using S = typename compute_of<T>::type;
    const int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) return;
    double sdy = 0.0, sdyx = 0.0;
    for (int s = 0; s < splits; ++s) {
        sdy += partial[2 * (c * splits + s)];
        sdyx += partial[2 * (c * splits + s) + 1];
    }
    const double r = static_cast<double>(stats[2 * C + c]);
    const double gr = (weight ? static_cast<double>(weight[c]) : 1.0) * r;
    coef[c] = static_cast<S>(sdyx * r);                                  // grad weight
    coef[C + c] = static_cast<S>(sdy);                                   // grad bias
    coef[2 * C + c] = static_cast<S>(gr);                                // A
    coef[3 * C + c] = static_cast<S>(center ? gr * sdy / count : 0.0);   // B
    coef[4 * C + c] = static_cast<S>(gr * r * r * sdyx / count);         // D
}

// dx = A dy - [datum in the sample] (B + D (x - mean)); VEC data of one plane per thread; I as
// in bn_normalize.
template <typename I, typename T, int VEC>
__device__ __forceinline__ void bn_backward_dx_loop(
    const T* __restrict__ dy, const T* __restrict__ x, T* __restrict__ dx,
    const typename compute_of<T>::type* __restrict__ stats,
    const typename compute_of<T>::type* __restrict__ coef, const int* __restrict__ h0,
    const int* __restrict__ w0, I packs, I C, int H, int W, int ph, int pw, int whole) {
    using S = typename compute_of<T>::type;
    using P = bn_pack<T, VEC>;
    const I HWp = static_cast<I>(H) * W / VEC;
    const I stride = static_cast<I>(gridDim.x) * blockDim.x;
    for (I v = static_cast<I>(blockIdx.x) * blockDim.x + threadIdx.x; v < packs; v += stride) {
        const I plane = v / HWp;
        const I n = plane / C;
        const int c = static_cast<int>(plane - n * C);
        const S mean = stats[c], a = coef[2 * C + c], b = coef[3 * C + c], d = coef[4 * C + c];
        const int hs = h0[n], ws = w0[n];
        const P g = reinterpret_cast<const P*>(dy)[v];
        const P in = reinterpret_cast<const P*>(x)[v];
        const int p0 = static_cast<int>(v - plane * HWp) * VEC;
        P out;
#pragma unroll
        for (int e = 0; e < VEC; ++e) {
            S val = a * static_cast<S>(bn_to_float(g.v[e]));
            bool sampled = hs >= 0;
            if (sampled && !whole) {
                const int p = p0 + e;
                const int hh = p / W, ww = p - hh * W;
                sampled = hh >= hs && hh < hs + ph && ww >= ws && ww < ws + pw;
            }
            if (sampled) val -= b + d * (static_cast<S>(bn_to_float(in.v[e])) - mean);
            bn_store(out.v[e], val);
        }
        reinterpret_cast<P*>(dx)[v] = out;
    }
}

template <typename T, int VEC>
__global__ void bn_backward_dx(const T* __restrict__ dy, const T* __restrict__ x,
                               T* __restrict__ dx,
                               const typename compute_of<T>::type* __restrict__ stats,
                               const typename compute_of<T>::type* __restrict__ coef,
                               const int* __restrict__ h0, const int* __restrict__ w0,
                               long long packs, int C, int H, int W, int ph, int pw, int whole) {
    if (packs * VEC < (1LL << 31)) {
        bn_backward_dx_loop<unsigned, T, VEC>(dy, x, dx, stats, coef, h0, w0,
                                              static_cast<unsigned>(packs),
                                              static_cast<unsigned>(C), H, W, ph, pw, whole);
    } else {
        bn_backward_dx_loop<long long, T, VEC>(dy, x, dx, stats, coef, h0, w0, packs, C, H, W,
                                               ph, pw, whole);
    }
}

// Explicit instances: NVRTC finds them through name_expressions, and nvcc's compile check
// builds real code for every dtype.
#define TK_BN_S(T) typename compute_of<T>::type
#define TK_BN_VEC_INSTANCES(T, V)                                                            \
    template __global__ void bn_sample_stats<T, V>(const T* __restrict__,                    \
        const int* __restrict__, const int* __restrict__, const int* __restrict__,           \
        double* __restrict__, int, int, int, int, int, int, int, int);                       \
    template __global__ void bn_normalize<T, V>(const T* __restrict__, T* __restrict__,      \
        const TK_BN_S(T)* __restrict__, long long, int, long long);                          \
    template __global__ void bn_backward_reduce<T, V>(const T* __restrict__,                 \
        const T* __restrict__, const TK_BN_S(T)* __restrict__, double* __restrict__, int,    \
        int, long long, int);                                                                \
    template __global__ void bn_backward_dx<T, V>(const T* __restrict__,                     \
        const T* __restrict__, T* __restrict__, const TK_BN_S(T)* __restrict__,              \
        const TK_BN_S(T)* __restrict__, const int* __restrict__, const int* __restrict__,    \
        long long, int, int, int, int, int, int);
#define TK_BN_INSTANCES(T)                                                                   \
    TK_BN_VEC_INSTANCES(T, 1)                                                                \
    TK_BN_VEC_INSTANCES(T, 4)                                                                \
    template __global__ void bn_stats_finalize<T>(const T* __restrict__,                     \
        const int* __restrict__, const int* __restrict__, const int* __restrict__,           \
        const double* __restrict__, const TK_BN_S(T)* __restrict__,                          \
        const TK_BN_S(T)* __restrict__, TK_BN_S(T)* __restrict__, TK_BN_S(T)* __restrict__,  \
        TK_BN_S(T)* __restrict__, long long* __restrict__, int, int, int, int, long long,    \
        double, double, int, int);                                                           \
    template __global__ void bn_backward_finalize<T>(const double* __restrict__,             \
        const TK_BN_S(T)* __restrict__, const TK_BN_S(T)* __restrict__,                      \
        TK_BN_S(T)* __restrict__, int, int, long long, int);
TK_BN_INSTANCES(float)
TK_BN_INSTANCES(double)
TK_BN_INSTANCES(tk_half)
TK_BN_INSTANCES(tk_bfloat16)
