"""Negative samplers: never return positives, are seeded, and follow popularity when asked."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from recbench.training.samplers import PositiveSet, popularity_negatives, uniform_negatives


def random_csr(n_users: int = 50, n_items: int = 30, density: float = 0.4, seed: int = 0) -> sp.csr_matrix:
    rng = np.random.default_rng(seed)
    return sp.csr_matrix((rng.random((n_users, n_items)) < density).astype(np.float32))


def test_positive_set_matches_dense_lookup() -> None:
    csr = random_csr()
    ps = PositiveSet(csr)
    u, i = np.meshgrid(np.arange(50), np.arange(30), indexing="ij")
    assert np.array_equal(ps.contains(u.ravel(), i.ravel()), csr.toarray().ravel() > 0)


def test_uniform_negatives_exclude_positives_and_are_seeded() -> None:
    csr = random_csr()
    ps = PositiveSet(csr)
    users = np.arange(50)
    neg = uniform_negatives(ps, users, 7, np.random.default_rng(1))
    assert neg.shape == (50, 7)
    assert not ps.contains(np.repeat(users, 7), neg.ravel()).any()
    again = uniform_negatives(ps, users, 7, np.random.default_rng(1))
    assert np.array_equal(neg, again)
    other = uniform_negatives(ps, users, 7, np.random.default_rng(2))
    assert not np.array_equal(neg, other)


def test_popularity_negatives_prefer_popular_items() -> None:
    csr = sp.csr_matrix((1, 1000), dtype=np.float32)  # one user, no positives
    counts = np.zeros(1000)
    counts[:10] = 1000.0
    neg = popularity_negatives(
        PositiveSet(csr), counts, np.zeros(1, dtype=np.int64), 5000, np.random.default_rng(0)
    )
    assert (neg < 10).mean() > 0.5


def test_large_positive_sets_search_the_sorted_rows(monkeypatch) -> None:
    """Above the dense-table limit, membership is a search in each user's sorted CSR row."""
    import recbench.training.samplers as samplers

    csr = random_csr(seed=3)
    monkeypatch.setattr(samplers, "DENSE_LIMIT", 0)
    ps = PositiveSet(csr)
    assert ps.dense is None
    u, i = np.meshgrid(np.arange(50), np.arange(30), indexing="ij")
    assert np.array_equal(ps.contains(u.ravel(), i.ravel()), csr.toarray().ravel() > 0)
    empty = PositiveSet(sp.csr_matrix((3, 4), dtype=np.float32))
    assert not empty.contains(np.array([0, 2]), np.array([3, 0])).any()
