"""The plain MLP classifier: contract, sensitivity, rating mode, chunked scoring, config."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import torch

from recbench.data.interactions import Interactions
from recbench.errors import ConfigError, DataError
from recbench.models.base import capabilities_of
from recbench.models.mlp import MLPClassifier
from recbench.training.trainer import Trainer

#: hyperparameters and a changed value for each (parameter-sensitivity test, implicit mode)
CHANGES = {
    "embedding_dim": 4,
    "hidden_layers": [16],
    "reg": 0.5,
    "num_negatives": 2,
    "negative_sampling": "popularity",
    "mode": "rating",
    "sparse_updates": False,
}


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny tensors gain nothing from intra-op threads, and on a busy machine they cost a lot."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def make(epochs: int = 3, lr: float = 0.01, batch_size: int = 64, **params: object) -> MLPClassifier:
    trainer = Trainer(epochs=epochs, batch_size=batch_size, lr=lr, device="cpu", progress=False)
    return MLPClassifier(
        **{"embedding_dim": 8, "hidden_layers": [16, 8], "seed": 0, **params}, trainer=trainer
    )


def test_rating_mode_contract(blocks: Interactions) -> None:
    """mode=rating, which configs/model/mlp.yaml does not set (the shared contract runs mode=implicit)."""
    mode = "rating"
    model = make(mode=mode)
    params_before = dict(vars(model))
    assert model.fit(blocks) is model
    new_attrs = set(vars(model)) - set(params_before)
    assert new_attrs and all(a.endswith("_") for a in new_attrs)
    users = np.arange(blocks.n_users)
    scores = model.score(users, blocks)
    assert scores.shape == (blocks.n_users, blocks.n_items) and scores.dtype == np.float32
    assert np.isfinite(scores).all()
    np.testing.assert_array_equal(make(mode=mode).fit(blocks).score(users, blocks), scores)
    assert not np.array_equal(make(mode=mode, seed=1).fit(blocks).score(users, blocks), scores)
    clone = model.clone()
    assert not clone.is_fitted and clone.get_params() == model.get_params()


def test_top1_within_block(blocks: Interactions) -> None:
    model = make(epochs=20, lr=0.02, batch_size=32, reg=0.0).fit(blocks)
    scores = model.score(np.arange(blocks.n_users), blocks)
    scores[blocks.users, blocks.items] = -np.inf
    can_hit = blocks.user_counts() < 8  # users who have not seen every item of their block
    assert ((scores.argmax(1) // 8) == (np.arange(blocks.n_users) // 10))[can_hit].mean() >= 0.9


def test_every_hyperparameter_matters(blocks: Interactions) -> None:
    users = np.arange(blocks.n_users)
    base = make(epochs=2).fit(blocks).score(users, blocks)
    for key, value in CHANGES.items():
        changed = make(epochs=2, **{key: value}).fit(blocks).score(users, blocks)
        assert not np.allclose(changed, base, atol=1e-5), f"mlp.{key} has no effect"
    # use_features / id_dropout need side features: tests/models/test_id_feature_models.py
    assert set(MLPClassifier().get_params()) - {"seed", "trainer", "use_features", "id_dropout"} == set(
        CHANGES
    )


def explicit(n_users: int = 80, n_items: int = 40, density: float = 0.5, seed: int = 0):
    """Ratings 1..5 from user/item offsets and a rank-2 interaction, split 80/20 at random."""
    rng = np.random.default_rng(seed)
    u, i = np.nonzero(rng.random((n_users, n_items)) < density)
    p, q = rng.normal(size=(n_users, 2)), rng.normal(size=(n_items, 2))
    b_u, b_i = rng.normal(0, 0.6, n_users), rng.normal(0, 0.6, n_items)
    r = np.clip(np.rint(3 + b_u[u] + b_i[i] + 0.7 * (p[u] * q[i]).sum(1)), 1, 5)
    data = Interactions(u, i, n_users, n_items, ratings=r.astype(np.float32))
    test = rng.random(len(data)) < 0.2
    return data.select(~test), data.select(test)


def test_rating_mode_predicts_on_the_rating_scale(blocks: Interactions) -> None:
    train, test = explicit()
    model = make(mode="rating", epochs=40, lr=0.005, batch_size=128).fit(train)
    assert capabilities_of(model).ratings and model.max_rating_ == 5.0
    pred = model.predict(test.users, test.items)
    assert pred.dtype == np.float32 and pred.shape == (len(test),)
    assert pred.min() > 0.0 and pred.max() <= 5.0 and pred.max() > 3.5
    assert test.ratings is not None and train.ratings is not None
    rmse = np.sqrt(np.mean((pred - test.ratings) ** 2))
    baseline = np.sqrt(np.mean((train.ratings.mean() - test.ratings) ** 2))
    assert rmse < 0.9 * baseline
    with pytest.raises(ConfigError, match="mode=rating"):
        make().fit(blocks).predict(test.users, test.items)


def test_rating_mode_needs_ratings(blocks: Interactions) -> None:
    implicit = Interactions(blocks.users, blocks.items, blocks.n_users, blocks.n_items)
    with pytest.raises(DataError, match="model.mode=rating"):
        make(mode="rating").fit(implicit)
    with pytest.raises(ConfigError, match="model.mode"):
        make(mode="ratings").fit(blocks)


def test_chunked_scoring_matches_unchunked(blocks: Interactions, monkeypatch: pytest.MonkeyPatch) -> None:
    users = np.arange(blocks.n_users)
    model = make().fit(blocks)
    whole = model.score(users, blocks)
    monkeypatch.setattr(MLPClassifier, "max_score_pairs", blocks.n_items * 7)
    np.testing.assert_allclose(model.score(users, blocks), whole, rtol=0, atol=1e-6)
