"""Compiled CPU kernels for the gathered dot products of the factorisation models.

Two shapes of the same operation: :func:`gather_dot` (and its backward) for the mini-batches of
BPR, MF and PMF, and :func:`observed_dots` (an SDDMM) for the observed entries of a sparse matrix
in ALS and NMF. :func:`sparse_product_dense` is the scoring product of the neighbourhood models and
:func:`sparse_rows_times_dense` the one of a few users' rows times EASE's dense weights.

``out[b, k] = P[users[b]] . Q[items[b, k]]`` is the inner loop of BPR, MF and PMF. Expressed with
torch operations it walks memory several times (gather the rows into a ``[B, k, d]`` block, multiply,
reduce, and the same again in the backward pass, then scatter); with the tables small enough to stay
in the CPU cache, a loop that reads each table row once and accumulates in registers is several times
faster. These kernels are that loop, compiled by numba (single-threaded, ``nogil``); the float type
follows the tables (``float32`` or ``float64``). ``fastmath`` lets the compiler vectorise the
``d``-length reductions, so sums may differ from torch's in the last bits.

Compilation is lazy (first call) and cached on disk next to this module (``cache=True``).
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True, fastmath=True)
def gather_dot(
    P: np.ndarray, Q: np.ndarray, bias: np.ndarray, users: np.ndarray, items: np.ndarray, out: np.ndarray
) -> None:
    """``out[b, k] = P[users[b]] . Q[items[b, k]] + bias[items[b, k]]``.

    ``users`` is ``[B]``, ``items`` ``[B, K]``; an empty ``bias`` means none.
    """
    n_rows, n_cols = items.shape
    dim = P.shape[1]
    has_bias = bias.shape[0] > 0
    for b in range(n_rows):
        p = P[users[b]]
        for k in range(n_cols):
            j = items[b, k]
            q = Q[j]
            acc = bias[j] if has_bias else P.dtype.type(0.0)
            for f in range(dim):
                acc += p[f] * q[f]
            out[b, k] = acc


@njit(cache=True, nogil=True, fastmath=True)
def gather_dot_backward(
    P: np.ndarray,
    Q: np.ndarray,
    bias: np.ndarray,
    users: np.ndarray,
    items: np.ndarray,
    grad: np.ndarray,
    grad_p: np.ndarray,
    grad_q: np.ndarray,
    grad_bias: np.ndarray,
) -> None:
    """Accumulate the gradients of :func:`gather_dot` given ``grad = dL/dout``.

    ``grad_p[users[b]] += sum_k grad[b, k] * Q[items[b, k]]`` and
    ``grad_q[items[b, k]] += grad[b, k] * P[users[b]]`` and ``grad_bias[items[b, k]] += grad[b, k]``
    (when ``bias`` is not empty); repeated ids accumulate, as a scatter-add does.
    """
    n_rows, n_cols = items.shape
    dim = P.shape[1]
    has_bias = bias.shape[0] > 0
    for b in range(n_rows):
        u = users[b]
        p = P[u]
        gp = grad_p[u]
        for k in range(n_cols):
            g = grad[b, k]
            if g == 0.0:
                continue
            j = items[b, k]
            if has_bias:
                grad_bias[j] += g
            q = Q[j]
            gq = grad_q[j]
            for f in range(dim):
                gp[f] += g * q[f]
                gq[f] += g * p[f]


@njit(cache=True, nogil=True, fastmath=True)
def observed_dots(
    indptr: np.ndarray, cols: np.ndarray, x: np.ndarray, y: np.ndarray, out: np.ndarray
) -> None:
    """``out[e] = x[r] . y[cols[e]]`` for every stored entry ``e`` of row ``r`` of a CSR structure."""
    dim = x.shape[1]
    for r in range(len(indptr) - 1):
        xr = x[r]
        for e in range(indptr[r], indptr[r + 1]):
            yc = y[cols[e]]
            acc = x.dtype.type(0.0)
            for f in range(dim):
                acc += xr[f] * yc[f]
            out[e] = acc


@njit(cache=True, nogil=True, fastmath=True)
def sparse_product_dense(
    rows: np.ndarray,
    l_indptr: np.ndarray,
    l_indices: np.ndarray,
    l_data: np.ndarray,
    r_indptr: np.ndarray,
    r_indices: np.ndarray,
    r_data: np.ndarray,
    out: np.ndarray,
) -> None:
    """``out += L[rows] @ R`` for CSR matrices ``L`` and ``R`` and a dense, C-ordered ``out``.

    Row ``r`` of ``out`` accumulates ``L[rows[r], j] * R[j]`` over the stored ``j`` of that row of
    ``L``: one multiply-add per pair of stored entries, into a row that stays in the CPU cache, with
    none of the sparse-result bookkeeping of a sparse x sparse product (whose result is near dense
    here), and no copy of the selected rows of ``L``.
    """
    for r in range(len(rows)):
        row = out[r]
        u = rows[r]
        for e in range(l_indptr[u], l_indptr[u + 1]):
            j = l_indices[e]
            w = l_data[e]
            for f in range(r_indptr[j], r_indptr[j + 1]):
                row[r_indices[f]] += w * r_data[f]


@njit(cache=True, nogil=True)
def sparse_rows_times_dense(
    rows: np.ndarray,
    indptr: np.ndarray,
    indices: np.ndarray,
    data: np.ndarray,
    dense: np.ndarray,
    out: np.ndarray,
) -> None:
    """``out += L[rows] @ D`` for a CSR matrix ``L`` and a dense, C-ordered ``D``, row by stored row.

    Each output row adds ``L[u, j] * D[j]`` in the stored order of row ``u``, one rounding per
    multiply and per add (no ``fastmath``), which is the arithmetic of scipy's sparse x dense
    product: the results are identical, without building the selected rows as a matrix.
    """
    for r in range(len(rows)):
        row = out[r]
        u = rows[r]
        for e in range(indptr[u], indptr[u + 1]):
            w = data[e]
            src = dense[indices[e]]
            for c in range(len(row)):
                row[c] += w * src[c]


class ObservedDots:
    """``x[r] . y[c]`` for every stored entry ``(r, c)`` of a fixed CSR structure (an SDDMM).

    One pass over the entries with the compiled loop :func:`observed_dots`: each row
    of ``x`` is read once for all its entries, so the cost is one ``d``-length dot per entry.
    """

    def __init__(self, indptr: np.ndarray, cols: np.ndarray, n_cols: int) -> None:
        self.indptr = np.ascontiguousarray(indptr, dtype=np.int64)
        self.cols = np.ascontiguousarray(cols, dtype=np.int64)
        self.n_cols = n_cols
        if len(self.cols) and (self.cols.min() < 0 or self.cols.max() >= n_cols):
            raise IndexError(f"ObservedDots: column index out of range [0, {n_cols})")

    def __call__(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        dtype = np.result_type(x, y)
        x = np.ascontiguousarray(x, dtype=dtype)
        y = np.ascontiguousarray(y, dtype=dtype)
        if x.shape[0] != len(self.indptr) - 1 or y.shape[0] != self.n_cols or x.shape[1] != y.shape[1]:
            raise ValueError(
                f"ObservedDots: factor shapes {x.shape} and {y.shape} do not fit a "
                f"{len(self.indptr) - 1} x {self.n_cols} structure"
            )
        out = np.empty(len(self.cols), dtype=dtype)
        observed_dots(self.indptr, self.cols, x, y, out)
        return out
