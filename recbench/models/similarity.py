"""Sparse similarity between the rows of an interaction matrix, shared by the closed-form models.

:func:`gram_blocks` computes ``left @ right.T`` in row blocks (sparse products, with the densest
columns through BLAS), so nothing larger than one ``block x n`` dense slab is materialised;
:func:`topk_similarity` turns those blocks into a row-wise top-``k`` similarity matrix (cosine,
jaccard, or cosine of centred values, see :mod:`recbench.models.neighborhood`);
:func:`sparse_times_sparse` is the compiled scoring product of sparse histories and similarities.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import scipy.sparse as sp
import torch

from recbench.models import kernels

BLOCK_ENTRIES = 1 << 22  # dense entries per similarity block (16 MiB of float32)
DENSE_LIMIT = 1 << 25  # largest dense operand (entries) built to speed up the Gram product
# Single-core cost model (seconds) used to split the Gram product between scipy.sparse and BLAS:
# one multiply-add of a sparse-sparse product, and one GEMM flop as measured for the near-dense
# Gram of the similarity (ml-100k and a 6000 x 4000 x 1M synthetic set).
_SPARSE_OP_S, _GRAM_FLOP_S = 5e-9, 4e-12


def sparse_times_sparse(
    left: sp.csr_matrix, right: sp.csr_matrix, rows: np.ndarray | None = None
) -> np.ndarray:
    """``left[rows] @ right`` (every row of ``left`` when ``rows`` is None) as a dense ``float32`` array.

    The compiled loop of :mod:`recbench.models.kernels` reads the selected rows of ``left`` in place,
    so scoring a few users (a served request) costs no row-selection copy.
    """
    left, right = left.tocsr(), right.tocsr()
    if left.shape[1] != right.shape[0]:
        raise ValueError(f"cannot multiply {left.shape} by {right.shape}")
    if rows is not None and left.data.dtype != np.float32:  # select first: never convert all of left
        left, rows = left[np.asarray(rows, dtype=np.int64)], None
    rows = np.arange(left.shape[0]) if rows is None else np.asarray(rows, dtype=np.int64)
    out = np.zeros((len(rows), right.shape[1]), dtype=np.float32)
    kernels.sparse_product_dense(
        rows,
        left.indptr,
        left.indices,
        left.data.astype(np.float32, copy=False),
        right.indptr,
        right.indices,
        right.data.astype(np.float32, copy=False),
        out,
    )
    return out


def sparse_rows_times_dense(left: sp.csr_matrix, rows: np.ndarray, dense: np.ndarray) -> np.ndarray:
    """``left[rows] @ dense`` as ``float32`` for a ``float32`` CSR ``left`` and a C-ordered ``float32``
    ``dense``: the same numbers as scipy's product, without building ``left[rows]``."""
    rows = np.asarray(rows, dtype=np.int64)
    out = np.zeros((len(rows), dense.shape[1]), dtype=np.float32)
    kernels.sparse_rows_times_dense(rows, left.indptr, left.indices, left.data, dense, out)
    return out


def gram_blocks(
    left: sp.csr_matrix, right: sp.csr_matrix, block: int, *, symmetric: bool = False
) -> Iterator[tuple[int, np.ndarray]]:
    """``(lo, dense float32 rows lo:lo+block of left @ right.T)`` for two CSR matrices with equal columns.

    The inner (column) dimension is split: a column with ``c`` entries costs ``c**2`` sparse
    multiply-adds but ``2 n**2`` BLAS flops whatever ``c``, so the densest columns go through a
    dense GEMM (within the ``DENSE_LIMIT`` memory budget) and the rest through sparse products.
    ``symmetric=True`` promises that the product is symmetric (``left`` is ``right`` with scaled
    columns); when the ``n x n`` result fits the budget only its upper triangle is computed.
    """
    n = left.shape[0]
    counts = np.bincount(right.indices, minlength=right.shape[1])
    heavy = counts.astype(np.float64) ** 2 * _SPARSE_OP_S > 2.0 * n * right.shape[0] * _GRAM_FLOP_S
    budget = DENSE_LIMIT // max(n, 1)
    if heavy.sum() > budget:  # keep only the densest columns that fit the memory budget
        heavy[:] = False
        heavy[np.argsort(-counts, kind="stable")[:budget]] = True
    left_h, right_h = left[:, heavy].toarray(), right[:, heavy].toarray().T
    left_l = left[:, ~heavy].tocsr()
    right_lt = right[:, ~heavy].T.tocsr()  # transposed once, not per block
    full = np.empty((n, n), dtype=np.float32) if symmetric and n * n <= DENSE_LIMIT else None
    for lo in range(0, n, block):
        hi = min(n, lo + block)
        start = lo if full is not None else 0  # columns left of lo are already known by symmetry
        prod = left_h[lo:hi] @ right_h[:, start:]
        prod += sparse_times_sparse(left_l[lo:hi], right_lt if start == 0 else right_lt[:, start:])
        if full is None:
            yield lo, prod.astype(np.float32, copy=False)
        else:
            full[lo:hi, lo:] = prod
            full[hi:, lo:hi] = prod[:, hi - lo :].T
            yield lo, full[lo:hi]


def topk_similarity(
    values: sp.csr_matrix,
    *,
    similarity: str,
    k: int,
    shrink: float = 0.0,
    idf: float = 0.0,
    binary: sp.csr_matrix,
) -> sp.csr_matrix:
    """Row-wise top-``k`` similarity between the rows of ``values`` as an ``n x n`` CSR matrix.

    ``values`` holds the (already centred, for pearson / adjusted cosine) vectors and ``binary``
    the same sparsity pattern with ones. Row ``r`` of the result stores the ``k`` largest positive
    similarities of row ``r`` to the other rows. ``idf`` weights column ``f`` by ``count_f ** -idf``
    inside the dot products (norms and counts stay unweighted).
    """
    n = values.shape[0]
    right = binary if similarity == "jaccard" else values
    counts = np.asarray(binary.sum(axis=1)).ravel().astype(np.float32)
    norms = np.sqrt(np.asarray(right.multiply(right).sum(axis=1)).ravel()).astype(np.float32)
    left = right
    if idf:
        col_counts = np.bincount(binary.indices, minlength=binary.shape[1])
        weights = np.maximum(col_counts, 1.0) ** -float(idf)
        left = (right @ sp.diags(weights.astype(np.float32))).tocsr()
    block = max(1, BLOCK_ENTRIES // max(n, 1))
    need_co = shrink > 0 and left is not binary
    co_blocks = gram_blocks(binary, binary, block, symmetric=True) if need_co else None
    rows, cols, vals = [], [], []
    for lo, prod in gram_blocks(left, right, block, symmetric=True):
        hi = lo + len(prod)
        if similarity == "jaccard":
            denom = counts[lo:hi, None] + counts[None, :] - prod
        else:
            denom = norms[lo:hi, None] * norms[None, :]
        sim = np.divide(prod, denom, out=np.zeros_like(prod), where=denom > 0)
        if shrink > 0:
            co = next(co_blocks)[1] if co_blocks is not None else prod
            sim *= co / (co + np.float32(shrink))
        local = np.arange(hi - lo)
        sim[local, lo + local] = 0.0
        r, c, v = topk_rows(sim, k)
        rows.append(r + lo)
        cols.append(c)
        vals.append(v)
    out = sp.csr_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n), dtype=np.float32
    )
    out.sort_indices()
    return out


def topk_rows(sim: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(row, col, value) of the ``k`` largest positive entries of each row of ``sim``.

    The selection is ``torch.topk`` (several times faster than ``np.argpartition`` on one core);
    which of several entries tied at the ``k``-th value is kept is unspecified, as with a partition.
    """
    b, n = sim.shape
    if k < n:
        vals_t, idx_t = torch.topk(torch.from_numpy(np.ascontiguousarray(sim)), k, dim=1, sorted=False)
        idx, vals = idx_t.numpy(), vals_t.numpy()
    else:
        idx = np.broadcast_to(np.arange(n), (b, n))
        vals = np.take_along_axis(sim, idx, axis=1)
    keep = vals > 0
    rows = np.broadcast_to(np.arange(b)[:, None], idx.shape)[keep]
    return rows, idx[keep], vals[keep]


def centre(values: sp.csr_matrix, binary: sp.csr_matrix, *, by_rows: bool) -> sp.csr_matrix:
    """Subtract from each stored value the mean of its row (``by_rows``) or of its column."""
    axis = 1 if by_rows else 0
    sums = np.asarray(values.sum(axis=axis)).ravel()
    counts = np.asarray(binary.sum(axis=axis)).ravel()
    means = np.divide(sums, counts, out=np.zeros_like(sums, dtype=np.float64), where=counts > 0)
    coo = values.tocoo()
    centred = coo.data - means[coo.row if by_rows else coo.col]
    out = sp.csr_matrix((centred.astype(np.float32), (coo.row, coo.col)), shape=values.shape)
    out.sort_indices()
    return out


def cosine_similar(vectors: np.ndarray, items: np.ndarray) -> np.ndarray:
    """``float32[len(items), n]``: cosine similarity of ``vectors[items]`` to every row of ``vectors``.

    The ``similar_items`` of the models whose items are vectors (factor, embedding and decoder
    rows). The query rows are taken in blocks of ``BLOCK_ENTRIES // n``, so no more than one
    ``block x n`` slab is computed at a time besides the answer, never an ``n x n`` matrix. A zero
    vector (an item the model never moved from zero) is similar to nothing: its cosines are 0.
    """
    vectors = np.asarray(vectors, dtype=np.float32)
    items = np.asarray(items, dtype=np.int64)
    n = vectors.shape[0]
    norms = np.linalg.norm(vectors, axis=1)
    inverse = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0).astype(np.float32)
    out = np.empty((len(items), n), dtype=np.float32)
    block = max(1, BLOCK_ENTRIES // max(n, 1))
    for lo in range(0, len(items), block):
        query = items[lo : lo + block]
        part = vectors[query] @ vectors.T
        part *= inverse[query, None]
        part *= inverse[None, :]
        out[lo : lo + len(query)] = part
    return out


def matrix_rows(matrix: sp.spmatrix | np.ndarray, items: np.ndarray) -> np.ndarray:
    """``float32[len(items), n]``: rows ``items`` of an item-item matrix (sparse or dense), dense.

    The ``similar_items`` of the models that hold an item-item matrix (neighbour similarities,
    regression or random-walk weights)."""
    rows = matrix[np.asarray(items, dtype=np.int64)]
    return np.asarray(rows.toarray() if sp.issparse(rows) else rows, dtype=np.float32)
