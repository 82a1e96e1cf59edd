"""Ranking primitives of the evaluator: deterministic top-k selection and negative sampling."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from recbench.errors import ConfigError


def top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Items and scores of the ``k`` best columns of each row, best first, ties to the lower item id.

    ``torch.topk`` selects ``k + 1`` columns per row (it uses every torch thread). A row whose k-th
    and (k+1)-th selected scores differ has an exact top-k set; it is then ordered by score with ties
    to the lower id. Only rows with a tie across the cut (where ``topk`` may have kept any of the
    tied items) go through :func:`_top_k_exact`, which fills the tied slots in id order. Returns
    ``int64[n, k]`` item ids and ``float32[n, k]`` scores (``k <= n_items`` required).
    """
    scores = np.ascontiguousarray(scores, dtype=np.float32)
    n, m = scores.shape
    if k >= m or n == 0:
        return _top_k_exact(scores, k)
    vals, idx = torch.topk(torch.from_numpy(scores), k + 1, dim=1, sorted=True)
    tied = (vals[:, k - 1] == vals[:, k]).numpy()
    items = _order_ties_by_id(vals[:, :k].numpy(), idx[:, :k].numpy())
    values = np.take_along_axis(scores, items, axis=1)
    if tied.any():
        rows = np.flatnonzero(tied)
        items[rows], values[rows] = _top_k_exact(scores[rows], k)
    return items, values


def top_k_row(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`top_k` of a single row (``float32[n_items]``, no NaN): the same items in the same order.

    The per-request selection of the service: one ``np.partition`` finds the k-th largest score
    ``t``, the items above ``t`` are kept with the lowest-id items equal to ``t`` filling the
    remaining slots, and one ``lexsort`` of those ``k`` orders them by score, ties by id. No torch
    call and no 2-D bookkeeping, which cost more than the selection itself for one row.
    """
    scores = np.asarray(scores, dtype=np.float32)
    m = len(scores)
    k = min(k, m)
    if k <= 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
    thr = np.partition(scores, m - k)[m - k]
    above = np.flatnonzero(scores > thr)
    tied = np.flatnonzero(scores == thr)[: k - len(above)]
    items = np.concatenate([above, tied])
    values = scores[items]
    order = np.lexsort((items, -values))
    return items[order].astype(np.int64), values[order]


def _order_ties_by_id(values: np.ndarray, items: np.ndarray) -> np.ndarray:
    """``items`` of each row reordered by descending ``values``, equal values by ascending item id."""
    by_id = np.argsort(items, axis=1)
    items, values = np.take_along_axis(items, by_id, axis=1), np.take_along_axis(values, by_id, axis=1)
    return np.take_along_axis(items, np.argsort(-values, axis=1, kind="stable"), axis=1)


def _top_k_exact(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`top_k` by one ``np.partition`` per row, for any ties (and any ``k <= n_items``).

    The partition finds each row's k-th largest score ``t``; all items above ``t`` are kept and the
    remaining slots go to the items equal to ``t`` in id order.
    """
    n, m = scores.shape
    thr = np.partition(scores, m - k, axis=1)[:, m - k]
    flat = np.flatnonzero(scores >= thr[:, None])  # 1-D is several times faster than 2-D nonzero
    rows, cols = np.divmod(flat, m)  # row-major: rows ascending, then item ids ascending
    vals = scores.ravel()[flat]
    tie = vals == thr[rows]
    # the items above the threshold always fit; ties fill the remaining slots in item-id order
    need = k - np.bincount(rows[~tie], minlength=n)
    tie_rows = rows[tie]
    ordinal = np.arange(len(tie_rows)) - np.searchsorted(tie_rows, tie_rows)
    keep = ~tie
    keep[tie] = ordinal < need[tie_rows]
    # exactly k kept per row, in row-major (so item-id) order: a stable sort by score finishes the job
    cols, vals = cols[keep].reshape(n, k), vals[keep].reshape(n, k)
    order = np.argsort(-vals, axis=1, kind="stable")
    return np.take_along_axis(cols, order, axis=1), np.take_along_axis(vals, order, axis=1)


def sample_negatives(excluded: sp.csr_matrix, n: int, seed: int) -> np.ndarray:
    """``int64[n_rows, n]`` distinct items per row, drawn uniformly outside that row of ``excluded``.

    Rejection sampling, vectorised over rows and processed in fixed chunks of rows: draw ``n`` items
    per row, then redraw only the entries that hit an excluded item or an item the row already
    holds, until none is left. A dense per-chunk table of "claims" makes each check O(1). Rows with
    fewer than ``2n`` allowed items (slow to fill by rejection) are drawn exactly instead, by
    ranking uniform random keys of their allowed items. The result depends only on ``excluded``,
    ``n`` and ``seed`` (not on how the caller batches users).
    """
    excluded = excluded.tocsr()
    n_rows, n_items = excluded.shape
    available = n_items - np.diff(excluded.indptr)
    if n_rows and available.min() < n:
        raise ConfigError(
            f"eval.sampled_negatives={n} is more than the {int(available.min())} items some user has not "
            f"interacted with ({n_items} items in the catalogue); lower eval.sampled_negatives."
        )
    rng = np.random.default_rng(seed)
    out = np.empty((n_rows, n), dtype=np.int64)
    chunk = max(1, (1 << 20) // max(n_items, 1))  # ~4 MB of int32 claims per chunk
    for start in range(0, n_rows, chunk):
        rows = np.arange(start, min(start + chunk, n_rows))
        sub = excluded[rows]
        dense = available[rows] < 2 * n
        out[rows[~dense]] = _reject(sub[~dense], n, rng)
        if dense.any():
            out[rows[dense]] = _exact(sub[dense], n, rng)
    return out


def _reject(excluded: sp.csr_matrix, n: int, rng: np.random.Generator) -> np.ndarray:
    """Rejection sampling for rows with plenty of allowed items (see :func:`sample_negatives`)."""
    n_rows, n_items = excluded.shape
    free = np.iinfo(np.int32).max  # tickets stay far below: about 2 draws per entry are expected
    # claim[r, i]: -1 excluded, else the lowest "ticket" of an entry holding item i (free = none)
    claim = np.full((n_rows, n_items), free, dtype=np.int32)
    claim[np.repeat(np.arange(n_rows), np.diff(excluded.indptr)), excluded.indices] = -1
    out = rng.integers(0, n_items, size=(n_rows, n), dtype=np.int64)
    todo_r, todo_c = np.divmod(np.arange(n_rows * n, dtype=np.int64), n)
    ticket = 0
    while len(todo_r):
        items = out[todo_r, todo_c]
        tickets = ticket + np.arange(len(todo_r), dtype=np.int32)  # later rounds never beat earlier ones
        ticket += len(todo_r)
        np.minimum.at(claim, (todo_r, items), tickets)
        bad = claim[todo_r, items] != tickets
        todo_r, todo_c = todo_r[bad], todo_c[bad]
        out[todo_r, todo_c] = rng.integers(0, n_items, size=len(todo_r), dtype=np.int64)
    return out


def _exact(excluded: sp.csr_matrix, n: int, rng: np.random.Generator) -> np.ndarray:
    """Uniform ``n``-subsets of each row's allowed items via random keys (rows with few allowed items)."""
    n_rows, n_items = excluded.shape
    keys = rng.random((n_rows, n_items))
    keys[np.repeat(np.arange(n_rows), np.diff(excluded.indptr)), excluded.indices] = np.inf
    return np.sort(np.argpartition(keys, n - 1, axis=1)[:, :n], axis=1)
