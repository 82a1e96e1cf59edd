"""Evaluator: fake scorers with fixed score matrices, checked by hand and against a naive loop."""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest
import scipy.sparse as sp

from recbench.data.interactions import Interactions
from recbench.errors import ConfigError, TrainingError
from recbench.evaluation import evaluator as ev
from recbench.evaluation.evaluator import EvalResult, EvalSpec, evaluate
from recbench.evaluation.metrics import TOPK_METRICS
from recbench.evaluation.ranking import sample_negatives, top_k


class FixedScorer:
    """Returns rows of a fixed score matrix (a fresh array, as models do)."""

    def __init__(self, scores: np.ndarray) -> None:
        self.scores = np.asarray(scores, dtype=np.float32)
        self.calls: list[int] = []

    def score(self, users: np.ndarray, history: Interactions) -> np.ndarray:
        self.calls.append(len(users))
        return self.scores[users]


class FixedRater(FixedScorer):
    """A fake RatingPredictor: predicts ``table[u, i]``."""

    def __init__(self, scores: np.ndarray, table: np.ndarray) -> None:
        super().__init__(scores)
        self.table = table

    def predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        return self.table[users, items].astype(np.float32)


def inter(pairs: list[tuple[int, int]], n_users: int, n_items: int, ratings=None) -> Interactions:
    arr = np.array(pairs, dtype=np.int64).reshape(-1, 2)
    return Interactions(arr[:, 0], arr[:, 1], n_users, n_items, ratings=ratings)


ALL = (*TOPK_METRICS, "coverage", "novelty")


def test_masking_of_seen_items() -> None:
    # 1 user, 5 items scored 5 > 4 > 3 > 2 > 1; item 0 is in the history, item 1 is the target
    model = FixedScorer(np.array([[5, 4, 3, 2, 1]]))
    target, history = inter([(0, 1)], 1, 5), inter([(0, 0)], 1, 5)
    masked = evaluate(model, target, history, EvalSpec(metrics=("mrr", "hit"), ks=(1,)))
    assert masked.metrics == {"mrr@1": 1.0, "hit@1": 1.0}  # item 0 masked -> target first
    plain = evaluate(model, target, history, EvalSpec(metrics=("mrr",), ks=(1, 5), exclude_seen=False))
    assert plain.metrics == {"mrr@1": 0.0, "mrr@5": 0.5}  # item 0 still ranked first


def test_masked_items_never_fill_the_list() -> None:
    # the user has seen 3 of 4 items: only item 3 can be recommended; k=3 lists are padded, not filled
    model = FixedScorer(np.array([[9.0, 8.0, 7.0, 1.0]]))
    history = inter([(0, 0), (0, 1), (0, 2)], 1, 4)
    res = evaluate(
        model, inter([(0, 3)], 1, 4), history, EvalSpec(metrics=("precision", "coverage"), ks=(3,))
    )
    assert res.metrics["precision@3"] == pytest.approx(1 / 3)
    assert res.metrics["coverage@3"] == pytest.approx(1 / 4)


def test_ties_break_to_lower_item_id() -> None:
    model = FixedScorer(np.zeros((1, 6)))  # constant scores: ranking is 0, 1, 2, ...
    res = evaluate(model, inter([(0, 3)], 1, 6), inter([], 1, 6), EvalSpec(metrics=("mrr",), ks=(10,)))
    assert res.metrics["mrr@10"] == pytest.approx(1 / 4)
    items, _ = top_k(np.array([[1, 3, 3, 2, 3]], dtype=np.float32), 2)
    np.testing.assert_array_equal(items, [[1, 2]])


def test_users_without_targets_are_skipped_and_counted() -> None:
    history = inter([(0, 0), (1, 0), (2, 0), (2, 1)], 4, 4)  # user 3 has neither history nor targets
    # user 0 has a target; user 1 has none; user 2's only target is already in its history (masked)
    target = inter([(0, 3), (2, 1)], 4, 4)
    model = FixedScorer(np.zeros((4, 4)))
    res = evaluate(model, target, history, EvalSpec(metrics=("hit",), ks=(2,)))
    np.testing.assert_array_equal(res.users, [0])
    assert res.users.dtype == np.int64
    assert res.n_skipped_users == 2
    assert model.calls == [1]  # only evaluated users are scored
    kept = evaluate(model, target, history, EvalSpec(metrics=("hit",), ks=(2,), exclude_seen=False))
    np.testing.assert_array_equal(kept.users, [0, 2])
    assert kept.n_skipped_users == 1


def random_case(
    seed: int, n_users: int = 40, n_items: int = 25
) -> tuple[FixedScorer, Interactions, Interactions]:
    rng = np.random.default_rng(seed)
    mask = rng.random((n_users, n_items))
    hist = np.argwhere(mask < 0.25)
    targ = np.argwhere((mask >= 0.25) & (mask < 0.4))
    scores = rng.integers(0, 6, size=(n_users, n_items)).astype(np.float32)  # many ties
    return (
        FixedScorer(scores),
        Interactions(targ[:, 0], targ[:, 1], n_users, n_items),
        Interactions(hist[:, 0], hist[:, 1], n_users, n_items),
    )


def naive_full_ranking(model: FixedScorer, target: Interactions, history: Interactions, k: int) -> dict:
    """Per-user python loop: mask history, sort by (-score, item), compute the metrics by definition."""
    out: dict[str, list[float]] = {name: [] for name in ("ndcg", "recall", "precision", "mrr")}
    for u in range(target.n_users):
        seen = set(history.items[history.users == u].tolist())
        rel = set(target.items[target.users == u].tolist()) - seen
        if not rel:
            continue
        ranked = sorted(
            (i for i in range(target.n_items) if i not in seen), key=lambda i: (-model.scores[u, i], i)
        )
        top = ranked[:k]
        hits = [i in rel for i in top]
        dcg = sum(1 / math.log2(r + 2) for r, h in enumerate(hits) if h)
        out["ndcg"].append(dcg / sum(1 / math.log2(r + 2) for r in range(min(len(rel), k))))
        out["recall"].append(sum(hits) / len(rel))
        out["precision"].append(sum(hits) / k)
        out["mrr"].append(next((1 / (r + 1) for r, h in enumerate(hits) if h), 0.0))
    return {f"{name}@{k}": float(np.mean(v)) for name, v in out.items()}


@pytest.mark.parametrize("seed", [0, 1])
def test_full_ranking_matches_naive_loop(seed: int) -> None:
    model, target, history = random_case(seed)
    res = evaluate(
        model, target, history, EvalSpec(metrics=("ndcg", "recall", "precision", "mrr"), ks=(5, 30))
    )
    for k in (5, 30):  # 30 > 25 items: short lists
        for key, value in naive_full_ranking(model, target, history, k).items():
            assert res.metrics[key] == pytest.approx(value, abs=1e-12), key


def assert_same(a: EvalResult, b: EvalResult) -> None:
    assert a.metrics == b.metrics
    np.testing.assert_array_equal(a.users, b.users)
    assert a.per_user.keys() == b.per_user.keys()
    for key in a.per_user:
        np.testing.assert_array_equal(a.per_user[key], b.per_user[key])
    assert a.n_skipped_users == b.n_skipped_users


@pytest.mark.parametrize("negatives", [0, 5])
def test_batch_size_invariance(negatives: int) -> None:
    model, target, history = random_case(3)
    spec = dict(
        metrics=ALL if not negatives else tuple(TOPK_METRICS), ks=(1, 5, 10), sampled_negatives=negatives
    )
    one = evaluate(model, target, history, EvalSpec(batch_size=1, **spec))
    many = evaluate(model, target, history, EvalSpec(batch_size=1000, **spec))
    assert set(model.calls) == {1, len(one.users)}
    assert_same(one, many)


def test_per_user_values_align_with_users() -> None:
    model, target, history = random_case(4)
    res = evaluate(model, target, history, EvalSpec(metrics=("hit", "coverage"), ks=(3,)))
    assert set(res.per_user) == {"hit@3"}  # catalogue metrics are run-level only
    assert res.per_user["hit@3"].shape == res.users.shape
    assert res.metrics["hit@3"] == pytest.approx(res.per_user["hit@3"].mean())
    for pos, u in enumerate(res.users):
        rel = set(target.items[target.users == u]) - set(history.items[history.users == u])
        seen = set(history.items[history.users == u])
        top = sorted(
            (i for i in range(target.n_items) if i not in seen), key=lambda i: (-model.scores[u, i], i)
        )
        assert res.per_user["hit@3"][pos] == float(bool(rel & set(top[:3])))


def test_spec_validation_and_conversion() -> None:
    spec = EvalSpec(metrics=["ndcg", "coverage", "ndcg"], ks=[20, 10])
    assert spec.metrics == ("ndcg", "coverage") and spec.ks == (20, 10)
    assert EvalSpec(metrics="mrr", ks=5).metrics == ("mrr",)
    with pytest.raises(ConfigError, match="valid names are .*ndcg"):
        EvalSpec(metrics=("ndcg", "auroc"))
    for bad_ks in ([0], [-5], [], ["ten"], [2.5]):
        with pytest.raises(ConfigError, match="eval.ks"):
            EvalSpec(ks=bad_ks)
    with pytest.raises(ConfigError, match="eval.batch_size"):
        EvalSpec(batch_size=0)
    with pytest.raises(ConfigError, match="eval.sampled_negatives"):
        EvalSpec(sampled_negatives=-1)


def test_k_larger_than_catalogue_is_allowed(caplog: pytest.LogCaptureFixture) -> None:
    model = FixedScorer(np.array([[3.0, 2.0, 1.0]]))
    with caplog.at_level(logging.INFO, logger="recbench.evaluation.evaluator"):
        res = evaluate(
            model, inter([(0, 2)], 1, 3), inter([], 1, 3), EvalSpec(metrics=("ndcg", "hit"), ks=(50,))
        )
    assert res.metrics["hit@50"] == 1.0
    assert res.metrics["ndcg@50"] == pytest.approx(1 / math.log2(4))
    assert "exceeds the catalogue" in caplog.text


def test_bad_scores_name_the_model() -> None:
    target, history = inter([(0, 1)], 1, 3), inter([(0, 0)], 1, 3)
    with pytest.raises(TrainingError, match="FixedScorer.score returned 1 non-finite"):
        evaluate(FixedScorer(np.array([[0.0, np.nan, 1.0]])), target, history, EvalSpec())
    with pytest.raises(ValueError, match="FixedScorer.score returned shape"):
        evaluate(FixedScorer(np.zeros((1, 2))), target, history, EvalSpec())


def test_model_array_is_not_modified() -> None:
    class Cached:
        cache = np.arange(4, dtype=np.float32)[None, :].repeat(2, axis=0)

        def score(self, users: np.ndarray, history: Interactions) -> np.ndarray:
            return self.cache[: len(users)]  # a view: the evaluator must copy before masking

    before = Cached.cache.copy()
    evaluate(Cached(), inter([(0, 1)], 1, 4), inter([(0, 3)], 1, 4), EvalSpec())
    np.testing.assert_array_equal(Cached.cache, before)


def test_sampled_negatives_shared_across_models(monkeypatch: pytest.MonkeyPatch) -> None:
    _, target, history = random_case(5, n_users=30, n_items=60)
    drawn: list[np.ndarray] = []

    def spy(excluded, n, seed):
        out = sample_negatives(excluded, n, seed)
        drawn.append(out)
        return out

    monkeypatch.setattr(ev, "sample_negatives", spy)
    rng = np.random.default_rng(1)
    spec = EvalSpec(metrics=("ndcg", "hit"), ks=(5,), sampled_negatives=10, sample_seed=7)
    res_a = evaluate(FixedScorer(rng.random((30, 60))), target, history, spec)
    res_b = evaluate(FixedScorer(rng.random((30, 60))), target, history, spec)
    np.testing.assert_array_equal(drawn[0], drawn[1])
    assert set(res_a.metrics) == {"ndcg@5_sampled10", "hit@5_sampled10"}
    for row, u in enumerate(res_b.users):
        forbidden = set(target.items[target.users == u]) | set(history.items[history.users == u])
        negs = drawn[0][row]
        assert len(set(negs)) == 10 and not forbidden & set(negs)
    other = EvalSpec(metrics=("hit",), ks=(5,), sampled_negatives=10, sample_seed=8)
    evaluate(FixedScorer(np.zeros((30, 60))), target, history, other)
    assert not np.array_equal(drawn[0], drawn[2])


def test_sampled_ranking_by_hand() -> None:
    # 1 user, 8 items; history {0}, targets {1, 2}; 5 negatives = all of {3..7}
    target, history = inter([(0, 1), (0, 2)], 1, 8), inter([(0, 0)], 1, 8)
    spec = EvalSpec(metrics=("hit", "recall", "mrr"), ks=(1, 2, 7), sampled_negatives=5)
    best = FixedScorer(np.array([[9, 8, 7, 0, 0, 0, 0, 0]]))  # item 0 is seen, never a candidate
    assert evaluate(best, target, history, spec).metrics["recall@2_sampled5"] == 1.0
    worst = FixedScorer(np.array([[9, 0, 0, 5, 5, 5, 5, 5]]))  # targets rank 6th and 7th of 7
    res = evaluate(worst, target, history, spec).metrics
    assert res["hit@2_sampled5"] == 0.0 and res["recall@7_sampled5"] == 1.0
    assert res["mrr@7_sampled5"] == pytest.approx(1 / 6)


def test_sample_negatives_properties() -> None:
    rng = np.random.default_rng(0)
    n_rows, n_items = 50, 40
    excluded = (rng.random((n_rows, n_items)) < rng.random((n_rows, 1)) * 0.9).astype(np.float32)
    excluded[:, :5] = 0  # at least 5 allowed items per row; many rows use the exact (dense) path
    csr = sp.csr_matrix(excluded)
    out = sample_negatives(csr, 5, seed=3)
    assert out.shape == (n_rows, 5)
    assert not excluded[np.arange(n_rows)[:, None], out].any()
    assert all(len(set(row)) == 5 for row in out.tolist())
    np.testing.assert_array_equal(out, sample_negatives(csr, 5, seed=3))
    with pytest.raises(ConfigError, match="eval.sampled_negatives=41"):
        sample_negatives(csr, 41, seed=0)


def test_rating_metrics_on_fake_rating_predictor() -> None:
    ratings_hist = np.array([1.0, 5.0], dtype=np.float32)  # rating scale of the history: [1, 5]
    history = inter([(0, 0), (1, 1)], 2, 3, ratings=ratings_hist)
    target = inter([(0, 1), (0, 2), (1, 2)], 2, 3, ratings=np.array([4.0, 2.0, 5.0], dtype=np.float32))
    table = np.array([[0, 3.0, 7.0], [0, 0, 4.0]])  # predictions 3, 7 -> clipped to 5, 4
    model = FixedRater(np.zeros((2, 3)), table)
    res = evaluate(model, target, history, EvalSpec(metrics=("rmse", "mae", "hit"), ks=(1,)))
    # errors: 3-4 = -1, 5-2 = 3, 4-5 = -1 -> RMSE = sqrt(11/3), MAE = 5/3
    assert res.metrics["rmse"] == pytest.approx(math.sqrt(11 / 3))
    assert res.metrics["mae"] == pytest.approx(5 / 3)
    assert "hit@1" in res.metrics
    with pytest.raises(ConfigError, match="does not predict ratings"):
        evaluate(FixedScorer(np.zeros((2, 3))), target, history, EvalSpec(metrics=("rmse",)))
    implicit = inter([(0, 0)], 2, 3)
    with pytest.raises(ConfigError, match="no explicit ratings"):
        evaluate(model, target, implicit, EvalSpec(metrics=("mae",)))


def test_blocks_perfect_model(blocks: Interactions) -> None:
    # an oracle that scores a user's own block highest gets every hit when k covers the block
    users_per_block, items_per_block = 10, 8
    u = np.arange(blocks.n_users)[:, None] // users_per_block
    i = np.arange(blocks.n_items)[None, :] // items_per_block
    oracle = FixedScorer((u == i).astype(np.float32))
    half = blocks.select(np.arange(len(blocks)) % 2 == 0)
    rest = blocks.select(np.arange(len(blocks)) % 2 == 1)
    res = evaluate(oracle, rest, half, EvalSpec(metrics=("recall",), ks=(items_per_block,)))
    assert res.metrics[f"recall@{items_per_block}"] == 1.0


def test_sampled_with_full_ranking_reports_both_in_one_call() -> None:
    rng = np.random.default_rng(0)
    history = Interactions(rng.integers(0, 30, 300), rng.integers(0, 50, 300), 30, 50)
    target = Interactions(np.arange(30), rng.integers(0, 50, 30), 30, 50)

    class Fixed:
        scores = rng.random((30, 50)).astype(np.float32)

        def score(self, users: np.ndarray, history: Interactions) -> np.ndarray:
            return self.scores[users]

    model = Fixed()
    full = evaluate(model, target, history, EvalSpec(ks=(10,)))
    sampled = evaluate(model, target, history, EvalSpec(ks=(10,), sampled_negatives=20, sample_seed=3))
    both = evaluate(
        model,
        target,
        history,
        EvalSpec(ks=(10,), sampled_negatives=20, sample_seed=3, also_full_ranking=True),
    )
    assert both.metrics == {**full.metrics, **sampled.metrics}
    assert set(both.per_user) == set(full.per_user) | set(sampled.per_user)
