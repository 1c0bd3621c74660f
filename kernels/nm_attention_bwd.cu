// Fused N:M sparse attention backward (FlashAttention-2 style), for nm_attention.cu's forward.
//
// Given the forward's per-row log-sum-exp L_i over the kept scores (float32 [R, Lq]) and
// delta_i = sum_d dO_id O_id (float32 [R, Lq]), for each key block j and query block i:
//
//   S = the forward's score tile (nm_scores: the same mma code, accumulation order, scale,
//       mask and padding arithmetic, so S is bit-identical and the N:M pruning keeps exactly
//       the forward's entries),
//   P = exp(S - L_i) on kept entries, 0 on dropped ones,   dP = dO_i V_j^T,
//   dS = P * (dP - delta_i),
//   dV_j += P^T dO_i,   dK_j += scale * dS^T Q_i,   dQ_i += scale * dS K_j.
//
// A block of 4 warps owns 64 keys (grid x) of one batch x head (grid y) and loops over all
// query blocks of 64; K_j, V_j stay in shared memory and dK_j, dV_j in registers (warp w owns
// keys 16w..16w+15).  For the score tile each warp takes 16 queries, exactly as in the
// forward.  P and dS go to shared memory (rounded to the input dtype, as flash kernels do) for
// the transposed products; dQ goes out through float32 atomicAdd into dq_acc [R, Lq, D]
// (zeroed by the caller, cast to the input dtype afterwards).
//
// Dead rows (no finite kept score: L = +inf) get P = 0, hence zero gradients, as the
// reference's softmax gives them.  A NaN row (L = NaN) has NaN P on its kept entries, so NaN
// spreads to dQ of that row and dK, dV of the keys it kept, as in the reference's autograd;
// dropped entries contribute nothing (dS = 0 where P = 0).  One difference: in the NaN's
// group of m keys the pruning keeps the NaN and n of the others (no comparison with a NaN is
// true), where the reference keeps n - 1 others; the row's output is NaN either way, but one
// more key of that group gets NaN dK, dV.
#include "nm_attention_tile.cuh"

template <typename T, int D, int M>
__global__ void __launch_bounds__(nmattn::kThreads)
nm_attention_bwd(const T* __restrict__ q, const T* __restrict__ k, const T* __restrict__ v,
                 const T* __restrict__ dout, const float* __restrict__ lse,
                 const float* __restrict__ delta, float* __restrict__ dq_acc, T* __restrict__ dk,
                 T* __restrict__ dv, int lq, int lk, int n, float scale,
                 const void* __restrict__ mask, int mask_kind, int heads, long long ms_b,
                 long long ms_h, long long ms_q, long long ms_k) {
    using namespace nmattn;
    constexpr bool BF16 = is_bf16<T>::value;
    constexpr int LD = D + 8;    // padded rows, as in the forward
    constexpr int LDP = BN + 8;  // padded rows of the P and dS tiles
    static_assert(D == 16 || D == 32 || D == 64 || D == 128, "D");

    extern __shared__ uint4 smem_raw[];
    unsigned short* sK = reinterpret_cast<unsigned short*>(smem_raw);
    unsigned short* sV = sK + BN * LD;
    unsigned short* sQ = sV + BN * LD;
    unsigned short* sdO = sQ + BM * LD;
    unsigned short* sP = sdO + BM * LD;
    unsigned short* sdS = sP + BM * LDP;

    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, qd = lane & 3, g = lane >> 2;
    const long long r = blockIdx.y;
    const int k0 = blockIdx.x * BN;
    const unsigned short* Qg = reinterpret_cast<const unsigned short*>(q) + r * lq * D;
    const unsigned short* Kg = reinterpret_cast<const unsigned short*>(k) + r * lk * D;
    const unsigned short* Vg = reinterpret_cast<const unsigned short*>(v) + r * lk * D;
    const unsigned short* dOg = reinterpret_cast<const unsigned short*>(dout) + r * lq * D;
    const float* lse_r = lse + r * lq;
    const float* delta_r = delta + r * lq;
    float* dq_r = dq_acc + r * lq * D;

    load_rows<D>(sK, Kg, k0, lk, tid);
    load_rows<D>(sV, Vg, k0, lk, tid);
    cp_async_commit();

    float dk_acc[D / 8][4], dv_acc[D / 8][4];
#pragma unroll
    for (int i = 0; i < D / 8; ++i) {
        dk_acc[i][0] = dk_acc[i][1] = dk_acc[i][2] = dk_acc[i][3] = 0.f;
        dv_acc[i][0] = dv_acc[i][1] = dv_acc[i][2] = dv_acc[i][3] = 0.f;
    }
    const int row_in_block[2] = {warp * 16 + g, warp * 16 + g + 8};
    const MaskRef mk{static_cast<const char*>(mask), mask_kind,
                     (r / heads) * ms_b + (r % heads) * ms_h, ms_q, ms_k};
    const float pos_inf = __int_as_float(0x7f800000);
    const int qblocks = (lq + BM - 1) / BM;

    for (int ib = 0; ib < qblocks; ++ib) {
        const int q0 = ib * BM;
        __syncthreads();  // the previous iteration's readers of sQ, sdO, sP, sdS are done
        load_rows<D>(sQ, Qg, q0, lq, tid);
        load_rows<D>(sdO, dOg, q0, lq, tid);
        cp_async_commit();
        cp_async_wait<0>();
        __syncthreads();

        // ---- the forward's score tile, bit for bit, and P = exp(S - L) on the kept entries
        float s[NT][4];
        nm_scores<BF16, D, M>(s, sQ, sK, warp, lane, n, scale, mk, k0, q0, row_in_block, lq, lk);
        float lse2[2], dlt[2];
#pragma unroll
        for (int h = 0; h < 2; ++h) {
            const int qi = q0 + row_in_block[h];
            lse2[h] = qi < lq ? lse_r[qi] * kLog2e : pos_inf;  // padding rows: P = 0
            dlt[h] = qi < lq ? delta_r[qi] : 0.f;
        }
        const float neg_inf = __int_as_float(0xff800000);
#pragma unroll
        for (int t = 0; t < NT; ++t) {
#pragma unroll
            for (int e = 0; e < 4; ++e) {
                // dropped (or masked) scores are -inf: P = 0 even in a NaN or dead row
                const float x = s[t][e];
                s[t][e] = x == neg_inf ? 0.f : ex2(fmaf(x, kLog2e, -lse2[e >> 1]));
            }
        }

        // ---- dP = dO V^T (the same tile product as the scores), dS = P (dP - delta)
        float ds[NT][4];
        warp_abt<BF16, D>(ds, sdO, sV, warp, lane);
#pragma unroll
        for (int t = 0; t < NT; ++t) {
#pragma unroll
            for (int e = 0; e < 4; ++e) {
                const float p = s[t][e];
                ds[t][e] = p == 0.f ? 0.f : p * (ds[t][e] - dlt[e >> 1]);
            }
        }

        // ---- P and dS to shared memory (input dtype) for the transposed products
#pragma unroll
        for (int t = 0; t < NT; ++t) {
#pragma unroll
            for (int h = 0; h < 2; ++h) {
                const int off = row_in_block[h] * LDP + t * 8 + 2 * qd;
                *reinterpret_cast<unsigned*>(sP + off) =
                    pack2<BF16>(s[t][2 * h], s[t][2 * h + 1]);
                *reinterpret_cast<unsigned*>(sdS + off) =
                    pack2<BF16>(ds[t][2 * h], ds[t][2 * h + 1]);
            }
        }

        // ---- dQ_i += scale * dS K_j: dS's accumulators are the A fragment (as P in the
        // forward's P V), K_j the B operand through ldmatrix.trans; 16 columns at a time
        unsigned a_ds[BN / 16][4];
#pragma unroll
        for (int kk = 0; kk < BN / 16; ++kk) {
            a_ds[kk][0] = pack2<BF16>(ds[2 * kk][0], ds[2 * kk][1]);
            a_ds[kk][1] = pack2<BF16>(ds[2 * kk][2], ds[2 * kk][3]);
            a_ds[kk][2] = pack2<BF16>(ds[2 * kk + 1][0], ds[2 * kk + 1][1]);
            a_ds[kk][3] = pack2<BF16>(ds[2 * kk + 1][2], ds[2 * kk + 1][3]);
        }
#pragma unroll
        for (int dp = 0; dp < D / 16; ++dp) {
            float acc[2][4] = {{0.f, 0.f, 0.f, 0.f}, {0.f, 0.f, 0.f, 0.f}};
#pragma unroll
            for (int kk = 0; kk < BN / 16; ++kk) {
                unsigned b[4];
                ldmatrix_x4_trans(b, sK + (kk * 16 + (lane & 7) + ((lane >> 3) & 1) * 8) * LD +
                                         dp * 16 + (lane >> 4) * 8);
                mma<BF16>(acc[0], a_ds[kk], b[0], b[1]);
                mma<BF16>(acc[1], a_ds[kk], b[2], b[3]);
            }
#pragma unroll
            for (int h = 0; h < 2; ++h) {
                const int qi = q0 + row_in_block[h];
                if (qi < lq) {
#pragma unroll
                    for (int c = 0; c < 2; ++c) {
                        float* dst = dq_r + (long long)qi * D + dp * 16 + c * 8 + 2 * qd;
                        atomicAdd(dst, scale * acc[c][2 * h]);
                        atomicAdd(dst + 1, scale * acc[c][2 * h + 1]);
                    }
                }
            }
        }
        __syncthreads();  // sP, sdS complete

        // ---- dV_j += P^T dO_i and dK_j += dS^T Q_i: warp w takes keys 16w..16w+15; the
        // A fragment (keys x queries) is the stored [query][key] tile read with ldmatrix.trans
#pragma unroll
        for (int kk = 0; kk < BM / 16; ++kk) {
            const int mi = lane >> 3;
            const int a_off =
                (kk * 16 + (mi >> 1) * 8 + (lane & 7)) * LDP + warp * 16 + (mi & 1) * 8;
            unsigned ap[4], as[4];
            ldmatrix_x4_trans(ap, sP + a_off);
            ldmatrix_x4_trans(as, sdS + a_off);
#pragma unroll
            for (int dp = 0; dp < D / 16; ++dp) {
                const int b_off =
                    (kk * 16 + (lane & 7) + ((lane >> 3) & 1) * 8) * LD + dp * 16 + (lane >> 4) * 8;
                unsigned b[4];
                ldmatrix_x4_trans(b, sdO + b_off);
                mma<BF16>(dv_acc[2 * dp], ap, b[0], b[1]);
                mma<BF16>(dv_acc[2 * dp + 1], ap, b[2], b[3]);
                ldmatrix_x4_trans(b, sQ + b_off);
                mma<BF16>(dk_acc[2 * dp], as, b[0], b[1]);
                mma<BF16>(dk_acc[2 * dp + 1], as, b[2], b[3]);
            }
        }
    }

    // ---- store dK (times scale) and dV of the block's real keys
    unsigned short* dKg = reinterpret_cast<unsigned short*>(dk) + r * lk * D;
    unsigned short* dVg = reinterpret_cast<unsigned short*>(dv) + r * lk * D;
#pragma unroll
    for (int h = 0; h < 2; ++h) {
        const int kj = k0 + warp * 16 + g + 8 * h;
        if (kj < lk) {
#pragma unroll
            for (int i = 0; i < D / 8; ++i) {
                const long long off = (long long)kj * D + i * 8 + 2 * qd;
                *reinterpret_cast<unsigned*>(dKg + off) =
                    pack2<BF16>(scale * dk_acc[i][2 * h], scale * dk_acc[i][2 * h + 1]);
                *reinterpret_cast<unsigned*>(dVg + off) =
                    pack2<BF16>(dv_acc[i][2 * h], dv_acc[i][2 * h + 1]);
            }
        }
    }
}

#ifndef __CUDACC_RTC__
#define TK_NMATT_BWD_INSTANCE(T, D, M)                                                     \
    template __global__ void nm_attention_bwd<T, D, M>(                                    \
        const T* __restrict__, const T* __restrict__, const T* __restrict__,               \
        const T* __restrict__, const float* __restrict__, const float* __restrict__,       \
        float* __restrict__, T* __restrict__, T* __restrict__, int, int, int, float,       \
        const void* __restrict__, int, int, long long, long long, long long, long long);
#define TK_NMATT_BWD_MS(T, D)                                                              \
    TK_NMATT_BWD_INSTANCE(T, D, 1)                                                         \
    TK_NMATT_BWD_INSTANCE(T, D, 2)                                                         \
    TK_NMATT_BWD_INSTANCE(T, D, 4)                                                         \
    TK_NMATT_BWD_INSTANCE(T, D, 8)                                                         \
    TK_NMATT_BWD_INSTANCE(T, D, 16)                                                        \
    TK_NMATT_BWD_INSTANCE(T, D, 32)
TK_NMATT_BWD_MS(tk_half, 64)
TK_NMATT_BWD_MS(tk_half, 128)
TK_NMATT_BWD_MS(tk_bfloat16, 64)
TK_NMATT_BWD_MS(tk_bfloat16, 128)
// Head dims 16 and 32 (small models, e.g. the fine-tuning demo) run the same code; the
// check builds them for the two common group sizes only, to keep it quick.
TK_NMATT_BWD_INSTANCE(tk_half, 16, 2)
TK_NMATT_BWD_INSTANCE(tk_half, 16, 4)
TK_NMATT_BWD_INSTANCE(tk_half, 32, 2)
TK_NMATT_BWD_INSTANCE(tk_half, 32, 4)
TK_NMATT_BWD_INSTANCE(tk_bfloat16, 16, 2)
TK_NMATT_BWD_INSTANCE(tk_bfloat16, 16, 4)
TK_NMATT_BWD_INSTANCE(tk_bfloat16, 32, 2)
TK_NMATT_BWD_INSTANCE(tk_bfloat16, 32, 4)
#endif
