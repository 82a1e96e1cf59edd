"""Metrics: hand-computed cases, a naive loop reference on random rankings, scikit-learn for AUC/log-loss."""

from __future__ import annotations

import math

import numpy as np
import pytest

from recbench.data.interactions import Interactions
from recbench.evaluation import metrics as M

# Four users, lists of K = 5, k = 5 unless stated.
HITS = np.array(
    [
        [1, 0, 1, 0, 0],  # user 0: 3 relevant items, hits at ranks 1 and 3
        [0, 0, 0, 1, 0],  # user 1: 1 relevant item, hit at rank 4
        [0, 0, 0, 0, 0],  # user 2: 2 relevant items, no hit
        [0, 0, 0, 0, 0],  # user 3: no relevant item at all
    ],
    dtype=bool,
)
N_REL = np.array([3, 1, 2, 0])
L2, L3, L4, L5 = (math.log2(x) for x in (2, 3, 4, 5))


def test_hand_computed_k5() -> None:
    k = 5
    # precision = hits / k: 2/5, 1/5, 0, 0
    assert M.precision(HITS, N_REL, k) == pytest.approx([0.4, 0.2, 0.0, 0.0])
    # recall = hits / |R|: 2/3, 1/1, 0/2, 0 (no relevant item -> 0)
    assert M.recall(HITS, N_REL, k) == pytest.approx([2 / 3, 1.0, 0.0, 0.0])
    # ndcg user 0: DCG = 1/log2(2) + 1/log2(4) = 1.5; IDCG = 1 + 1/log2(3) + 1/log2(4) = 2.1309...
    # ndcg user 1: DCG = 1/log2(5) = 0.4307; IDCG = 1
    expected_ndcg = [(1 / L2 + 1 / L4) / (1 / L2 + 1 / L3 + 1 / L4), 1 / L5, 0.0, 0.0]
    assert M.ndcg(HITS, N_REL, k) == pytest.approx(expected_ndcg, abs=1e-12)
    # mrr: first hit at rank 1 -> 1; rank 4 -> 1/4
    assert M.mrr(HITS, N_REL, k) == pytest.approx([1.0, 0.25, 0.0, 0.0])
    assert M.hit_rate(HITS, N_REL, k) == pytest.approx([1.0, 1.0, 0.0, 0.0])
    # AP user 0: (P@1 + P@3) / min(3, 5) = (1/1 + 2/3) / 3 = 0.5556; user 1: (1/4) / 1 = 0.25
    assert M.average_precision(HITS, N_REL, k) == pytest.approx([(1 + 2 / 3) / 3, 0.25, 0.0, 0.0])


def test_hand_computed_truncation_k2() -> None:
    k = 2  # only ranks 1 and 2 count: user 0 has one hit, user 1 none
    assert M.precision(HITS, N_REL, k) == pytest.approx([0.5, 0, 0, 0])
    assert M.recall(HITS, N_REL, k) == pytest.approx([1 / 3, 0, 0, 0])
    # IDCG over min(3, 2) = 2 positions: 1 + 1/log2(3)
    assert M.ndcg(HITS, N_REL, k) == pytest.approx([1 / (1 + 1 / L3), 0, 0, 0])
    # AP user 0: P@1 / min(3, 2) = 1/2
    assert M.average_precision(HITS, N_REL, k) == pytest.approx([0.5, 0, 0, 0])


def test_k_larger_than_the_list() -> None:
    hits = np.array([[0, 1, 1]], dtype=bool)  # K = 3 (small catalogue), k = 10, 4 relevant
    n_rel = np.array([4])
    assert M.precision(hits, n_rel, 10) == pytest.approx([2 / 10])  # still divided by k
    assert M.recall(hits, n_rel, 10) == pytest.approx([2 / 4])
    # DCG = 1/log2(3) + 1/log2(4); IDCG over min(4, 10) = 4 ranks
    assert M.ndcg(hits, n_rel, 10) == pytest.approx([(1 / L3 + 1 / L4) / (1 + 1 / L3 + 1 / L4 + 1 / L5)])
    assert M.mrr(hits, n_rel, 10) == pytest.approx([0.5])
    assert M.hit_rate(hits, n_rel, 10) == pytest.approx([1.0])
    # AP = (P@2 + P@3) / min(4, 10) = (1/2 + 2/3) / 4
    assert M.average_precision(hits, n_rel, 10) == pytest.approx([(0.5 + 2 / 3) / 4])


def test_recall_equals_hit_with_one_positive() -> None:
    rng = np.random.default_rng(0)
    hits = np.zeros((200, 20), dtype=bool)
    pos = rng.integers(0, 40, size=200)  # the single relevant item is ranked 0..39 (often beyond K)
    hits[np.flatnonzero(pos < 20), pos[pos < 20]] = True
    ones = np.ones(200, dtype=np.int64)
    for k in (1, 5, 10, 20, 50):
        np.testing.assert_array_equal(M.recall(hits, ones, k), M.hit_rate(hits, ones, k))
        # with one positive, AP@k is the reciprocal rank
        np.testing.assert_allclose(M.average_precision(hits, ones, k), M.mrr(hits, ones, k), atol=1e-15)


def test_perfect_ranking_scores_one() -> None:
    hits = np.array([[1, 1, 1, 0], [1, 1, 1, 1]], dtype=bool)
    n_rel = np.array([3, 6])
    for k in (1, 2, 3, 4):
        assert M.ndcg(hits, n_rel, k) == pytest.approx([1.0, 1.0])
        assert M.average_precision(hits, n_rel, k) == pytest.approx([1.0, 1.0])


def test_invalid_k_rejected() -> None:
    with pytest.raises(ValueError):
        M.ndcg(HITS, N_REL, 0)


def naive(ranked: list[int], relevant: set[int], k: int) -> dict[str, float]:
    """Textbook definitions, one user at a time, written independently of the vectorised code."""
    top = ranked[:k]
    n_hits = sum(1 for item in top if item in relevant)
    out = {"precision": n_hits / k, "recall": n_hits / len(relevant)}
    dcg = sum(1 / math.log2(r + 2) for r, item in enumerate(top) if item in relevant)
    idcg = sum(1 / math.log2(r + 2) for r in range(min(len(relevant), k)))
    out["ndcg"] = dcg / idcg
    out["mrr"] = next((1 / (r + 1) for r, item in enumerate(top) if item in relevant), 0.0)
    out["hit"] = 1.0 if n_hits else 0.0
    ap, found = 0.0, 0
    for r, item in enumerate(top):
        if item in relevant:
            found += 1
            ap += found / (r + 1)
    out["map"] = ap / min(len(relevant), k)
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_agrees_with_naive_reference(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n_users, n_items, big_k = 60, 30, 12
    ranked = [list(rng.permutation(n_items)[:big_k]) for _ in range(n_users)]
    relevant = [set(rng.choice(n_items, size=rng.integers(1, 15), replace=False)) for _ in range(n_users)]
    hits = np.array([[item in rel for item in row] for row, rel in zip(ranked, relevant)])
    n_rel = np.array([len(r) for r in relevant])
    for k in (1, 3, 10, 12, 20):
        for name, fn in M.TOPK_METRICS.items():
            # the naive reference pads a short list with misses, as a list of length K < k implies
            expected = [naive(row, rel, k)[name] for row, rel in zip(ranked, relevant)]
            np.testing.assert_allclose(fn(hits, n_rel, k), expected, rtol=0, atol=1e-12, err_msg=name)


def test_registries_are_literal() -> None:
    assert set(M.TOPK_METRICS) == {"precision", "recall", "ndcg", "mrr", "hit", "map"}
    assert set(M.CATALOGUE_METRICS) == {"coverage", "novelty"}
    assert set(M.RATING_METRICS) == {"rmse", "mae"}


def stats_fixture() -> M.CatalogueStats:
    # 4 training users; items 0..4 seen by 4, 2, 1, 0, 0 distinct users (item 0 counted once per user)
    users = np.array([0, 1, 2, 3, 0, 1, 2, 0, 0])
    items = np.array([0, 0, 0, 0, 1, 1, 2, 0, 0])
    return M.CatalogueStats.from_interactions(Interactions(users, items, 5, 5))


def test_catalogue_stats_count_distinct_users() -> None:
    stats = stats_fixture()
    assert stats.n_items == 5 and stats.n_users == 4
    np.testing.assert_array_equal(stats.item_users, [4, 2, 1, 0, 0])


def test_coverage_and_novelty_by_hand() -> None:
    stats = stats_fixture()
    top = np.array([[0, 1, 2], [0, 3, -1]])  # -1 = empty slot, ignored
    # k=2: items {0, 1, 3} -> 3 / 5; k=3: {0, 1, 2, 3} -> 4 / 5
    assert M.coverage(top, 2, stats) == pytest.approx(3 / 5)
    assert M.coverage(top, 3, stats) == pytest.approx(4 / 5)
    # p_i = (users_i + 1) / (4 + 1): item 0 -> 1, item 1 -> 3/5, item 2 -> 2/5, item 3 -> 1/5
    # k=2 slots: 0, 1, 0, 3 -> mean of 0, -log2(3/5), 0, -log2(1/5)
    expected = (0 - math.log2(3 / 5) + 0 - math.log2(1 / 5)) / 4
    assert M.novelty(top, 2, stats) == pytest.approx(expected)
    assert M.novelty(np.full((2, 3), -1), 3, stats) == 0.0


def test_rating_errors_by_hand() -> None:
    pred, true = np.array([3.0, 4.0, 5.0]), np.array([2.0, 4.0, 3.0])
    # errors 1, 0, 2: RMSE = sqrt((1 + 0 + 4) / 3); MAE = 3 / 3
    assert M.rmse(pred, true) == pytest.approx(math.sqrt(5 / 3))
    assert M.mae(pred, true) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        M.rmse(pred, true[:2])


def test_auc_with_ties_by_hand() -> None:
    labels = np.array([1, 0, 1, 0])
    scores = np.array([0.5, 0.5, 0.9, 0.1])
    # (pos, neg) pairs: (.5,.5) tie = 1/2, (.5,.1) = 1, (.9,.5) = 1, (.9,.1) = 1 -> 3.5 / 4
    assert M.auc(labels, scores) == pytest.approx(0.875)
    with pytest.raises(ValueError):
        M.auc(np.ones(3), np.arange(3.0))


def test_ctr_metrics_match_sklearn() -> None:
    sk = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    for _ in range(5):
        labels = rng.integers(0, 2, size=500)
        tied = rng.integers(0, 8, size=500).astype(float)  # many ties
        assert M.auc(labels, tied) == pytest.approx(sk.roc_auc_score(labels, tied), abs=1e-12)
        probs = rng.random(500)
        assert M.log_loss(labels, probs) == pytest.approx(sk.log_loss(labels, probs), abs=1e-12)
        pred, true = rng.random(50) * 5, rng.random(50) * 5
        assert M.rmse(pred, true) == pytest.approx(math.sqrt(sk.mean_squared_error(true, pred)), abs=1e-12)
        assert M.mae(pred, true) == pytest.approx(sk.mean_absolute_error(true, pred), abs=1e-12)
