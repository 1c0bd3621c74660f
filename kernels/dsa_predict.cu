// DSA prediction: quantized low-rank approximate attention scores + row-wise top-k mask.
//
// Inputs, for R independent (batch x head) slices:
//   q_codes [R, Lq, r] and k_codes [R, Lk, r]: integer codes of Q P and K P (int8 for up to
//       8 bits, int16 for up to 16), P the [d, r] random projection;
//   k_scale [R, Lk] float32 > 0: the dequantization scale of every key row.
// Each query row i keeps the `keep` keys j with the largest approximate score
//       s_ij = float(sum_t q_codes[i, t] * k_codes[j, t]) * k_scale[j]      (float32)
// (the query's own positive scale does not change the order within its row, so it is left
// out).  Ties go to the lower key index.  The integer dot product is exact, so the CUDA path
// and the torch reference agree bit for bit.
//
// Three kernels share the selection (`select_kept`):
//   dsa_predict       one warp per query row, the keys read from global memory (L2), a bool
//                     mask out; for any Lk whose row of scores fits in shared memory.
//   dsa_predict_bits  a block takes a tile of query rows of one slice, loads that slice's key
//                     codes and scales into shared memory once and reuses them for all its
//                     rows (one warp a row at a time); a packed bitmask out (bit j % 32 of
//                     word j / 32), one warp ballot a word.  The old kernel read Lk * r bytes
//                     of keys from L2 for every row, with no reuse, and waited on them.
//   dsa_predict_bits_mma  the same for int8 codes, the scores of 16 (or 8) rows at a time from
//                     tensor cores (below).
//
// Selection, per row: the row's scores live in the warp's slice of shared memory.  It narrows
// a value range [lo, hi] that holds the keep-th largest score: a pass buckets the scores in
// the range into 256 buckets by value (a monotone map, so a higher bucket only holds larger
// scores), finds the bucket that holds the keep-th largest, and the range shrinks to that
// bucket's smallest and largest score.  The first range is [min, max]; the smallest and
// largest score always fall into buckets 0 and 255, so each pass strictly shrinks the
// candidates, and a pass usually leaves a few dozen.  Once at most kCand remain (or all are
// equal), the warp ranks them exactly: by score, then by index.  Value buckets spread well
// over any score distribution, unlike radix digits of float bits, whose top byte (sign and
// exponent) puts most scores of a row into one or two bins and serialises the shared-memory
// atomics.
//
// The bits kernels first try a candidate filter (select_row): a threshold from a sample of
// 256 scores leaves about 2 keep candidates, one ballot pass compacts them, and the
// selection above runs on them alone (fallbacks: the full selection; see select_row).  A
// row of Lk 2048, keep 205 then costs about 1.5k warp instructions instead of ~12.7k.
// dsa_codes (at the end) computes the codes and scales themselves from Q or K.
#include "tk_dtypes.cuh"

namespace dsapredict {

constexpr int kBuckets = 256;
constexpr int kCand = 64;     // candidates ranked exactly (a lane ranks kCand / 32 of them)
constexpr int kMaxWarps = 4;  // rows (warps) a block at most in dsa_predict

__device__ __forceinline__ float inf() { return __int_as_float(0x7f800000); }

__device__ __forceinline__ float warp_min(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = fminf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}
__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// Integer <-> float conversions run at 16 a clock per multiprocessor (an eighth of the
// float adds), and the scores and buckets need one per score and pass.  For |x| <= 2^22 the
// float 1.5 * 2^23 + x has x in its low mantissa bits exactly, so integer and float adds
// convert instead: exact for int8 dot products (|dot| <= 128^3 = 2^21).
constexpr float kMagic = 12582912.0f;  // 1.5 * 2^23, bits 0x4B400000
__device__ __forceinline__ float small_int_to_float(int x) {
    return __int_as_float(0x4B400000 + x) - kMagic;
}

// Order-preserving int keys of floats (no NaN), for shared-memory atomicMin/atomicMax.
__device__ __forceinline__ int ordered(float f) {
    const int i = __float_as_int(f);
    return i >= 0 ? i : i ^ 0x7fffffff;
}
__device__ __forceinline__ float unordered(int key) {
    return __int_as_float(key >= 0 ? key : key ^ 0x7fffffff);
}

// The bucket of a score s in [lo, hi] (lo < hi): monotone non-decreasing in s (every step
// rounds monotonically), 0 at lo and 255 at hi (bucket 0 holds at least lo, bucket 255 at
// least hi, which is all the narrowing needs).  In float where hi - lo and 256 / (hi - lo)
// are finite normal numbers: then fl(fl(hi - lo) * fl(256 / (hi - lo))) >= 256 (1 - 2^-23)
// > 255.  Otherwise (infinite or tiny ranges) in double, where hi - lo cannot overflow; the
// double conversions are slow, so only those rows pay them.
struct Buckets {
    bool fast;
    float flo, fscale;
    double dlo, dscale;
    __device__ Buckets(float lo, float hi) {
        const float d = hi - lo;
        fast = d <= 3.0e38f && d >= 1.0e-30f;  // false for inf and NaN too
        flo = lo;
        fscale = fast ? kBuckets / d : 0.0f;
        dlo = lo;
        dscale = kBuckets / (static_cast<double>(hi) - dlo);
    }
    __device__ __forceinline__ int operator()(float s) const {
        if (fast) {
            // b in [0, 256 (1 + 2^-22)]: rounded to the nearest integer (monotone too) by
            // the magic-number add, then capped.
            const float b = (s - flo) * fscale;
            return min(__float_as_int(b + kMagic) - 0x4B400000, kBuckets - 1);
        }
        const double b = (static_cast<double>(s) - dlo) * dscale;
        return b >= kBuckets - 1 ? kBuckets - 1 : static_cast<int>(b);
    }
};

// Selects the row's `keep` (< lk) best scores s[0..lk) (score descending, then index
// ascending), given their range [lo, hi] (warp-uniform).  Returns a threshold t such that the
// kept scores are exactly those with s[j] > t afterwards: the chosen candidates at the
// threshold are raised to +inf in s.  hist (kBuckets), cand and cval (kCand) are the warp's
// own shared scratch.  All 32 lanes call it; no block barrier.
__device__ float select_kept(float* s, int lk, int keep, float lo, float hi, unsigned* hist,
                             int* cand, float* cval, int lane) {
    // Compact the indices and scores of the scores in [lo, hi] (at most kCand of them) into
    // cand/cval, in index order; returns how many.
    auto compact = [&](auto in_range) -> int {
        int n = 0;
        for (int base = 0; base < lk; base += 32) {
            const int j = base + lane;
            const float v = j < lk ? s[j] : 0.0f;
            const bool in = j < lk && in_range(v);
            const unsigned ballot = __ballot_sync(0xffffffffu, in);
            if (in) {
                const int at = n + __popc(ballot & ((1u << lane) - 1u));
                cand[at] = j;
                cval[at] = v;
            }
            n += __popc(ballot);
        }
        return n;
    };

    // Narrow [lo, hi] down to the keep-th largest score's neighbourhood.  Invariant: every
    // score above hi is kept, every score below lo is dropped, `need` of the `count` scores
    // in [lo, hi] are still to be kept (1 <= need <= count).
    int need = keep, count = lk;
    bool compacted = false;
    while (count > kCand && lo < hi) {
        for (int b = lane; b < kBuckets; b += 32) hist[b] = 0u;
        __syncwarp();
        const Buckets bucket(lo, hi);
        const float clo = lo, chi = hi;
#pragma unroll 4
        for (int j = lane; j < lk; j += 32) {
            const float v = s[j];
            if (v >= clo && v <= chi) atomicAdd(&hist[bucket(v)], 1u);
        }
        __syncwarp();
        // Lane l holds buckets 255-8l .. 248-8l; scan from the top bucket down.
        unsigned local = 0u;
#pragma unroll
        for (int b = 0; b < 8; ++b) local += hist[kBuckets - 1 - 8 * lane - b];
        unsigned inclusive = local;
#pragma unroll
        for (int o = 1; o < 32; o <<= 1) {
            const unsigned up = __shfl_up_sync(0xffffffffu, inclusive, o);
            if (lane >= o) inclusive += up;
        }
        const unsigned hit = __ballot_sync(0xffffffffu, inclusive >= static_cast<unsigned>(need));
        const int first = __ffs(hit) - 1;  // the lowest lane that reaches `need`
        int target = 0, above = 0, in_target = 0;
        if (lane == first) {
            unsigned acc = inclusive - local;  // scores in higher buckets
            int b = kBuckets - 1 - 8 * lane;
            for (int i = 0; i < 8; ++i, --b) {
                if (acc + hist[b] >= static_cast<unsigned>(need)) break;
                acc += hist[b];
            }
            target = b;
            above = static_cast<int>(acc);
            in_target = static_cast<int>(hist[b]);
        }
        target = __shfl_sync(0xffffffffu, target, first);
        need -= __shfl_sync(0xffffffffu, above, first);
        count = __shfl_sync(0xffffffffu, in_target, first);
        // The new range: the smallest and largest score of the target bucket; when few
        // enough remain, the same pass collects them.
        auto in_target_bucket = [&](float v) {
            return v >= clo && v <= chi && bucket(v) == target;
        };
        float nlo = inf(), nhi = -inf();
        if (count <= kCand) {
            compact(in_target_bucket);
            compacted = true;
            __syncwarp();
            for (int c = lane; c < count; c += 32) {
                nlo = fminf(nlo, cval[c]);
                nhi = fmaxf(nhi, cval[c]);
            }
        } else {
#pragma unroll 4
            for (int j = lane; j < lk; j += 32) {
                const float v = s[j];
                if (in_target_bucket(v)) {
                    nlo = fminf(nlo, v);
                    nhi = fmaxf(nhi, v);
                }
            }
        }
        lo = warp_min(nlo);
        hi = warp_max(nhi);
        __syncwarp();
    }

    // Rank the `count` candidates in [lo, hi] exactly (score, then index) and mark the
    // `need` best as kept by raising their score above hi.
    if (lo == hi) {
        // All candidates are equal: the `need` with the lowest indices, in index order.
        int taken = 0;
        for (int base = 0; base < lk && taken < need; base += 32) {
            const int j = base + lane;
            const bool tie = j < lk && s[j] == lo;
            const unsigned ballot = __ballot_sync(0xffffffffu, tie);
            const int before = taken + __popc(ballot & ((1u << lane) - 1u));
            if (tie && before < need) s[j] = inf();
            taken += __popc(ballot);
        }
    } else {
        if (!compacted) {
            const float clo = lo, chi = hi;
            compact([&](float v) { return v >= clo && v <= chi; });
        }
        __syncwarp();
        const int n = count;
        bool mine[kCand / 32];
#pragma unroll
        for (int c = 0; c < kCand / 32; ++c) {
            const int a = lane + 32 * c;
            mine[c] = false;
            if (a < n) {
                const float va = cval[a];
                int rank_a = 0;  // candidates ranked before a: larger, or equal and earlier
                for (int b = 0; b < n; ++b) {
                    const float vb = cval[b];
                    rank_a += (vb > va) || (vb == va && b < a);
                }
                mine[c] = rank_a < need;
            }
        }
#pragma unroll
        for (int c = 0; c < kCand / 32; ++c) {
            if (mine[c]) s[cand[lane + 32 * c]] = inf();
        }
    }
    __syncwarp();
    return hi;
}

// The bit words of a row whose kept keys are exactly those with s[j] > t (after
// select_kept); lane w % 32 holds word w until 32 words are stored together.
__device__ __forceinline__ void write_words(const float* s, int lk, float t, unsigned* out,
                                            int lane) {
    const int nwords = (lk + 31) >> 5;
    unsigned mine = 0u;
    for (int w = 0; w < nwords; ++w) {
        const int j = 32 * w + lane;
        const unsigned word = __ballot_sync(0xffffffffu, j < lk && s[j] > t);
        if ((w & 31) == lane) mine = word;
        if ((w & 31) == 31 || w == nwords - 1) {
            if (lane <= (w & 31)) out[(w & ~31) + lane] = mine;
        }
    }
}

constexpr int kSamples = 256;    // scores sampled for the candidate threshold
constexpr int kFilterWords = 8;  // candidate words a lane holds: Lk <= 32 * 32 * 8 = 8192

// Whether select_row tries the candidate filter: enough keys for a sample of kSamples
// (stride >= 2), the candidate words fit in registers, and at most a quarter kept.
__device__ __forceinline__ bool filter_applies(int lk, int keep) {
    return lk >= 2 * kSamples && lk <= 32 * 32 * kFilterWords && 4 * keep <= lk;
}

// Selects the row's `keep` (< lk) best scores s[0..lk) in [lo, hi] (warp-uniform) and writes
// its bit words to out.  With `filter`, where filter_applies, a candidate filter first:
//   (a) t0 := about the (2 keep)-th largest score: the ks-th largest of kSamples strided
//       samples, ks = 2 keep kSamples / lk, by bisection on their order-preserving int keys
//       (8 a lane, counted with one warp reduction a step; it stops early once the sample
//       count above the midpoint lies in [ks, 1.25 ks]);
//   (b) one pass compacts the scores >= t0 to the front of s, in index order (ballot +
//       popc prefix, no atomics; a write never overtakes the reads: position n + prefix <=
//       j), and keeps each 32 keys' candidate ballot in registers (lane w % 32, slot w / 32);
//   (c) fewer than `keep` candidates (the sample overshot): the row was overwritten, so
//       `rescore` recomputes it and the full selection runs; exactly `keep`: all are kept;
//       more: select_kept ranks the n candidates alone (every non-candidate lies below t0 <=
//       every candidate, and the compaction kept the index order, so ties still go to the
//       lower index);
//   (d) each lane builds its words from its candidate ballots: the c-th candidate of the row
//       (c from a warp prefix sum of the ballots' popcounts) is kept iff its compacted score
//       was raised above the returned threshold.
// `rescore()` rewrites s[0..lk) with the same scores (all lanes call it).
template <class Rescore>
__device__ void select_row(float* s, int lk, int keep, float lo, float hi, unsigned* hist,
                           int* cand, float* cval, bool filter, unsigned* out, int lane,
                           Rescore rescore) {
    if (filter && filter_applies(lk, keep)) {
        // (a) the threshold t0 from the sample.
        const int stride = lk / kSamples;  // >= 2
        const int ks = max(1, 2 * kSamples * keep / lk);  // <= kSamples / 2
        int key[kSamples / 32];
        int kmin = 0x7fffffff, kmax = -0x7fffffff - 1;
#pragma unroll
        for (int i = 0; i < kSamples / 32; ++i) {
            key[i] = ordered(s[(lane + 32 * i) * stride]);
            kmin = min(kmin, key[i]);
            kmax = max(kmax, key[i]);
        }
        // Keys lie in [ordered(-inf), ordered(inf)] = [-0x7f800001, 0x7f800000]: kmax + 1 and
        // the unsigned span do not overflow, and every key in between is a float's, not NaN.
        int klo = __reduce_min_sync(0xffffffffu, kmin);  // count(key >= klo) >= ks
        int khi = __reduce_max_sync(0xffffffffu, kmax) + 1;  // count(key >= khi) < ks
        const int enough = ks + (ks >> 2);
        while (static_cast<unsigned>(khi) - static_cast<unsigned>(klo) > 1u) {
            const int mid = static_cast<int>(
                static_cast<unsigned>(klo) +
                ((static_cast<unsigned>(khi) - static_cast<unsigned>(klo)) >> 1));
            int c = 0;
#pragma unroll
            for (int i = 0; i < kSamples / 32; ++i) c += key[i] >= mid;
            c = static_cast<int>(__reduce_add_sync(0xffffffffu, static_cast<unsigned>(c)));
            if (c >= ks) {
                klo = mid;
                if (c <= enough) break;
            } else {
                khi = mid;
            }
        }
        const float t0 = unordered(klo);

        // (b) compact the candidates s[j] >= t0 in place; their ballots into cw.
        unsigned cw[kFilterWords];
        int n = 0;
        float cmin = inf();
#pragma unroll
        for (int i = 0; i < kFilterWords; ++i) {
            cw[i] = 0u;
            if (32 * 32 * i < lk) {
                for (int c = 0; c < 32; ++c) {
                    const int j = 32 * (32 * i + c) + lane;
                    const float v = j < lk ? s[j] : 0.0f;
                    const bool in = j < lk && v >= t0;
                    const unsigned ballot = __ballot_sync(0xffffffffu, in);
                    if (lane == c) cw[i] = ballot;
                    if (in) {
                        s[n + __popc(ballot & ((1u << lane) - 1u))] = v;
                        cmin = fminf(cmin, v);
                    }
                    n += __popc(ballot);
                }
            }
        }
        __syncwarp();
        // (c) the selection among the candidates.
        if (n >= keep) {
            float t = -inf();
            if (n > keep) {
                t = select_kept(s, n, keep, warp_min(cmin), hi, hist, cand, cval, lane);
            }
            // (d) the words: lane l of round i holds word 32 i + l.
            int base = 0;  // candidates in earlier words
            const int nwords = (lk + 31) >> 5;
#pragma unroll
            for (int i = 0; i < kFilterWords; ++i) {
                if (32 * i < nwords) {
                    const int pc = __popc(cw[i]);
                    int incl = pc;
#pragma unroll
                    for (int o = 1; o < 32; o <<= 1) {
                        const int up = __shfl_up_sync(0xffffffffu, incl, o);
                        if (lane >= o) incl += up;
                    }
                    int at = base + incl - pc;  // this word's first candidate
                    unsigned word = 0u;
                    for (unsigned rest = cw[i]; rest != 0u; rest &= rest - 1u, ++at) {
                        if (n == keep || s[at] > t) word |= rest & (0u - rest);
                    }
                    if (32 * i + lane < nwords) out[32 * i + lane] = word;
                    base += __shfl_sync(0xffffffffu, incl, 31);
                }
            }
            __syncwarp();
            return;
        }
        rescore();  // the sample overshot: the full selection on the recomputed row
        __syncwarp();
    }
    const float t = select_kept(s, lk, keep, lo, hi, hist, cand, cval, lane);
    write_words(s, lk, t, out, lane);
    __syncwarp();
}

}  // namespace dsapredict

// Dynamic shared memory: Lk floats (the scores) per warp.  The bucket counters and candidates
// are separate static arrays, so that the compiler knows the score loads of the next keys do
// not depend on the counter updates of the last ones, and can overlap them.
template <typename Code>
__global__ void dsa_predict(const Code* __restrict__ q_codes, const Code* __restrict__ k_codes,
                            const float* __restrict__ k_scale, bool* __restrict__ mask,
                            long long rows, int lq, int lk, int rank, int keep) {
    using namespace dsapredict;
    extern __shared__ float smem[];
    const int warps = blockDim.x >> 5, warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const long long row = static_cast<long long>(blockIdx.x) * warps + warp;  // slice*lq + i
    if (row >= rows) return;  // a whole warp leaves: no barrier below spans warps
    __shared__ unsigned hist_all[kMaxWarps][kBuckets];
    __shared__ int cand_all[kMaxWarps][kCand];
    __shared__ float cval_all[kMaxWarps][kCand];
    float* s = smem + static_cast<long long>(warp) * lk;
    bool* out = mask + row * static_cast<long long>(lk);
    if (keep >= lk) {
        for (int j = lane; j < lk; j += 32) out[j] = true;
        return;
    }

    const long long slice = row / lq;
    const Code* q = q_codes + row * rank;
    const Code* k = k_codes + slice * static_cast<long long>(lk) * rank;
    const float* scale = k_scale + slice * static_cast<long long>(lk);

    // The approximate scores, and their range.
    float lo = inf(), hi = -inf();
    if (sizeof(Code) == 1 && (rank & 15) == 0) {
        // int8 codes, rank a multiple of 16: 16-byte loads and 4-way byte dot products.
        // |dot| <= 127^2 * 128 fits an int.  Rows are 16-byte aligned: torch's allocations
        // are, and every row is a multiple of 16 bytes long.
        const int chunks = rank >> 4;
        const int4* qv = reinterpret_cast<const int4*>(q);
        int4 qp[8];
#pragma unroll
        for (int c = 0; c < 8; ++c) qp[c] = c < chunks ? qv[c] : make_int4(0, 0, 0, 0);
        for (int j = lane; j < lk; j += 32) {
            const int4* kj = reinterpret_cast<const int4*>(k + static_cast<long long>(j) * rank);
            int dot = 0;
#pragma unroll
            for (int c = 0; c < 8; ++c) {
                if (c < chunks) {
                    const int4 w = kj[c];
                    dot = __dp4a(w.x, qp[c].x, dot);
                    dot = __dp4a(w.y, qp[c].y, dot);
                    dot = __dp4a(w.z, qp[c].z, dot);
                    dot = __dp4a(w.w, qp[c].w, dot);
                }
            }
            const float v = small_int_to_float(dot) * scale[j];
            s[j] = v;
            lo = fminf(lo, v);
            hi = fmaxf(hi, v);
        }
    } else {
        // int16 codes need 64-bit sums (|dot| <= 32767^2 * 128); the conversion to float
        // rounds once, as the reference's float64 -> float32 conversion does.
        for (int j = lane; j < lk; j += 32) {
            const Code* kj = k + static_cast<long long>(j) * rank;
            long long dot = 0;
            for (int t = 0; t < rank; ++t) {
                dot += static_cast<long long>(q[t]) * static_cast<long long>(kj[t]);
            }
            const float v = __ll2float_rn(dot) * scale[j];
            s[j] = v;
            lo = fminf(lo, v);
            hi = fmaxf(hi, v);
        }
    }
    lo = warp_min(lo);
    hi = warp_max(hi);
    __syncwarp();
    hi = select_kept(s, lk, keep, lo, hi, hist_all[warp], cand_all[warp], cval_all[warp], lane);

    // The mask: kept iff the score is above hi (the selected candidates were raised).
#pragma unroll 4
    for (int j = lane; j < lk; j += 32) out[j] = s[j] > hi;
}

// Shared memory of dsa_predict_bits (dynamic; _dsa_predict.py computes the same size):
//   per warp: Lk float scores, kBuckets counters, kCand candidate indices and scores;
//   then the slice's Lk key scales, then (16-byte aligned) its key codes: int8 rows padded with
//   zeros to `words` 32-bit words (ceil(r / 4)), int16 rows as they are.
// One block barrier, after the keys are loaded; then every warp works on its own rows.
template <typename Code>
__global__ void __launch_bounds__(512)
    dsa_predict_bits(const Code* __restrict__ q_codes, const Code* __restrict__ k_codes,
                     const float* __restrict__ k_scale, unsigned* __restrict__ bits, int lq,
                     int lk, int rank, int keep, int rows_per_block, int blocks_per_slice,
                     int filter) {
    using namespace dsapredict;
    extern __shared__ __align__(16) unsigned char smem_bytes[];
    const int warps = blockDim.x >> 5, warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int slice = blockIdx.x / blocks_per_slice;
    const int row0 = (blockIdx.x % blocks_per_slice) * rows_per_block;
    const int row_end = min(lq, row0 + rows_per_block);
    const int nwords = (lk + 31) >> 5;  // output words a row
    if (keep >= lk) {  // every key kept: no scores needed (bits beyond lk stay 0)
        for (int i = row0 + warp; i < row_end; i += warps) {
            unsigned* out = bits + (static_cast<long long>(slice) * lq + i) * nwords;
            for (int w = lane; w < nwords; w += 32) {
                out[w] = 32 * (w + 1) <= lk ? 0xffffffffu : (1u << (lk & 31)) - 1u;
            }
        }
        return;
    }

    float* s_all = reinterpret_cast<float*>(smem_bytes);
    unsigned* hist_all = reinterpret_cast<unsigned*>(s_all + static_cast<long long>(warps) * lk);
    int* cand_all = reinterpret_cast<int*>(hist_all + warps * kBuckets);
    float* cval_all = reinterpret_cast<float*>(cand_all + warps * kCand);
    float* sscale = cval_all + warps * kCand;
    const long long key_offset =
        (reinterpret_cast<unsigned char*>(sscale + lk) - smem_bytes + 15) & ~15LL;
    unsigned char* skeys = smem_bytes + key_offset;
    const int words = (rank + 3) >> 2;  // int8: a key row in shared memory, in 32-bit words

    // The slice's keys and scales, once for all rows of the tile.
    const Code* k = k_codes + static_cast<long long>(slice) * lk * rank;
    const float* scale = k_scale + static_cast<long long>(slice) * lk;
    for (int j = threadIdx.x; j < lk; j += blockDim.x) sscale[j] = scale[j];
    if (sizeof(Code) == 1) {
        int* kw = reinterpret_cast<int*>(skeys);
        if ((rank & 3) == 0) {
            // Whole words; _dsa_predict.py passes 16-byte aligned tensors.
            const int* gw = reinterpret_cast<const int*>(k);
            const int total = lk * words;
            for (int t = threadIdx.x; t < total; t += blockDim.x) kw[t] = gw[t];
        } else {
            const int total = lk * words;
            for (int t = threadIdx.x; t < total; t += blockDim.x) {
                const int j = t / words, c = t - j * words;
                unsigned w = 0u;
#pragma unroll
                for (int b = 0; b < 4; ++b) {
                    const int e = 4 * c + b;
                    if (e < rank) {
                        const unsigned byte = static_cast<unsigned char>(k[j * rank + e]);
                        w |= byte << (8 * b);
                    }
                }
                kw[t] = static_cast<int>(w);
            }
        }
    } else {
        Code* kc = reinterpret_cast<Code*>(skeys);
        const int total = lk * rank;
        for (int t = threadIdx.x; t < total; t += blockDim.x) kc[t] = k[t];
    }
    __syncthreads();

    float* s = s_all + static_cast<long long>(warp) * lk;
    unsigned* hist = hist_all + warp * kBuckets;
    int* cand = cand_all + warp * kCand;
    float* cval = cval_all + warp * kCand;
    for (int i = row0 + warp; i < row_end; i += warps) {
        const long long row = static_cast<long long>(slice) * lq + i;
        const Code* q = q_codes + row * rank;

        // The approximate scores and their range; again if the candidate filter overshoots.
        auto score = [&]() -> float2 {
            float lo = inf(), hi = -inf();
            if (sizeof(Code) == 1) {
                // int8: 4-way byte dot products (|dot| <= 127^2 * 128 fits an int); the query's
                // codes packed into words like the keys', zeros past r.
                int qw[32];
    #pragma unroll
                for (int c = 0; c < 32; ++c) {
                    unsigned w = 0u;
                    if (c < words) {
    #pragma unroll
                        for (int b = 0; b < 4; ++b) {
                            const int e = 4 * c + b;
                            if (e < rank) w |= static_cast<unsigned>(static_cast<unsigned char>(q[e]))
                                               << (8 * b);
                        }
                    }
                    qw[c] = static_cast<int>(w);
                }
                const int* kw = reinterpret_cast<const int*>(skeys);
                if ((words & 3) == 0) {
                    const int chunks = words >> 2;  // 16-byte loads
                    for (int j = lane; j < lk; j += 32) {
                        const int4* kj = reinterpret_cast<const int4*>(kw + j * words);
                        int dot = 0;
    #pragma unroll
                        for (int c = 0; c < 8; ++c) {
                            if (c < chunks) {
                                const int4 w = kj[c];
                                dot = __dp4a(w.x, qw[4 * c], dot);
                                dot = __dp4a(w.y, qw[4 * c + 1], dot);
                                dot = __dp4a(w.z, qw[4 * c + 2], dot);
                                dot = __dp4a(w.w, qw[4 * c + 3], dot);
                            }
                        }
                        const float v = small_int_to_float(dot) * sscale[j];
                        s[j] = v;
                        lo = fminf(lo, v);
                        hi = fmaxf(hi, v);
                    }
                } else {
                    for (int j = lane; j < lk; j += 32) {
                        const int* kj = kw + j * words;
                        int dot = 0;
    #pragma unroll
                        for (int c = 0; c < 32; ++c) {
                            if (c < words) dot = __dp4a(kj[c], qw[c], dot);
                        }
                        const float v = small_int_to_float(dot) * sscale[j];
                        s[j] = v;
                        lo = fminf(lo, v);
                        hi = fmaxf(hi, v);
                    }
                }
            } else {
                // int16: 64-bit sums, one rounding to float (as in dsa_predict).
                const Code* kc = reinterpret_cast<const Code*>(skeys);
                for (int j = lane; j < lk; j += 32) {
                    const Code* kj = kc + j * rank;
                    long long dot = 0;
                    for (int t = 0; t < rank; ++t) {
                        dot += static_cast<long long>(q[t]) * static_cast<long long>(kj[t]);
                    }
                    const float v = __ll2float_rn(dot) * sscale[j];
                    s[j] = v;
                    lo = fminf(lo, v);
                    hi = fmaxf(hi, v);
                }
            }
            lo = warp_min(lo);
            hi = warp_max(hi);
            __syncwarp();
            return make_float2(lo, hi);
        };
        const float2 range = score();
        select_row(s, lk, keep, range.x, range.y, hist, cand, cval, filter != 0,
                   bits + row * nwords, lane, [&]() { score(); });
    }
}

// dsa_predict_bits_mma: dsa_predict_bits for int8 codes with the scores from tensor cores.
// The block takes its tile's rows in groups of `group` (<= 16) rows: all warps compute the
// group's scores with mma.m16n8k16 (int8 in, exact int32 out; rows past the group are zero
// queries whose results are dropped), each warp taking every warps-th block of 8 keys, into a
// shared [group, Lk] score buffer, and each row's score range by shared atomics; after a
// barrier each warp selects and emits its rows of the group from that buffer, and a barrier
// ends the group.  Per score this reads about 1 byte of
// key codes from shared memory instead of r (dp4a reads the key's codes for every row).
// Shared memory (dynamic): the group's scores (row stride: Lk rounded up to 32, plus 8),
// the per-warp scratch, the key scales, then
// (16-byte aligned) the key codes, rows padded with zeros to `kwords` 32-bit words (a multiple
// of 4) and Lk padded with zero rows to a multiple of 8.
template <typename Code>  // signed char only (a template, like the other kernels' names)
__global__ void __launch_bounds__(512)
    dsa_predict_bits_mma(const Code* __restrict__ q_codes, const Code* __restrict__ k_codes,
                         const float* __restrict__ k_scale, unsigned* __restrict__ bits, int lq,
                         int lk, int rank, int keep, int rows_per_block, int blocks_per_slice,
                         int group, int filter) {
    static_assert(sizeof(Code) == 1, "tensor-core scores take int8 codes");
    using namespace dsapredict;
    extern __shared__ __align__(16) unsigned char smem_mma[];
    const int warps = blockDim.x >> 5, warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int slice = blockIdx.x / blocks_per_slice;
    const int row0 = (blockIdx.x % blocks_per_slice) * rows_per_block;
    const int row_end = min(lq, row0 + rows_per_block);
    const int nwords = (lk + 31) >> 5;
    if (keep >= lk) {
        for (int i = row0 + warp; i < row_end; i += warps) {
            unsigned* out = bits + (static_cast<long long>(slice) * lq + i) * nwords;
            for (int w = lane; w < nwords; w += 32) {
                out[w] = 32 * (w + 1) <= lk ? 0xffffffffu : (1u << (lk & 31)) - 1u;
            }
        }
        return;
    }

    const int tiles = (lk + 7) >> 3;           // blocks of 8 keys
    const int kwords = ((rank + 15) >> 4) * 4;  // a key row in shared memory, in words
    // Score rows 8 words off a multiple of 32 apart: the pair stores of rows g = 0..3 (and of
    // 4..7) of a half-warp then hit 32 different banks.
    const int stride = ((lk + 31) & ~31) + 8;
    float* sbuf = reinterpret_cast<float*>(smem_mma);
    unsigned* hist_all = reinterpret_cast<unsigned*>(sbuf + group * stride);
    int* cand_all = reinterpret_cast<int*>(hist_all + warps * kBuckets);
    float* cval_all = reinterpret_cast<float*>(cand_all + warps * kCand);
    float* sscale = cval_all + warps * kCand;
    const long long key_offset =
        (reinterpret_cast<unsigned char*>(sscale + lk) - smem_mma + 15) & ~15LL;
    int* kw = reinterpret_cast<int*>(smem_mma + key_offset);

    const Code* k = k_codes + static_cast<long long>(slice) * lk * rank;
    const float* scale = k_scale + static_cast<long long>(slice) * lk;
    for (int j = threadIdx.x; j < lk; j += blockDim.x) sscale[j] = scale[j];
    const int total = 8 * tiles * kwords;
    for (int t = threadIdx.x; t < total; t += blockDim.x) {
        const int j = t / kwords, c = t - j * kwords;
        unsigned w = 0u;
        if (j < lk) {
            if ((rank & 3) == 0) {
                // Whole words; _dsa_predict.py passes 16-byte aligned tensors.
                if (4 * c < rank) w = reinterpret_cast<const unsigned*>(k + j * rank)[c];
            } else {
#pragma unroll
                for (int b = 0; b < 4; ++b) {
                    const int e = 4 * c + b;
                    if (e < rank) {
                        w |= static_cast<unsigned>(static_cast<unsigned char>(k[j * rank + e]))
                             << (8 * b);
                    }
                }
            }
        }
        kw[t] = static_cast<int>(w);
    }
    // Each group's score range, from the compute phase's atomics; two sets, so that the next
    // group's set is reset while this group's is still read (no extra barrier).
    __shared__ int row_range[2][2][16];
    if (threadIdx.x < 64) {
        const int m = threadIdx.x >> 4 & 1;
        (&row_range[0][0][0])[threadIdx.x] = m == 0 ? ordered(inf()) : ordered(-inf());
    }
    __syncthreads();

    const int g = lane >> 2, tig = lane & 3;  // the mma fragments' group and thread in group
    const int chunks = kwords >> 2;           // 16 codes a chunk (k of m16n8k16)
    unsigned* hist = hist_all + warp * kBuckets;
    int* cand = cand_all + warp * kCand;
    float* cval = cval_all + warp * kCand;
    for (int base = row0, parity = 0; base < row_end; base += group, parity ^= 1) {
        const int rows = min(group, row_end - base);
        int* rmin = row_range[parity][0];  // reset before the last barrier (see below)
        int* rmax = row_range[parity][1];
        // A fragments: rows g and g + 8 of the group, codes 4 tig .. 4 tig + 3 of each chunk.
        unsigned a[8][2];
#pragma unroll
        for (int c = 0; c < 8; ++c) {
#pragma unroll
            for (int h = 0; h < 2; ++h) {
                const int r = g + 8 * h;
                unsigned w = 0u;
                if (c < chunks && r < rows) {
                    const Code* q =
                        q_codes + (static_cast<long long>(slice) * lq + base + r) * rank;
#pragma unroll
                    for (int b = 0; b < 4; ++b) {
                        const int e = 16 * c + 4 * tig + b;
                        if (e < rank) {
                            w |= static_cast<unsigned>(static_cast<unsigned char>(q[e]))
                                 << (8 * b);
                        }
                    }
                }
                a[c][h] = w;
            }
        }
        float lmin[2] = {inf(), inf()}, lmax[2] = {-inf(), -inf()};
        for (int tile = warp; tile < tiles; tile += warps) {
            int acc[4] = {0, 0, 0, 0};
            const int* kt = kw + (8 * tile + g) * kwords + tig;
#pragma unroll
            for (int c = 0; c < 8; ++c) {
                if (c < chunks) {
                    const unsigned b = static_cast<unsigned>(kt[4 * c]);
                    asm volatile(
                        "mma.sync.aligned.m16n8k16.row.col.s32.s8.s8.s32 "
                        "{%0, %1, %2, %3}, {%4, %5}, {%6}, {%0, %1, %2, %3};\n"
                        : "+r"(acc[0]), "+r"(acc[1]), "+r"(acc[2]), "+r"(acc[3])
                        : "r"(a[c][0]), "r"(a[c][1]), "r"(b));
                }
            }
            // acc: rows g (0, 1) and g + 8 (2, 3), keys j0 = 8 tile + 2 tig and j0 + 1, stored
            // as one 8-byte pair (a row's stride has room for a pair past Lk).
            const int j0 = 8 * tile + 2 * tig;
            const float s0 = sscale[j0], s1 = j0 + 1 < lk ? sscale[j0 + 1] : 0.0f;
#pragma unroll
            for (int h = 0; h < 2; ++h) {
                const int r = g + 8 * h;
                const float v0 = small_int_to_float(acc[2 * h]) * s0;
                const float v1 = small_int_to_float(acc[2 * h + 1]) * s1;
                if (r < rows && j0 < lk) {
                    *reinterpret_cast<float2*>(sbuf + r * stride + j0) = make_float2(v0, v1);
                    lmin[h] = fminf(lmin[h], v0);
                    lmax[h] = fmaxf(lmax[h], v0);
                    if (j0 + 1 < lk) {
                        lmin[h] = fminf(lmin[h], v1);
                        lmax[h] = fmaxf(lmax[h], v1);
                    }
                }
            }
        }
        // The rows' ranges: over the quad (the lanes of one row), then over the warps.
#pragma unroll
        for (int h = 0; h < 2; ++h) {
#pragma unroll
            for (int o = 1; o < 4; o <<= 1) {
                lmin[h] = fminf(lmin[h], __shfl_xor_sync(0xffffffffu, lmin[h], o));
                lmax[h] = fmaxf(lmax[h], __shfl_xor_sync(0xffffffffu, lmax[h], o));
            }
            const int r = g + 8 * h;
            if (tig == 0 && r < rows && lmin[h] <= lmax[h]) {
                atomicMin(&rmin[r], ordered(lmin[h]));
                atomicMax(&rmax[r], ordered(lmax[h]));
            }
        }
        __syncthreads();
        // The other set of ranges, last read before the previous barrier, for the next group.
        if (threadIdx.x < 32) {
            int* next = &row_range[parity ^ 1][0][0];
            next[threadIdx.x] = threadIdx.x < 16 ? ordered(inf()) : ordered(-inf());
        }
        for (int r = warp; r < rows; r += warps) {
            float* s = sbuf + r * stride;
            const long long row = static_cast<long long>(slice) * lq + base + r;
            // The filter's rare fallback recomputes the row with dp4a from the same codes:
            // the same exact integer dot products, converted and scaled the same way.
            auto rescore = [&]() {
                const Code* q = q_codes + row * rank;
                int qw[32];
#pragma unroll
                for (int c = 0; c < 32; ++c) {
                    unsigned w = 0u;
                    if (c < kwords) {
#pragma unroll
                        for (int b = 0; b < 4; ++b) {
                            const int e = 4 * c + b;
                            if (e < rank) {
                                w |= static_cast<unsigned>(static_cast<unsigned char>(q[e]))
                                     << (8 * b);
                            }
                        }
                    }
                    qw[c] = static_cast<int>(w);
                }
                for (int j = lane; j < lk; j += 32) {
                    const int* kj = kw + j * kwords;
                    int dot = 0;
#pragma unroll
                    for (int c = 0; c < 32; ++c) {
                        if (c < kwords) dot = __dp4a(kj[c], qw[c], dot);
                    }
                    s[j] = small_int_to_float(dot) * sscale[j];
                }
            };
            select_row(s, lk, keep, unordered(rmin[r]), unordered(rmax[r]), hist, cand, cval,
                       filter != 0, bits + row * nwords, lane, rescore);
        }
        __syncthreads();
    }
}

// dsa_codes: DSA's codes and scales (toolkit/attention/dsa.py, steps 1-2) of `rows` rows of
// x [rows, d] (float16, bfloat16 or float32) in one pass, instead of a dozen torch kernels:
//   x_c = fl32(sum_t x_t P[t, c])   (float32 fma, t ascending; any summation order is a
//                                    float32 matmul, as torch's is),
//   bits >= 2: s = amax_c |x_c| / qmax, code_c = clamp(rint(x_c / s'), -qmax, qmax) with
//              s' = s if s > 0 else 1 (a row with s == 0 has |x_c| < 2^-126: codes 0);
//   bits == 1: code_c = x_c >= 0 ? 1 : -1, s = sum_c |x_c| / r;
// exactly dsa.py's _quantize_unchecked on these projections.  One warp a row: the row's
// d <= 256 inputs are held 8 a lane and broadcast by shuffles, lane l computes columns
// l, l + 32, l + 64, l + 96 (r <= 128).  A row with a NaN or infinite x_c adds 1 to *bad and
// gets codes 0 and scale 0 (the caller raises once it reads the count).
template <typename In, typename Code>
__global__ void dsa_codes(const In* __restrict__ x, const float* __restrict__ proj,
                          Code* __restrict__ codes, float* __restrict__ scale,
                          int* __restrict__ bad, long long rows, int d, int r, int bits) {
    using namespace dsapredict;
    const int lane = threadIdx.x & 31;
    const long long row = static_cast<long long>(blockIdx.x) * (blockDim.x >> 5) +
                          (threadIdx.x >> 5);
    if (row >= rows) return;  // a whole warp leaves
    const In* xr = x + row * d;
    float xv[8];
#pragma unroll
    for (int i = 0; i < 8; ++i) {
        const int t = lane + 32 * i;
        xv[i] = t < d ? tk_to_float(xr[t]) : 0.0f;
    }
    float acc[4] = {0.0f, 0.0f, 0.0f, 0.0f};
#pragma unroll
    for (int i = 0; i < 8; ++i) {
        if (32 * i < d) {
            const int end = min(32, d - 32 * i);
            for (int b = 0; b < end; ++b) {
                const float xt = __shfl_sync(0xffffffffu, xv[i], b);
                const float* pt = proj + static_cast<long long>(32 * i + b) * r;
#pragma unroll
                for (int c4 = 0; c4 < 4; ++c4) {
                    const int c = lane + 32 * c4;
                    if (c < r) acc[c4] = fmaf(xt, pt[c], acc[c4]);
                }
            }
        }
    }
    bool nonfinite = false;
    float amax = 0.0f, asum = 0.0f;
#pragma unroll
    for (int c4 = 0; c4 < 4; ++c4) {
        if (lane + 32 * c4 < r) {
            nonfinite |= !isfinite(acc[c4]);
            amax = fmaxf(amax, fabsf(acc[c4]));
            asum += fabsf(acc[c4]);
        }
    }
    Code* out = codes + row * r;
    if (__any_sync(0xffffffffu, nonfinite)) {
        // Counted, and written as a zero row (codes 0, scale 0): the prediction kernels may
        // run on these codes before the caller reads the count and raises.
        if (lane == 0) {
            atomicAdd(bad, 1);
            scale[row] = 0.0f;
        }
        for (int c = lane; c < r; c += 32) out[c] = static_cast<Code>(0);
        return;
    }
    amax = warp_max(amax);
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) asum += __shfl_xor_sync(0xffffffffu, asum, o);
    if (bits == 1) {
#pragma unroll
        for (int c4 = 0; c4 < 4; ++c4) {
            const int c = lane + 32 * c4;
            if (c < r) out[c] = static_cast<Code>(acc[c4] >= 0.0f ? 1 : -1);
        }
        if (lane == 0) scale[row] = asum / static_cast<float>(r);
        return;
    }
    const float qmax = static_cast<float>((1 << (bits - 1)) - 1);
    const float s = amax / qmax;
    const float safe = s > 0.0f ? s : 1.0f;
#pragma unroll
    for (int c4 = 0; c4 < 4; ++c4) {
        const int c = lane + 32 * c4;
        if (c < r) {
            const float v = fminf(fmaxf(rintf(acc[c4] / safe), -qmax), qmax);
            out[c] = static_cast<Code>(static_cast<int>(v));
        }
    }
    if (lane == 0) scale[row] = s;
}

#ifndef __CUDACC_RTC__
template __global__ void dsa_predict<signed char>(const signed char* __restrict__,
                                                  const signed char* __restrict__,
                                                  const float* __restrict__, bool* __restrict__,
                                                  long long, int, int, int, int);
template __global__ void dsa_predict<short>(const short* __restrict__, const short* __restrict__,
                                            const float* __restrict__, bool* __restrict__,
                                            long long, int, int, int, int);
template __global__ void dsa_predict_bits<signed char>(const signed char* __restrict__,
                                                       const signed char* __restrict__,
                                                       const float* __restrict__,
                                                       unsigned* __restrict__, int, int, int,
                                                       int, int, int, int);
template __global__ void dsa_predict_bits<short>(const short* __restrict__,
                                                 const short* __restrict__,
                                                 const float* __restrict__,
                                                 unsigned* __restrict__, int, int, int, int, int,
                                                 int, int);
template __global__ void dsa_predict_bits_mma<signed char>(const signed char* __restrict__,
                                                           const signed char* __restrict__,
                                                           const float* __restrict__,
                                                           unsigned* __restrict__, int, int, int,
                                                           int, int, int, int, int);
template __global__ void dsa_codes<float, signed char>(const float* __restrict__,
                                                 const float* __restrict__, signed char* __restrict__,
                                                 float* __restrict__, int* __restrict__,
                                                 long long, int, int, int);
template __global__ void dsa_codes<float, short>(const float* __restrict__,
                                                 const float* __restrict__, short* __restrict__,
                                                 float* __restrict__, int* __restrict__,
                                                 long long, int, int, int);
template __global__ void dsa_codes<tk_half, signed char>(const tk_half* __restrict__,
                                                 const float* __restrict__, signed char* __restrict__,
                                                 float* __restrict__, int* __restrict__,
                                                 long long, int, int, int);
template __global__ void dsa_codes<tk_half, short>(const tk_half* __restrict__,
                                                 const float* __restrict__, short* __restrict__,
                                                 float* __restrict__, int* __restrict__,
                                                 long long, int, int, int);
template __global__ void dsa_codes<tk_bfloat16, signed char>(const tk_bfloat16* __restrict__,
                                                 const float* __restrict__, signed char* __restrict__,
                                                 float* __restrict__, int* __restrict__,
                                                 long long, int, int, int);
template __global__ void dsa_codes<tk_bfloat16, short>(const tk_bfloat16* __restrict__,
                                                 const float* __restrict__, short* __restrict__,
                                                 float* __restrict__, int* __restrict__,
                                                 long long, int, int, int);
#endif
