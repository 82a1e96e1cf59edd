"""PureSVD, EASE and NMF: contract, dense references, non-negativity, sensitivity, failure modes."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from recbench.data.interactions import Interactions
from recbench.errors import ConfigError, DataError
from recbench.models import decomposition
from recbench.models.base import capabilities_of
from recbench.models.decomposition import EASE, NMF, PureSVD
from recbench.models.persistence import load_state, save_model

FACTORIES = {
    "puresvd": lambda **kw: PureSVD(**{"factors": 4, **kw}),
    "ease": lambda **kw: EASE(**{"l2": 10.0, **kw}),
    "nmf": lambda **kw: NMF(**{"factors": 4, "iterations": 30, **kw}),
}
#: every numeric hyperparameter with a changed value (PureSVD's seed only fixes ARPACK's start
#: vector: the subspace, hence the scores, do not depend on it)
CHANGES = {
    "puresvd": {"factors": 2},
    "ease": {"l2": 100.0},
    "nmf": {"factors": 3, "iterations": 5, "reg": 1.0, "seed": 1},
}
EXEMPT = {"puresvd": {"seed"}, "ease": set(), "nmf": set()}


def random_ratings(seed: int = 0, n_users: int = 30, n_items: int = 20) -> Interactions:
    rng = np.random.default_rng(seed)
    users, items = np.nonzero(rng.random((n_users, n_items)) < 0.4)
    ratings = rng.integers(1, 6, size=len(users)).astype(np.float32)
    return Interactions(users, items, n_users, n_items, ratings=ratings)


@pytest.mark.parametrize("name", FACTORIES)
def test_contract_and_block_top1(name: str, blocks: Interactions) -> None:
    model = FACTORIES[name]()
    params = model.get_params()
    assert model.fit(blocks) is model
    learned = set(vars(model)) - set(params)
    assert learned and all(a.endswith("_") for a in learned)
    users = np.arange(blocks.n_users)
    scores = model.score(users, blocks)
    assert scores.shape == (blocks.n_users, blocks.n_items) and scores.dtype == np.float32
    assert np.isfinite(scores).all()
    np.testing.assert_array_equal(FACTORIES[name]().fit(blocks).score(users, blocks), scores)
    np.testing.assert_allclose(model.score(users[::-3], blocks), scores[::-3], rtol=1e-5, atol=1e-6)
    clone = model.clone()
    assert not clone.is_fitted and clone.get_params() == params
    if name != "nmf":  # NMF fits observed ratings only: missing entries are not evidence against an item
        assert np.all(scores.argmax(axis=1) // 8 == users // 10)


@pytest.mark.parametrize("name", FACTORIES)
def test_every_numeric_hyperparameter_matters(name: str) -> None:
    data = random_ratings(seed=1)
    users = np.arange(data.n_users)
    base = FACTORIES[name]().fit(data).score(users, data)
    for key, value in CHANGES[name].items():
        changed = FACTORIES[name](**{key: value}).fit(data).score(users, data)
        assert not np.allclose(changed, base, atol=1e-5), f"{name}.{key} has no effect"
    numeric = {
        k
        for k, v in FACTORIES[name]().get_params().items()
        if isinstance(v, (int, float)) and not isinstance(v, bool)
    }
    assert numeric == set(CHANGES[name]) | EXEMPT[name]


def test_puresvd_matches_dense_svd() -> None:
    data = random_ratings(seed=2)
    for implicit in (True, False):
        model = PureSVD(factors=5, implicit=implicit).fit(data)
        x = data.binary_csr.toarray() if implicit else data.csr.toarray()
        _, sing, vt = np.linalg.svd(x.astype(np.float64))
        proj = vt[:5].T @ vt[:5]
        np.testing.assert_allclose(model.singular_values_, sing[:5], rtol=1e-4)
        np.testing.assert_allclose(model.score(np.arange(30), data), x @ proj, atol=1e-4)


def test_puresvd_factors_out_of_range(blocks: Interactions) -> None:
    with pytest.raises(ConfigError, match="factors"):
        PureSVD(factors=500).fit(blocks)


def test_ease_matches_dense_reference_with_zero_diagonal() -> None:
    data = random_ratings(seed=3)
    model = EASE(l2=7.0).fit(data)
    x = data.binary_csr.toarray().astype(np.float64)
    p = np.linalg.inv(x.T @ x + 7.0 * np.eye(x.shape[1]))
    ref = np.eye(x.shape[1]) - p / np.diag(p)[None, :]
    np.fill_diagonal(ref, 0.0)  # already ~0; exact zero is the contract
    assert np.all(np.diag(model.weights_) == 0.0)
    np.testing.assert_allclose(model.weights_, ref, atol=1e-5)
    np.testing.assert_allclose(model.score(np.arange(30), data), x @ ref, atol=1e-4)


def test_ease_scores_sparse_blocks_as_sparse_rows_with_the_dense_products_values(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rng = np.random.default_rng(4)
    n_users, n_items = 300, 400  # about 3 items per user: far below the dense path's density
    cells = np.unique(rng.integers(0, n_users * n_items, size=900))
    data = Interactions(
        users=(cells // n_items).astype(np.int32),
        items=(cells % n_items).astype(np.int32),
        n_users=n_users,
        n_items=n_items,
    )
    model = EASE(l2=5.0).fit(data)
    users = np.arange(n_users)
    dense = data.binary_csr[users].toarray() @ model.weights_
    calls: list[int] = []
    real = decomposition.sparse_rows_times_dense

    def spy(left, rows, weights):
        calls.append(len(rows))
        return real(left, rows, weights)

    monkeypatch.setattr(decomposition, "sparse_rows_times_dense", spy)
    np.testing.assert_allclose(model.score(users, data), dense, rtol=1e-5, atol=1e-6)
    assert calls == [n_users]  # one block of 300 users, summed as sparse rows
    calls.clear()
    dense_data = random_ratings(seed=3)  # 40% of the items per user: one dense product
    EASE(l2=5.0).fit(dense_data).score(np.arange(30), dense_data)
    assert calls == []


def test_ease_rejects_non_positive_l2(blocks: Interactions) -> None:
    with pytest.raises(ConfigError, match="l2"):
        EASE(l2=0.0).fit(blocks)


def test_nmf_factors_are_non_negative_and_fit_the_ratings() -> None:
    data = random_ratings(seed=4)
    model = NMF(factors=6, iterations=200, reg=0.0).fit(data)
    assert capabilities_of(model).ratings
    assert (model.user_factors_ >= 0).all() and (model.item_factors_ >= 0).all()
    pred = model.predict(data.users, data.items)
    assert pred.dtype == np.float32 and pred.min() >= 1.0 and pred.max() <= 5.0
    baseline = np.sqrt(np.mean((data.ratings - data.ratings.mean()) ** 2))
    assert np.sqrt(np.mean((pred - data.ratings) ** 2)) < 0.8 * baseline  # learns the observed ratings


def test_nmf_objective_decreases() -> None:
    data = random_ratings(seed=5)
    r = data.csr.toarray()
    mask = r > 0

    def objective(model: NMF) -> float:
        p, q = model.user_factors_.astype(np.float64), model.item_factors_.astype(np.float64)
        err = np.where(mask, r - p @ q.T, 0.0)
        n_u, n_i = mask.sum(axis=1)[:, None], mask.sum(axis=0)[:, None]
        return float((err**2).sum() + 0.1 * ((n_u * p**2).sum() + (n_i * q**2).sum()))

    values = [objective(NMF(factors=4, iterations=it, reg=0.1).fit(data)) for it in (1, 5, 20, 60)]
    assert all(a > b for a, b in itertools.pairwise(values))


def test_nmf_needs_ratings(blocks: Interactions) -> None:
    implicit_only = Interactions(blocks.users, blocks.items, blocks.n_users, blocks.n_items)
    assert NMF.capabilities.needs_ratings
    with pytest.raises(DataError, match="ratings"):
        NMF().fit(implicit_only)


def test_fold_in_uses_the_history(blocks: Interactions) -> None:
    extra = Interactions(np.array([0, 0]), np.array([20, 21]), blocks.n_users, blocks.n_items)
    history = blocks.concat(extra)
    for model in (PureSVD(factors=4).fit(blocks), EASE(l2=10.0).fit(blocks)):
        assert not np.allclose(model.score(np.array([0]), blocks), model.score(np.array([0]), history))


@pytest.mark.parametrize("name", FACTORIES)
def test_save_load_roundtrip(name: str, tmp_path) -> None:
    data = random_ratings(seed=6)
    model = FACTORIES[name]().fit(data)
    save_model(model, tmp_path)
    restored = load_state(model.clone(), tmp_path)
    users = np.arange(data.n_users)
    np.testing.assert_array_equal(restored.score(users, data), model.score(users, data))


def test_ease_refuses_before_allocating_when_memory_is_short(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("recbench.memory.available_bytes", lambda: 1 << 20)
    with pytest.raises(ConfigError, match="EASE on .* items .* needs about .*item_core"):
        EASE(l2=7.0).fit(random_ratings(seed=3))
