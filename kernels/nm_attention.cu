// Fused N:M sparse attention forward (DFSS pattern), flash style: one pass over the keys with
// an online softmax; the L x L scores never leave registers.
//
//   S = scale * Q K^T (+ additive mask | boolean mask -> -inf),  keep the n largest of every m
//   consecutive keys of each row (ties to the lower key index, -0 == +0: nm_mask's rule for
//   non-NaN scores), P = softmax over the kept entries, O = P V.
//
// Inputs q [R, Lq, D], k [R, Lk, D], v [R, Lk, D] (R = batch x heads), fp16 or bf16,
// contiguous; out [R, Lq, D] in the same dtype.  D is 64 or 128, M a power of two <= 32 (groups
// then never straddle a 64-key tile), any Lq and Lk (tails are zero-filled and masked).
//
// Tiling: a block of 4 warps takes 64 queries (16 per warp); 64-key tiles of K and V stream
// through shared memory with cp.async, two stages deep.  Q K^T and P V run on the tensor cores
// (mma.sync m16n8k16, fp32 accumulation), operands loaded with ldmatrix (.trans for V).
//
// Pruning in registers: in the m16n8 accumulator a lane holds columns 2c, 2c+1 (c = lane % 4)
// of rows lane/4 and lane/4 + 8 of every 8-key n-tile, so a row's 8 columns of an n-tile live
// in one lane quad.  A group of m keys spans min(4, m/2) lanes of the quad and max(1, m/8)
// n-tiles; each lane gathers the group's other keys with __shfl_xor_sync and counts, for each
// of its own scores, the members that beat it (larger, or equal at a lower index).  It keeps
// the score when fewer than n do.  Padding keys past Lk get -inf at a higher index than every
// real key, so they rank last, as the reference's -inf padding does.
//
// Rounding: the scores here are fp32 sums of exact fp16/bf16 products accumulated in the
// tensor cores' order, then multiplied by scale (and the mask added) in fp32 as the reference
// does.  A different summation order can move a score by an ulp or so, so when two scores of a
// group are that close the kernel may keep the other one; the output then differs by about
// p * (v_a - v_b) for that entry, within the dtype's tolerance.  P is rounded to the input
// dtype before the P V product (as flash kernels do).
#include "tk_dtypes.cuh"

namespace nmattn {

constexpr int kWarps = 4;
constexpr int kThreads = 32 * kWarps;
constexpr int BM = 64;  // queries per block
constexpr int BN = 64;  // keys per tile
constexpr int NT = BN / 8;  // n-tiles of the score tile
constexpr float kLog2e = 1.4426950408889634f;

__device__ __forceinline__ unsigned smem_addr(const void* p) {
    return static_cast<unsigned>(__cvta_generic_to_shared(p));
}

__device__ __forceinline__ void cp_async16(void* dst, const void* src, bool valid) {
    const int bytes = valid ? 16 : 0;  // 0: zero-fill, nothing read
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_addr(dst)),
                 "l"(src), "r"(bytes));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n"); }
template <int N> __device__ __forceinline__ void cp_async_wait() {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

__device__ __forceinline__ void ldmatrix_x4(unsigned (&r)[4], const void* p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_addr(p)));
}
__device__ __forceinline__ void ldmatrix_x4_trans(unsigned (&r)[4], const void* p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_addr(p)));
}

template <bool BF16>
__device__ __forceinline__ void mma(float (&d)[4], const unsigned (&a)[4], unsigned b0,
                                    unsigned b1) {
    if constexpr (BF16) {
        asm volatile(
            "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, "
            "{%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
            : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
            : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
    } else {
        asm volatile(
            "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, "
            "{%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
            : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
            : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
    }
}

// Two floats to a packed pair of 16-bit values, lo in the low half (round to nearest even).
template <bool BF16> __device__ __forceinline__ unsigned pack2(float lo, float hi) {
    unsigned r;
    if constexpr (BF16) {
        asm("cvt.rn.bf16x2.f32 %0, %1, %2;\n" : "=r"(r) : "f"(hi), "f"(lo));
    } else {
        asm("cvt.rn.f16x2.f32 %0, %1, %2;\n" : "=r"(r) : "f"(hi), "f"(lo));
    }
    return r;
}

// 2^x in one MUFU instruction (2^-inf = 0); the softmax needs no more accuracy than this.
__device__ __forceinline__ float ex2(float x) {
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
    return y;
}

template <typename T> struct is_bf16 { static constexpr bool value = false; };
template <> struct is_bf16<tk_bfloat16> { static constexpr bool value = true; };

}  // namespace nmattn

// mask_kind: 0 none, 1 bool (uint8, 0 = masked out), 2 additive float32.  The mask element of
// (r = b * heads + h, query i, key j) is at mask + b*ms_b + h*ms_h + i*ms_q + j*ms_k.
template <typename T, int D, int M>
__global__ void __launch_bounds__(nmattn::kThreads)
nm_attention_fwd(const T* __restrict__ q, const T* __restrict__ k, const T* __restrict__ v,
                 T* __restrict__ out, int lq, int lk, int n, float scale,
                 const void* __restrict__ mask, int mask_kind, int heads, long long ms_b,
                 long long ms_h, long long ms_q, long long ms_k) {
    using namespace nmattn;
    constexpr bool BF16 = is_bf16<T>::value;
    constexpr int LD = D + 8;   // padded row (16 bytes) so ldmatrix rows hit distinct banks
    constexpr int CPR = D / 8;  // 16-byte chunks per row
    constexpr int KD = D / 16;  // k-steps of Q K^T
    constexpr int NTG = M >= 8 ? M / 8 : 1;  // n-tiles per group
    constexpr int LPG = M >= 8 ? 4 : (M >= 2 ? M / 2 : 1);  // lanes of a quad per group
    static_assert(M == 1 || M == 2 || M == 4 || M == 8 || M == 16 || M == 32, "M");
    static_assert(D == 64 || D == 128, "D");

    extern __shared__ uint4 smem_raw[];
    unsigned short* sQ = reinterpret_cast<unsigned short*>(smem_raw);
    unsigned short* sK = sQ + BM * LD;      // 2 stages
    unsigned short* sV = sK + 2 * BN * LD;  // 2 stages

    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, qd = lane & 3;
    const long long r = blockIdx.y;
    const int q0 = blockIdx.x * BM;
    const unsigned short* Qg = reinterpret_cast<const unsigned short*>(q) + r * lq * D;
    const unsigned short* Kg = reinterpret_cast<const unsigned short*>(k) + r * lk * D;
    const unsigned short* Vg = reinterpret_cast<const unsigned short*>(v) + r * lk * D;

    auto load_rows = [&](unsigned short* dst, const unsigned short* src, int row0, int limit) {
#pragma unroll
        for (int c = tid; c < 64 * CPR; c += kThreads) {
            const int row = c / CPR, col = (c % CPR) * 8;
            const bool ok = row0 + row < limit;
            cp_async16(dst + row * LD + col, ok ? src + (long long)(row0 + row) * D + col : src,
                       ok);
        }
    };

    const int tiles = (lk + BN - 1) / BN;
    load_rows(sQ, Qg, q0, lq);
    cp_async_commit();
    load_rows(sK, Kg, 0, lk);
    load_rows(sV, Vg, 0, lk);
    cp_async_commit();

    const float neg_inf = __int_as_float(0xff800000);
    float o[D / 8][4];
#pragma unroll
    for (int i = 0; i < D / 8; ++i) o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.f;
    float m_run[2] = {neg_inf, neg_inf}, l_run[2] = {0.f, 0.f};
    const int row_in_block[2] = {warp * 16 + (lane >> 2), warp * 16 + (lane >> 2) + 8};

    const long long b_idx = r / heads, h_idx = r % heads;
    const char* mbase = static_cast<const char*>(mask);

    for (int j = 0; j < tiles; ++j) {
        const int stage = j & 1;
        if (j + 1 < tiles) {
            load_rows(sK + (stage ^ 1) * BN * LD, Kg, (j + 1) * BN, lk);
            load_rows(sV + (stage ^ 1) * BN * LD, Vg, (j + 1) * BN, lk);
        }
        cp_async_commit();
        cp_async_wait<1>();
        __syncthreads();
        const unsigned short* tK = sK + stage * BN * LD;
        const unsigned short* tV = sV + stage * BN * LD;

        // ---- S = Q K^T on the tensor cores
        float s[NT][4];
#pragma unroll
        for (int t = 0; t < NT; ++t) s[t][0] = s[t][1] = s[t][2] = s[t][3] = 0.f;
#pragma unroll
        for (int kk = 0; kk < KD; ++kk) {
            unsigned a[4];
            ldmatrix_x4(a, sQ + (warp * 16 + (lane & 15)) * LD + kk * 16 + (lane >> 4) * 8);
#pragma unroll
            for (int np = 0; np < NT / 2; ++np) {
                unsigned b[4];
                ldmatrix_x4(b, tK + (np * 16 + (lane & 7) + (lane >> 4) * 8) * LD + kk * 16 +
                                   ((lane >> 3) & 1) * 8);
                mma<BF16>(s[2 * np], a, b[0], b[1]);
                mma<BF16>(s[2 * np + 1], a, b[2], b[3]);
            }
        }

        // ---- scale (fp32, as the reference), then mask and padding under uniform branches
#pragma unroll
        for (int t = 0; t < NT; ++t) {
#pragma unroll
            for (int e = 0; e < 4; ++e) s[t][e] *= scale;
        }
        if (mask_kind != 0) {
#pragma unroll
            for (int t = 0; t < NT; ++t) {
#pragma unroll
                for (int e = 0; e < 4; ++e) {
                    const int col = j * BN + t * 8 + 2 * qd + (e & 1);
                    const int qi = q0 + row_in_block[e >> 1];
                    if (col < lk && qi < lq) {
                        const long long off =
                            b_idx * ms_b + h_idx * ms_h + qi * ms_q + col * ms_k;
                        if (mask_kind == 1) {
                            if (mbase[off] == 0) s[t][e] = neg_inf;
                        } else {
                            s[t][e] += reinterpret_cast<const float*>(mbase)[off];
                        }
                    }
                }
            }
        }
        if ((j + 1) * BN > lk) {  // the last tile: keys past Lk are padding
#pragma unroll
            for (int t = 0; t < NT; ++t) {
#pragma unroll
                for (int e = 0; e < 4; ++e) {
                    if (j * BN + t * 8 + 2 * qd + (e & 1) >= lk) s[t][e] = neg_inf;
                }
            }
        }

        // ---- N:M pruning in registers.  Float comparisons give nm_mask's order for every
        // non-NaN score (-0 == +0); a NaN score is kept (nothing beats it), so its row's
        // output is NaN, as in the reference.
        if constexpr (M == 4) {
            // A group of 4 is two lanes' pairs.  Sort each pair locally (a beats b), take the
            // partner's sorted pair (c beats d) with two shuffles; as "beats" is a total order,
            // a is kept iff fewer than n of {c, d} beat it (b beats nobody above a), and b iff
            // fewer than n - 1 of {c, d} do: n = 1 keeps a unless c beats it; n = 2 keeps a
            // unless d beats it and b unless c does; n = 3 keeps a, and b unless d beats it.
            const bool partner_lower = (qd & 1) != 0;  // the partner's keys come first
#pragma unroll
            for (int t = 0; t < NT; ++t) {
#pragma unroll
                for (int h = 0; h < 2; ++h) {
                    const float s0 = s[t][2 * h], s1 = s[t][2 * h + 1];
                    const bool first = s0 >= s1;  // ties to the lower index
                    const float a = first ? s0 : s1, b = first ? s1 : s0;
                    const float c = __shfl_xor_sync(0xffffffffu, a, 1);
                    const float d = __shfl_xor_sync(0xffffffffu, b, 1);
                    const bool c_a = partner_lower ? c >= a : c > a;
                    const bool d_a = partner_lower ? d >= a : d > a;
                    const bool c_b = partner_lower ? c >= b : c > b;
                    const bool d_b = partner_lower ? d >= b : d > b;
                    const bool keep_a = n >= 3 || (n == 2 ? !d_a : !c_a);
                    const bool keep_b = n >= 4 || (n == 3 ? !d_b : (n == 2 && !c_b));
                    // A NaN score is never dropped, so its row's output is NaN (reference).
                    if (!(first ? keep_a : keep_b) && s0 == s0) s[t][2 * h] = neg_inf;
                    if (!(first ? keep_b : keep_a) && s1 == s1) s[t][2 * h + 1] = neg_inf;
                }
            }
        } else if constexpr (M > 1) {
            // lower[x]: the partner lane qd ^ x holds lower key indices than this lane.
            bool lower[LPG];
#pragma unroll
            for (int x = 0; x < LPG; ++x) lower[x] = ((qd ^ x) % LPG) < (qd % LPG);
#pragma unroll
            for (int g0 = 0; g0 < NT; g0 += NTG) {
#pragma unroll
                for (int h = 0; h < 2; ++h) {
                    int beat[NTG][2];
#pragma unroll
                    for (int t = 0; t < NTG; ++t) beat[t][0] = beat[t][1] = 0;
#pragma unroll
                    for (int x = 0; x < LPG; ++x) {
#pragma unroll
                        for (int t2 = 0; t2 < NTG; ++t2) {
#pragma unroll
                            for (int e2 = 0; e2 < 2; ++e2) {
                                const float own = s[g0 + t2][2 * h + e2];
                                const float pk =
                                    x == 0 ? own : __shfl_xor_sync(0xffffffffu, own, x);
#pragma unroll
                                for (int t = 0; t < NTG; ++t) {
#pragma unroll
                                    for (int e = 0; e < 2; ++e) {
                                        if (x == 0 && t == t2 && e == e2) continue;
                                        const float ok = s[g0 + t][2 * h + e];
                                        // partner index below own index: ties go to it
                                        const bool below = t2 != t ? t2 < t
                                                           : x == 0 ? e2 < e
                                                                    : lower[x];
                                        beat[t][e] += below ? pk >= ok : pk > ok;
                                    }
                                }
                            }
                        }
                    }
#pragma unroll
                    for (int t = 0; t < NTG; ++t) {
#pragma unroll
                        for (int e = 0; e < 2; ++e) {
                            if (beat[t][e] >= n) s[g0 + t][2 * h + e] = neg_inf;
                        }
                    }
                }
            }
        }

        // ---- online softmax
        float scale_o[2];
#pragma unroll
        for (int h = 0; h < 2; ++h) {
            float mx = neg_inf;
#pragma unroll
            for (int t = 0; t < NT; ++t) mx = fmaxf(mx, fmaxf(s[t][2 * h], s[t][2 * h + 1]));
            mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
            mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
            const float m_new = fmaxf(m_run[h], mx);
            const float m_use = m_new == neg_inf ? 0.f : m_new;  // dead so far: p = 0
            scale_o[h] = m_run[h] == neg_inf ? 0.f : ex2((m_run[h] - m_use) * kLog2e);
            m_run[h] = m_new;
            const float off = m_use * kLog2e;
            float sum = 0.f;
            if (M == 2 && n == 1) {
                // 1:2 keeps one score of each pair (the other is -inf): one exponential a pair.
#pragma unroll
                for (int t = 0; t < NT; ++t) {
                    const bool first = s[t][2 * h + 1] == neg_inf;
                    const float p = ex2(fmaf(first ? s[t][2 * h] : s[t][2 * h + 1], kLog2e, -off));
                    s[t][2 * h] = first ? p : 0.f;
                    s[t][2 * h + 1] = first ? 0.f : p;
                    sum += p;
                }
            } else {
#pragma unroll
                for (int t = 0; t < NT; ++t) {
#pragma unroll
                    for (int e = 0; e < 2; ++e) {
                        const float p = ex2(fmaf(s[t][2 * h + e], kLog2e, -off));
                        s[t][2 * h + e] = p;
                        sum += p;
                    }
                }
            }
            l_run[h] = l_run[h] * scale_o[h] + sum;
        }
#pragma unroll
        for (int i = 0; i < D / 8; ++i) {
            o[i][0] *= scale_o[0];
            o[i][1] *= scale_o[0];
            o[i][2] *= scale_o[1];
            o[i][3] *= scale_o[1];
        }

        // ---- O += P V: the score accumulators of n-tiles 2kk, 2kk+1 are the A fragment
#pragma unroll
        for (int kk = 0; kk < BN / 16; ++kk) {
            unsigned a[4];
            a[0] = pack2<BF16>(s[2 * kk][0], s[2 * kk][1]);
            a[1] = pack2<BF16>(s[2 * kk][2], s[2 * kk][3]);
            a[2] = pack2<BF16>(s[2 * kk + 1][0], s[2 * kk + 1][1]);
            a[3] = pack2<BF16>(s[2 * kk + 1][2], s[2 * kk + 1][3]);
#pragma unroll
            for (int dp = 0; dp < D / 16; ++dp) {
                unsigned b[4];
                ldmatrix_x4_trans(b, tV + (kk * 16 + (lane & 7) + ((lane >> 3) & 1) * 8) * LD +
                                         dp * 16 + (lane >> 4) * 8);
                mma<BF16>(o[2 * dp], a, b[0], b[1]);
                mma<BF16>(o[2 * dp + 1], a, b[2], b[3]);
            }
        }
        __syncthreads();  // this stage is refilled by the next iteration's prefetch
    }

    // ---- normalise and store; a row with no finite kept score (l == 0) is zero
    unsigned short* Og = reinterpret_cast<unsigned short*>(out) + r * lq * D;
#pragma unroll
    for (int h = 0; h < 2; ++h) {
        float l = l_run[h];
        l += __shfl_xor_sync(0xffffffffu, l, 1);
        l += __shfl_xor_sync(0xffffffffu, l, 2);
        const float inv = l == 0.f ? 0.f : 1.f / l;  // NaN stays NaN
        const int qi = q0 + row_in_block[h];
        if (qi < lq) {
#pragma unroll
            for (int i = 0; i < D / 8; ++i) {
                const unsigned packed =
                    pack2<BF16>(o[i][2 * h] * inv, o[i][2 * h + 1] * inv);
                *reinterpret_cast<unsigned*>(Og + (long long)qi * D + i * 8 + 2 * qd) = packed;
            }
        }
    }
}

// nvcc's compile check builds every instance; NVRTC (toolkit/attention/_fused.py) compiles
// only the one a call needs, through name_expressions.
#ifndef __CUDACC_RTC__
#define TK_NMATT_INSTANCE(T, D, M)                                                         \
    template __global__ void nm_attention_fwd<T, D, M>(                                    \
        const T* __restrict__, const T* __restrict__, const T* __restrict__,               \
        T* __restrict__, int, int, int, float, const void* __restrict__, int, int,         \
        long long, long long, long long, long long);
#define TK_NMATT_MS(T, D)                                                                  \
    TK_NMATT_INSTANCE(T, D, 1)                                                             \
    TK_NMATT_INSTANCE(T, D, 2)                                                             \
    TK_NMATT_INSTANCE(T, D, 4)                                                             \
    TK_NMATT_INSTANCE(T, D, 8)                                                             \
    TK_NMATT_INSTANCE(T, D, 16)                                                            \
    TK_NMATT_INSTANCE(T, D, 32)
TK_NMATT_MS(tk_half, 64)
TK_NMATT_MS(tk_half, 128)
TK_NMATT_MS(tk_bfloat16, 64)
TK_NMATT_MS(tk_bfloat16, 128)
#endif
