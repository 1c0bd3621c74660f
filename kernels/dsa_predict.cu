// DSA prediction: quantized low-rank approximate attention scores + row-wise top-k mask.
//
// Inputs, for R independent (batch x head) slices:
//   q_codes [R, Lq, r] and k_codes [R, Lk, r]: integer codes of Q P and K P (int8 for up to
//       8 bits, int16 for up to 16), P the [d, r] random projection;
//   k_scale [R, Lk] float32 > 0: the dequantization scale of every key row.
// Each query row i keeps the `keep` keys j with the largest approximate score
//       s_ij = float(sum_t q_codes[i, t] * k_codes[j, t]) * k_scale[j]      (float32)
// (the query's own positive scale does not change the order within its row, so it is left
// out).  Ties go to the lower key index.  The integer dot product is exact (int32), so the
// CUDA path and the torch reference agree bit for bit.
//
// One block per query row.  The row's scores live in shared memory as order-preserving
// 32-bit keys; an MSD radix select (four 8-bit passes) finds the keep-th largest key T and
// how many keys equal to T still fit; a final pass in index order writes the mask, ranking
// the keys equal to T by index with warp ballots so ties break towards the lower index.

namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;

__device__ __forceinline__ unsigned int order_key(float x) {
    // Larger float -> larger unsigned key; +0 and -0 share a key.
    if (x == 0.0f) x = 0.0f;
    const unsigned int bits = __float_as_uint(x);
    return (bits & 0x80000000u) ? ~bits : bits | 0x80000000u;
}

}  // namespace

template <typename Code>
__global__ void __launch_bounds__(kThreads)
dsa_predict(const Code* __restrict__ q_codes, const Code* __restrict__ k_codes,
            const float* __restrict__ k_scale, bool* __restrict__ mask,
            int lq, int lk, int rank, int keep) {
    extern __shared__ unsigned int keys[];              // [lk]
    __shared__ int q_row[128];                          // rank <= 128
    __shared__ unsigned int hist[256];
    __shared__ unsigned int warp_counts[kWarps];
    __shared__ unsigned int prefix, prefix_mask, remaining, taken;

    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const long long row = blockIdx.x;                   // = slice * lq + i
    const long long slice = row / lq;
    const Code* q = q_codes + row * rank;
    const Code* k = k_codes + slice * static_cast<long long>(lk) * rank;
    const float* scale = k_scale + slice * static_cast<long long>(lk);

    for (int t = tid; t < rank; t += kThreads) q_row[t] = static_cast<int>(q[t]);
    if (tid == 0) { prefix = 0u; prefix_mask = 0u; remaining = static_cast<unsigned int>(keep); }
    __syncthreads();

    if (sizeof(Code) == 1 && (rank & 15) == 0) {
        // int8 codes, rank a multiple of 16: 16-byte loads and 4-way byte dot products.
        // |dot| <= 127^2 * 128 fits an int.  Rows are 16-byte aligned: torch's allocations
        // are, and every row is a multiple of 16 bytes long.
        int q_packed[32];
#pragma unroll
        for (int c = 0; c < 32; ++c) {
            const int t = 4 * c;
            const unsigned int packed =
                t < rank ? (static_cast<unsigned int>(q_row[t]) & 0xffu) |
                               ((static_cast<unsigned int>(q_row[t + 1]) & 0xffu) << 8) |
                               ((static_cast<unsigned int>(q_row[t + 2]) & 0xffu) << 16) |
                               ((static_cast<unsigned int>(q_row[t + 3]) & 0xffu) << 24)
                         : 0u;
            q_packed[c] = static_cast<int>(packed);
        }
        const int chunks = rank >> 4;
        for (int j = tid; j < lk; j += kThreads) {
            const int4* kj = reinterpret_cast<const int4*>(k + static_cast<long long>(j) * rank);
            int dot = 0;
#pragma unroll
            for (int c = 0; c < 8; ++c) {
                if (c < chunks) {
                    const int4 w = kj[c];
                    dot = __dp4a(w.x, q_packed[4 * c], dot);
                    dot = __dp4a(w.y, q_packed[4 * c + 1], dot);
                    dot = __dp4a(w.z, q_packed[4 * c + 2], dot);
                    dot = __dp4a(w.w, q_packed[4 * c + 3], dot);
                }
            }
            keys[j] = order_key(static_cast<float>(dot) * scale[j]);
        }
    } else {
        // int16 codes need 64-bit sums (|dot| <= 32767^2 * 128); the conversion to float
        // rounds once, as the reference's float64 -> float32 conversion does.
        for (int j = tid; j < lk; j += kThreads) {
            const Code* kj = k + static_cast<long long>(j) * rank;
            long long dot = 0;
#pragma unroll 8
            for (int t = 0; t < rank; ++t) dot += static_cast<long long>(q_row[t]) * kj[t];
            keys[j] = order_key(__ll2float_rn(dot) * scale[j]);
        }
    }

    // Radix select of the keep-th largest key, 8 bits at a time from the top.
    for (int shift = 24; shift >= 0; shift -= 8) {
        hist[tid] = 0u;                                 // kThreads == 256 bins
        __syncthreads();
        const unsigned int want = prefix, within = prefix_mask;
        for (int j = tid; j < lk; j += kThreads) {
            const unsigned int key = keys[j];
            if ((key & within) == want) atomicAdd(&hist[(key >> shift) & 0xffu], 1u);
        }
        __syncthreads();
        if (warp == 0) {
            // Lane l sums bins 255-8l .. 248-8l; an inclusive scan from the top bin down finds
            // the bin holding the remaining-th largest key.
            unsigned int local = 0u;
            for (int b = 0; b < 8; ++b) local += hist[255 - 8 * lane - b];
            unsigned int inclusive = local;
            for (int offset = 1; offset < 32; offset <<= 1) {
                const unsigned int up = __shfl_up_sync(0xffffffffu, inclusive, offset);
                if (lane >= offset) inclusive += up;
            }
            const unsigned int need = remaining;
            const unsigned int hit = __ballot_sync(0xffffffffu, inclusive >= need);
            const int first = __ffs(hit) - 1;           // lowest lane reaching `need`
            if (lane == first) {
                unsigned int above = inclusive - local; // keys in higher bins
                int bin = 255 - 8 * lane;
                for (int b = 0; b < 8; ++b, --bin) {
                    if (above + hist[bin] >= need) break;
                    above += hist[bin];
                }
                prefix = want | (static_cast<unsigned int>(bin) << shift);
                prefix_mask = within | (0xffu << shift);
                remaining = need - above;
            }
        }
        __syncthreads();
    }

    // Mask in index order: keys above the threshold are kept, and of the keys equal to it the
    // `remaining` ones with the lowest indices.
    const unsigned int threshold = prefix, ties_kept = remaining;
    if (tid == 0) taken = 0u;
    __syncthreads();
    bool* out = mask + row * lk;
    for (int base = 0; base < lk; base += kThreads) {
        const int j = base + tid;
        const unsigned int key = j < lk ? keys[j] : 0u;
        const bool tie = j < lk && key == threshold;
        const unsigned int ballot = __ballot_sync(0xffffffffu, tie);
        if (lane == 0) warp_counts[warp] = __popc(ballot);
        __syncthreads();
        unsigned int before = taken;
        for (int w = 0; w < warp; ++w) before += warp_counts[w];
        before += __popc(ballot & ((1u << lane) - 1u));
        if (j < lk) out[j] = key > threshold || (tie && before < ties_kept);
        __syncthreads();
        if (tid == 0) {
            unsigned int total = 0u;
            for (int w = 0; w < kWarps; ++w) total += warp_counts[w];
            taken += total;
        }
        __syncthreads();
    }
}

template __global__ void dsa_predict<signed char>(const signed char* __restrict__,
                                                  const signed char* __restrict__,
                                                  const float* __restrict__, bool* __restrict__,
                                                  int, int, int, int);
template __global__ void dsa_predict<short>(const short* __restrict__, const short* __restrict__,
                                            const float* __restrict__, bool* __restrict__, int,
                                            int, int, int);
