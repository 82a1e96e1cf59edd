"""Vectorised, seeded negative sampling that excludes known positives."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import scipy.sparse as sp
from numba import njit

from recbench.training.prefetch import prefetch

#: Largest ``n_users * n_items`` for which :class:`PositiveSet` keeps a dense boolean table (32 MiB).
DENSE_LIMIT = 1 << 25


@njit(cache=True, nogil=True)
def _csr_contains(
    indptr: np.ndarray, indices: np.ndarray, users: np.ndarray, items: np.ndarray
) -> np.ndarray:
    """``bool[n]``: whether ``items[j]`` is in row ``users[j]`` of a CSR matrix with sorted indices
    (a binary search within the row). The row bounds of the query 16 ahead and the row of the
    query 8 ahead are prefetched, so the searches do not wait for memory one after the other."""
    n = users.shape[0]
    out = np.zeros(n, np.bool_)
    for k in range(n):
        if k + 16 < n:
            prefetch(indptr, users[k + 16], 0)
        if k + 8 < n:
            first, end = indptr[users[k + 8]], indptr[users[k + 8] + 1]
            if end > first:
                prefetch(indices, first, 0)
                prefetch(indices, (first + end) >> 1, 0)
                prefetch(indices, end - 1, 0)
        lo, hi = indptr[users[k]], indptr[users[k] + 1]
        end = hi
        item = items[k]
        while lo < hi:
            mid = (lo + hi) >> 1
            if indices[mid] < item:
                lo = mid + 1
            else:
                hi = mid
        out[k] = lo < end and indices[lo] == item
    return out


class PositiveSet:
    """Fast membership test for (user, item) pairs of a sparse matrix.

    Small matrices (up to :data:`DENSE_LIMIT` cells) get a byte per (user, item), so a query is
    one lookup; larger ones are searched row by row in the sorted CSR indices (compiled). Build it
    once per fit.
    """

    def __init__(self, csr: sp.csr_matrix) -> None:
        csr = csr.tocsr()
        csr.sort_indices()
        self.n_users, self.n_items = csr.shape
        self.indptr = csr.indptr.astype(np.int64)
        self.indices = csr.indices
        self.dense: np.ndarray | None = None
        if self.n_users * self.n_items <= DENSE_LIMIT:
            rows = np.repeat(np.arange(self.n_users, dtype=np.int64), np.diff(csr.indptr))
            self.dense = np.zeros(self.n_users * self.n_items, dtype=bool)
            self.dense[rows * self.n_items + csr.indices] = True

    def contains(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """``bool[n]``: whether each pair ``(users[j], items[j])`` is a known positive."""
        users = np.asarray(users, dtype=np.int64)
        items = np.asarray(items, dtype=np.int64)
        if self.dense is not None:
            return self.dense[users * self.n_items + items]
        return _csr_contains(self.indptr, self.indices, users, items)


def _rejection_sample(
    positives: PositiveSet,
    users: np.ndarray,
    n_per_user: int,
    draw: Callable[[int], np.ndarray],
    max_rounds: int,
) -> np.ndarray:
    users = np.asarray(users, dtype=np.int64)
    neg = draw(len(users) * n_per_user)
    flat_users = np.repeat(users, n_per_user)
    bad = np.flatnonzero(positives.contains(flat_users, neg))
    for _ in range(max_rounds):
        if len(bad) == 0:
            break
        redraw = draw(len(bad))
        neg[bad] = redraw
        bad = bad[positives.contains(flat_users[bad], redraw)]
    return neg.reshape(len(users), n_per_user)


def uniform_negatives(
    positives: PositiveSet,
    users: np.ndarray,
    n_per_user: int,
    rng: np.random.Generator,
    *,
    max_rounds: int = 50,
) -> np.ndarray:
    """``int64[len(users), n_per_user]`` items drawn uniformly among those each user has not interacted with.

    Collisions with positives are redrawn in vectorised rounds; a user who has interacted with
    (almost) every item keeps whatever the last round drew.
    """
    n_items = positives.n_items
    return _rejection_sample(
        positives, users, n_per_user, lambda size: rng.integers(0, n_items, size=size), max_rounds
    )


def popularity_negatives(
    positives: PositiveSet,
    item_counts: np.ndarray,
    users: np.ndarray,
    n_per_user: int,
    rng: np.random.Generator,
    *,
    alpha: float = 0.75,
    max_rounds: int = 50,
) -> np.ndarray:
    """Like :func:`uniform_negatives`, with items drawn proportionally to ``(count + 1) ** alpha``."""
    weights = (np.asarray(item_counts, dtype=np.float64) + 1.0) ** alpha
    cdf = np.cumsum(weights / weights.sum())
    last = len(cdf) - 1

    def draw(size: int) -> np.ndarray:
        return np.minimum(np.searchsorted(cdf, rng.random(size)), last).astype(np.int64)

    return _rejection_sample(positives, users, n_per_user, draw, max_rounds)


def user_uniform_positives(
    csr: sp.csr_matrix, size: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """``size`` training pairs drawn user first: a user uniformly among those with a positive, then
    one of that user's positives uniformly (the sampler of LightGCN's reference implementation).

    Unlike shuffling the interactions, every user is drawn equally often whatever their activity.
    Returns ``(users, items)``, both ``int64[size]``.
    """
    degree = np.diff(csr.indptr)
    active = np.flatnonzero(degree)
    if len(active) == 0:
        raise ValueError("user_uniform_positives needs at least one stored pair")
    users = active[rng.integers(0, len(active), size=size)]
    offsets = np.floor(rng.random(size) * degree[users]).astype(np.int64)
    items = csr.indices[csr.indptr[users] + offsets].astype(np.int64)
    return users.astype(np.int64), items
