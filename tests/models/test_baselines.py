"""Popularity and Random: contract, exact scores, seeding, batch independence, configs."""

from __future__ import annotations

import numpy as np
import pytest

from recbench.data.interactions import Interactions
from recbench.models.baselines import Popularity, Random
from recbench.models.persistence import load_state, save_model


def check_contract(model, data: Interactions) -> np.ndarray:
    """fit returns self, learned state ends with ``_``, score shape/dtype, determinism, clone."""
    params = model.get_params()
    assert model.fit(data) is model
    learned = set(vars(model)) - set(params)
    assert learned and all(name.endswith("_") for name in learned)
    users = np.arange(data.n_users)
    scores = model.score(users, data)
    assert scores.shape == (data.n_users, data.n_items)
    assert scores.dtype == np.float32 and np.isfinite(scores).all()
    np.testing.assert_array_equal(model.clone().fit(data).score(users, data), scores)
    twin = model.clone()
    assert twin.get_params() == params and not twin.is_fitted
    return scores


def test_popularity_contract_and_counts(blocks: Interactions) -> None:
    scores = check_contract(Popularity(), blocks)
    counts = np.bincount(blocks.items, minlength=blocks.n_items).astype(np.float32)
    np.testing.assert_array_equal(scores, np.tile(counts, (blocks.n_users, 1)))


def test_random_contract_and_range(blocks: Interactions) -> None:
    scores = check_contract(Random(seed=3), blocks)
    assert scores.min() >= 0.0 and scores.max() < 1.0
    assert len(np.unique(scores)) > 0.99 * scores.size  # no structure, practically no ties


def test_random_depends_on_seed_only_per_user(blocks: Interactions) -> None:
    model = Random(seed=1).fit(blocks)
    full = model.score(np.arange(blocks.n_users), blocks)
    picked = np.array([7, 2, 7, 30])
    np.testing.assert_array_equal(model.score(picked, blocks), full[picked])  # batch-independent
    other = Random(seed=2).fit(blocks).score(np.arange(blocks.n_users), blocks)
    assert not np.array_equal(full, other)  # sensitivity to the only hyperparameter


def test_random_is_roughly_uniform() -> None:
    data = Interactions(np.array([0]), np.array([0]), n_users=200, n_items=500)
    scores = Random(seed=0).fit(data).score(np.arange(200), data)
    hist, _ = np.histogram(scores, bins=10, range=(0.0, 1.0))
    assert np.all(np.abs(hist / scores.size - 0.1) < 0.01)


@pytest.mark.parametrize("model", [Popularity(), Random(seed=4)])
def test_save_load_roundtrip(model, blocks: Interactions, tmp_path) -> None:
    model.fit(blocks)
    save_model(model, tmp_path)
    restored = load_state(model.clone(), tmp_path)
    users = np.arange(blocks.n_users)
    np.testing.assert_array_equal(restored.score(users, blocks), model.score(users, blocks))
