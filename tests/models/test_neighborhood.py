"""ItemKNN / UserKNN: contract, similarities against dense references, top-k, fold-in, predict."""

from __future__ import annotations

import numpy as np
import pytest

import recbench.models.neighborhood as nb
import recbench.models.similarity as similarity
from recbench.data.interactions import Interactions
from recbench.errors import ConfigError, DataError
from recbench.models.base import capabilities_of
from recbench.models.neighborhood import ItemKNN, UserKNN, fit_baselines
from recbench.models.persistence import load_state, save_model

MODELS = {"itemknn": ItemKNN, "userknn": UserKNN}


def random_ratings(
    n_users: int = 30, n_items: int = 20, density: float = 0.45, seed: int = 0
) -> Interactions:
    rng = np.random.default_rng(seed)
    mask = rng.random((n_users, n_items)) < density
    users, items = np.nonzero(mask)
    ratings = rng.integers(1, 6, size=len(users)).astype(np.float32)
    return Interactions(users, items, n_users, n_items, ratings=ratings)


def check_contract(model, data: Interactions) -> np.ndarray:
    params = model.get_params()
    assert model.fit(data) is model
    learned = set(vars(model)) - set(params)
    assert learned and all(name.endswith("_") for name in learned)
    users = np.arange(data.n_users)
    scores = model.score(users, data)
    assert scores.shape == (data.n_users, data.n_items)
    assert scores.dtype == np.float32 and np.isfinite(scores).all()
    np.testing.assert_array_equal(model.clone().fit(data).score(users, data), scores)
    np.testing.assert_allclose(model.score(users[::-3], data), scores[::-3], rtol=1e-6)
    twin = model.clone()
    assert twin.get_params() == params and not twin.is_fitted
    return scores


def top1_in_block(scores: np.ndarray, data: Interactions) -> bool:
    """Top-1 lies in the user's block, unmasked and among unseen items (users with one left)."""
    block_of_user = np.arange(data.n_users) // 10
    seen = data.binary_csr.toarray() > 0
    in_block = (np.arange(data.n_items)[None, :] // 8) == block_of_user[:, None]
    has_unseen = (in_block & ~seen).any(axis=1)
    masked = np.where(seen, -np.inf, scores).argmax(axis=1)
    return bool(
        np.all(scores.argmax(axis=1) // 8 == block_of_user)
        and np.all((masked // 8 == block_of_user)[has_unseen])
    )


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("similarity", ["cosine", "jaccard"])
def test_contract_and_block_top1(name: str, similarity: str, blocks: Interactions) -> None:
    scores = check_contract(MODELS[name](k=5, similarity=similarity), blocks)
    assert top1_in_block(scores, blocks)


def dense_reference(
    data: Interactions, item_based: bool, similarity: str, implicit: bool, shrink: float, idf: float
):
    """Similarity matrix straight from the definitions in the module docstring, with dense numpy."""
    ratings = data.csr.toarray().astype(np.float64)
    mask = (ratings != 0).astype(np.float64)
    values = mask if implicit or similarity == "jaccard" else ratings
    if similarity in ("pearson", "adjusted_cosine"):
        own_rows = (similarity == "pearson") != item_based  # centre users (rows) or items (columns)
        axis = 1 if own_rows else 0
        means = ratings.sum(axis) / np.maximum(mask.sum(axis), 1)
        values = (ratings - (means[:, None] if own_rows else means[None, :])) * mask
    if item_based:
        values, mask = values.T, mask.T
    weights = np.maximum(mask.sum(axis=0), 1) ** -idf
    prod = (values * weights) @ values.T
    if similarity == "jaccard":
        counts = mask.sum(axis=1)
        denom = counts[:, None] + counts[None, :] - prod
    else:
        norms = np.sqrt((values**2).sum(axis=1))
        denom = np.outer(norms, norms)
    sim = np.divide(prod, denom, out=np.zeros_like(prod), where=denom > 0)
    co = mask @ mask.T
    sim *= co / (co + shrink) if shrink else 1.0
    np.fill_diagonal(sim, 0.0)
    return np.where(sim > 0, sim, 0.0)


CASES = [
    ("cosine", True, 0.0, 0.0),
    ("cosine", True, 3.0, 0.5),
    ("cosine", False, 2.0, 1.0),
    ("jaccard", True, 5.0, 0.0),
    ("pearson", False, 0.0, 0.0),
    ("pearson", False, 4.0, 0.5),
    ("adjusted_cosine", False, 0.0, 0.3),
]


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize(("similarity", "implicit", "shrink", "idf"), CASES)
def test_similarity_matches_dense_reference(
    name: str, similarity: str, implicit: bool, shrink: float, idf: float
) -> None:
    data = random_ratings()
    model = MODELS[name](k=1000, similarity=similarity, implicit=implicit, shrink=shrink, idf=idf).fit(data)
    ref = dense_reference(data, name == "itemknn", similarity, implicit, shrink, idf)
    np.testing.assert_allclose(model.similarity_.toarray(), ref, atol=1e-5)


@pytest.mark.parametrize("name", MODELS)
def test_topk_keeps_the_k_largest_per_row(name: str) -> None:
    data = random_ratings(seed=1)
    k = 3
    sim = MODELS[name](k=k, idf=0.0).fit(data).similarity_
    ref = dense_reference(data, name == "itemknn", "cosine", True, 0.0, 0.0)
    nnz = np.diff(sim.indptr)
    assert np.all(nnz == np.minimum(k, (ref > 0).sum(axis=1)))
    dense = sim.toarray()
    for row in range(len(ref)):  # kept values are exactly the k largest of the reference row
        np.testing.assert_allclose(
            np.sort(dense[row][dense[row] > 0]), np.sort(ref[row])[::-1][: nnz[row]][::-1], rtol=1e-5
        )


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize(
    ("flop_cost", "dense_limit"),  # force the dense (BLAS) or sparse Gram paths, or a tiny memory budget
    [(0.0, 1 << 25), (1.0, 1 << 25), (0.0, 60)],
)
def test_product_paths_and_blocks_agree(
    name: str, flop_cost: float, dense_limit: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = random_ratings(seed=2)
    model = MODELS[name](k=6, shrink=2.0, implicit=False, similarity="pearson")
    sim, scores = model.fit(data).similarity_.toarray(), model.score(np.arange(data.n_users), data)
    monkeypatch.setattr(similarity, "_GRAM_FLOP_S", flop_cost)
    monkeypatch.setattr(similarity, "DENSE_LIMIT", dense_limit)
    monkeypatch.setattr(similarity, "BLOCK_ENTRIES", 50)  # several row blocks
    other = model.clone().fit(data)
    np.testing.assert_allclose(other.similarity_.toarray(), sim, atol=1e-6)
    np.testing.assert_allclose(other.score(np.arange(data.n_users), data), scores, rtol=1e-5, atol=1e-6)


def test_scores_are_history_times_neighbour_weights() -> None:
    data = random_ratings(seed=3)
    hist = data.binary_csr.toarray()
    item = ItemKNN(k=4).fit(data)
    np.testing.assert_allclose(
        item.score(np.arange(30), data), hist @ item.similarity_.toarray().T, rtol=1e-5
    )
    user = UserKNN(k=4).fit(data)
    np.testing.assert_allclose(user.score(np.arange(30), data), user.similarity_.toarray() @ hist, rtol=1e-5)


def test_history_folds_in(blocks: Interactions) -> None:
    extra = Interactions(np.array([1]), np.array([5]), blocks.n_users, blocks.n_items)
    history = blocks.concat(extra) if not blocks.binary_csr[1, 5] else blocks
    for model in (ItemKNN(k=5).fit(blocks), UserKNN(k=5).fit(blocks)):
        users = np.arange(blocks.n_users)
        assert not np.array_equal(model.score(users, blocks), model.score(users, history))


#: every numeric hyperparameter with a changed value; ranking ones move scores, baseline ones predictions
RANKING_CHANGES = {"k": 2, "shrink": 20.0, "idf": 1.0}
RATING_CHANGES = {"baseline_reg_users": 0.0, "baseline_reg_items": 0.0, "baseline_iterations": 1}


@pytest.mark.parametrize("name", MODELS)
def test_every_numeric_hyperparameter_matters(name: str) -> None:
    data = random_ratings(seed=4)
    users = np.arange(data.n_users)
    base = MODELS[name]().fit(data)
    for key, value in RANKING_CHANGES.items():
        changed = MODELS[name](**{key: value}).fit(data)
        assert not np.allclose(changed.score(users, data), base.score(users, data)), key
    for key, value in {**RATING_CHANGES, "implicit": False}.items():
        changed = MODELS[name](**{key: value}).fit(data)
        assert not np.allclose(
            changed.predict(data.users, data.items), base.predict(data.users, data.items)
        ), key
    numeric = {
        k for k, v in base.get_params().items() if isinstance(v, (int, float)) and not isinstance(v, bool)
    }
    assert numeric == set(RANKING_CHANGES) | set(RATING_CHANGES)


def naive_predict(model, data: Interactions, users: np.ndarray, items: np.ndarray) -> np.ndarray:
    """Koren's baseline-centred neighbour average, one pair at a time."""
    ratings = data.csr.toarray()
    sim = model.similarity_.toarray()
    base = model.global_mean_ + model.user_bias_[:, None] + model.item_bias_[None, :]
    resid = np.where(ratings > 0, ratings - base, 0.0)
    out = []
    for u, i in zip(users, items):
        if isinstance(model, ItemKNN):
            w = sim[i] * (ratings[u] > 0)
            num = w @ resid[u]
        else:
            w = sim[u] * (ratings[:, i] > 0)
            num = w @ resid[:, i]
        out.append(base[u, i] + (num / w.sum() if w.sum() > 0 else 0.0))
    return np.clip(out, 1, 5)


@pytest.mark.parametrize("name", MODELS)
def test_predict_matches_pairwise_reference(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(nb, "_PREDICT_CHUNK", 37)  # several chunks
    data = random_ratings(seed=6)
    model = MODELS[name](k=5, implicit=False, similarity="pearson", shrink=1.0).fit(data)
    assert capabilities_of(model).ratings
    users, items = np.meshgrid(np.arange(30), np.arange(20), indexing="ij")
    users, items = users.ravel(), items.ravel()
    pred = model.predict(users, items)
    assert pred.dtype == np.float32
    np.testing.assert_allclose(pred, naive_predict(model, data, users, items), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", MODELS)
def test_predict_without_neighbours_falls_back_to_baseline(name: str, blocks: Interactions) -> None:
    model = MODELS[name](k=5).fit(blocks)
    users = np.arange(10)  # block 0
    items = np.full(10, 12)  # an item of block 1: no neighbour of block-0 users / items touches it
    expected = model.global_mean_ + model.user_bias_[users] + model.item_bias_[items]
    np.testing.assert_allclose(model.predict(users, items), np.clip(expected, 1, 5), rtol=1e-6)


def test_baselines_solve_the_regularised_normal_equations() -> None:
    data = random_ratings(seed=7)
    mu, b_u, b_i = fit_baselines(data.csr, reg_users=3.0, reg_items=2.0, iterations=200)
    r = data.csr.toarray()
    m = r > 0
    resid = np.where(m, r - mu - b_u[:, None] - b_i[None, :], 0.0)
    np.testing.assert_allclose(resid.sum(axis=1), 3.0 * b_u, atol=1e-6)  # stationarity in b_u
    np.testing.assert_allclose(resid.sum(axis=0), 2.0 * b_i, atol=1e-6)  # and in b_i


def test_errors(blocks: Interactions) -> None:
    implicit_only = Interactions(blocks.users, blocks.items, blocks.n_users, blocks.n_items)
    with pytest.raises(ConfigError, match="implicit=false"):
        ItemKNN(similarity="pearson").fit(blocks)
    with pytest.raises(ConfigError, match="similarity"):
        UserKNN(similarity="euclid").fit(blocks)  # type: ignore[arg-type]
    with pytest.raises(DataError, match="ratings"):
        UserKNN(implicit=False).fit(implicit_only)
    with pytest.raises(DataError, match="ratings"):
        ItemKNN().fit(implicit_only).predict(np.array([0]), np.array([0]))


@pytest.mark.parametrize("name", MODELS)
def test_save_load_roundtrip(name: str, tmp_path) -> None:
    data = random_ratings(seed=8)
    model = MODELS[name](k=4).fit(data)
    save_model(model, tmp_path)
    restored = load_state(model.clone(), tmp_path)
    users = np.arange(data.n_users)
    np.testing.assert_array_equal(restored.score(users, data), model.score(users, data))
    np.testing.assert_array_equal(
        restored.predict(data.users, data.items), model.predict(data.users, data.items)
    )
