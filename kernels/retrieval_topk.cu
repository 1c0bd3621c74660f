// Row-wise k nearest references (Euclidean): the selection half of a Gram-chunk top-k.
//
// The host (toolkit/metric/_retrieval.py) walks the queries in chunks of `rows` rows; for
// each chunk a cuBLAS GEMM writes gram[i, c] = q_i . r_(col0 + c) for the chunk's columns
// c < ncols (row stride ld, a multiple of 4 elements, and col0 a multiple of 4, so every row
// and the norms are 16-byte aligned) and retrieval_select reads the chunk once:
//
// 1. Selection by the ranking key  key_ij = ||r_j||^2 - 2 q_i . r_j  (= ||q_i - r_j||^2 minus a
//    per-row constant).  One warp per row; lane l reads the vectors l, l + 32, ... of the row
//    (U vector loads in flight, streaming: each element is read once) and keeps the L best keys
//    of its slice, sorted, in registers.  Every U vectors the warp shares its bound, the least
//    of the lanes' L-th keys: at least L keys of the row are <= bound, so a key above it cannot
//    be among the row's L best and is dropped without touching the list (after the first few
//    hundred columns nearly every key is).  Then a shuffle arg-min merges the 32 lists into the
//    row's L best candidates (ties to the lower index), one per lane.
// 2. Exact re-ranking: each candidate's distance is recomputed from differences,
//    sum_t (q_it - r_jt)^2 (the reference path's form: no cancellation for near neighbours),
//    and the candidates are ranked by (distance, index); the first k are written.  With L >= k
//    candidates (the host picks L >= 2k where it can), the order of the k returned follows the
//    exact distances; only near-ties between the L-th and (L+1)-th key can be decided by the
//    rounding of the GEMM.
//
// Leave-one-out retrieval of a set against itself (exclude_self: column i is skipped for
// query i) uses the symmetry of the Gram matrix: the chunk of rows [s, e) is multiplied only
// with the columns [s, n) (col0 = s), about half the GEMM work in all.  Query i of a later
// chunk meets its neighbours j < s in the chunks before: there retrieval_select_columns
// scans column i of the chunk (the keys ||x_j||^2 - 2 x_j . x_i of the chunk's rows j) and
// merges its best L into a running list state[i] (keys and indices, L per query); when the
// chunk of i comes, retrieval_select starts from state[i].  Every state index is below every
// column that is merged in later, so "ties go to the lower index" needs no index compares.
//
// Memory: the chunk, the state (n L keys and indices) and O(n k) outputs, never n x m.
namespace {

constexpr int WARPS = 8;  // rows per block of retrieval_select
constexpr int SPLIT = 4;  // warps per block of retrieval_select_columns, each a slab of rows
constexpr int U = 4;      // vector loads in flight per lane
constexpr unsigned FULL_MASK = 0xffffffffu;
constexpr int NO_INDEX = 0x7fffffff;  // > every valid column (the host checks m < 2^31 - 1)

template <typename T> struct Vec;
template <> struct Vec<float> {
    using type = float4;
    static constexpr int width = 4;
    static __device__ __forceinline__ float get(const float4& v, int w) {
        return w == 0 ? v.x : w == 1 ? v.y : w == 2 ? v.z : v.w;
    }
};
template <> struct Vec<double> {
    using type = double2;
    static constexpr int width = 2;
    static __device__ __forceinline__ double get(const double2& v, int w) {
        return w == 0 ? v.x : v.y;
    }
};

template <typename T> __device__ __forceinline__ T positive_inf();
template <> __device__ __forceinline__ float positive_inf<float>() {
    return __int_as_float(0x7f800000);
}
template <> __device__ __forceinline__ double positive_inf<double>() {
    return __longlong_as_double(0x7ff0000000000000LL);
}

// (value, index) order: smaller value first, then the lower index.
template <typename T>
__device__ __forceinline__ bool before(T va, int ia, T vb, int ib) {
    return va < vb || (va == vb && ia < ib);
}

// Insert (kv, iv) into a sorted list.  A lane scans its columns in increasing order, so iv
// exceeds every index already listed: on equal keys it goes after them (strict <).
template <typename T, int L>
__device__ __forceinline__ void insert(T (&key)[L], int (&idx)[L], T kv, int iv) {
#pragma unroll
    for (int j = L - 1; j > 0; --j) {
        if (kv < key[j - 1]) {
            key[j] = key[j - 1];
            idx[j] = idx[j - 1];
        } else if (kv < key[j]) {
            key[j] = kv;
            idx[j] = iv;
        }
    }
    if (kv < key[0]) {
        key[0] = kv;
        idx[0] = iv;
    }
}

template <typename T> __device__ __forceinline__ T warp_min(T v) {
#pragma unroll
    for (int offset = 16; offset > 0; offset >>= 1) {
        const T o = __shfl_xor_sync(FULL_MASK, v, offset);
        v = o < v ? o : v;
    }
    return v;
}

__device__ __forceinline__ float mul_add(float a, float b, float c) { return fmaf(a, b, c); }
__device__ __forceinline__ double mul_add(double a, double b, double c) { return fma(a, b, c); }

template <typename T> __device__ __forceinline__ T warp_sum(T v) {
#pragma unroll
    for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(FULL_MASK, v, offset);
    return v;
}

}  // namespace

template <typename T, int L>
__global__ void __launch_bounds__(WARPS * 32)
retrieval_select(const T* __restrict__ gram, long long ld, int col0, int ncols,
                 const T* __restrict__ ref_sq_norms, const T* __restrict__ queries,
                 const T* __restrict__ refs, const T* __restrict__ state_key,
                 const int* __restrict__ state_idx, T* __restrict__ out_dist,
                 long long* __restrict__ out_idx, int rows, int first_row, int m, int d, int k,
                 int exclude_self) {
    using V = typename Vec<T>::type;
    constexpr int W = Vec<T>::width;
    const int lane = threadIdx.x % 32;
    const long long row = static_cast<long long>(blockIdx.x) * WARPS + threadIdx.x / 32;
    if (row >= rows) return;  // the whole warp: rows are warp-uniform
    const long long query = first_row + row;
    const int self = exclude_self ? static_cast<int>(query) : -1;
    const T* g = gram + row * ld;
    const V* gv = reinterpret_cast<const V*>(g);
    const T* norms = ref_sq_norms + col0;
    const V* nv = reinterpret_cast<const V*>(norms);

    T key[L];
    int idx[L];
#pragma unroll
    for (int j = 0; j < L; ++j) {
        key[j] = positive_inf<T>();
        idx[j] = NO_INDEX;
    }
    T bound = positive_inf<T>();
    if (state_key != nullptr) {
        // The neighbours met in earlier chunks, one per lane into an empty list; their L-th
        // key bounds the row from the start.
        T sk = positive_inf<T>();
        int si = NO_INDEX;
        if (lane < L) {
            sk = state_key[query * L + lane];
            si = state_idx[query * L + lane];
            insert(key, idx, sk, si);
        }
        bound = __shfl_sync(FULL_MASK, sk, L - 1);
    }

    // Phase 1: the vector part of the row, U strided vectors per lane per step.
    const int nvec = ncols / W;
    for (int base = 0; base < nvec; base += 32 * U) {
        V gk[U], nk[U];
#pragma unroll
        for (int u = 0; u < U; ++u) {
            const int v = base + u * 32 + lane;
            if (v < nvec) {
                gk[u] = __ldcs(gv + v);
                nk[u] = __ldg(nv + v);
            }
        }
#pragma unroll
        for (int u = 0; u < U; ++u) {
            if (base + u * 32 + lane >= nvec) continue;
#pragma unroll
            for (int w = 0; w < W; ++w) {
                const T kv = Vec<T>::get(nk[u], w) - T(2) * Vec<T>::get(gk[u], w);
                const int col = col0 + (base + u * 32 + lane) * W + w;
                if (kv <= bound && col != self) insert(key, idx, kv, col);
            }
        }
        bound = warp_min(key[L - 1]);
    }
    // The columns past the last whole vector (m not a multiple of W).
    for (int c = nvec * W + lane; c < ncols; c += 32) {
        const T kv = norms[c] - T(2) * g[c];
        if (col0 + c != self) insert(key, idx, kv, col0 + c);
    }

    // Merge the 32 sorted lists: each round the warp's arg-min head is the next candidate
    // (lane `round` keeps it) and its owner pops it.  Valid indices are unique, so one lane
    // owns each valid winner; (inf, NO_INDEX) fillers, left where fewer than L columns exist,
    // rank last below.
    int cand = NO_INDEX;
#pragma unroll 1
    for (int round = 0; round < L; ++round) {
        T bk = key[0];
        int bi = idx[0];
#pragma unroll
        for (int offset = 16; offset > 0; offset >>= 1) {
            const T ok = __shfl_xor_sync(FULL_MASK, bk, offset);
            const int oi = __shfl_xor_sync(FULL_MASK, bi, offset);
            if (before(ok, oi, bk, bi)) {
                bk = ok;
                bi = oi;
            }
        }
        if (lane == round) cand = bi;
        if (idx[0] == bi && key[0] == bk) {
#pragma unroll
            for (int j = 0; j < L - 1; ++j) {
                key[j] = key[j + 1];
                idx[j] = idx[j + 1];
            }
            key[L - 1] = positive_inf<T>();
            idx[L - 1] = NO_INDEX;
        }
    }

    // Phase 2: exact distances of the candidates, the warp's lanes splitting the dimensions.
    const T* q = queries + query * d;
    T sq = positive_inf<T>();
#pragma unroll 1
    for (int j = 0; j < L; ++j) {
        const int c = __shfl_sync(FULL_MASK, cand, j);
        if (c >= m) continue;  // warp-uniform: a filler
        const T* r = refs + static_cast<long long>(c) * d;
        T s = T(0);
        for (int t = lane; t < d; t += 32) {
            const T diff = q[t] - r[t];
            s = mul_add(diff, diff, s);
        }
        s = warp_sum(s);
        if (lane == j) sq = s;
    }
    // Rank by (distance, index); a NaN (only from non-finite inputs) ranks as +inf so that
    // the ranks stay a permutation.
    const T rank_key = (sq == sq) ? sq : positive_inf<T>();
    int rank = 0;
#pragma unroll
    for (int l = 0; l < L; ++l) {
        const T ok = __shfl_sync(FULL_MASK, rank_key, l);
        const int oi = __shfl_sync(FULL_MASK, cand, l);
        rank += before(ok, oi, rank_key, cand) ? 1 : 0;
    }
    if (lane < L && rank < k) {
        out_dist[query * k + rank] = sqrt(sq);
        out_idx[query * k + rank] = cand;
    }
}

// Leave-one-out, symmetric chunks: for each column c in [first_col, ncols) of the chunk (the
// query col0 + c, past the chunk's own rows), the L best keys ||x_j||^2 - 2 gram[j, c] over the
// chunk's rows j (candidates col0 + j), merged into state[col0 + c].  A block holds 32 columns
// (one per lane, coalesced rows) and SPLIT warps, each scanning a slab of the rows; warp 0
// starts from the state and merges the other warps' lists in slab order at the end.
template <typename T, int L>
__global__ void __launch_bounds__(SPLIT * 32)
retrieval_select_columns(const T* __restrict__ gram, long long ld, int col0, int first_col,
                         int ncols, const T* __restrict__ sq_norms, T* __restrict__ state_key,
                         int* __restrict__ state_idx, int rows) {
    __shared__ T shared_key[SPLIT - 1][L][32];
    __shared__ int shared_idx[SPLIT - 1][L][32];
    const int lane = threadIdx.x % 32;
    const int warp = threadIdx.x / 32;
    const int c = first_col + blockIdx.x * 32 + lane;
    const bool valid = c < ncols;
    const long long query = static_cast<long long>(col0) + c;

    T key[L];
    int idx[L];
    T bound = positive_inf<T>();  // the state's L-th key: only keys below it can enter
#pragma unroll
    for (int j = 0; j < L; ++j) {
        key[j] = positive_inf<T>();
        idx[j] = NO_INDEX;
    }
    if (valid) {
        bound = state_key[query * L + L - 1];
        if (warp == 0) {
#pragma unroll
            for (int j = 0; j < L; ++j) {
                key[j] = state_key[query * L + j];
                idx[j] = state_idx[query * L + j];
            }
        }
        const int slab = (rows + SPLIT - 1) / SPLIT;
        const int lo = warp * slab;
        const int hi = rows < lo + slab ? rows : lo + slab;
        constexpr int R = 8;  // rows in flight
        for (int j0 = lo; j0 < hi; j0 += R) {
            T gv[R];
#pragma unroll
            for (int u = 0; u < R; ++u)
                gv[u] = j0 + u < hi ? __ldcs(gram + static_cast<long long>(j0 + u) * ld + c) : T(0);
#pragma unroll
            for (int u = 0; u < R; ++u) {
                if (j0 + u >= hi) break;
                const T kv = __ldg(sq_norms + col0 + j0 + u) - T(2) * gv[u];
                if (kv < bound && kv < key[L - 1]) insert(key, idx, kv, col0 + j0 + u);
            }
        }
        if (warp > 0) {
#pragma unroll
            for (int j = 0; j < L; ++j) {
                shared_key[warp - 1][j][lane] = key[j];
                shared_idx[warp - 1][j][lane] = idx[j];
            }
        }
    }
    __syncthreads();
    if (!valid || warp > 0) return;
    // Later slabs hold later rows: inserted in slab order, each entry's index exceeds every
    // index listed, as insert requires.  Each slab's list is sorted: stop at the first miss.
    for (int w = 0; w < SPLIT - 1; ++w) {
        for (int j = 0; j < L; ++j) {
            const T kv = shared_key[w][j][lane];
            if (!(kv < key[L - 1])) break;
            insert(key, idx, kv, shared_idx[w][j][lane]);
        }
    }
#pragma unroll
    for (int j = 0; j < L; ++j) {
        state_key[query * L + j] = key[j];
        state_idx[query * L + j] = idx[j];
    }
}

// Explicit instances: NVRTC finds them through name_expressions, and nvcc's compile check
// builds real code for each dtype and list length instead of only parsing the template.
#define TK_SELECT_INSTANCE(T, L)                                                                 \
    template __global__ void retrieval_select<T, L>(                                             \
        const T* __restrict__, long long, int, int, const T* __restrict__, const T* __restrict__, \
        const T* __restrict__, const T* __restrict__, const int* __restrict__, T* __restrict__,   \
        long long* __restrict__, int, int, int, int, int, int);                                  \
    template __global__ void retrieval_select_columns<T, L>(                                     \
        const T* __restrict__, long long, int, int, int, const T* __restrict__, T* __restrict__,  \
        int* __restrict__, int);
TK_SELECT_INSTANCE(float, 8)
TK_SELECT_INSTANCE(float, 16)
TK_SELECT_INSTANCE(float, 32)
TK_SELECT_INSTANCE(double, 8)
TK_SELECT_INSTANCE(double, 16)
TK_SELECT_INSTANCE(double, 32)
