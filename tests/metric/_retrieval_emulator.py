"""A line-by-line NumPy emulation of kernels/retrieval_topk.cu, launched through raw pointers.

It stands in for ``fast_launch`` so that the CUDA path's host code (chunk plan, strided Gram
views, column offsets, running lists, argument order, grid sizes) runs on CPU tensors; the
result is compared with the reference path.  Slow (Python loops over lanes): small inputs only.
"""

from __future__ import annotations

import ctypes
import math

import numpy as np

NO_INDEX = 2**31 - 1
WARPS, U, SPLIT, ROWS_IN_FLIGHT = 8, 4, 4, 8  # as in the kernel
_ROW_SIG = "pqiipppppppiiiiii"
_COL_SIG = "pqiiipppi"


def _array(ptr: int, count: int, dtype) -> np.ndarray:
    """``count`` elements of ``dtype`` at host address ``ptr``, without a copy."""
    if ptr == 0:
        raise AssertionError("null pointer passed where the kernel reads or writes")
    nbytes = count * np.dtype(dtype).itemsize
    return np.frombuffer((ctypes.c_char * nbytes).from_address(ptr), dtype=dtype)


def _insert(key, idx, kv, iv, length):
    for j in range(length - 1, 0, -1):
        if kv < key[j - 1]:
            key[j], idx[j] = key[j - 1], idx[j - 1]
        elif kv < key[j]:
            key[j], idx[j] = kv, iv
    if kv < key[0]:
        key[0], idx[0] = kv, iv


def _before(va, ia, vb, ib):
    return va < vb or (va == vb and ia < ib)


class Emulator:
    """Call it like ``fast_launch``; records the launches it ran."""

    def __init__(self, n: int, m: int, d: int, k: int, dtype) -> None:
        self.n, self.m, self.d, self.k, self.t = n, m, d, k, np.dtype(dtype).type
        self.launches: list[str] = []

    def __call__(self, module, function, grid, block, sig, args, device, exprs=(), **_):
        assert module == "retrieval_topk" and function in exprs, function
        name, params = function.split("<")
        length = int(params.rstrip(">").split(",")[1])
        self.launches.append(name)
        if name == "retrieval_select":
            assert sig == _ROW_SIG and block == (32 * WARPS,)
            self._rows(grid[0], length, *args)
        else:
            assert name == "retrieval_select_columns"
            assert sig == _COL_SIG and block == (32 * SPLIT,)
            self._columns(grid[0], length, *args)

    def _rows(
        self,
        blocks,
        length,
        gram,
        ld,
        col0,
        ncols,
        norms,
        queries,
        refs,
        skey,
        sidx,
        out_d,
        out_i,
        rows,
        first_row,
        m,
        d,
        k,
        exclude_self,
    ):
        t, n = self.t, self.n
        assert blocks * WARPS >= rows > (blocks - 1) * WARPS, "grid does not fit the rows"
        assert (m, d, k) == (self.m, self.d, self.k)
        w = 4 if t is np.float32 else 2
        assert ld % 4 == 0 and col0 % w == 0, "misaligned vector loads"
        g_all = _array(gram, rows * ld, t).reshape(rows, ld)
        nrm = _array(norms, m, t)
        q_all = _array(queries, n * d, t).reshape(n, d)
        r_all = _array(refs, m * d, t).reshape(m, d)
        dist = _array(out_d, n * k, t).reshape(n, k)
        index = _array(out_i, n * k, np.int64).reshape(n, k)
        st = None
        if skey:
            st = (
                _array(skey, n * length, t).reshape(n, length),
                _array(sidx, n * length, np.int32).reshape(n, length),
            )
        inf = t(np.inf)
        for row in range(rows):
            query = first_row + row
            self_col = query if exclude_self else -1
            g = g_all[row]
            key = [[inf] * length for _ in range(32)]
            idx = [[NO_INDEX] * length for _ in range(32)]
            bound = inf
            if st is not None:
                for lane in range(length):
                    _insert(
                        key[lane], idx[lane], st[0][query, lane], int(st[1][query, lane]), length
                    )
                bound = st[0][query, length - 1]
            nvec = ncols // w
            for base in range(0, nvec, 32 * U):
                for lane in range(32):
                    for u in range(U):
                        v = base + u * 32 + lane
                        if v >= nvec:
                            continue
                        for e in range(w):
                            c = v * w + e
                            kv = t(nrm[col0 + c] - t(2) * g[c])
                            if kv <= bound and col0 + c != self_col:
                                _insert(key[lane], idx[lane], kv, col0 + c, length)
                bound = min(key[lane][length - 1] for lane in range(32))
            for lane in range(32):
                for c in range(nvec * w + lane, ncols, 32):
                    kv = t(nrm[col0 + c] - t(2) * g[c])
                    if col0 + c != self_col:
                        _insert(key[lane], idx[lane], kv, col0 + c, length)
            cand = [NO_INDEX] * 32
            for rnd in range(length):
                bk, bi = key[0][0], idx[0][0]
                for lane in range(1, 32):
                    if _before(key[lane][0], idx[lane][0], bk, bi):
                        bk, bi = key[lane][0], idx[lane][0]
                cand[rnd] = bi
                for lane in range(32):
                    if idx[lane][0] == bi and key[lane][0] == bk:
                        key[lane] = [*key[lane][1:], inf]
                        idx[lane] = [*idx[lane][1:], NO_INDEX]
            sq = [inf] * 32
            for j in range(length):
                if cand[j] < m:
                    diff = q_all[query] - r_all[cand[j]]
                    sq[j] = t(np.sum(diff * diff, dtype=t))
            for lane in range(length):
                rank = sum(_before(sq[o], cand[o], sq[lane], cand[lane]) for o in range(length))
                if rank < k:
                    dist[query, rank] = math.sqrt(sq[lane])
                    index[query, rank] = cand[lane]

    def _columns(self, blocks, length, gram, ld, col0, first_col, ncols, norms, skey, sidx, rows):
        t, n = self.t, self.n
        assert blocks * 32 >= ncols - first_col > (blocks - 1) * 32, "grid does not fit"
        g = _array(gram, rows * ld, t).reshape(rows, ld)
        nrm = _array(norms, self.m, t)
        sk = _array(skey, n * length, t).reshape(n, length)
        si = _array(sidx, n * length, np.int32).reshape(n, length)
        inf = t(np.inf)
        slab = -(-rows // SPLIT)
        for c in range(first_col, ncols):
            query = col0 + c
            bound = sk[query, length - 1]
            lists = []
            for warp in range(SPLIT):
                key, idx = [inf] * length, [NO_INDEX] * length
                if warp == 0:
                    key, idx = list(sk[query]), [int(i) for i in si[query]]
                for j in range(warp * slab, min(rows, warp * slab + slab)):
                    kv = t(nrm[col0 + j] - t(2) * g[j, c])
                    if kv < bound and kv < key[length - 1]:
                        _insert(key, idx, kv, col0 + j, length)
                lists.append((key, idx))
            key, idx = lists[0]
            for w_key, w_idx in lists[1:]:
                for j in range(length):
                    if not w_key[j] < key[length - 1]:
                        break
                    _insert(key, idx, w_key[j], w_idx[j], length)
            sk[query], si[query] = key, idx
