// DSA attention computed only where predicted (issue 14): exact scores at the kept keys of
// each query row (a sampled Q K^T), the softmax over them and a sparse P V.
//
// Inputs q [R, Lq, D], k [R, Lk, D], v [R, Lk, D] (fp16, bf16 or fp32, contiguous), keep
// [R, Lq, Lk] bool (DSA's predicted pattern, from kernels/dsa_predict.cu), optional mask as
// in nm_attention.cu; out [R, Lq, D].  For kept j:  s_j = scale * <q_i, k_j> (+ mask), in
// fp32;  P = softmax over the kept s (a row with no finite kept score is zero);  O = P V.
//
// One warp per query row, four rows per block.  The warp walks its mask row in chunks of 1024
// keys (32 bytes a lane), compacts the kept indices into shared memory with a warp prefix
// sum, then (1) lane c computes the exact score of the chunk's kept key c, c + 32, ... from
// 16-byte loads of K and the query row (fp32, shared memory), (2) an online softmax rescales
// the running sum and output, (3) P V: the warp splits into groups of D/8 lanes, each lane 8
// output dimensions, each group a different kept key; the groups are summed at the end.
// Work and traffic grow with the kept count, not with Lk x D.
#include "tk_dtypes.cuh"

namespace dsasparse {

constexpr int kWarps = 4;
constexpr int kChunk = 1024;  // mask bytes a warp scans per step (32 a lane)
constexpr int kUnroll = 4;    // kept keys a lane group has in flight in P V
constexpr float kLog2e = 1.4426950408889634f;

__device__ __forceinline__ float h2f(unsigned short b) {
    float f;
    asm("cvt.f32.f16 %0, %1;\n" : "=f"(f) : "h"(b));
    return f;
}
// Eight consecutive elements starting at p (16-byte aligned for the half types) as floats.
__device__ __forceinline__ void load8(const tk_half* p, float (&x)[8]) {
    const uint4 w = *reinterpret_cast<const uint4*>(p);
    const unsigned u[4] = {w.x, w.y, w.z, w.w};
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        x[2 * i] = h2f(static_cast<unsigned short>(u[i] & 0xffffu));
        x[2 * i + 1] = h2f(static_cast<unsigned short>(u[i] >> 16));
    }
}
__device__ __forceinline__ void load8(const tk_bfloat16* p, float (&x)[8]) {
    const uint4 w = *reinterpret_cast<const uint4*>(p);
    const unsigned u[4] = {w.x, w.y, w.z, w.w};
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        x[2 * i] = __uint_as_float(u[i] << 16);
        x[2 * i + 1] = __uint_as_float(u[i] & 0xffff0000u);
    }
}
__device__ __forceinline__ void load8(const float* p, float (&x)[8]) {
    const float4 a = *reinterpret_cast<const float4*>(p);
    const float4 b = *reinterpret_cast<const float4*>(p + 4);
    x[0] = a.x; x[1] = a.y; x[2] = a.z; x[3] = a.w;
    x[4] = b.x; x[5] = b.y; x[6] = b.z; x[7] = b.w;
}
__device__ __forceinline__ void store2(tk_half* p, float a, float b) {
    unsigned r;
    asm("cvt.rn.f16x2.f32 %0, %1, %2;\n" : "=r"(r) : "f"(b), "f"(a));
    *reinterpret_cast<unsigned*>(p) = r;
}
__device__ __forceinline__ void store2(tk_bfloat16* p, float a, float b) {
    unsigned r;
    asm("cvt.rn.bf16x2.f32 %0, %1, %2;\n" : "=r"(r) : "f"(b), "f"(a));
    *reinterpret_cast<unsigned*>(p) = r;
}
__device__ __forceinline__ void store2(float* p, float a, float b) {
    *reinterpret_cast<float2*>(p) = make_float2(a, b);
}

}  // namespace dsasparse

template <typename T, int D>
__global__ void __launch_bounds__(32 * dsasparse::kWarps, 4)
dsa_sparse_attention(const T* __restrict__ q, const T* __restrict__ k, const T* __restrict__ v,
                     const unsigned char* __restrict__ keep, T* __restrict__ out, long long rows,
                     int lq, int lk, float scale, const void* __restrict__ mask, int mask_kind,
                     int heads, long long ms_b, long long ms_h, long long ms_q, long long ms_k) {
    using namespace dsasparse;
    constexpr int LPR = D / 8;     // lanes per key row in P V (8 dims each)
    constexpr int KG = 32 / LPR;   // keys in flight per P V step
    static_assert(D % 8 == 0 && D <= 256 && 32 % LPR == 0, "D");
    __shared__ __align__(16) float s_q[kWarps][D];
    __shared__ int s_idx[kWarps][kChunk];
    __shared__ float s_p[kWarps][kChunk];

    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const long long row = static_cast<long long>(blockIdx.x) * kWarps + warp;
    if (row >= rows) return;  // whole warps only: no block-wide barrier below
    const long long r = row / lq;
    const int qi = static_cast<int>(row - r * lq);
    const T* kr = k + r * lk * D;
    const T* vr = v + r * lk * D;
    const unsigned char* keep_row = keep + row * lk;
    const long long mrow = (r / heads) * ms_b + (r % heads) * ms_h + qi * ms_q;

    for (int c = lane; c < D / 8; c += 32) {
        float x[8];
        load8(q + row * D + 8 * c, x);
#pragma unroll
        for (int i = 0; i < 8; ++i) s_q[warp][8 * c + i] = x[i] * scale;
    }
    __syncwarp();

    const float neg_inf = __int_as_float(0xff800000);
    float m_run = neg_inf, l_run = 0.f;  // l_run: this lane's share of the row sum
    float o[8] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f};
    const int kg = lane / LPR, dl = (lane % LPR) * 8;
    const bool aligned16 = (reinterpret_cast<unsigned long long>(keep_row) & 15ull) == 0;

    for (int base = 0; base < lk; base += kChunk) {
        // Compact this chunk's kept indices (in order) into s_idx: 32 flags a lane, counted
        // with popc, placed with a warp prefix sum.
        const int j0 = base + 32 * lane;
        unsigned bits = 0u;  // bit i: key j0 + i is kept
        if (aligned16 && j0 + 32 <= lk) {
            const uint4* src = reinterpret_cast<const uint4*>(keep_row + j0);
#pragma unroll
            for (int half = 0; half < 2; ++half) {
                const uint4 w = src[half];
                const unsigned u[4] = {w.x, w.y, w.z, w.w};
#pragma unroll
                for (int i = 0; i < 16; ++i) {
                    bits |= (((u[i >> 2] >> (8 * (i & 3))) & 0xffu) != 0u ? 1u : 0u)
                            << (16 * half + i);
                }
            }
        } else {
            for (int i = 0; i < 32; ++i) {
                if (j0 + i < lk && keep_row[j0 + i]) bits |= 1u << i;
            }
        }
        const int cnt = __popc(bits);
        int incl = cnt;
#pragma unroll
        for (int off = 1; off < 32; off <<= 1) {
            const int up = __shfl_up_sync(0xffffffffu, incl, off);
            if (lane >= off) incl += up;
        }
        const int total = __shfl_sync(0xffffffffu, incl, 31);
        int pos = incl - cnt;
        while (bits) {
            const int i = __ffs(bits) - 1;
            bits &= bits - 1u;
            s_idx[warp][pos++] = j0 + i;
        }
        __syncwarp();
        if (total == 0) continue;

        // (1) exact scores of the kept keys
        float cmax = neg_inf;
        for (int c = lane; c < total; c += 32) {
            const int j = s_idx[warp][c];
            const T* kj = kr + static_cast<long long>(j) * D;
            float dot = 0.f;
#pragma unroll 4
            for (int t = 0; t < D; t += 8) {
                float x[8];
                load8(kj + t, x);
                const float4 a = *reinterpret_cast<const float4*>(&s_q[warp][t]);
                const float4 b = *reinterpret_cast<const float4*>(&s_q[warp][t + 4]);
                dot = fmaf(x[0], a.x, dot); dot = fmaf(x[1], a.y, dot);
                dot = fmaf(x[2], a.z, dot); dot = fmaf(x[3], a.w, dot);
                dot = fmaf(x[4], b.x, dot); dot = fmaf(x[5], b.y, dot);
                dot = fmaf(x[6], b.z, dot); dot = fmaf(x[7], b.w, dot);
            }
            if (mask_kind == 1) {
                if (static_cast<const unsigned char*>(mask)[mrow + j * ms_k] == 0) dot = neg_inf;
            } else if (mask_kind == 2) {
                dot += static_cast<const float*>(mask)[mrow + j * ms_k];
            }
            s_p[warp][c] = dot;
            cmax = fmaxf(cmax, dot);
        }
#pragma unroll
        for (int off = 16; off > 0; off >>= 1) {
            cmax = fmaxf(cmax, __shfl_xor_sync(0xffffffffu, cmax, off));
        }
        // (2) online softmax
        const float m_new = fmaxf(m_run, cmax);
        const float m_use = m_new == neg_inf ? 0.f : m_new;
        const float alpha = m_run == neg_inf ? 0.f : exp2f((m_run - m_use) * kLog2e);
        m_run = m_new;
        l_run *= alpha;
#pragma unroll
        for (int i = 0; i < 8; ++i) o[i] *= alpha;
        for (int c = lane; c < total; c += 32) {
            const float p = exp2f((s_p[warp][c] - m_use) * kLog2e);
            s_p[warp][c] = p;
            l_run += p;
        }
        __syncwarp();
        // (3) sparse P V
        for (int c0 = kg; c0 < total; c0 += KG * kUnroll) {
            float x[kUnroll][8], p[kUnroll];
#pragma unroll
            for (int u = 0; u < kUnroll; ++u) {  // all loads first: kUnroll rows in flight
                const int c = c0 + u * KG;
                const bool ok = c < total;
                const int j = ok ? s_idx[warp][c] : 0;
                p[u] = ok ? s_p[warp][c] : 0.f;
                load8(vr + static_cast<long long>(j) * D + dl, x[u]);
            }
#pragma unroll
            for (int u = 0; u < kUnroll; ++u) {
#pragma unroll
                for (int i = 0; i < 8; ++i) o[i] = fmaf(p[u], x[u][i], o[i]);
            }
        }
        __syncwarp();
    }
    // Sum the key groups' partial outputs and the lanes' partial row sums.
#pragma unroll
    for (int off = LPR; off < 32; off <<= 1) {
#pragma unroll
        for (int i = 0; i < 8; ++i) o[i] += __shfl_xor_sync(0xffffffffu, o[i], off);
    }
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) l_run += __shfl_xor_sync(0xffffffffu, l_run, off);
    const float inv = l_run == 0.f ? 0.f : 1.f / l_run;  // NaN stays NaN
    if (kg == 0) {
        T* orow = out + row * D + dl;
#pragma unroll
        for (int i = 0; i < 8; i += 2) store2(orow + i, o[i] * inv, o[i + 1] * inv);
    }
}

#ifndef __CUDACC_RTC__
#define TK_DSA_SPARSE_INSTANCE(T, D)                                                       \
    template __global__ void dsa_sparse_attention<T, D>(                                   \
        const T* __restrict__, const T* __restrict__, const T* __restrict__,               \
        const unsigned char* __restrict__, T* __restrict__, long long, int, int, float,    \
        const void* __restrict__, int, int, long long, long long, long long, long long);
TK_DSA_SPARSE_INSTANCE(tk_half, 64)
TK_DSA_SPARSE_INSTANCE(tk_half, 128)
TK_DSA_SPARSE_INSTANCE(tk_bfloat16, 64)
TK_DSA_SPARSE_INSTANCE(tk_bfloat16, 128)
TK_DSA_SPARSE_INSTANCE(float, 64)
TK_DSA_SPARSE_INSTANCE(float, 128)
#endif
