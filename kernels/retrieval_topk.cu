// Row-wise k nearest references (Euclidean) without the full distance matrix.
//
// queries [n, d] and refs [m, d], row-major.  out_dist[q, j] and out_idx[q, j] hold the j-th
// nearest reference of query q, ascending; ties go to the lower reference index (the order of
// a stable sort); with exclude_self, reference q is left out of query q's list (leave-one-out
// retrieval of a set against itself).
//
// One warp per query, WARPS queries per block.  The block walks the references in tiles of
// TILE = 32 * REFS_PER_LANE, and each tile's dimensions in chunks of DC: the chunk of the
// tile and of the block's queries is staged in shared memory (rows padded to DC + 1, so lane
// l reading row l + 32 r hits bank (l + dd) mod 32: no conflicts) and every staged reference
// serves all WARPS queries.  Each lane accumulates squared distances to REFS_PER_LANE
// references and keeps its own sorted KMAX best in registers; at the end the warp merges the
// 32 lists with k rounds of a shuffle arg-min.  Memory: O(n k) outputs, nothing of size n m.
#include "tk_dtypes.cuh"

namespace {

constexpr int WARPS = 8;
constexpr int REFS_PER_LANE = 4;
constexpr int TILE = 32 * REFS_PER_LANE;
constexpr int DC = 32;
constexpr unsigned FULL_MASK = 0xffffffffu;

template <typename T> __device__ __forceinline__ T positive_inf();
template <> __device__ __forceinline__ float positive_inf<float>() {
    return __int_as_float(0x7f800000);
}
template <> __device__ __forceinline__ double positive_inf<double>() {
    return __longlong_as_double(0x7ff0000000000000LL);
}

// (distance, index) order: smaller distance first, then the lower index.
template <typename T>
__device__ __forceinline__ bool before(T da, long long ia, T db, long long ib) {
    return da < db || (da == db && ia < ib);
}

}  // namespace

template <typename T, int KMAX>
__global__ void __launch_bounds__(WARPS * 32)
retrieval_topk(const T* __restrict__ queries, const T* __restrict__ refs,
               T* __restrict__ out_dist, long long* __restrict__ out_idx,
               int n, int m, int d, int k, int exclude_self) {
    __shared__ T rs[TILE][DC + 1];
    __shared__ T qs[WARPS][DC + 1];
    const int warp = threadIdx.x / 32;
    const int lane = threadIdx.x % 32;
    const long long first_query = static_cast<long long>(blockIdx.x) * WARPS;
    const long long q = first_query + warp;
    const long long no_index = 0x7fffffffffffffffLL;

    T best_d[KMAX];
    long long best_i[KMAX];
#pragma unroll
    for (int j = 0; j < KMAX; ++j) {
        best_d[j] = positive_inf<T>();
        best_i[j] = no_index;
    }

    for (long long r0 = 0; r0 < m; r0 += TILE) {
        T acc[REFS_PER_LANE];
#pragma unroll
        for (int r = 0; r < REFS_PER_LANE; ++r) acc[r] = T(0);
        for (int d0 = 0; d0 < d; d0 += DC) {
            for (int e = threadIdx.x; e < TILE * DC; e += blockDim.x) {
                const int rr = e / DC, dd = e % DC;
                const long long gr = r0 + rr;
                const int gd = d0 + dd;
                rs[rr][dd] = (gr < m && gd < d) ? refs[gr * d + gd] : T(0);
            }
            for (int e = threadIdx.x; e < WARPS * DC; e += blockDim.x) {
                const int qq = e / DC, dd = e % DC;
                const long long gq = first_query + qq;
                const int gd = d0 + dd;
                qs[qq][dd] = (gq < n && gd < d) ? queries[gq * d + gd] : T(0);
            }
            __syncthreads();
#pragma unroll 8
            for (int dd = 0; dd < DC; ++dd) {
                const T qv = qs[warp][dd];
#pragma unroll
                for (int r = 0; r < REFS_PER_LANE; ++r) {
                    const T diff = qv - rs[lane + 32 * r][dd];
                    acc[r] += diff * diff;
                }
            }
            __syncthreads();
        }
#pragma unroll
        for (int r = 0; r < REFS_PER_LANE; ++r) {
            long long ci = r0 + lane + 32 * r;
            T cd = acc[r];
            if (ci >= m || (exclude_self && ci == q)) continue;
            if (!before(cd, ci, best_d[KMAX - 1], best_i[KMAX - 1])) continue;
            // Insertion into the sorted list: the candidate bubbles to its place.
#pragma unroll
            for (int j = 0; j < KMAX; ++j) {
                if (before(cd, ci, best_d[j], best_i[j])) {
                    const T td = best_d[j];
                    const long long ti = best_i[j];
                    best_d[j] = cd;
                    best_i[j] = ci;
                    cd = td;
                    ci = ti;
                }
            }
        }
    }

    // Merge the 32 sorted lists: each round the warp's arg-min head is emitted and its lane
    // pops it.  Indices are unique, so exactly one lane owns the winner.
    for (int out = 0; out < k; ++out) {
        T bd = best_d[0];
        long long bi = best_i[0];
#pragma unroll
        for (int offset = 16; offset > 0; offset >>= 1) {
            const T od = __shfl_xor_sync(FULL_MASK, bd, offset);
            const long long oi = __shfl_xor_sync(FULL_MASK, bi, offset);
            if (before(od, oi, bd, bi)) {
                bd = od;
                bi = oi;
            }
        }
        if (best_i[0] == bi) {
#pragma unroll
            for (int j = 0; j < KMAX - 1; ++j) {
                best_d[j] = best_d[j + 1];
                best_i[j] = best_i[j + 1];
            }
            best_d[KMAX - 1] = positive_inf<T>();
            best_i[KMAX - 1] = no_index;
        }
        if (lane == 0 && q < n) {
            out_dist[q * k + out] = sqrt(bd);
            out_idx[q * k + out] = bi;
        }
    }
}

// Explicit instances: NVRTC finds them through name_expressions, and nvcc's compile check
// builds real code for each dtype and list bound instead of only parsing the template.
#define TK_TOPK_INSTANCE(T, KMAX)                                                          \
    template __global__ void retrieval_topk<T, KMAX>(const T* __restrict__,                \
                                                     const T* __restrict__, T* __restrict__, \
                                                     long long* __restrict__, int, int, int, \
                                                     int, int);
TK_TOPK_INSTANCE(float, 8)
TK_TOPK_INSTANCE(float, 16)
TK_TOPK_INSTANCE(float, 32)
TK_TOPK_INSTANCE(double, 8)
TK_TOPK_INSTANCE(double, 16)
TK_TOPK_INSTANCE(double, 32)
