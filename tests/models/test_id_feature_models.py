"""NeuMF and the MLP classifier with ``use_features``: input width, cold ids, feature sensitivity,
errors, negatives, saving and a pipeline run on a cold-item split."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir

from recbench.data.features import multi_hot, one_hot
from recbench.data.interactions import Interactions
from recbench.errors import ConfigError, DataError
from recbench.models.base import TorchRecommender, capabilities_of
from recbench.models.mlp import MLPClassifier
from recbench.models.ncf import GMF, NeuMF
from recbench.models.persistence import load_state, save_model
from recbench.models.pointwise import pointwise_batches
from recbench.pipeline import RunContext, run
from recbench.training.trainer import Trainer
from tests.conftest import block_interactions
from tests.models.test_feature_models import table

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"
COLD = np.array([2, 3, 13, 20, 30])  # 2 and 3 get identical features (see ``featured``)


def neumf(**kw: object) -> NeuMF:
    return NeuMF(**{"embedding_dim": 8, "mlp_embedding_dim": 8, "mlp_layers": [16, 8], **kw})


def mlp(**kw: object) -> MLPClassifier:
    return MLPClassifier(**{"embedding_dim": 8, "hidden_layers": [16, 8], **kw})


MODELS: dict[str, Callable[..., TorchRecommender]] = {"ncf": neumf, "mlp": mlp}


def make(name: str, epochs: int = 2, lr: float = 1e-2, **kw: object) -> TorchRecommender:
    trainer = Trainer(epochs=epochs, batch_size=64, lr=lr, device="cpu", progress=False)
    return MODELS[name](**{"use_features": True, "seed": 0, **kw}, trainer=trainer)


@pytest.fixture(scope="module")
def featured() -> Interactions:
    """Block data (4 blocks of 30 users x 8 items); users: block + random age; items: multi-hot
    [block, random tag] + random kind.

    Cold item 3 copies the features of cold item 2 (same block); 13, 20, 30 lie in other blocks.
    """
    data = block_interactions(users_per_block=30)
    rng = np.random.default_rng(0)
    ublock, iblock = np.arange(data.n_users) // 30, np.arange(data.n_items) // 8
    users = table(
        [one_hot([f"b{b}" for b in ublock], "block"), one_hot(rng.integers(0, 3, data.n_users), "age")]
    )
    tag, kind = rng.integers(0, 5, data.n_items), rng.integers(0, 2, data.n_items)
    tag[3], kind[3] = tag[2], kind[2]
    tags = [[f"b{b}", f"t{t}"] for b, t in zip(iblock, tag)]
    items = table([multi_hot(tags, "tag"), one_hot(kind.astype(str), "kind")])
    return data.with_features(users, items)


@pytest.fixture(scope="module")
def warm(featured: Interactions) -> Interactions:
    """``featured`` without any interaction of the cold items."""
    return featured.select(~np.isin(featured.items, COLD))


@pytest.mark.parametrize("name", list(MODELS))
def test_tower_input_grows_by_the_feature_fields(name: str, warm: Interactions) -> None:
    plain = make(name, epochs=1, use_features=False).fit(warm)
    model = make(name, epochs=1).fit(warm)
    assert capabilities_of(model).needs_features and not capabilities_of(plain).needs_features
    assert capabilities_of(type(plain)()).needs_features is False  # the default needs no features
    width = model.network_.branches["mlp"].tower.linears[0].in_features
    # [user id, block, age] + [item id, tag, kind], 8 dimensions each, against [user id, item id]
    assert width == 8 * (3 + 3)
    assert plain.network_.branches["mlp"].tower.linears[0].in_features == 8 * 2
    assert not model.seen_items_[COLD].any() and model.seen_items_.sum() == warm.n_items - len(COLD)
    scores = model.score(np.arange(warm.n_users), warm)
    assert scores.shape == (warm.n_users, warm.n_items) and scores.dtype == np.float32
    assert np.isfinite(scores).all()
    again = make(name, epochs=1).fit(warm).score(np.arange(warm.n_users), warm)
    np.testing.assert_array_equal(scores, again)


@pytest.mark.parametrize("name", list(MODELS))
def test_full_ranking_equals_pairwise_forward(name: str, warm: Interactions) -> None:
    model = make(name, epochs=1).fit(warm)
    users = np.array([0, 31, 75, 119])
    net = model.network_.eval()
    with torch.no_grad():
        u = torch.from_numpy(np.repeat(users, warm.n_items))
        i = torch.from_numpy(np.tile(np.arange(warm.n_items), len(users)))
        pairs = net(u, i[:, None])[:, 0].reshape(len(users), -1).numpy()
    np.testing.assert_allclose(model.score(users, warm), pairs, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", list(MODELS))
def test_cold_items_are_scored_from_features_not_ids(name: str, warm: Interactions) -> None:
    model = make(name, epochs=2).fit(warm)
    users = np.arange(warm.n_users)
    before = model.score(users, warm)
    # identical features (2, 3): identical scores; different features: different scores
    np.testing.assert_allclose(before[:, 2], before[:, 3], rtol=1e-6, atol=1e-6)
    assert not np.allclose(before[:, 2], before[:, 13], atol=1e-4)
    with torch.no_grad():  # scramble every item-id embedding of every branch
        net = model.network_
        emb = net.branches["mlp"].emb
        n_ucols = warm.n_users + warm.user_features.n_columns
        emb.embed.weight[n_ucols : n_ucols + warm.n_items] = torch.randn(warm.n_items, 8)
        if "gmf" in net.branches:
            net.branches["gmf"].item.weight.copy_(torch.randn(warm.n_items, 8))
    after = model.score(users, warm)
    np.testing.assert_allclose(after[:, COLD], before[:, COLD], rtol=1e-5, atol=1e-5)
    warm_items = np.setdiff1d(np.arange(warm.n_items), COLD)
    assert not np.allclose(after[:, warm_items], before[:, warm_items], atol=1e-3)


@pytest.mark.parametrize("name", list(MODELS))
def test_features_rank_cold_items_of_the_users_block_first(name: str, warm: Interactions) -> None:
    model = make(name, epochs=20, id_dropout=0.5).fit(warm)
    users = np.arange(warm.n_users)
    scores = model.score(users, warm)[:, COLD]
    top_block = COLD[scores.argmax(1)] // 8
    assert (top_block == users // 30).mean() >= 0.9


@pytest.mark.parametrize("name", list(MODELS))
def test_id_dropout_matters_with_features(name: str, warm: Interactions) -> None:
    users = np.arange(warm.n_users)
    base = make(name, epochs=2).fit(warm).score(users, warm)
    other = make(name, epochs=2, id_dropout=0.5).fit(warm).score(users, warm)
    assert not np.allclose(base, other, atol=1e-5)


@pytest.mark.parametrize("name", list(MODELS))
def test_clear_errors(name: str, blocks: Interactions, warm: Interactions) -> None:
    with pytest.raises(DataError, match=r"use_features=true.*features=default"):
        make(name).fit(blocks)  # no side features
    with pytest.raises(ConfigError, match="model.id_dropout"):
        make(name, id_dropout=1.0).fit(warm)
    make(name, use_features=False, id_dropout=1.0, epochs=1).fit(blocks)  # ignored without features


def test_neumf_pretraining_with_features(warm: Interactions, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="model.pretrained_mlp"):
        make("ncf", pretrained_mlp=str(tmp_path)).fit(warm)
    trainer = Trainer(epochs=1, batch_size=64, device="cpu", progress=False)
    gmf = GMF(embedding_dim=8, trainer=trainer).fit(warm)
    save_model(gmf, tmp_path)
    net = make("ncf", pretrained_gmf=str(tmp_path)).build_network(warm)
    assert torch.equal(net.branches["gmf"].item.weight, gmf.network_.branches["gmf"].item.weight)


def test_negatives_come_from_the_pool(warm: Interactions) -> None:
    pool = np.setdiff1d(np.arange(warm.n_items), COLD)
    rng = np.random.default_rng(0)
    for sampling in ("uniform", "popularity"):
        batches = list(pointwise_batches(warm, 64, rng, 4, sampling, pool))
        users = torch.cat([b["users"] for b in batches]).numpy()
        neg = torch.cat([b["items"] for b in batches])[:, 1:].numpy()
        assert len(users) == len(warm) and neg.shape == (len(warm), 4)
        assert np.isin(neg, pool).all() and len(np.unique(neg)) > 10
        assert np.asarray(warm.binary_csr[np.repeat(users, 4), neg.ravel()]).sum() == 0  # unobserved
    model = make("ncf", epochs=1).fit(warm)
    sampled = np.concatenate([b["items"][:, 1:].numpy().ravel() for b in model.batches(warm, 64, rng)])
    assert not np.isin(sampled, COLD).any()


@pytest.mark.parametrize("name", list(MODELS))
def test_save_and_load_restore_the_same_scores(name: str, warm: Interactions, tmp_path: Path) -> None:
    model = make(name, epochs=1).fit(warm)
    save_model(model, tmp_path)
    restored = load_state(model.clone(), tmp_path, warm)
    users = np.arange(warm.n_users)
    np.testing.assert_array_equal(restored.score(users, warm), model.score(users, warm))


def test_pipeline_cold_items_run_with_own_feature_files(tmp_path: Path) -> None:
    """``model=ncf model.use_features=true split=cold_items`` end to end on the tiny dataset."""
    ids = np.arange(1, 101)
    (tmp_path / "users.csv").write_text("id,group\n" + "".join(f"{i},g{i % 3}\n" for i in ids))
    (tmp_path / "items.csv").write_text("id,kind\n" + "".join(f"{i},k{i % 4}\n" for i in ids))
    overrides = [
        "dataset=tiny",
        "trainer=fast",
        "model=ncf",
        "model.use_features=true",
        "split=cold_items",
        "features=default",
        f"features.user_file={tmp_path / 'users.csv'}",
        f"features.item_file={tmp_path / 'items.csv'}",
        f"paths.cache_dir={tmp_path / 'cache'}",
    ]
    with initialize_config_dir(version_base="1.3", config_dir=str(CONFIG_DIR)):
        cfg = compose("train", overrides=overrides)
    record = run(cfg, RunContext(tmp_path / "r", {"model": "ncf"}))
    assert record.status == "ok"
    assert 0.0 <= record.metrics["test/cold/ndcg@10"] <= 1.0
    assert (tmp_path / "r" / "model.pt").is_file()
    # without features=..., the option alone makes the pipeline load the dataset's own features,
    # which the synthetic dataset does not have
    with initialize_config_dir(version_base="1.3", config_dir=str(CONFIG_DIR)):
        cfg = compose("train", overrides=[o for o in overrides if not o.startswith("features")])
    with pytest.raises(ConfigError, match="features"):
        run(cfg, RunContext(tmp_path / "r2"))


def test_mlp_penalty_counts_every_occurrence(warm: Interactions) -> None:
    branch = make("mlp", epochs=1).fit(warm).network_.branches["mlp"]
    users, items = torch.tensor([0, 0, 3, 5]), torch.tensor([[1, 2], [1, 1], [7, 9], [30, 2]])
    expected = torch.zeros(())
    for side, idx in (("user", users), ("item", items)):
        cols, w = getattr(branch.emb, f"{side}_cols")[idx], getattr(branch.emb, f"{side}_weights")[idx]
        expected = expected + (branch.emb.embed(cols) * w.unsqueeze(-1)).pow(2).sum()
    torch.testing.assert_close(branch.l2(users, items), expected)
