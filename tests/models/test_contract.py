"""The Recommender contract: one parametrised suite, run for every model option in configs/model.

It checks behaviour, not shapes. Each model is built from its YAML (``trainer=fast`` plus the tiny-data
settings below, all documented config keys) and fitted on a small block-structured dataset whose ids are
shuffled, where users of block ``b`` interact (mostly) with items of block ``b``. Then:

* quality: the unseen in-block items rank above the out-of-block ones (NDCG@10 at least
  :data:`MARGIN` above the ``random`` model's); ``pop`` ranks by training count and the time-aware
  popularity options (``trending``, ``recent_pop``) by recency-weighted count instead; a model
  declaring ``similar`` finds each item's most similar items in its block;
* save/load: the model loaded from its saved files gives identical scores (and ratings,
  probabilities and similar items where declared);
* determinism (same seed, same scores; torch models: another seed, other scores), finite ``float32``
  scores (also for a user without history), and ``score`` independent of how the users are batched;
* the YAML keys equal the constructor's parameters, and its values the constructor's defaults;
* serving: a trained run loads and answers ``recommend`` and ``similar`` (:func:`test_trained_run_serves`).

The checks are plain functions (``check_*``) that the parametrised tests call, so that
:func:`test_broken_models_fail_the_contract` can run them against deliberately broken models and
assert that each one fails.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import yaml
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf
from scipy.stats import rankdata

from recbench.config import build
from recbench.data.interactions import FeatureTable, Interactions
from recbench.errors import ConfigError, RecbenchError
from recbench.evaluation.evaluator import EvalSpec, evaluate
from recbench.models.base import Recommender, TorchRecommender, capabilities_of
from recbench.models.baselines import Popularity, Random
from recbench.models.neighborhood import ItemKNN
from recbench.models.persistence import load_state, save_model

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"
MODELS = sorted(p.stem for p in (CONFIG_DIR / "model").glob("*.yaml"))

#: Trainer settings for every model on the tiny data: more, smaller steps than the tuned defaults.
TRAINER = ["trainer=fast", "trainer.epochs=5", "trainer.batch_size=32", "trainer.lr=0.01"]
#: Extra settings of the models that need them on tiny data (documented config keys only).
SETTINGS: dict[str, list[str]] = {
    "als": ["model.factors=8", "model.reg=1.0"],  # reg=30 is sized for MovieLens, not 600 interactions
    "puresvd": ["model.factors=4"],  # one factor per block
    "gru4rec": ["trainer.epochs=10", "trainer.batch_size=16"],
    "nextitnet": ["trainer.epochs=10", "trainer.batch_size=16"],
    "ncf_mlp": ["trainer.epochs=10", "trainer.batch_size=16"],
}
#: How far above the ``random`` model's NDCG@10 a learning model must rank the unseen in-block items.
MARGIN = 0.5
#: Options the block-quality check does not fit, and the check they get instead.
NOT_BLOCK = {
    "pop": "non-personalised: checked to rank by training count (check_popularity)",
    "random": "the floor the quality check measures the others against",
    "trending": "non-personalised, time-aware: checked to rank by recency-weighted count (check_recency)",
    "recent_pop": "non-personalised, time-aware: checked to rank by recency-weighted count (check_recency)",
}
#: Options that configure, with other values, a class whose own option holds its defaults.
PRESETS = {"recent_pop": "Trending with a 30-day window and no decay (model=trending holds the defaults)"}


# ---- data ---------------------------------------------------------------------------------------------


def one_hot(labels: np.ndarray, field: str) -> FeatureTable:
    n = int(labels.max()) + 1
    matrix = sp.csr_matrix(
        (np.ones(len(labels), dtype=np.float32), (np.arange(len(labels)), labels)), shape=(len(labels), n)
    )
    return FeatureTable(
        matrix, np.zeros(n, dtype=np.int64), (field,), tuple(f"{field}={j}" for j in range(n))
    )


@dataclasses.dataclass(frozen=True)
class Case:
    """Training data and the pairs a model that learned the blocks ranks first (unseen, in-block)."""

    train: Interactions
    relevant: Interactions
    exclude_self: bool = False
    item_block: np.ndarray | None = None  # the block of each item (None: no blocks)


def block_case(kind: str = "implicit", seed: int = 0) -> Case:
    """Four blocks of 12 users; users and items of a block carry the block as a one-hot feature.

    ``implicit``: 16 items per block, each user interacts with ~60% of its block (random timestamps and
    ratings 4-5). ``rated``: the same plus ~20% of the out-of-block items rated 1-2, so a rating model
    learns the blocks from the rating values. ``graph``: a friendship graph (items are users), friends
    within a block. Ids are shuffled, so id order says nothing about the blocks (ties stay uninformative).
    """
    rng = np.random.default_rng(seed)
    graph = kind == "graph"
    n_users = 48
    n_items = n_users if graph else 64
    user_block = rng.permutation(np.arange(n_users) // 12)
    item_block = user_block if graph else rng.permutation(np.arange(n_items) // 16)
    same = user_block[:, None] == item_block[None, :]
    seen = same & (rng.random(same.shape) < 0.6)
    if graph:
        seen = np.triu(seen, 1)
        seen |= seen.T
    relevant = same & ~seen
    if graph:
        np.fill_diagonal(relevant, False)
    if kind == "rated":
        seen |= ~same & (rng.random(same.shape) < 0.2)
    users, items = np.nonzero(seen)
    high, low = rng.integers(4, 6, len(users)), rng.integers(1, 3, len(users))
    train = Interactions(
        users.astype(np.int64),
        items.astype(np.int64),
        n_users,
        n_items,
        ratings=np.where(same[users, items], high, low).astype(np.float32),
        timestamps=rng.permutation(len(users)).astype(np.int64) * 3600,
    ).with_features(one_hot(user_block, "group"), one_hot(item_block, "kind"))
    ru, ri = np.nonzero(relevant)
    relevant_pairs = Interactions(ru.astype(np.int64), ri.astype(np.int64), n_users, n_items)
    return Case(train, relevant_pairs, graph, item_block)


@functools.cache
def case_of(kind: str) -> Case:
    return block_case(kind)


def case_for(model: Recommender) -> Case:
    """The case a model can train on: a user graph, rated data, or implicit data with everything."""
    caps = capabilities_of(model)
    return case_of("graph" if caps.needs_user_graph else "rated" if caps.needs_ratings else "implicit")


@functools.cache
def composed(name: str, seed: int = 0) -> DictConfig:
    """The train config of model option ``name`` with the tiny-data settings (composed once)."""
    overrides = [f"model={name}", f"seed={seed}", *TRAINER, *SETTINGS.get(name, [])]
    with initialize_config_dir(version_base="1.3", config_dir=str(CONFIG_DIR)):
        return compose("train", overrides=overrides)


def make(name: str, seed: int = 0) -> Recommender:
    """A new, unfitted model option ``name`` built from its YAML with the tiny-data settings."""
    return build(composed(name, seed).model, "model")


@functools.cache
def fitted(name: str) -> Recommender:
    """Model option ``name`` fitted on its case (shared by the checks; they never modify it)."""
    model = make(name)
    return model.fit(case_for(model).train)


# ---- the checks (plain functions: the broken-model test runs them too) ---------------------------------


def all_scores(model: Recommender, case: Case) -> np.ndarray:
    return model.score(np.arange(case.train.n_users), case.train)


def ndcg(model: Recommender, case: Case) -> float:
    """NDCG@10 of the unseen in-block items, seen items masked (the evaluator's own computation)."""
    spec = EvalSpec(
        metrics=("ndcg",), ks=(10,), batch_size=case.train.n_users, exclude_self=case.exclude_self
    )
    return evaluate(model, case.relevant, case.train, spec).metrics["ndcg@10"]


def check_learns_blocks(model: Recommender, case: Case) -> None:
    """The fitted ``model`` ranks the unseen in-block items first: NDCG@10 ``MARGIN`` above random."""
    floor = ndcg(Random(seed=0).fit(case.train), case)
    got = ndcg(model, case)
    assert got >= floor + MARGIN, (
        f"{model!r}: NDCG@10 {got:.3f}, random {floor:.3f}: the blocks were not learned"
    )


def check_scores(model: Recommender, case: Case) -> None:
    """``float32[users, items]``, finite, and the same whatever the batch of users scored together."""
    users = np.arange(case.train.n_users)
    scores = all_scores(model, case)
    assert scores.shape == (case.train.n_users, case.train.n_items)
    assert scores.dtype == np.float32
    assert np.isfinite(scores).all(), f"{model!r}: non-finite scores"
    for size in (1, 7):
        parts = [model.score(users[i : i + size], case.train) for i in range(0, len(users), size)]
        np.testing.assert_allclose(
            np.concatenate(parts), scores, rtol=1e-5, atol=1e-6, err_msg=f"scores in batches of {size} differ"
        )
    without = case.train.select(case.train.users != 0)  # user 0 with no history at scoring time
    assert np.isfinite(model.score(users[:1], without)).all(), f"{model!r}: non-finite scores, empty history"
    backwards = model.score(users[::-1].copy(), case.train)
    np.testing.assert_allclose(
        backwards[::-1], scores, rtol=1e-5, atol=1e-6, err_msg="user order changes scores"
    )


def check_concurrent_scores(model: Recommender, case: Case) -> None:
    """A model declaring ``concurrent_score`` gives the same scores when blocks are scored by several
    threads at once (the evaluator's workers do so)."""
    users = np.arange(case.train.n_users)
    blocks = [users[i : i + 5] for i in range(0, len(users), 5)] * 4
    alone = [model.score(b, case.train) for b in blocks]
    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(lambda b: model.score(b, case.train), blocks))
    for a, b in zip(alone, together):
        np.testing.assert_array_equal(a, b, err_msg=f"{model!r}: scores differ when scored concurrently")


def check_similar(model: Recommender, case: Case) -> None:
    """A model declaring ``similar`` finds each item's neighbours in its block: at least 80% of every
    item's 5 most similar other items (random lists hold about 25%)."""
    items = np.arange(case.train.n_items)
    sims = np.asarray(model.similar_items(items), dtype=np.float64)
    assert sims.shape == (len(items), len(items)) and np.isfinite(sims).all(), "similarities: shape, finite"
    sims[items, items] = -np.inf
    top = np.argsort(-sims, axis=1, kind="stable")[:, :5]
    share = float((case.item_block[top] == case.item_block[:, None]).mean())
    assert share >= 0.8, f"{model!r}: only {share:.0%} of the most similar items share the item's block"


def check_round_trip(model: Recommender, blank: Recommender, case: Case, run_dir: Path) -> None:
    """``blank`` (unfitted, same settings) loaded from ``model``'s saved files scores identically, and
    predicts ratings, probabilities and similar items identically where the model declares them."""
    save_model(model, run_dir)
    loaded = load_state(blank, run_dir, train=case.train)
    lost = f"{model!r}: learned state lost on save/load"
    np.testing.assert_array_equal(all_scores(loaded, case), all_scores(model, case), err_msg=lost)
    caps, pairs = capabilities_of(model), (case.train.users[:50], case.train.items[:50])
    if caps.ratings:
        try:
            want = model.predict(*pairs)
        except ConfigError:  # e.g. a KNN model fitted without ratings: the loaded one must say so too
            with pytest.raises(ConfigError):
                loaded.predict(*pairs)
        else:
            np.testing.assert_array_equal(loaded.predict(*pairs), want, err_msg=lost)
    if caps.probabilities:
        np.testing.assert_array_equal(loaded.predict_proba(*pairs), model.predict_proba(*pairs), err_msg=lost)
    if caps.similar:
        items = np.arange(case.train.n_items)
        np.testing.assert_array_equal(loaded.similar_items(items), model.similar_items(items), err_msg=lost)


def check_deterministic(
    model: Recommender, twin: Recommender, case: Case, other_seed: Recommender | None = None
) -> None:
    """``twin`` (unfitted, same settings and seed) fits to the same scores as the fitted ``model``, and
    ``other_seed`` (unfitted, another seed), if given, to other scores."""
    scores = all_scores(model, case)
    again = all_scores(twin.fit(case.train), case)
    # identical up to float summation order (sparse products may use threads): 1e-6 relative
    np.testing.assert_allclose(
        again, scores, rtol=1e-6, atol=1e-7, err_msg=f"{model!r}: same seed, other scores"
    )
    if other_seed is not None:
        other = all_scores(other_seed.fit(case.train), case)
        assert not np.array_equal(other, scores), f"{model!r}: the seed changes nothing"


def check_popularity(model: Recommender, case: Case) -> None:
    """Every user gets the same scores, ranked exactly as the items' training counts."""
    scores = all_scores(model, case)
    assert (scores == scores[:1]).all(), "popularity is the same for every user"
    counts = case.train.item_counts()
    assert (rankdata(scores[0]) == rankdata(counts)).all(), "items are not ranked by their training count"


def recency_case() -> Case:
    """Items 0-9 with 11-20 interactions about 100 days ago; items 10-19 with 1-10 in the last day."""
    day = 86_400
    counts = np.r_[np.arange(11, 21), np.arange(1, 11)]
    items = np.repeat(np.arange(20), counts)
    ages = np.where(items < 10, 100 * day, day // 2) + np.arange(len(items))
    stamps = (200 * day - ages).astype(np.int64)
    users = np.arange(len(items)) % 30
    train = Interactions(users.astype(np.int64), items.astype(np.int64), 30, 20, timestamps=stamps)
    return Case(train, train)


def check_recency(model: Recommender, case: Case) -> None:
    """Recent interactions outweigh old ones: every recently used item outranks every item used only
    long ago, and among the recent items more interactions rank higher."""
    scores = all_scores(model, case)[0]
    assert scores[10:].min() > scores[:10].max(), "an item used long ago outranks a recent one"
    assert (np.diff(scores[10:]) > 0).all(), "recent items are not ranked by their count"


# ---- the suite ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", MODELS)
def test_ranks_by_what_it_learned(name: str) -> None:
    """Quality: learning models find the blocks; the popularity options rank as popularity."""
    if name in ("trending", "recent_pop"):
        check_recency(make(name).fit(recency_case().train), recency_case())
        return
    model = fitted(name)
    if name == "pop":
        check_popularity(model, case_for(model))
    elif name not in NOT_BLOCK:
        check_learns_blocks(model, case_for(model))
    if capabilities_of(model).similar:
        check_similar(model, case_for(model))


@pytest.mark.parametrize("name", MODELS)
def test_scores_are_well_formed(name: str) -> None:
    model = fitted(name)
    check_scores(model, case_for(model))
    if capabilities_of(model).concurrent_score:
        check_concurrent_scores(model, case_for(model))
    learned = [k for k in vars(model) if k.endswith("_") and not k.startswith("__")]
    assert learned, "fit must set learned attributes ending in '_'"
    clone = model.clone()
    assert not clone.is_fitted
    assert clone.get_params().keys() == model.get_params().keys()
    if capabilities_of(model).ratings:
        # rating prediction either works or says why not (e.g. KNN fitted without ratings)
        train = case_for(model).train
        try:
            pred = model.predict(train.users[:20], train.items[:20])
        except ConfigError:
            return
        assert pred.shape == (20,) and np.isfinite(pred).all()


@pytest.mark.parametrize("name", MODELS)
def test_save_load_round_trip(name: str, tmp_path: Path) -> None:
    model = fitted(name)
    check_round_trip(model, make(name), case_for(model), tmp_path)


@pytest.mark.parametrize("name", MODELS)
def test_same_seed_same_scores(name: str) -> None:
    """Same seed, same scores; for torch models (random initialisation) another seed, other scores."""
    model = fitted(name)
    other = make(name, seed=1) if isinstance(model, TorchRecommender) else None
    check_deterministic(model, make(name), case_for(model), other)


@pytest.mark.parametrize("name", MODELS)
def test_yaml_keys_are_the_constructor_parameters(name: str) -> None:
    """configs/model/<name>.yaml builds an unfitted model and sets exactly its constructor's parameters;
    an option that is not a preset (a ``defaults:`` list, or :data:`PRESETS`) sets them to their defaults."""
    node = composed(name).model
    model = build(node, "model")
    assert isinstance(model, Recommender) and not model.is_fitted
    cls = type(model)
    keys = {str(k) for k in node if not str(k).startswith("_")}
    assert keys == set(cls._param_names()), f"configs/model/{name}.yaml keys differ from {cls.__name__}()"
    raw = yaml.safe_load((CONFIG_DIR / "model" / f"{name}.yaml").read_text())
    if "defaults" in raw or name in PRESETS:
        return
    defaults = cls.param_defaults()
    for key, value in raw.items():
        if key not in ("_target_", "trainer", "seed"):
            default = list(defaults[key]) if isinstance(defaults[key], tuple) else defaults[key]
            assert value == default, (
                f"configs/model/{name}.yaml {key}={value!r}, {cls.__name__} default {default!r}"
            )


# ---- broken models must fail the contract ---------------------------------------------------------------


class AllZero(ItemKNN):
    """Learns, then scores nothing: every score is zero."""

    def score(self, users: np.ndarray, history: Interactions) -> np.ndarray:
        return np.zeros((len(users), self.n_items_), dtype=np.float32)


class ZeroPopularity(Popularity):
    """Popularity that forgot to count."""

    def score(self, users: np.ndarray, history: Interactions) -> np.ndarray:
        return np.zeros((len(users), self.n_items_), dtype=np.float32)


class LosesState(ItemKNN):
    """Keeps part of what it learned under a private name, which saving skips: a loaded copy lacks it."""

    def fit(self, train: Interactions, val: Interactions | None = None) -> LosesState:
        super().fit(train, val)
        self._boost = train.item_counts().astype(np.float32)
        return self

    def score(self, users: np.ndarray, history: Interactions) -> np.ndarray:
        return super().score(users, history) + vars(self).get("_boost", np.float32(0))


class Unseeded(Random):
    """Ignores its seed."""

    def fit(self, train: Interactions, val: Interactions | None = None) -> Unseeded:
        super().fit(train, val)
        self.offset_ = int(np.random.default_rng().integers(1 << 62))
        return self


class BatchDependent(ItemKNN):
    """Normalises scores over the users scored together."""

    def score(self, users: np.ndarray, history: Interactions) -> np.ndarray:
        scores = super().score(users, history)
        return scores / np.float32(scores.max() + 1.0)


class SimilarAtRandom(ItemKNN):
    """Declares ``similar`` but answers with noise."""

    def similar_items(self, items: np.ndarray) -> np.ndarray:
        return np.random.default_rng(0).random((len(items), self.n_items_)).astype(np.float32)


class NonFinite(ItemKNN):
    """Divides by zero for items without neighbours."""

    def score(self, users: np.ndarray, history: Interactions) -> np.ndarray:
        scores = super().score(users, history)
        return np.log(scores)


BROKEN: dict[str, Callable[[Path], None]] = {
    "all-zero scores": lambda _: check_learns_blocks(
        AllZero().fit(case_of("implicit").train), case_of("implicit")
    ),
    "all-zero popularity": lambda _: check_popularity(
        ZeroPopularity().fit(case_of("implicit").train), case_of("implicit")
    ),
    "state lost on save/load": lambda tmp: check_round_trip(
        LosesState().fit(case_of("implicit").train), LosesState(), case_of("implicit"), tmp
    ),
    "seed ignored": lambda _: check_deterministic(
        Unseeded(seed=1).fit(case_of("implicit").train), Unseeded(seed=1), case_of("implicit")
    ),
    "batch-dependent scores": lambda _: check_scores(
        BatchDependent().fit(case_of("implicit").train), case_of("implicit")
    ),
    "similar items at random": lambda _: check_similar(
        SimilarAtRandom().fit(case_of("implicit").train), case_of("implicit")
    ),
    "non-finite scores": lambda _: check_scores(
        NonFinite().fit(case_of("implicit").train), case_of("implicit")
    ),
    "pop ranks by recency": lambda _: check_popularity(
        make("recent_pop").fit(recency_case().train), recency_case()
    ),
}


@pytest.mark.parametrize("broken", list(BROKEN))
def test_broken_models_fail_the_contract(broken: str, tmp_path: Path) -> None:
    """Each deliberately broken model fails the check written for its defect."""
    with np.errstate(divide="ignore"), pytest.raises(AssertionError):
        BROKEN[broken](tmp_path)


def test_the_real_models_pass_where_the_broken_ones_fail(tmp_path: Path) -> None:
    """The same checks pass for the unbroken parents (so the failures above are the defects)."""
    case = case_of("implicit")
    check_learns_blocks(ItemKNN().fit(case.train), case)
    check_popularity(Popularity().fit(case.train), case)
    check_round_trip(ItemKNN().fit(case.train), ItemKNN(), case, tmp_path)
    check_deterministic(Random(seed=1).fit(case.train), Random(seed=1), case)
    check_scores(ItemKNN().fit(case.train), case)
    check_similar(ItemKNN().fit(case.train), case)


def test_unsaveable_learned_state_is_an_error(tmp_path: Path) -> None:
    """Learned state under a public name without the trailing '_' would be dropped: saving refuses."""
    model = ItemKNN().fit(case_of("implicit").train)
    model.weights = model.similarity_
    with pytest.raises(RecbenchError, match="weights"):
        save_model(model, tmp_path)


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
