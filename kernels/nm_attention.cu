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
// Tiling (the tile loop flash_forward in nm_attention_tile.cuh, shared with the fused DSA
// forward): a block of 4 warps takes 64 queries (16 per warp); 64-key tiles of K and V stream
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
namespace nmattn {

// The N:M tile of flash_forward: every warp computes its scores (nm_scores: scale, mask,
// padding, pruning) and keeps at least one entry per group, so no tile is skipped.
template <bool BF16, int D, int M> struct NMTile {
    MaskRef mk;
    int n, lq, lk;
    float scale;
    static constexpr bool kSparsePairs = false;
    __device__ __forceinline__ void prefetch(int, int, int) {}
    __device__ __forceinline__ bool one_of_pair() const { return M == 2 && n == 1; }
    __device__ __forceinline__ bool scores(float (&s)[NT][4], const unsigned short* sQ,
                                           const unsigned short* tK, int warp, int lane, int j,
                                           int, int q0, const int (&row_in_block)[2]) {
        nm_scores<BF16, D, M>(s, sQ, tK, warp, lane, n, scale, mk, j * BN, q0, row_in_block, lq,
                              lk);
        return true;
    }
};

}  // namespace nmattn

template <typename T, int D, int M>
__global__ void __launch_bounds__(nmattn::kThreads)
nm_attention_fwd(const T* __restrict__ q, const T* __restrict__ k, const T* __restrict__ v,
                 T* __restrict__ out, float* __restrict__ lse, int lq, int lk, int n,
                 float scale, const void* __restrict__ mask, int mask_kind, int heads,
                 long long ms_b, long long ms_h, long long ms_q, long long ms_k) {
    using namespace nmattn;
    constexpr bool BF16 = is_bf16<T>::value;
    static_assert(D == 16 || D == 32 || D == 64 || D == 128, "D");

    extern __shared__ uint4 smem_raw[];
    const long long r = blockIdx.y;
    const unsigned short* Qg = reinterpret_cast<const unsigned short*>(q) + r * lq * D;
    const unsigned short* Kg = reinterpret_cast<const unsigned short*>(k) + r * lk * D;
    const unsigned short* Vg = reinterpret_cast<const unsigned short*>(v) + r * lk * D;
    unsigned short* Og = reinterpret_cast<unsigned short*>(out) + r * lq * D;
    NMTile<BF16, D, M> tile{{static_cast<const char*>(mask), mask_kind,
                             (r / heads) * ms_b + (r % heads) * ms_h, ms_q, ms_k},
                            n, lq, lk, scale};
    flash_forward<BF16, D>(Qg, Kg, Vg, Og, lse != nullptr ? lse + r * lq : nullptr,
                           blockIdx.x * BM, lq, lk, reinterpret_cast<unsigned short*>(smem_raw),
                           tile);
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
