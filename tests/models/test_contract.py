"""The Recommender contract, checked for every model option in configs/model (the implicit/sklearn idea).

Each model is built from its YAML (trainer=fast) and fitted on block-diagonal data with side features,
where a user's right recommendations lie inside the user's own block.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from recbench.config import build
from recbench.data.interactions import FeatureTable, Interactions
from recbench.errors import ConfigError
from recbench.models.base import Recommender, capabilities_of
from tests.conftest import block_interactions

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"
MODELS = sorted(p.stem for p in (CONFIG_DIR / "model").glob("*.yaml"))


def one_hot(labels: np.ndarray, field: str) -> FeatureTable:
    n = int(labels.max()) + 1
    matrix = sp.csr_matrix(
        (np.ones(len(labels), dtype=np.float32), (np.arange(len(labels)), labels)), shape=(len(labels), n)
    )
    return FeatureTable(
        matrix, np.zeros(n, dtype=np.int64), (field,), tuple(f"{field}={j}" for j in range(n))
    )


@pytest.fixture(scope="module")
def data() -> Interactions:
    x = block_interactions(seed=3)
    return x.with_features(
        one_hot(np.arange(x.n_users) // 10, "group"), one_hot(np.arange(x.n_items) // 8, "kind")
    )


@pytest.fixture(scope="module")
def graph() -> Interactions:
    """A friendship graph for the user-user models: four blocks of ten users, friends within a block."""
    rng = np.random.default_rng(3)
    block = np.arange(40) // 10
    a, b = np.triu_indices(40, k=1)
    keep = (block[a] == block[b]) & (rng.random(len(a)) < 0.6)
    users = np.concatenate([a[keep], b[keep]])
    items = np.concatenate([b[keep], a[keep]])
    x = Interactions(users=users, items=items, n_users=40, n_items=40)
    return x.with_features(one_hot(block, "group"), one_hot(block, "group"))


def make(name: str, seed: int = 0) -> Recommender:
    with initialize_config_dir(version_base="1.3", config_dir=str(CONFIG_DIR)):
        cfg = compose(
            "train", overrides=[f"model={name}", "trainer=fast", f"seed={seed}", "trainer.epochs=3"]
        )
    return build(cfg.model, "model")


@pytest.mark.parametrize("name", MODELS)
def test_contract(name: str, data: Interactions, graph: Interactions) -> None:
    model = make(name)
    if capabilities_of(model).needs_user_graph:
        data = graph
    assert not model.is_fitted
    assert model.fit(data) is model
    users = np.arange(data.n_users)
    scores = model.score(users, data)
    assert scores.shape == (data.n_users, data.n_items)
    assert scores.dtype == np.float32
    assert np.isfinite(scores).all()
    learned = [k for k in vars(model) if k.endswith("_") and not k.startswith("__")]
    assert learned, "fit must set learned attributes ending in '_'"
    clone = model.clone()
    assert not clone.is_fitted
    assert clone.get_params().keys() == model.get_params().keys()
    again = make(name).fit(data).score(users, data)
    # identical up to float summation order (sparse products may use threads): 1e-6 relative
    np.testing.assert_allclose(scores, again, rtol=1e-6, atol=1e-7, err_msg="same seed, same scores")
    if capabilities_of(model).ratings:
        # rating prediction either works or says why not (e.g. KNN fitted without ratings)
        try:
            pred = model.predict(data.users[:20], data.items[:20])
        except ConfigError:
            return
        assert pred.shape == (20,) and np.isfinite(pred).all()


# ---- serving: every trained run loads and serves (issue 14) ------------------------------------------

#: Model configs with a setting that makes them read side features, served with that setting too.
FEATURE_VARIANTS = [("ncf", "model.use_features=true"), ("mlp", "model.use_features=true")]


@pytest.fixture(scope="module")
def feature_files(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """Overrides giving the tiny dataset side features from CSV files (it has none of its own)."""
    root = tmp_path_factory.mktemp("features")
    users = "id,group\n" + "".join(f"{u},g{u % 4}\n" for u in range(1, 61))
    items = "id,kind\n" + "".join(f"{i},k{i % 5}\n" for i in range(1, 41))
    (root / "users.csv").write_text(users)
    (root / "items.csv").write_text(items)
    return [
        "features=default",
        f"features.user_file={root / 'users.csv'}",
        f"features.item_file={root / 'items.csv'}",
    ]


@pytest.fixture(scope="module")
def graph_files(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """Overrides giving the user-graph models a tiny friendship graph (four blocks of ten users)."""
    root = tmp_path_factory.mktemp("graph")
    rng = np.random.default_rng(0)
    pairs = [(a, b) for a in range(1, 41) for b in range(a + 1, 41) if (a - 1) // 10 == (b - 1) // 10]
    rows = [f"{a}\t{b}\n" for a, b in pairs if rng.random() < 0.6]
    (root / "user_friends.dat").write_text("userID\tfriendID\n" + "".join(rows))
    return ["dataset=lastfm-friends", f"dataset.path={root / 'user_friends.dat'}", "split=link"]


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.mark.parametrize(("name", "setting"), [(m, None) for m in MODELS] + FEATURE_VARIANTS)
def test_trained_run_serves(
    name: str,
    setting: str | None,
    tmp_path: Path,
    feature_files: list[str],
    graph_files: list[str],
    cache_dir: Path,
) -> None:
    """Train on tiny data through the pipeline, then load the run directory as `recbench recommend` and
    `recbench similar` do: the loaded model reproduces the run's test metric (same data, features,
    split and state) and serves top-k lists and similar items."""
    from recbench.config import model_capabilities
    from recbench.evaluation.evaluator import evaluate
    from recbench.pipeline import RunContext, run
    from recbench.serving import load_run, recommend, similar_items

    overrides = [f"model={name}", "dataset=tiny", "trainer=fast", "trainer.epochs=1", "eval.ks=[10]"]
    overrides += ["eval.metrics=[ndcg]", f"paths.cache_dir={cache_dir}", *([setting] if setting else [])]
    with initialize_config_dir(version_base="1.3", config_dir=str(CONFIG_DIR)):
        cfg = compose("train", overrides=overrides)
    if model_capabilities(cfg.model).needs_user_graph:
        overrides = [o for o in overrides if o != "dataset=tiny"] + graph_files
        with initialize_config_dir(version_base="1.3", config_dir=str(CONFIG_DIR)):
            cfg = compose("train", overrides=overrides)
    if model_capabilities(cfg.model).needs_features:
        with initialize_config_dir(version_base="1.3", config_dir=str(CONFIG_DIR)):
            cfg = compose("train", overrides=overrides + feature_files)
    record = run(cfg, RunContext(tmp_path, {"model": name}))
    (tmp_path / ".hydra").mkdir()
    OmegaConf.save(cfg, tmp_path / ".hydra" / "config.yaml")  # what Hydra writes beside a CLI run
    loaded = load_run(tmp_path)
    if model_capabilities(cfg.model).needs_features:
        assert loaded.data.item_features is not None
    assert loaded.split is not None
    spec = dataclasses.replace(build(cfg.eval, "eval"), exclude_self=loaded.exclude_self)
    again = evaluate(loaded.model, loaded.split.test, loaded.split.test_history, spec).metrics["ndcg@10"]
    assert again == pytest.approx(record.metrics["test/ndcg@10"], rel=1e-5, abs=1e-7)
    lists = recommend(loaded, np.array([0, 1]), k=5)
    assert len(lists) == 10 and lists["score"].notna().all()
    seen = loaded.data.binary_csr
    for user, item in zip(lists["user"], lists["item"]):
        u, i = loaded.ids.user_index(user), loaded.ids.item_index(item)
        assert seen[u, i] == 0, "a recommended item was already seen"
    similar = similar_items(loaded, 0, k=5)
    assert len(similar) == 5 and loaded.ids.items[0] not in set(similar["item"])
    assert np.isfinite(similar["similarity"].to_numpy()).all()
