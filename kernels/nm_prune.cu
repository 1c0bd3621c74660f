// N:M structured pruning mask (DFSS).
//
// For scores viewed as [rows, cols], every group of m consecutive entries along a row keeps
// its n largest entries.  A last, shorter group of r < m entries keeps min(n, r).  Ties go to
// the lower index, NaN ranks above every number (as torch.sort orders it), and -0 == +0.
//
// One thread per element: it counts the group members that beat it and keeps itself when
// fewer than `keep` do.  Group members are re-read from L1, so DRAM sees each score once.
#include "tk_dtypes.cuh"

namespace {

__device__ __forceinline__ bool beats(float a, float b) {
    // a ranks strictly above b: NaN above numbers, otherwise the usual order.
    const bool a_nan = a != a, b_nan = b != b;
    return (a_nan && !b_nan) || a > b;
}

__device__ __forceinline__ bool ties(float a, float b) {
    return (a != a && b != b) || a == b;
}

}  // namespace

template <typename T>
__global__ void nm_prune(const T* __restrict__ scores, bool* __restrict__ mask,
                         long long total, long long cols, int n, int m) {
    const long long stride = static_cast<long long>(gridDim.x) * blockDim.x;
    for (long long idx = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x;
         idx < total; idx += stride) {
        const long long col = idx % cols;
        const long long pos = col % m;               // position inside the group
        const long long group_start = col - pos;
        const long long remaining = cols - group_start;
        const int len = remaining < m ? static_cast<int>(remaining) : m;
        const int keep = n < len ? n : len;
        const T* group = scores + (idx - pos);
        const float mine = tk_to_float(scores[idx]);
        int above = 0;
        for (int j = 0; j < len && above < keep; ++j) {
            const float other = tk_to_float(group[j]);
            above += beats(other, mine) || (j < pos && ties(other, mine));
        }
        mask[idx] = above < keep;
    }
}

// Explicit instances: NVRTC finds them through name_expressions, and nvcc's compile check
// builds real code for each dtype instead of only parsing the template.
#define TK_NM_PRUNE_INSTANCE(T)                                                             \
    template __global__ void nm_prune<T>(const T* __restrict__, bool* __restrict__,         \
                                         long long, long long, int, int);
TK_NM_PRUNE_INSTANCE(float)
TK_NM_PRUNE_INSTANCE(double)
TK_NM_PRUNE_INSTANCE(tk_half)
TK_NM_PRUNE_INSTANCE(tk_bfloat16)
