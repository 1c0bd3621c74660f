// Device helpers shared by the fused N:M attention kernels: the forward (nm_attention.cu) and
// the backward (nm_attention_bwd.cu).  Both compute a warp's 16 x 64 score tile with the same
// code (the same mma sequence and accumulation order, the same scale/mask/padding arithmetic and
// the same pruning), so the backward's scores are bit-identical to the forward's and its N:M
// kept set is exactly the forward's.
#pragma once
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
// 4 bytes (both addresses 4-byte aligned), through L1; zero-filled when !valid.
__device__ __forceinline__ void cp_async4(void* dst, const void* src, bool valid) {
    const int bytes = valid ? 4 : 0;
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(smem_addr(dst)),
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


// Rows 0..63 of a [rows, D] matrix from row0 into a padded shared tile (row stride D + 8);
// rows at or past `limit` are zero-filled.  Every thread of the block takes part.
template <int D>
__device__ __forceinline__ void load_rows(unsigned short* dst, const unsigned short* src, int row0,
                                          int limit, int tid) {
    constexpr int LD = D + 8, CPR = D / 8;
#pragma unroll
    for (int c = tid; c < 64 * CPR; c += kThreads) {
        const int row = c / CPR, col = (c % CPR) * 8;
        const bool ok = row0 + row < limit;
        cp_async16(dst + row * LD + col, ok ? src + (long long)(row0 + row) * D + col : src, ok);
    }
}

// acc[16 x 64] = A[16 rows of this warp, D] B[64 rows, D]^T on the tensor cores (fp32
// accumulators zeroed here).  A and B are padded shared tiles (row stride D + 8).
template <bool BF16, int D>
__device__ __forceinline__ void warp_abt(float (&acc)[NT][4], const unsigned short* sA,
                                         const unsigned short* sB, int warp, int lane) {
    constexpr int LD = D + 8, KD = D / 16;
#pragma unroll
    for (int t = 0; t < NT; ++t) acc[t][0] = acc[t][1] = acc[t][2] = acc[t][3] = 0.f;
#pragma unroll
    for (int kk = 0; kk < KD; ++kk) {
        unsigned a[4];
        ldmatrix_x4(a, sA + (warp * 16 + (lane & 15)) * LD + kk * 16 + (lane >> 4) * 8);
#pragma unroll
        for (int np = 0; np < NT / 2; ++np) {
            unsigned b[4];
            ldmatrix_x4(b, sB + (np * 16 + (lane & 7) + (lane >> 4) * 8) * LD + kk * 16 +
                               ((lane >> 3) & 1) * 8);
            mma<BF16>(acc[2 * np], a, b[0], b[1]);
            mma<BF16>(acc[2 * np + 1], a, b[2], b[3]);
        }
    }
}

// The optional mask of one (batch, head): kind 0 none, 1 bool (uint8, 0 = masked out),
// 2 additive float32; element (query i, key j) at base + off + i * ms_q + j * ms_k.
struct MaskRef {
    const char* base;
    int kind;
    long long off, ms_q, ms_k;
};

// The score tile of a warp's 16 queries (q0 + row_in_block[h], h = 0, 1 for accumulator
// elements 0-1 and 2-3) and the 64 keys from col0: S = scale * (Q K^T) (+ mask), keys past lk
// set to -inf, then the N:M pruning (dropped scores set to -inf).  Float comparisons give
// nm_mask's order for every non-NaN score (-0 == +0); a NaN score is kept (nothing beats
// it), so its row's output is NaN, as in the reference.  The scale multiply and the mask add
// are separately rounded (__fmul_rn, __fadd_rn: never contracted into an fma), as the
// reference computes them, and identically in every kernel that calls this.
template <bool BF16, int D, int M>
__device__ __forceinline__ void nm_scores(float (&s)[NT][4], const unsigned short* sQ,
                                          const unsigned short* tK, int warp, int lane, int n,
                                          float scale, const MaskRef& mk, int col0, int q0,
                                          const int (&row_in_block)[2], int lq, int lk) {
    constexpr int NTG = M >= 8 ? M / 8 : 1;                 // n-tiles per group
    constexpr int LPG = M >= 8 ? 4 : (M >= 2 ? M / 2 : 1);  // lanes of a quad per group
    static_assert(M == 1 || M == 2 || M == 4 || M == 8 || M == 16 || M == 32, "M");
    const int qd = lane & 3;
    const float neg_inf = __int_as_float(0xff800000);
    warp_abt<BF16, D>(s, sQ, tK, warp, lane);

    // ---- scale (fp32, as the reference), then mask and padding under uniform branches
#pragma unroll
    for (int t = 0; t < NT; ++t) {
#pragma unroll
        for (int e = 0; e < 4; ++e) s[t][e] = __fmul_rn(s[t][e], scale);
    }
    if (mk.kind != 0) {
#pragma unroll
        for (int t = 0; t < NT; ++t) {
#pragma unroll
            for (int e = 0; e < 4; ++e) {
                const int col = col0 + t * 8 + 2 * qd + (e & 1);
                const int qi = q0 + row_in_block[e >> 1];
                if (col < lk && qi < lq) {
                    const long long off = mk.off + qi * mk.ms_q + col * mk.ms_k;
                    if (mk.kind == 1) {
                        if (mk.base[off] == 0) s[t][e] = neg_inf;
                    } else {
                        s[t][e] = __fadd_rn(s[t][e], reinterpret_cast<const float*>(mk.base)[off]);
                    }
                }
            }
        }
    }
    if (col0 + BN > lk) {  // the last tile: keys past Lk are padding
#pragma unroll
        for (int t = 0; t < NT; ++t) {
#pragma unroll
            for (int e = 0; e < 4; ++e) {
                if (col0 + t * 8 + 2 * qd + (e & 1) >= lk) s[t][e] = neg_inf;
            }
        }
    }

    // ---- N:M pruning in registers
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
}

// ---- The forward's tile loop, shared by the fused N:M forward (nm_attention.cu) and the fused
// DSA forward (dsa_attention.cu); they differ only in which scores of a tile they keep.
//
// A block of 4 warps takes BM = 64 queries (16 per warp); 64-key tiles of K and V stream
// through shared memory with cp.async, two stages deep.  Per tile, `tile.scores` fills the
// warp's 16 x 64 scores (dropped entries -inf) and says whether the warp has any entry left
// in this tile (false: the warp skips the tile's softmax and P V; warp-uniform); its
// kSparsePairs picks softmax_step's exponentials for sparse patterns.  `tile.prefetch`
// issues the cp.async of whatever else a tile needs, in the same commit group as its K and V.
// Then an online softmax (exponentials with ex2) and O += P V on the tensor cores, P rounded
// to the input dtype (as flash kernels do).  Shared memory: the Q tile and two stages of K and
// V, rows padded to D + 8 elements (ldmatrix rows then hit distinct banks).
template <int D> __host__ __device__ constexpr int smem_elems() { return (BM + 4 * BN) * (D + 8); }

// The online softmax of one tile: s (scores, -inf = dropped) becomes P = exp(s - m_run) with
// the running row maxima m_run and sums l_run updated and o rescaled.  one_of_pair: at most
// one of each accumulator pair (2c, 2c+1) is finite (N:M 1:2), one exponential a pair.
// SPARSE_PAIRS (sparse patterns, e.g. DSA at 10%): one exponential a pair for the finite one
// of the two (if any), a second only where both are finite (the instruction issues when any
// lane of the warp needs it: ~27% of pairs at density 0.1, every pair at 0.5).
template <int D, bool SPARSE_PAIRS = false>
__device__ __forceinline__ void softmax_step(float (&s)[NT][4], float (&m_run)[2],
                                             float (&l_run)[2], float (&o)[D / 8][4],
                                             bool one_of_pair) {
    const float neg_inf = __int_as_float(0xff800000);
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
        if (one_of_pair) {
#pragma unroll
            for (int t = 0; t < NT; ++t) {
                const bool first = s[t][2 * h + 1] == neg_inf;
                const float p = ex2(fmaf(first ? s[t][2 * h] : s[t][2 * h + 1], kLog2e, -off));
                s[t][2 * h] = first ? p : 0.f;
                s[t][2 * h + 1] = first ? 0.f : p;
                sum += p;
            }
        } else if constexpr (SPARSE_PAIRS) {
#pragma unroll
            for (int t = 0; t < NT; ++t) {
                const float a = s[t][2 * h], b = s[t][2 * h + 1];
                const bool b_dead = b == neg_inf;
                const float p1 = ex2(fmaf(b_dead ? a : b, kLog2e, -off));
                float p0 = 0.f;
                if (!b_dead && a != neg_inf) p0 = ex2(fmaf(a, kLog2e, -off));
                s[t][2 * h] = b_dead ? p1 : p0;
                s[t][2 * h + 1] = b_dead ? 0.f : p1;
                sum += p0 + p1;
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
}

// O += P V: the score accumulators of n-tiles 2kk, 2kk+1 are the A fragment; V's tile is read
// with ldmatrix.trans.
template <bool BF16, int D>
__device__ __forceinline__ void pv_step(float (&o)[D / 8][4], const float (&s)[NT][4],
                                        const unsigned short* tV, int lane) {
    constexpr int LD = D + 8;
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
}

// The block's forward over all key tiles of one (batch, head) row r: Qg, Kg, Vg, Og point at
// that row's [Lq, D], [Lk, D], [Lk, D], [Lq, D]; lse (or null) at its [Lq] log-sum-exps.
// `smem` holds smem_elems<D>() 16-bit elements.  A row with no finite kept score (l == 0)
// gets zero output (and lse +inf; NaN stays NaN).
template <bool BF16, int D, class Tile>
__device__ __forceinline__ void flash_forward(const unsigned short* Qg, const unsigned short* Kg,
                                              const unsigned short* Vg, unsigned short* Og,
                                              float* lse, int q0, int lq, int lk,
                                              unsigned short* smem, Tile& tile) {
    constexpr int LD = D + 8;
    unsigned short* sQ = smem;
    unsigned short* sK = sQ + BM * LD;      // 2 stages
    unsigned short* sV = sK + 2 * BN * LD;  // 2 stages
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, qd = lane & 3;

    const int tiles = (lk + BN - 1) / BN;
    load_rows<D>(sQ, Qg, q0, lq, tid);
    cp_async_commit();
    load_rows<D>(sK, Kg, 0, lk, tid);
    load_rows<D>(sV, Vg, 0, lk, tid);
    tile.prefetch(0, 0, tid);
    cp_async_commit();

    const float neg_inf = __int_as_float(0xff800000);
    float o[D / 8][4];
#pragma unroll
    for (int i = 0; i < D / 8; ++i) o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.f;
    float m_run[2] = {neg_inf, neg_inf}, l_run[2] = {0.f, 0.f};
    const int row_in_block[2] = {warp * 16 + (lane >> 2), warp * 16 + (lane >> 2) + 8};

    for (int j = 0; j < tiles; ++j) {
        const int stage = j & 1;
        if (j + 1 < tiles) {
            load_rows<D>(sK + (stage ^ 1) * BN * LD, Kg, (j + 1) * BN, lk, tid);
            load_rows<D>(sV + (stage ^ 1) * BN * LD, Vg, (j + 1) * BN, lk, tid);
            tile.prefetch(j + 1, stage ^ 1, tid);
        }
        cp_async_commit();
        cp_async_wait<1>();
        __syncthreads();
        const unsigned short* tK = sK + stage * BN * LD;
        const unsigned short* tV = sV + stage * BN * LD;

        float s[NT][4];
        if (tile.scores(s, sQ, tK, warp, lane, j, stage, q0, row_in_block)) {
            softmax_step<D, Tile::kSparsePairs>(s, m_run, l_run, o, tile.one_of_pair());
            pv_step<BF16, D>(o, s, tV, lane);
        }
        __syncthreads();  // this stage is refilled by the next iteration's prefetch
    }

    // ---- normalise and store; a row with no finite kept score (l == 0) is zero
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
                const unsigned packed = pack2<BF16>(o[i][2 * h] * inv, o[i][2 * h + 1] * inv);
                *reinterpret_cast<unsigned*>(Og + (long long)qi * D + i * 8 + 2 * qd) = packed;
            }
            // l sums exp(s - m_run) over the kept scores; m_run ignores NaN (fmaxf), l does not
            if (lse != nullptr && qd == 0) {
                lse[qi] = l == 0.f ? __int_as_float(0x7f800000) : m_run[h] + logf(l);
            }
        }
    }
}

}  // namespace nmattn
