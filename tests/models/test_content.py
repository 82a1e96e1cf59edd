"""ContentKNN: cosine top-k of item feature rows, scores from the history, cold items included."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from recbench.data.interactions import FeatureTable, Interactions
from recbench.errors import ConfigError
from recbench.models.content import ContentKNN


def _data() -> Interactions:
    rng = np.random.default_rng(0)
    feats = sp.csr_matrix((rng.random((12, 7)) > 0.6).astype(np.float32) * rng.random((12, 7)))
    table = FeatureTable(feats, np.zeros(7, dtype=np.int64), ("f",), tuple(f"f={j}" for j in range(7)))
    users = rng.integers(0, 5, 30)
    items = rng.integers(0, 10, 30)  # items 10 and 11 are never interacted with (cold)
    return Interactions(users, items, n_users=5, n_items=12).with_features(None, table)


def test_scores_are_history_times_topk_cosine() -> None:
    data = _data()
    k = 4
    model = ContentKNN(k=k).fit(data)
    x = data.item_features.matrix.toarray().astype(np.float64)
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    sim = x @ x.T
    np.fill_diagonal(sim, 0.0)
    kept = np.zeros_like(sim)
    for i in range(len(sim)):
        top = np.argsort(-sim[i], kind="stable")[:k]
        top = top[sim[i, top] > 0]
        kept[i, top] = sim[i, top]
    np.testing.assert_allclose(model.similar_items(np.arange(12)), kept, rtol=1e-5, atol=1e-6)
    history = data.binary_csr.toarray()
    np.testing.assert_allclose(model.score(np.arange(5), data), history @ kept.T, rtol=1e-5, atol=1e-6)
    assert model.score(np.arange(5), data)[:, 10:].any()  # cold items are scored from content


def test_needs_item_features() -> None:
    plain = Interactions(np.array([0]), np.array([0]), n_users=1, n_items=2)
    with pytest.raises(ConfigError, match="text=tfidf"):
        ContentKNN().fit(plain)
