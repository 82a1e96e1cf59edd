"""Link-prediction models against dense computations; the user is never recommended to themself."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from recbench.data.interactions import FeatureTable, Interactions
from recbench.errors import ConfigError
from recbench.evaluation.evaluator import EvalSpec, evaluate, top_lists
from recbench.models.link import (
    AdamicAdar,
    CommonNeighbors,
    Jaccard,
    PersonalizedPageRank,
    TasteHybrid,
)


def _graph(n: int = 25, m: int = 70, seed: int = 0) -> Interactions:
    rng = np.random.default_rng(seed)
    a, b = rng.integers(0, n, m), rng.integers(0, n, m)
    keep = a != b
    edges = np.unique(np.sort(np.stack([a[keep], b[keep]], axis=1), axis=1), axis=0)
    return Interactions(
        users=np.concatenate([edges[:, 0], edges[:, 1]]),
        items=np.concatenate([edges[:, 1], edges[:, 0]]),
        n_users=n,
        n_items=n,
    )


GRAPH = _graph()
A = GRAPH.binary_csr.toarray().astype(np.float64)
DEG = A.sum(axis=1)
USERS = np.arange(GRAPH.n_users)


def _scores(model) -> np.ndarray:
    return model.fit(GRAPH).score(USERS, GRAPH).astype(np.float64)


def test_common_neighbors_is_a_squared() -> None:
    np.testing.assert_allclose(_scores(CommonNeighbors()), A @ A)


def test_adamic_adar_by_its_definition() -> None:
    expected = np.zeros_like(A)
    for u in range(len(A)):
        for v in range(len(A)):
            shared = np.flatnonzero(A[u] * A[v])
            expected[u, v] = sum(1.0 / np.log(DEG[w]) for w in shared)
    np.testing.assert_allclose(_scores(AdamicAdar()), expected, rtol=1e-5)


def test_jaccard_by_its_definition() -> None:
    expected = np.zeros_like(A)
    for u in range(len(A)):
        for v in range(len(A)):
            union = np.count_nonzero(A[u] + A[v])
            expected[u, v] = np.count_nonzero(A[u] * A[v]) / union if union else 0.0
    np.testing.assert_allclose(_scores(Jaccard()), expected, rtol=1e-5)


def test_personalized_pagerank_solves_the_restart_equation() -> None:
    restart = 0.3
    walk = A / np.maximum(DEG, 1)[:, None]
    exact = restart * np.linalg.inv(np.eye(len(A)) - (1 - restart) * walk)  # row u: r_u
    got = _scores(PersonalizedPageRank(restart=restart, iterations=80))
    np.testing.assert_allclose(got, exact, rtol=1e-4, atol=1e-7)
    with pytest.raises(ConfigError, match="model.restart"):
        PersonalizedPageRank(restart=1.0).fit(GRAPH)


def test_taste_hybrid_mixes_scaled_adamic_adar_with_cosine() -> None:
    rng = np.random.default_rng(1)
    taste = sp.csr_matrix((rng.random((GRAPH.n_users, 6)) > 0.5).astype(np.float32))
    table = FeatureTable(taste, np.zeros(6, dtype=np.int64), ("artists",), tuple(f"a{j}" for j in range(6)))
    data = GRAPH.with_features(table, table)
    got = TasteHybrid(taste_weight=0.4).fit(data).score(USERS, data).astype(np.float64)
    aa = AdamicAdar().fit(GRAPH).score(USERS, GRAPH).astype(np.float64)
    top = aa.max(axis=1, keepdims=True)
    scaled = np.divide(aa, top, out=np.zeros_like(aa), where=top > 0)
    x = taste.toarray().astype(np.float64)
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    np.testing.assert_allclose(got, 0.6 * scaled + 0.4 * (x @ x.T), rtol=1e-5, atol=1e-7)
    with pytest.raises(ConfigError, match="side features"):
        TasteHybrid().fit(GRAPH)


def test_a_user_item_matrix_is_refused() -> None:
    data = Interactions(np.array([0, 1]), np.array([0, 2]), n_users=2, n_items=3)
    with pytest.raises(ConfigError, match="dataset=lastfm-friends"):
        CommonNeighbors().fit(data)


def test_exclude_self_keeps_users_out_of_their_own_lists() -> None:
    model = PersonalizedPageRank().fit(GRAPH)  # its best score is always the user themself
    top, _ = top_lists(model, USERS, GRAPH, 5, exclude_seen=True)
    np.testing.assert_array_equal(top[:, 0], USERS)  # without the mask, self comes first
    top, _ = top_lists(model, USERS, GRAPH, 5, exclude_seen=True, exclude_self=True)
    assert not np.any(top == USERS[:, None])
    held = Interactions(np.array([0, 1]), np.array([1, 0]), n_users=GRAPH.n_users, n_items=GRAPH.n_items)
    spec = EvalSpec(metrics=("ndcg",), ks=(5,), exclude_self=True, sampled_negatives=3)
    assert np.isfinite(evaluate(model, held, GRAPH, spec).metrics["ndcg@5_sampled3"])
    flat = Interactions(np.array([0]), np.array([2]), n_users=2, n_items=3)
    with pytest.raises(ConfigError, match="exclude_self"):
        top_lists(model, np.array([0]), flat, 1, exclude_self=True)


@pytest.mark.slow
def test_friend_recommendation_end_to_end(tmp_path: Path) -> None:
    import subprocess
    import sys

    rng = np.random.default_rng(0)
    lines = ["userID\tfriendID"]
    for a, b in rng.integers(0, 40, (300, 2)):
        lines.append(f"u{a}\tu{b}")
    edges = tmp_path / "user_friends.dat"
    edges.write_text("\n".join(lines) + "\n")
    out = tmp_path / "run"
    cmd = [
        sys.executable, "-m", "recbench", "train", "dataset=lastfm-friends", f"dataset.path={edges}",
        "split=link", "model=adamic_adar", f"hydra.run.dir={out}", "save_model=false",
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    import json

    record = json.loads((out / "metrics.json").read_text())
    assert record["status"] == "ok" and record["metrics"]["test/ndcg@10"] > 0
