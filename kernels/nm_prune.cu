// N:M structured pruning mask (DFSS).
//
// For scores viewed as [rows, cols], every group of m consecutive entries along a row keeps
// its n largest entries.  A last, shorter group of r < m entries keeps min(n, r).  Ties go to
// the lower index, NaN ranks above every number (as torch.sort orders it), and -0 == +0.
//
// One thread per group.  The thread maps each score once to an integer key whose order is the
// ranking order above, keeps the group's keys in registers (MAXM >= m, a compile-time bound,
// so the loops unroll and the arrays stay in registers), and keeps entry i when fewer than
// `keep` entries beat it.  Each score is read once and each mask byte written once.
#include "tk_dtypes.cuh"

namespace {

// Order-preserving integer key of a float: larger float -> larger key, -0 and +0 share a key,
// and every NaN gets the largest key, so NaNs rank first and tie with each other.
__device__ __forceinline__ int rank_key(float x) {
    if (x != x) return 0x7fffffff;
    if (x == 0.0f) return 0;
    const int bits = __float_as_int(x);
    return bits >= 0 ? bits : bits ^ 0x7fffffff;
}

__device__ __forceinline__ long long rank_key(double x) {
    if (x != x) return 0x7fffffffffffffffLL;
    if (x == 0.0) return 0;
    const long long bits = __double_as_longlong(x);
    return bits >= 0 ? bits : bits ^ 0x7fffffffffffffffLL;
}

template <typename T> struct key_of { using type = int; };
template <> struct key_of<double> { using type = long long; };

}  // namespace

template <typename T, int MAXM>
__global__ void nm_prune(const T* __restrict__ scores, bool* __restrict__ mask,
                         long long rows, long long cols, int n, int m) {
    using Key = typename key_of<T>::type;
    const long long groups_per_row = (cols + m - 1) / m;
    const long long total_groups = rows * groups_per_row;
    const long long stride = static_cast<long long>(gridDim.x) * blockDim.x;
    for (long long g = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x;
         g < total_groups; g += stride) {
        const long long row = g / groups_per_row;
        const long long start = (g - row * groups_per_row) * m;
        const long long offset = row * cols + start;
        const int len = cols - start < m ? static_cast<int>(cols - start) : m;
        const int keep = n < len ? n : len;
        Key key[MAXM];
#pragma unroll
        for (int j = 0; j < MAXM; ++j) {
            key[j] = j < len ? rank_key(tk_to_float(scores[offset + j])) : Key(0);
        }
#pragma unroll
        for (int i = 0; i < MAXM; ++i) {
            if (i < len) {
                int above = 0;
#pragma unroll
                for (int j = 0; j < MAXM; ++j) {
                    // Entries before i win ties; entries after it must be strictly larger.
                    if (j < len) above += j < i ? key[j] >= key[i] : key[j] > key[i];
                }
                mask[offset + i] = above < keep;
            }
        }
    }
}

// Explicit instances: NVRTC finds them through name_expressions, and nvcc's compile check
// builds real code for each dtype and group-size bound instead of only parsing the template.
#define TK_NM_PRUNE_INSTANCE(T, MAXM)                                                      \
    template __global__ void nm_prune<T, MAXM>(const T* __restrict__, bool* __restrict__,  \
                                               long long, long long, int, int);
#define TK_NM_PRUNE_INSTANCES(T)                                                           \
    TK_NM_PRUNE_INSTANCE(T, 2)                                                             \
    TK_NM_PRUNE_INSTANCE(T, 4)                                                             \
    TK_NM_PRUNE_INSTANCE(T, 8)                                                             \
    TK_NM_PRUNE_INSTANCE(T, 16)                                                            \
    TK_NM_PRUNE_INSTANCE(T, 32)
TK_NM_PRUNE_INSTANCES(float)
TK_NM_PRUNE_INSTANCES(double)
TK_NM_PRUNE_INSTANCES(tk_half)
TK_NM_PRUNE_INSTANCES(tk_bfloat16)

// ---------------------------------------------------------------------------------------------
// Vectorised fast path (issue 14): whole groups only.  When every row is a whole number of
// groups (cols % m == 0), m is a power of two <= 32 and both buffers are 16-byte aligned, the
// tensor is a flat run of groups.  Each thread then owns CHUNK = max(16, M) consecutive
// elements (several groups): it reads them with 16-byte loads, ranks each group in registers
// and writes CHUNK mask bytes with 16-byte stores, so the kernel moves each byte once at full
// width.  A last partial chunk (numel % CHUNK, a whole number of groups) is ranked by one more
// thread with scalar accesses.  The ranking (ties to the lower index, NaN first, -0 == +0)
// is the one above, on 16-bit keys for the half types.
namespace {

// Order-preserving keys straight from the 16-bit patterns: negative values count down from 0,
// both zeros map to 0 and every NaN to one key above +inf.
__device__ __forceinline__ int half_key(unsigned int b, unsigned int inf_bits) {
    const unsigned int mag = b & 0x7fffu;
    if (mag > inf_bits) return 0x8000;
    return (b & 0x8000u) ? -static_cast<int>(mag) : static_cast<int>(mag);
}
__device__ __forceinline__ int elem_key(const tk_half* p, int j) {
    return half_key(reinterpret_cast<const unsigned short*>(p)[j], 0x7c00u);
}
__device__ __forceinline__ int elem_key(const tk_bfloat16* p, int j) {
    return half_key(reinterpret_cast<const unsigned short*>(p)[j], 0x7f80u);
}
__device__ __forceinline__ int elem_key(const float* p, int j) { return rank_key(p[j]); }
__device__ __forceinline__ long long elem_key(const double* p, int j) { return rank_key(p[j]); }

template <typename T> struct vec_key { using type = int; };
template <> struct vec_key<double> { using type = long long; };

// Keep flags of the G groups of M elements at p into keep[0 .. G*M).
template <typename T, int M, int G>
__device__ __forceinline__ void rank_groups(const T* p, int n, unsigned char* keep) {
    using Key = typename vec_key<T>::type;
#pragma unroll
    for (int g = 0; g < G; ++g) {
        Key key[M];
#pragma unroll
        for (int j = 0; j < M; ++j) key[j] = elem_key(p, g * M + j);
#pragma unroll
        for (int i = 0; i < M; ++i) {
            int above = 0;
#pragma unroll
            for (int j = 0; j < M; ++j) {
                if (j != i) above += j < i ? key[j] >= key[i] : key[j] > key[i];
            }
            keep[g * M + i] = above < n;
        }
    }
}

}  // namespace

template <typename T, int M>
__global__ void __launch_bounds__(256)
nm_prune_vec(const T* __restrict__ scores, bool* __restrict__ mask, long long numel, int n) {
    constexpr int CHUNK = M > 16 ? M : 16;
    constexpr int LOADS = CHUNK * static_cast<int>(sizeof(T)) / 16;
    const long long chunk = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x;
    const long long start = chunk * CHUNK;
    if (start >= numel) return;
    unsigned char keep[CHUNK];
    if (start + CHUNK <= numel) {
        uint4 raw[LOADS];
        const uint4* src = reinterpret_cast<const uint4*>(scores + start);
#pragma unroll
        for (int i = 0; i < LOADS; ++i) raw[i] = __ldcs(src + i);  // streamed: read once
        rank_groups<T, M, CHUNK / M>(reinterpret_cast<const T*>(raw), n, keep);
        uint4* dst = reinterpret_cast<uint4*>(mask + start);
#pragma unroll
        for (int s = 0; s < CHUNK / 16; ++s) {
            unsigned int w[4];
#pragma unroll
            for (int q = 0; q < 4; ++q) {
                const int b = 16 * s + 4 * q;
                w[q] = keep[b] | (keep[b + 1] << 8) | (keep[b + 2] << 16) |
                       (static_cast<unsigned int>(keep[b + 3]) << 24);
            }
            __stcs(dst + s, make_uint4(w[0], w[1], w[2], w[3]));
        }
    } else {
        // The last, partial chunk: whole groups, scalar accesses.
        const int groups = static_cast<int>((numel - start) / M);
        for (int g = 0; g < groups; ++g) {
            T vals[M];
#pragma unroll
            for (int j = 0; j < M; ++j) vals[j] = scores[start + g * M + j];
            unsigned char k1[M];
            rank_groups<T, M, 1>(vals, n, k1);
            for (int j = 0; j < M; ++j) mask[start + g * M + j] = k1[j];
        }
    }
}

#define TK_NM_VEC_INSTANCE(T, M)                                                           \
    template __global__ void nm_prune_vec<T, M>(const T* __restrict__, bool* __restrict__, \
                                                long long, int);
#define TK_NM_VEC_INSTANCES(T)                                                             \
    TK_NM_VEC_INSTANCE(T, 1)                                                               \
    TK_NM_VEC_INSTANCE(T, 2)                                                               \
    TK_NM_VEC_INSTANCE(T, 4)                                                               \
    TK_NM_VEC_INSTANCE(T, 8)                                                               \
    TK_NM_VEC_INSTANCE(T, 16)                                                              \
    TK_NM_VEC_INSTANCE(T, 32)
TK_NM_VEC_INSTANCES(float)
TK_NM_VEC_INSTANCES(double)
TK_NM_VEC_INSTANCES(tk_half)
TK_NM_VEC_INSTANCES(tk_bfloat16)
