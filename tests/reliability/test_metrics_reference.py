"""Ranking metrics agree with trec_eval (through pytrec_eval) on random rankings, to 1e-9.

Conventions, recbench name -> trec_eval measure (binary relevance, no ties: trec_eval breaks score ties
by document id, so every test ranking has distinct scores):

===============  ===================================  =================================================
recbench         trec_eval                            note
===============  ===================================  =================================================
precision@k      P_k                                  both divide by k, also when fewer than k items
recall@k         recall_k                             hits in the top k / |R| (not / min(|R|, k))
ndcg@k           ndcg_cut_k                           gain 1, discount 1/log2(rank + 1), ideal over
                                                      min(|R|, k) relevant items
mrr@k            recip_rank of the run cut to top k   trec_eval's recip_rank has no cut-off
hit@k            success_k
map@k            map_cut_k * |R| / min(|R|, k)        trec_eval divides the summed precisions by |R|;
                                                      recbench by min(|R|, k), so a perfect top-k
                                                      list scores 1 even when |R| > k
===============  ===================================  =================================================
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recbench.data.interactions import Interactions
from recbench.evaluation.evaluator import EvalSpec, evaluate
from recbench.evaluation.metrics import TOPK_METRICS

pytrec_eval = pytest.importorskip("pytrec_eval", reason="pytrec_eval-terrier (dev extra) is not installed")

TOL = 1e-9


def trec_reference(
    relevant: dict[str, set[str]], ranking: dict[str, list[str]], ks: list[int]
) -> dict[str, dict[str, float]]:
    """Per query, recbench-named metric values computed by trec_eval."""
    qrels = {q: {d: 1 for d in docs} for q, docs in relevant.items()}
    run = {q: {d: float(len(docs) - r) for r, d in enumerate(docs)} for q, docs in ranking.items()}
    cut = ",".join(map(str, ks))
    measures = {f"P.{cut}", f"recall.{cut}", f"ndcg_cut.{cut}", f"map_cut.{cut}", f"success.{cut}"}
    full = pytrec_eval.RelevanceEvaluator(qrels, measures).evaluate(run)
    out: dict[str, dict[str, float]] = {q: {} for q in full}
    rr = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"})
    for k in ks:
        top = {q: dict(list(docs.items())[:k]) for q, docs in run.items()}
        cut_rr = rr.evaluate(top)
        for q, m in full.items():
            n_rel = len(relevant[q])
            out[q].update(
                {
                    f"precision@{k}": m[f"P_{k}"],
                    f"recall@{k}": m[f"recall_{k}"],
                    f"ndcg@{k}": m[f"ndcg_cut_{k}"],
                    f"hit@{k}": m[f"success_{k}"],
                    f"map@{k}": m[f"map_cut_{k}"] * n_rel / min(n_rel, k),
                    f"mrr@{k}": cut_rr.get(q, {}).get("recip_rank", 0.0),
                }
            )
    return out


@st.composite
def rankings(draw: st.DrawFn) -> tuple[np.ndarray, list[np.ndarray], list[int]]:
    """Random full rankings of a small catalogue, relevant sets and cut-offs (some beyond the catalogue)."""
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    n_users, n_items = int(rng.integers(1, 12)), int(rng.integers(1, 40))
    order = np.stack([rng.permutation(n_items) for _ in range(n_users)])
    relevant = [
        rng.choice(n_items, size=int(rng.integers(1, n_items + 1)), replace=False) for _ in range(n_users)
    ]
    ks = sorted({int(k) for k in rng.integers(1, n_items + 6, size=3)})
    return order, relevant, ks


@settings(max_examples=150, deadline=None)
@given(case=rankings())
def test_metric_functions_match_trec_eval(case: tuple[np.ndarray, list[np.ndarray], list[int]]) -> None:
    order, relevant, ks = case
    hits = np.stack([np.isin(order[u], relevant[u]) for u in range(len(order))])
    n_rel = np.array([len(r) for r in relevant])
    ref = trec_reference(
        {f"u{u}": {f"d{i}" for i in rel} for u, rel in enumerate(relevant)},
        {f"u{u}": [f"d{i}" for i in order[u]] for u in range(len(order))},
        ks,
    )
    for name, metric in TOPK_METRICS.items():
        for k in ks:
            ours = metric(hits, n_rel, k)
            theirs = np.array([ref[f"u{u}"][f"{name}@{k}"] for u in range(len(order))])
            np.testing.assert_allclose(ours, theirs, rtol=0, atol=TOL, err_msg=f"{name}@{k}")


class FixedScores:
    """A scorer returning rows of a fixed score matrix (a fresh copy each call, as the evaluator asks)."""

    def __init__(self, scores: np.ndarray) -> None:
        self.scores = scores

    def score(self, users: np.ndarray, history: Interactions) -> np.ndarray:
        return self.scores[users].copy()


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), batch_size=st.integers(1, 7))
def test_evaluator_matches_trec_eval_with_seen_items_masked(seed: int, batch_size: int) -> None:
    rng = np.random.default_rng(seed)
    n_users, n_items = int(rng.integers(1, 15)), int(rng.integers(2, 50))
    pairs = rng.random((n_users, n_items))
    seen, target = pairs < 0.3, (pairs >= 0.3) & (pairs < 0.3 + rng.uniform(0.05, 0.4))
    overlap = rng.random((n_users, n_items)) < 0.05  # a few targets the user has also seen: never relevant
    target |= overlap
    scores = np.stack([rng.permutation(n_items) for _ in range(n_users)]).astype(np.float32)  # no ties

    def inter(mask: np.ndarray) -> Interactions:
        u, i = np.nonzero(mask)
        return Interactions(u, i, n_users, n_items)

    ks = sorted({int(k) for k in rng.integers(1, n_items + 3, size=3)})
    spec = EvalSpec(metrics=tuple(TOPK_METRICS), ks=tuple(ks), batch_size=batch_size)
    result = evaluate(FixedScores(scores), inter(target), inter(seen), spec)

    relevant = {f"u{u}": {f"d{i}" for i in np.flatnonzero(target[u] & ~seen[u])} for u in range(n_users)}
    relevant = {q: docs for q, docs in relevant.items() if docs}
    ranking = {
        f"u{u}": [f"d{i}" for i in np.argsort(-scores[u], kind="stable") if not seen[u, i]]
        for u in range(n_users)
    }
    assert [f"u{u}" for u in result.users] == sorted(relevant, key=lambda q: int(q[1:]))
    if not relevant:
        return
    ref = trec_reference(relevant, {q: ranking[q] for q in relevant}, ks)
    for key, values in result.per_user.items():
        theirs = np.array([ref[f"u{u}"][key] for u in result.users])
        np.testing.assert_allclose(values, theirs, rtol=0, atol=TOL, err_msg=key)
        assert result.metrics[key] == pytest.approx(theirs.mean(), abs=TOL)


def test_map_normalisation_differs_from_trec_eval_as_documented() -> None:
    """Three relevant items, k = 2, both at the top: recbench AP@2 = 1, trec_eval map_cut_2 = 2/3."""
    ref = trec_reference({"q": {"a", "b", "c"}}, {"q": ["a", "b", "x", "c"]}, [2])
    hits = np.array([[True, True, False, True]])
    assert TOPK_METRICS["map"](hits, np.array([3]), 2)[0] == pytest.approx(1.0)
    assert ref["q"]["map@2"] == pytest.approx(1.0)  # = map_cut_2 (2/3) * |R| / min(|R|, k)
