// Fused N:M sparse attention forward (DFSS pattern), flash style: one pass over the keys with
// an online softmax; the L x L scores never leave registers.
//
//   S = scale * Q K^T (+ additive mask | boolean mask -> -inf),  keep the n largest of every m
//   consecutive keys of each row (ties to the lower key index, -0 == +0: nm_mask's rule for
//   non-NaN scores), P = softmax over the kept entries, O = P V.
//
// Inputs q [R, Lq, D], k [R, Lk, D], v [R, Lk, D] (R = batch x heads), fp16 or bf16,
// contiguous; out [R, Lq, D] in the same dtype.  D is 16, 32, 64 or 128, M a power of two
// <= 32 (groups then never straddle a 64-key tile), any Lq and Lk (tails are zero-filled and
// masked).
//
// Tiling: a block of 4 warps takes 64 queries (16 per warp); 64-key tiles of K and V stream
// through shared memory with cp.async, two stages deep.  Q K^T and P V run on the tensor cores
// (mma.sync m16n8k16, fp32 accumulation), operands loaded with ldmatrix (.trans for V).
//
// Pruning in registers (nm_attention_tile.cuh, shared with the backward): in the m16n8
// accumulator a lane holds columns 2c, 2c+1 (c = lane % 4)
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
//
// With a non-null `lse` the kernel also writes each row's log-sum-exp over its kept scores
// (float32 [R, Lq], natural log; +inf for a row with no finite kept score, NaN for a NaN row),
// which the backward (nm_attention_bwd.cu) uses to recompute P.
#include "nm_attention_tile.cuh"

// mask_kind: 0 none, 1 bool (uint8, 0 = masked out), 2 additive float32.  The mask element of
// (r = b * heads + h, query i, key j) is at mask + b*ms_b + h*ms_h + i*ms_q + j*ms_k.
template <typename T, int D, int M>
__global__ void __launch_bounds__(nmattn::kThreads)
nm_attention_fwd(const T* __restrict__ q, const T* __restrict__ k, const T* __restrict__ v,
                 T* __restrict__ out, float* __restrict__ lse, int lq, int lk, int n,
                 float scale, const void* __restrict__ mask, int mask_kind, int heads,
                 long long ms_b, long long ms_h, long long ms_q, long long ms_k) {
    using namespace nmattn;
    constexpr bool BF16 = is_bf16<T>::value;
    constexpr int LD = D + 8;  // padded row (16 bytes) so ldmatrix rows hit distinct banks
    static_assert(D == 16 || D == 32 || D == 64 || D == 128, "D");

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

    const int tiles = (lk + BN - 1) / BN;
    load_rows<D>(sQ, Qg, q0, lq, tid);
    cp_async_commit();
    load_rows<D>(sK, Kg, 0, lk, tid);
    load_rows<D>(sV, Vg, 0, lk, tid);
    cp_async_commit();

    const float neg_inf = __int_as_float(0xff800000);
    float o[D / 8][4];
#pragma unroll
    for (int i = 0; i < D / 8; ++i) o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.f;
    float m_run[2] = {neg_inf, neg_inf}, l_run[2] = {0.f, 0.f};
    const int row_in_block[2] = {warp * 16 + (lane >> 2), warp * 16 + (lane >> 2) + 8};
    const MaskRef mk{static_cast<const char*>(mask), mask_kind,
                     (r / heads) * ms_b + (r % heads) * ms_h, ms_q, ms_k};

    for (int j = 0; j < tiles; ++j) {
        const int stage = j & 1;
        if (j + 1 < tiles) {
            load_rows<D>(sK + (stage ^ 1) * BN * LD, Kg, (j + 1) * BN, lk, tid);
            load_rows<D>(sV + (stage ^ 1) * BN * LD, Vg, (j + 1) * BN, lk, tid);
        }
        cp_async_commit();
        cp_async_wait<1>();
        __syncthreads();
        const unsigned short* tK = sK + stage * BN * LD;
        const unsigned short* tV = sV + stage * BN * LD;

        // ---- S = scale * Q K^T (+ mask), padding, N:M pruning: the shared score tile
        float s[NT][4];
        nm_scores<BF16, D, M>(s, sQ, tK, warp, lane, n, scale, mk, j * BN, q0, row_in_block, lq,
                              lk);

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
            // l sums exp(s - m_run) over the kept scores; m_run ignores NaN (fmaxf), l does not
            if (lse != nullptr && qd == 0) {
                lse[r * lq + qi] = l == 0.f ? __int_as_float(0x7f800000) : m_run[h] + logf(l);
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
        T* __restrict__, float* __restrict__, int, int, int, float, const void* __restrict__, \
        int, int, long long, long long, long long, long long);
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
// Head dims 16 and 32 (small models, e.g. the fine-tuning demo) run the same code; the
// check builds them for the two common group sizes only, to keep it quick.
TK_NMATT_INSTANCE(tk_half, 16, 2)
TK_NMATT_INSTANCE(tk_half, 16, 4)
TK_NMATT_INSTANCE(tk_half, 32, 2)
TK_NMATT_INSTANCE(tk_half, 32, 4)
TK_NMATT_INSTANCE(tk_bfloat16, 16, 2)
TK_NMATT_INSTANCE(tk_bfloat16, 16, 4)
TK_NMATT_INSTANCE(tk_bfloat16, 32, 2)
TK_NMATT_INSTANCE(tk_bfloat16, 32, 4)
#endif
