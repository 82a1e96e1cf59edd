"""ImplicitALS: contract, exact-solve reference, monotone objective, product paths, sensitivity."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import scipy.sparse as sp

from recbench.data.interactions import Interactions
from recbench.errors import ConfigError
from recbench.models import kernels
from recbench.models.als import ImplicitALS
from recbench.models.persistence import load_state, save_model

#: every numeric hyperparameter with a changed value
CHANGES = {"factors": 4, "iterations": 2, "reg": 1.0, "alpha": 10.0, "cg_steps": 3, "seed": 1}


def make(**params: object) -> ImplicitALS:
    return ImplicitALS(**{"factors": 8, "iterations": 5, "reg": 0.5, **params})


def random_data(seed: int = 0, n_users: int = 25, n_items: int = 18) -> Interactions:
    rng = np.random.default_rng(seed)
    users, items = np.nonzero(rng.random((n_users, n_items)) < 0.3)
    ratings = rng.integers(1, 6, size=len(users)).astype(np.float32)
    return Interactions(users, items, n_users, n_items, ratings=ratings)


def objective(model: ImplicitALS, data: Interactions) -> float:
    x, y = model.user_factors_.astype(np.float64), model.item_factors_.astype(np.float64)
    mat = data.binary_csr.toarray() if model.implicit else data.csr.toarray()
    pref = (mat > 0).astype(np.float64)
    conf = 1.0 + model.alpha * mat
    return float((conf * (pref - x @ y.T) ** 2).sum() + model.reg * ((x**2).sum() + (y**2).sum()))


def test_contract_and_block_top1(blocks: Interactions) -> None:
    model = make(reg=1.0, iterations=10)
    params = model.get_params()
    assert model.fit(blocks) is model
    learned = set(vars(model)) - set(params)
    assert learned and all(a.endswith("_") for a in learned)
    users = np.arange(blocks.n_users)
    scores = model.score(users, blocks)
    assert scores.shape == (blocks.n_users, blocks.n_items) and scores.dtype == np.float32
    assert np.isfinite(scores).all()
    np.testing.assert_array_equal(make(reg=1.0, iterations=10).fit(blocks).score(users, blocks), scores)
    clone = model.clone()
    assert not clone.is_fitted and clone.get_params() == params
    assert np.all(scores.argmax(axis=1) // 8 == users // 10)
    seen = blocks.binary_csr.toarray() > 0
    in_block = (np.arange(32)[None, :] // 8) == (users // 10)[:, None]
    unseen_left = (in_block & ~seen).any(axis=1)
    masked_top1 = np.where(seen, -np.inf, scores).argmax(axis=1)
    assert np.all((masked_top1 // 8 == users // 10)[unseen_left])


def test_every_numeric_hyperparameter_matters() -> None:
    data = random_data(seed=1)
    users = np.arange(data.n_users)
    base = make().fit(data).score(users, data)
    for key, value in CHANGES.items():
        changed = make(**{key: value}).fit(data).score(users, data)
        assert not np.allclose(changed, base, atol=1e-6), f"{key} has no effect"
    assert not np.allclose(make(implicit=False).fit(data).score(users, data), base, atol=1e-6)
    numeric = {
        k
        for k, v in ImplicitALS().get_params().items()
        if isinstance(v, (int, float)) and not isinstance(v, bool)
    }
    assert numeric == set(CHANGES)


@pytest.mark.parametrize("implicit", [True, False])
def test_objective_decreases_and_is_tracked(implicit: bool) -> None:
    data = random_data(seed=2)
    model = make(iterations=8, cg_steps=2, alpha=5.0, implicit=implicit).fit(data)
    history = model.loss_history_
    assert len(history) == 8
    assert all(a >= b - 1e-6 * abs(a) for a, b in itertools.pairwise(history))
    assert history[-1] < history[0]
    assert history[-1] == pytest.approx(objective(model, data), rel=1e-4)


def test_enough_cg_steps_give_the_exact_als_solution() -> None:
    data = random_data(seed=3)
    f, reg, alpha = 4, 0.3, 3.0
    model = ImplicitALS(factors=f, iterations=2, reg=reg, alpha=alpha, cg_steps=12, seed=5).fit(data)
    rng = np.random.default_rng(5)  # same initialisation as fit
    x = 0.01 * rng.standard_normal((data.n_users, f))
    y = 0.01 * rng.standard_normal((data.n_items, f))
    pref = data.binary_csr.toarray()
    conf = 1.0 + alpha * pref

    def solve(conf: np.ndarray, pref: np.ndarray, other: np.ndarray) -> np.ndarray:
        a = np.einsum("ui,if,ig->ufg", conf, other, other) + reg * np.eye(f)
        b = np.einsum("ui,ui,if->uf", conf, pref, other)
        return np.linalg.solve(a, b[..., None])[..., 0]

    for _ in range(2):
        x = solve(conf, pref, y)
        y = solve(conf.T, pref.T, x)
    np.testing.assert_allclose(model.user_factors_, x, rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(model.item_factors_, y, rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_observed_dots_match_dense_products(dtype: type) -> None:
    rng = np.random.default_rng(0)
    mat = sp.random(9, 7, density=0.4, format="csr", random_state=1)
    mat.indptr[4:] = mat.indptr[4]  # rows 4.. lose their entries: empty rows are fine
    mat = sp.csr_matrix((mat.data[: mat.indptr[4]], mat.indices[: mat.indptr[4]], mat.indptr), shape=(9, 7))
    x, y = rng.standard_normal((9, 5)).astype(dtype), rng.standard_normal((7, 5)).astype(dtype)
    rows = np.repeat(np.arange(9), np.diff(mat.indptr))
    got = kernels.ObservedDots(mat.indptr, mat.indices, 7)(x, y)
    assert got.dtype == dtype
    np.testing.assert_allclose(got, (x @ y.T)[rows, mat.indices], rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="do not fit"):
        kernels.ObservedDots(mat.indptr, mat.indices, 7)(x, y[:6])
    with pytest.raises(IndexError, match="out of range"):
        kernels.ObservedDots(mat.indptr, mat.indices, 3)


def test_users_without_interactions_get_zero_factors() -> None:
    data = random_data(seed=6)
    keep = data.users != 3
    model = make(iterations=3).fit(data.select(keep))
    np.testing.assert_allclose(model.user_factors_[3], 0.0, atol=1e-4)


@pytest.mark.parametrize("bad", [{"factors": 0}, {"cg_steps": 0}, {"reg": -1.0}, {"alpha": -1.0}])
def test_invalid_hyperparameters(bad: dict, blocks: Interactions) -> None:
    with pytest.raises(ConfigError, match="ImplicitALS"):
        make(**bad).fit(blocks)


def test_save_load_roundtrip(tmp_path) -> None:
    data = random_data(seed=7)
    model = make().fit(data)
    save_model(model, tmp_path)
    restored = load_state(model.clone(), tmp_path)
    users = np.arange(data.n_users)
    np.testing.assert_array_equal(restored.score(users, data), model.score(users, data))
