"""FM / Wide&Deep / DeepFM: the O(kn) identity, slot layout, cold-id zeroing, contract, full ranking."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recbench.data.features import multi_hot, one_hot
from recbench.data.interactions import FeatureTable, Interactions
from recbench.errors import ConfigError, DataError
from recbench.models.feature_models import FM, DeepFM, WideDeep, fm_pairwise, fm_pairwise_naive
from recbench.training.trainer import Trainer
from tests.conftest import block_interactions

MODELS = [FM, DeepFM, WideDeep]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny batches run much faster on one thread (and the machine is shared); restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def small(cls, **kw):
    """A small model of ``cls`` (a narrow MLP for the deep models)."""
    if cls is not FM:
        kw.setdefault("hidden", (16, 8))
    kw.setdefault("factors", 8)
    return cls(**kw)


def trainer(epochs: int = 2) -> Trainer:
    return Trainer(epochs=epochs, batch_size=64, lr=1e-2, device="cpu", progress=False)


def table(parts: list[tuple]) -> FeatureTable:
    import scipy.sparse as sp

    mats, cols, field_of = [], [], []
    for f, (mat, names) in enumerate(parts):
        mats.append(mat)
        cols += names
        field_of += [f] * len(names)
    return FeatureTable(
        matrix=sp.hstack(mats, format="csr").astype(np.float32),
        column_field=np.asarray(field_of),
        fields=tuple(f"f{j}" for j in range(len(parts))),
        columns=tuple(cols),
    )


def with_features(data: Interactions, users_per_block: int = 10, items_per_block: int = 8) -> Interactions:
    """Users: their block (one-hot) and a random 'age'; items: block plus a random second tag (multi-hot)."""
    rng = np.random.default_rng(0)
    ublock = np.arange(data.n_users) // users_per_block
    iblock = np.arange(data.n_items) // items_per_block
    users = table(
        [one_hot([f"b{b}" for b in ublock], "block"), one_hot(rng.integers(0, 3, data.n_users), "age")]
    )
    tags = [[f"b{b}", f"t{t}"] for b, t in zip(iblock, rng.integers(0, 5, data.n_items))]
    items = table([multi_hot(tags, "tag"), one_hot(rng.integers(0, 2, data.n_items).astype(str), "kind")])
    return data.with_features(users, items)


@pytest.fixture(scope="module")
def featured() -> Interactions:
    return with_features(block_interactions())


def test_fm_identity_equals_naive_double_sum() -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(7, 12, generator=gen) * (torch.rand(7, 12, generator=gen) < 0.4)
    v = torch.randn(12, 5, generator=gen)
    torch.testing.assert_close(fm_pairwise(x, v), fm_pairwise_naive(x, v), rtol=1e-5, atol=1e-5)


def dense_rows(model: FM, data: Interactions, users: np.ndarray, items: np.ndarray) -> torch.Tensor:
    """The explicit sparse row [user id | user features | item id | item features] of each pair."""
    assert data.user_features is not None and data.item_features is not None
    seen_u = model.seen_users_.astype(np.float32)
    seen_i = model.seen_items_.astype(np.float32)
    blocks = [
        np.eye(data.n_users, dtype=np.float32)[users] * seen_u[users, None],
        data.user_features.matrix.toarray()[users],
        np.eye(data.n_items, dtype=np.float32)[items] * seen_i[items, None],
        data.item_features.matrix.toarray()[items],
    ]
    return torch.from_numpy(np.concatenate(blocks, axis=1))


def test_fm_network_equals_the_textbook_formula(featured: Interactions) -> None:
    train = featured.select(featured.items != 5)  # item 5 unseen: its id column must read 0
    model = FM(factors=6, trainer=trainer(1), seed=0).fit(train)
    net = model.network_.eval()
    users = np.array([0, 3, 17, 39, 22])
    items = np.array([1, 5, 9, 31, 5])
    x = dense_rows(model, featured, users, items)
    v = net.emb.embed.weight[:-1].detach()
    w = net.emb.linear.weight[:-1, 0].detach()
    expected = net.bias.detach() + x @ w + fm_pairwise_naive(x, v)
    with torch.no_grad():
        got = net(torch.from_numpy(users), torch.from_numpy(items))
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("cls", MODELS)
def test_full_ranking_equals_pairwise_forward(cls, featured: Interactions) -> None:
    model = small(cls, factors=4, trainer=trainer(1), seed=1).fit(featured)
    users = np.array([0, 11, 25])
    scores = model.score(users, featured)
    net = model.network_.eval()
    with torch.no_grad():
        u = torch.from_numpy(np.repeat(users, featured.n_items))
        i = torch.from_numpy(np.tile(np.arange(featured.n_items), len(users)))
        pairs = net(u, i).reshape(len(users), -1).numpy()
        wide = net(torch.from_numpy(users), torch.arange(featured.n_items).repeat(len(users), 1)).numpy()
    np.testing.assert_allclose(scores, pairs, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(scores, wide, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("cls", MODELS)
def test_contract_fit_score_and_reproducibility(cls, featured: Interactions) -> None:
    model = small(cls, trainer=trainer(), seed=3)
    assert model.fit(featured) is model
    users = np.arange(featured.n_users)
    scores = model.score(users, featured)
    assert scores.shape == (featured.n_users, featured.n_items) and scores.dtype == np.float32
    assert np.isfinite(scores).all()
    again = small(cls, trainer=trainer(), seed=3).fit(featured).score(users, featured)
    np.testing.assert_array_equal(scores, again)
    other = model.clone(seed=4).fit(featured).score(users, featured)
    assert not np.array_equal(scores, other)
    assert set(model.get_params()) >= {"factors", "use_ids", "loss_type", "trainer", "seed"}


@pytest.mark.parametrize("cls", MODELS)
def test_cold_items_get_no_id_contribution(cls, featured: Interactions) -> None:
    cold = np.array([2, 13, 30])
    train = featured.select(~np.isin(featured.items, cold))
    model = small(cls, factors=4, id_dropout=0.2, trainer=trainer(1), seed=0).fit(train)
    assert not model.seen_items_[cold].any() and model.seen_items_[np.setdiff1d(np.arange(32), cold)].all()
    users = np.arange(featured.n_users)
    before = model.score(users, train)
    id_cols = featured.n_users + featured.user_features.n_columns + np.arange(featured.n_items)
    with torch.no_grad():  # scramble every item-id embedding and weight
        model.network_.emb.embed.weight[id_cols] = torch.randn(len(id_cols), 4) * 10
        model.network_.emb.linear.weight[id_cols] = 10.0
    after = model.score(users, train)
    np.testing.assert_allclose(after[:, cold], before[:, cold], rtol=1e-5, atol=1e-5)
    warm = np.setdiff1d(np.arange(featured.n_items), cold)
    assert not np.allclose(after[:, warm], before[:, warm])


@pytest.mark.parametrize("cls", [DeepFM, WideDeep])
def test_features_only_model_recommends_within_block(cls, featured: Interactions) -> None:
    model = small(cls, use_ids=False, trainer=trainer(20), seed=0).fit(featured)
    scores = model.score(np.arange(featured.n_users), featured)
    top = np.argsort(-scores, axis=1)[:, :3]
    same_block = (top // 8) == (np.arange(featured.n_users)[:, None] // 10)
    assert same_block.mean() > 0.9


def test_mse_predicts_ratings_and_bce_refuses(featured: Interactions) -> None:
    model = small(DeepFM, loss_type="mse", trainer=trainer(3), seed=0).fit(featured)
    pred = model.predict(featured.users[:20], featured.items[:20])
    assert pred.shape == (20,) and pred.dtype == np.float32 and np.isfinite(pred).all()
    assert 0.0 < pred.mean() < 6.0
    with pytest.raises(ConfigError, match="loss_type=mse"):
        FM(trainer=trainer(1)).fit(featured).predict(featured.users[:2], featured.items[:2])


def test_bpr_loss_and_no_side_features(blocks: Interactions) -> None:
    scores = FM(loss_type="bpr", trainer=trainer(1)).fit(blocks).score(np.arange(3), blocks)
    assert scores.shape == (3, blocks.n_items)  # ids only: FM is biased MF
    with pytest.raises(DataError, match="use_ids"):
        DeepFM(use_ids=False, trainer=trainer(1)).fit(blocks)
    with pytest.raises(ConfigError, match="loss_type"):
        FM(loss_type="hinge", trainer=trainer(1)).fit(blocks)
    implicit = Interactions(blocks.users, blocks.items, blocks.n_users, blocks.n_items)
    with pytest.raises(DataError, match="ratings"):
        WideDeep(loss_type="mse", trainer=trainer(1)).fit(implicit)


def test_save_and_load_restore_the_same_scores(featured: Interactions, tmp_path) -> None:
    from recbench.models.persistence import load_state, save_model

    train = featured.select(featured.items != 4)
    model = small(WideDeep, trainer=trainer(1), seed=0).fit(train)
    save_model(model, tmp_path)
    restored = load_state(model.clone(), tmp_path, train)
    users = np.arange(featured.n_users)
    np.testing.assert_array_equal(restored.score(users, train), model.score(users, train))


def test_cold_users_get_no_id_contribution(featured: Interactions) -> None:
    cold = np.array([1, 20])
    train = featured.select(~np.isin(featured.users, cold))
    model = small(DeepFM, factors=4, trainer=trainer(1), seed=0).fit(train)
    warm = np.array([0, 2])
    before, before_warm = model.score(cold, train), model.score(warm, train)
    with torch.no_grad():  # user id columns come first
        model.network_.emb.embed.weight[: featured.n_users] = torch.randn(featured.n_users, 4) * 10
    np.testing.assert_allclose(model.score(cold, train), before, rtol=1e-5, atol=1e-5)
    assert not np.allclose(model.score(warm, train), before_warm)
