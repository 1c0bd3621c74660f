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
