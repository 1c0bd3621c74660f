// Fused DSA attention forward (issue 14 item 3): attention on a predicted pattern, flash style,
// on the tensor cores.  With ~10% of the keys kept per query but spread over all keys, every
// 64 x 64 tile holds kept entries, so the fastest exact way is the dense tile product with the
// dropped entries set to -inf before the online softmax:
//
//   S = scale * Q K^T (fp32),  S_ij -> -inf where key j is not kept for query i,
//   P = softmax over the kept entries (a row with none: zero output),  O = P V.
//
// Inputs q [R, Lq, D], k [R, Lk, D], v [R, Lk, D] (R = batch x heads), fp16 or bf16,
// contiguous; out [R, Lq, D] in the same dtype.  The pattern is a packed bitmask, int32
// [R, Lq, W] with W = ceil(Lk / 32): bit (j % 32) of word j / 32 of row i is 1 iff key j is kept
// for query i.  Bits past Lk are ignored (the last tile clears them).  D is 16, 32, 64 or 128;
// any Lq and Lk (tails zero-filled, padding keys never kept).
//
// The tile loop, softmax and P V are nm_attention's (flash_forward in nm_attention_tile.cuh):
// a block of 4 warps takes 64 queries, 64-key tiles of K and V and the tile's 64 x 2 pattern
// words stream through shared memory with cp.async, two stages deep.  In the m16n8
// accumulator a lane holds columns 2c, 2c+1 (c = lane % 4) of rows lane/4 and lane/4 + 8 of
// every 8-key n-tile, so it needs the two words of each of its two rows; the shift by 2c is
// done once, after which each of its 32 scores tests one constant bit.
//
// SKIP: a warp whose 16 rows keep no key of the tile (an OR over its 32 words, one vote) skips
// the tile's Q K^T, softmax and P V.  For random patterns at 10% density this never happens
// (it costs the vote); for structured patterns (local windows, blocks) it skips most tiles.
// The K and V loads are block-wide and always happen.
//
// PAIRS: softmax_step's exponentials for sparse patterns (one a pair of columns unless both
// are kept); an option to measure against the plain one (one per entry).
//
// Rounding: the scores are fp32 sums of exact fp16/bf16 products in the tensor cores' order,
// then multiplied by scale in fp32 (as the reference); exponentials with ex2.approx; P is
// rounded to the input dtype before P V (as flash kernels do).
//
// Also here: dsa_pack_bits, the bool pattern [rows, Lk] (torch's one byte per entry) packed into
// the bitmask above, one warp per 32 keys of a row (a ballot), at memory speed.
#include "nm_attention_tile.cuh"

namespace dsafused {

using namespace nmattn;

// The tile of flash_forward for a packed pattern: the words of tile j for the block's 64 rows
// go to shared memory (stage-buffered next to K and V), then each warp masks its scores.
template <bool BF16, int D, bool SKIP, bool PAIRS> struct DsaTile {
    const unsigned* bits;  // this (batch, head)'s [Lq, W] words
    unsigned* sBits;       // 2 stages x 64 rows x 2 words
    int words, lq, lk;
    float scale;
    static constexpr bool kSparsePairs = PAIRS;

    __device__ __forceinline__ bool one_of_pair() const { return false; }

    // 128 threads, 128 words: thread t takes word t % 2 of row t / 2 of tile j.
    __device__ __forceinline__ void prefetch(int j, int stage, int tid) {
        const int row = tid >> 1, w = 2 * j + (tid & 1);
        const int q = static_cast<int>(blockIdx.x) * BM + row;
        const bool ok = q < lq && w < words;
        cp_async4(sBits + stage * 2 * BM + tid, ok ? bits + (long long)q * words + w : bits, ok);
    }

    // The words of the lane's two rows for tile j, bits past Lk cleared.  Volatile reads: they
    // stay after the (volatile) ldmatrix/mma of the score tile, so the 32 bit tests are not
    // hoisted above it, where they would hold 32 registers across the products.
    __device__ __forceinline__ void load_words(unsigned (&w)[2][2], int j, int stage,
                                               const int (&row_in_block)[2]) const {
#pragma unroll
        for (int h = 0; h < 2; ++h) {
            const unsigned long long x = *reinterpret_cast<const volatile unsigned long long*>(
                sBits + stage * 2 * BM + 2 * row_in_block[h]);
            w[h][0] = static_cast<unsigned>(x);
            w[h][1] = static_cast<unsigned>(x >> 32);
        }
        const int rest = lk - j * BN;  // keys of this tile inside Lk
        if (rest < BN) {               // the last tile: bits past Lk are padding
#pragma unroll
            for (int h = 0; h < 2; ++h) {
                w[h][0] &= rest >= 32 ? 0xffffffffu : (1u << rest) - 1u;
                w[h][1] &= rest <= 32 ? 0u : (1u << (rest - 32)) - 1u;
            }
        }
    }

    __device__ __forceinline__ bool scores(float (&s)[NT][4], const unsigned short* sQ,
                                           const unsigned short* tK, int warp, int lane, int j,
                                           int stage, int, const int (&row_in_block)[2]) {
        const float neg_inf = __int_as_float(0xff800000);
        const int qd = lane & 3;
        unsigned w[2][2];  // [row h][low / high 32 keys]
        if constexpr (SKIP) {
            load_words(w, j, stage, row_in_block);
            if (!__any_sync(0xffffffffu, (w[0][0] | w[0][1] | w[1][0] | w[1][1]) != 0u)) {
                return false;
            }
        }
        warp_abt<BF16, D>(s, sQ, tK, warp, lane);
        load_words(w, j, stage, row_in_block);
        // After the shift by 2c, the lane's entry (n-tile t, element e) of row h is bit
        // 8 (t % 4) + e of word t / 4.
#pragma unroll
        for (int h = 0; h < 2; ++h) {
            const unsigned lo = w[h][0] >> (2 * qd), hi = w[h][1] >> (2 * qd);
#pragma unroll
            for (int t = 0; t < NT; ++t) {
#pragma unroll
                for (int e = 0; e < 2; ++e) {
                    const unsigned word = t < 4 ? lo : hi;
                    const bool kept = (word >> (8 * (t & 3) + e)) & 1u;
                    s[t][2 * h + e] = kept ? __fmul_rn(s[t][2 * h + e], scale) : neg_inf;
                }
            }
        }
        return true;
    }
};

}  // namespace dsafused

// Head dims <= 64: at most 128 registers, so 4 blocks (16 warps) fit an SM, as shared memory
// allows (the compiler's own choice, ~130, left 3).
template <typename T, int D, bool SKIP, bool PAIRS>
__global__ void __launch_bounds__(nmattn::kThreads, D <= 64 ? 4 : 1)
dsa_attention_fwd(const T* __restrict__ q, const T* __restrict__ k, const T* __restrict__ v,
                  const unsigned* __restrict__ bits, T* __restrict__ out, int lq, int lk,
                  int words, float scale) {
    using namespace nmattn;
    constexpr bool BF16 = is_bf16<T>::value;
    static_assert(D == 16 || D == 32 || D == 64 || D == 128, "D");

    extern __shared__ uint4 smem_raw[];
    unsigned short* smem = reinterpret_cast<unsigned short*>(smem_raw);
    const long long r = blockIdx.y;
    const unsigned short* Qg = reinterpret_cast<const unsigned short*>(q) + r * lq * D;
    const unsigned short* Kg = reinterpret_cast<const unsigned short*>(k) + r * lk * D;
    const unsigned short* Vg = reinterpret_cast<const unsigned short*>(v) + r * lk * D;
    unsigned short* Og = reinterpret_cast<unsigned short*>(out) + r * lq * D;
    // the pattern's two stages follow the Q, K and V tiles (16-byte aligned: smem_elems is
    // a multiple of 8)
    unsigned* sBits = reinterpret_cast<unsigned*>(smem + smem_elems<D>());
    dsafused::DsaTile<BF16, D, SKIP, PAIRS> tile{bits + r * lq * words, sBits, words, lq, lk,
                                                 scale};
    flash_forward<BF16, D>(Qg, Kg, Vg, Og, nullptr, blockIdx.x * BM, lq, lk, smem, tile);
}

// bits[row, w] = sum over b < 32 with 32 w + b < lk of keep[row, 32 w + b] << b.
// One warp per output word; grid-stride over rows x words.
__global__ void __launch_bounds__(256)
dsa_pack_bits(const unsigned char* __restrict__ keep, unsigned* __restrict__ bits,
              long long rows, int lk, int words) {
    const int lane = threadIdx.x & 31;
    const long long total = rows * words;
    const long long stride = (long long)gridDim.x * (blockDim.x >> 5);
    for (long long i = (long long)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5); i < total;
         i += stride) {
        const long long row = i / words;
        const int col = static_cast<int>(i - row * words) * 32 + lane;
        const bool on = col < lk && keep[row * lk + col] != 0;
        const unsigned word = __ballot_sync(0xffffffffu, on);
        if (lane == 0) bits[i] = word;
    }
}

// The same when Lk % 32 == 0 and keep is 16-byte aligned (then no word straddles rows of the
// flattened [rows * Lk] bools): thread c reads 16 bools (one 16-byte load) into 16 bits, and
// the even thread of each pair writes the word of both.  Torch's bools are bytes 0 or 1, so
// the 4 bytes of a u32 x give 4 bits as (x | x >> 7 | x >> 14 | x >> 21) & 15.
__device__ __forceinline__ unsigned nibble(unsigned x) {
    return (x | (x >> 7) | (x >> 14) | (x >> 21)) & 0xfu;
}
__global__ void __launch_bounds__(256)
dsa_pack_bits32(const uint4* __restrict__ keep, unsigned* __restrict__ bits, long long chunks) {
    const long long stride = (long long)gridDim.x * blockDim.x;
    // every lane runs the same number of iterations (chunks is even, the stride too), so the
    // shuffle partner is always there
    for (long long c0 = (long long)blockIdx.x * blockDim.x; c0 < chunks; c0 += stride) {
        const long long c = c0 + threadIdx.x;
        unsigned b = 0;
        if (c < chunks) {
            const uint4 x = keep[c];
            b = nibble(x.x) | (nibble(x.y) << 4) | (nibble(x.z) << 8) | (nibble(x.w) << 12);
        }
        const unsigned hi = __shfl_down_sync(0xffffffffu, b, 1);
        if (c < chunks && (c & 1) == 0) bits[c >> 1] = b | (hi << 16);
    }
}

// nvcc's compile check builds every instance; NVRTC (toolkit/attention/_fused.py) compiles
// only the one a call needs, through name_expressions.
#ifndef __CUDACC_RTC__
#define TK_DSAATT_INSTANCE(T, D, SKIP, PAIRS)                                                \
    template __global__ void dsa_attention_fwd<T, D, SKIP, PAIRS>(                           \
        const T* __restrict__, const T* __restrict__, const T* __restrict__,                 \
        const unsigned* __restrict__, T* __restrict__, int, int, int, float);
#define TK_DSAATT_DS(T, SKIP, PAIRS)                                                         \
    TK_DSAATT_INSTANCE(T, 16, SKIP, PAIRS)                                                   \
    TK_DSAATT_INSTANCE(T, 32, SKIP, PAIRS)                                                   \
    TK_DSAATT_INSTANCE(T, 64, SKIP, PAIRS)                                                   \
    TK_DSAATT_INSTANCE(T, 128, SKIP, PAIRS)
TK_DSAATT_DS(tk_half, true, false)
TK_DSAATT_DS(tk_half, false, false)
TK_DSAATT_DS(tk_half, true, true)
TK_DSAATT_DS(tk_bfloat16, true, false)
TK_DSAATT_DS(tk_bfloat16, false, false)
TK_DSAATT_DS(tk_bfloat16, true, true)
#endif
