"""CTR metrics (auc, logloss, accuracy): labelled pairs, sklearn agreement, models, pipeline."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from hydra import compose, initialize_config_dir

from recbench.config import build
from recbench.data.interactions import FeatureTable, Interactions
from recbench.errors import ConfigError
from recbench.evaluation import metrics as M
from recbench.evaluation.candidates import CandidateScorer
from recbench.evaluation.ctr import has_probabilities, uniform_unseen
from recbench.evaluation.evaluator import EvalSpec, evaluate
from recbench.models.base import ProbabilityPredictor
from recbench.pipeline import RunContext, run
from tests.conftest import block_interactions

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"
CTR = ("auc", "logloss", "accuracy")


def inter(pairs: list[tuple[int, int]], n_users: int, n_items: int, ratings=None) -> Interactions:
    arr = np.array(pairs, dtype=np.int64).reshape(-1, 2)
    r = None if ratings is None else np.asarray(ratings, dtype=np.float32)
    return Interactions(arr[:, 0], arr[:, 1], n_users, n_items, ratings=r)


class ScoreOnly:
    """A ranking model with fixed scores and no predict_proba."""

    def __init__(self, scores: np.ndarray) -> None:
        self.scores = np.asarray(scores, dtype=np.float32)

    def score(self, users: np.ndarray, history: Interactions) -> np.ndarray:
        return self.scores[users]


class SpyProba(ScoreOnly):
    """Fixed logits; ``predict_proba`` is their sigmoid and records the pairs it was asked about."""

    def __init__(self, scores: np.ndarray) -> None:
        super().__init__(scores)
        self.asked: list[tuple[np.ndarray, np.ndarray]] = []

    def predict_proba(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        self.asked.append((users.copy(), items.copy()))
        return (1.0 / (1.0 + np.exp(-self.scores[users, items].astype(np.float64)))).astype(np.float32)


def random_split(seed: int = 0, n_users: int = 30, n_items: int = 25) -> tuple[Interactions, Interactions]:
    """Disjoint random history and target pairs."""
    rng = np.random.default_rng(seed)
    cells = rng.permutation(n_users * n_items)[: n_users * n_items // 3]
    hist, targ = cells[: len(cells) * 2 // 3], cells[len(cells) * 2 // 3 :]

    def make(c: np.ndarray) -> Interactions:
        return Interactions(c // n_items, c % n_items, n_users, n_items)

    return make(targ), make(hist)


def pairs_of(spy: SpyProba) -> tuple[np.ndarray, np.ndarray]:
    assert len(spy.asked) == 1
    return spy.asked[0]


def test_accuracy_by_hand() -> None:
    labels = np.array([1, 0, 1, 0, 1])
    probs = np.array([0.9, 0.2, 0.4, 0.5, 0.5])
    # predicted 1 when p >= 0.5: 1, 0, 0, 1, 1 -> correct, correct, wrong, wrong, correct
    assert M.accuracy(labels, probs) == pytest.approx(3 / 5)
    assert M.accuracy(labels, probs, threshold=0.3) == pytest.approx(4 / 5)  # 1,0,1,1,1
    assert set(M.CTR_METRICS) == set(CTR)
    with pytest.raises(ValueError):
        M.accuracy(labels, probs[:3])


def test_evaluator_ctr_equals_sklearn_on_the_labelled_pairs() -> None:
    sk = pytest.importorskip("sklearn.metrics")
    target, history = random_split()
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(target.n_users, target.n_items)).astype(np.float32)
    logits[target.users, target.items] += 1.0  # some signal
    spy = SpyProba(logits)
    spec = EvalSpec(metrics=CTR, ctr_negatives=3, sample_seed=5)
    res = evaluate(spy, target, history, spec)
    users, items = pairs_of(spy)
    is_test = target.binary_csr[users, items].A1 > 0
    # every test pair is a positive once, with 3 negatives each
    assert is_test.sum() == len(target) and len(users) == 4 * len(target)
    assert np.all(np.diff(users) >= 0)
    probs = 1.0 / (1.0 + np.exp(-logits[users, items].astype(np.float64)))
    assert res.metrics["auc"] == pytest.approx(sk.roc_auc_score(is_test, probs), abs=1e-9)
    assert res.metrics["logloss"] == pytest.approx(sk.log_loss(is_test, probs), abs=1e-6)
    assert res.metrics["accuracy"] == pytest.approx(sk.accuracy_score(is_test, probs >= 0.5), abs=1e-12)
    assert 0.5 < res.metrics["auc"] < 1.0

    # a model without predict_proba gets its AUC from score rows, on the very same pairs
    for batch_size in (1, 7, 1000):
        only = evaluate(
            ScoreOnly(logits),
            target,
            history,
            EvalSpec(metrics=("auc",), ctr_negatives=3, sample_seed=5, batch_size=batch_size),
        )
        assert only.metrics["auc"] == pytest.approx(sk.roc_auc_score(is_test, logits[users, items]), abs=1e-9)


def test_negatives_avoid_history_and_target_and_are_seeded() -> None:
    target, history = random_split(seed=2)
    seen = (target.binary_csr + history.binary_csr).toarray() > 0
    got = []
    for seed in (0, 0, 1):
        spy = SpyProba(np.zeros((target.n_users, target.n_items)))
        evaluate(spy, target, history, EvalSpec(metrics=("logloss",), ctr_negatives=4, sample_seed=seed))
        got.append(pairs_of(spy))
    users, items = got[0]
    is_test = target.binary_csr[users, items].A1 > 0
    assert not seen[users[~is_test], items[~is_test]].any()  # negatives: never history, never test
    assert np.array_equal(got[0][1], got[1][1])  # same seed, same pairs
    assert not np.array_equal(got[0][1], got[2][1])  # another seed, other negatives


def test_uniform_unseen_is_exact_and_uniform() -> None:
    # user 0 may draw items {1, 4, 6}; user 1 has seen every item; user 2 only item 7
    excl = sp.csr_matrix(np.array([[1, 0, 1, 1, 0, 1, 0, 1], [1] * 8, [1] * 7 + [0]], dtype=np.float32))
    users = np.repeat([0, 1, 2], 30_000)
    items, ok = uniform_unseen(excl, users, np.random.default_rng(0))
    assert np.array_equal(ok, users != 1)
    counts = np.bincount(items[users == 0], minlength=8)
    assert set(np.flatnonzero(counts)) == {1, 4, 6}
    assert np.allclose(counts[[1, 4, 6]] / 30_000, 1 / 3, atol=0.015)
    assert np.all(items[users == 2] == 7)
    # a pool restricts the draw to its items (still outside the excluded ones)
    pooled, ok = uniform_unseen(
        excl, np.zeros(3000, dtype=np.int64), np.random.default_rng(0), np.array([4, 5, 6])
    )
    assert ok.all() and set(np.unique(pooled)) == {4, 6}


def test_user_with_everything_seen_gets_no_negatives() -> None:
    target = inter([(0, 0), (1, 2)], 2, 3)
    history = inter([(0, 1), (0, 2)], 2, 3)  # user 0 has seen all 3 items
    spy = SpyProba(np.zeros((2, 3)))
    evaluate(spy, target, history, EvalSpec(metrics=("accuracy",), ctr_negatives=2))
    users, items = pairs_of(spy)
    assert users.tolist() == [0, 1, 1, 1] and items[0] == 0 and items[1] == 2
    assert set(items[2:].tolist()) <= {0, 1}


def test_threshold_labels_come_from_ratings() -> None:
    sk = pytest.importorskip("sklearn.metrics")
    target = inter([(1, 0), (0, 3), (0, 1), (1, 2)], 2, 4, ratings=[5, 3, 4, 1])
    history = inter([(0, 0), (1, 1)], 2, 4, ratings=[2, 5])
    logits = np.array([[0.0, 2.0, 0.0, -1.0], [1.5, 0.0, 0.5, 0.0]], dtype=np.float32)
    spy = SpyProba(logits)
    res = evaluate(spy, target, history, EvalSpec(metrics=CTR, ctr_threshold=4))
    users, items = pairs_of(spy)
    # the rated test pairs only, sorted by (user, item): (0,1)=4, (0,3)=3, (1,0)=5, (1,2)=1
    assert list(zip(users.tolist(), items.tolist())) == [(0, 1), (0, 3), (1, 0), (1, 2)]
    labels = np.array([1, 0, 1, 0])
    probs = 1.0 / (1.0 + np.exp(-logits[users, items].astype(np.float64)))
    assert res.metrics["auc"] == pytest.approx(sk.roc_auc_score(labels, probs)) == 1.0
    assert res.metrics["logloss"] == pytest.approx(sk.log_loss(labels, probs), abs=1e-6)
    assert res.metrics["accuracy"] == pytest.approx(sk.accuracy_score(labels, probs >= 0.5))
    # all labels one class: auc NaN, the others still defined
    one = evaluate(SpyProba(logits), target, history, EvalSpec(metrics=CTR, ctr_threshold=1))
    assert np.isnan(one.metrics["auc"]) and np.isfinite(one.metrics["logloss"])
    with pytest.raises(ConfigError, match="ctr_threshold"):
        evaluate(
            spy, inter([(0, 1)], 2, 4), inter([(0, 0)], 2, 4), EvalSpec(metrics=("auc",), ctr_threshold=4)
        )


def test_probability_metrics_need_predict_proba() -> None:
    target, history = random_split()
    model = ScoreOnly(np.zeros((target.n_users, target.n_items)))
    assert not has_probabilities(model)
    with pytest.raises(ConfigError, match=r"logloss.*ScoreOnly.*predict_proba"):
        evaluate(model, target, history, EvalSpec(metrics=("ndcg", "auc", "logloss")))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"ctr_negatives": -1}, "ctr_negatives"),
        ({"ctr_negatives": 1.5}, "ctr_negatives"),
        ({"ctr_threshold": "four"}, "ctr_threshold"),
        ({"ctr_threshold": True}, "ctr_threshold"),
        ({"ctr_threshold": float("nan")}, "ctr_threshold"),
        ({"metrics": ("auc",), "ctr_negatives": 0}, "ctr_negatives=0"),
    ],
)
def test_spec_rejects_bad_ctr_settings(kwargs: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        EvalSpec(**kwargs)


def test_candidate_scorer_draws_negatives_among_candidates() -> None:
    target, history = random_split(seed=3)
    cands = np.unique(target.items)[:10]
    keep = np.isin(target.items, cands)
    cold_target = target.select(keep)
    spy = SpyProba(np.zeros((target.n_users, target.n_items)))
    wrapped = CandidateScorer(spy, cands)
    assert has_probabilities(wrapped) and not has_probabilities(CandidateScorer(ScoreOnly(spy.scores), cands))
    evaluate(wrapped, cold_target, history, EvalSpec(metrics=("logloss",), ctr_negatives=2))
    _, items = pairs_of(spy)
    assert np.isin(items, cands).all()


def _features(x: Interactions) -> Interactions:
    def one_hot(labels: np.ndarray, field: str) -> FeatureTable:
        n = int(labels.max()) + 1
        m = sp.csr_matrix(
            (np.ones(len(labels), dtype=np.float32), (np.arange(len(labels)), labels)), shape=(len(labels), n)
        )
        return FeatureTable(m, np.zeros(n, dtype=np.int64), (field,), tuple(f"{field}={j}" for j in range(n)))

    return x.with_features(one_hot(np.arange(x.n_users) // 10, "g"), one_hot(np.arange(x.n_items) // 8, "k"))


@pytest.mark.parametrize("name", ["gmf", "ncf_mlp", "ncf", "mlp", "fm", "widedeep", "deepfm"])
def test_pointwise_models_predict_the_sigmoid_of_their_scores(name: str) -> None:
    data = _features(block_interactions(n_blocks=2, seed=4))
    with initialize_config_dir(version_base="1.3", config_dir=str(CONFIG_DIR)):
        cfg = compose("train", overrides=[f"model={name}", "trainer=fast", "trainer.epochs=1"])
    model = build(cfg.model, "model").fit(data)
    assert isinstance(model, ProbabilityPredictor) and has_probabilities(model)
    users = np.array([0, 3, 3, 17, 19], dtype=np.int64)
    items = np.array([0, 5, 12, 9, 15], dtype=np.int64)
    probs = model.predict_proba(users, items)
    assert probs.dtype == np.float32 and probs.shape == (5,)
    logits = model.score(np.arange(data.n_users), data)[users, items].astype(np.float64)
    np.testing.assert_allclose(probs, 1.0 / (1.0 + np.exp(-logits)), rtol=1e-4, atol=1e-6)


def test_feature_model_with_bpr_loss_has_no_probabilities() -> None:
    with initialize_config_dir(version_base="1.3", config_dir=str(CONFIG_DIR)):
        cfg = compose("train", overrides=["model=fm", "model.loss_type=bpr", "trainer=fast"])
    model = build(cfg.model, "model")
    assert not has_probabilities(model)
    with pytest.raises(ConfigError, match="loss_type=bce"):
        model.predict_proba(np.zeros(1, dtype=np.int64), np.zeros(1, dtype=np.int64))


def cfg_for(*overrides: str, tmp_path: Path):
    with initialize_config_dir(version_base="1.3", config_dir=str(CONFIG_DIR)):
        return compose(
            "train",
            overrides=["dataset=tiny", "trainer=fast", f"paths.cache_dir={tmp_path / 'cache'}", *overrides],
        )


def test_pipeline_gmf_ctr_writes_ctr_metrics(tmp_path: Path) -> None:
    record = run(cfg_for("model=gmf", "eval=ctr", tmp_path=tmp_path), RunContext(tmp_path / "r"))
    saved = json.loads((tmp_path / "r" / "metrics.json").read_text())["metrics"]
    for part in ("val", "test"):
        for name in CTR:
            value = saved[f"{part}/{name}"]
            assert value == record.metrics[f"{part}/{name}"] and np.isfinite(value)
    assert (
        0.0 <= saved["test/auc"] <= 1.0 and 0.0 <= saved["test/accuracy"] <= 1.0 and saved["test/logloss"] > 0
    )
    assert "test/ndcg@10" in saved


def test_pipeline_refuses_logloss_for_a_ranking_model_before_training(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"logloss, accuracy.*model=BPR.*only auc"):
        run(cfg_for("model=bpr", "eval=ctr", tmp_path=tmp_path), RunContext(tmp_path / "r"))
    assert not (tmp_path / "r" / "history.csv").exists()  # failed before any epoch
    # auc alone works for any ranking model
    record = run(
        cfg_for("model=pop", "eval.metrics=[ndcg,auc]", tmp_path=tmp_path), RunContext(tmp_path / "p")
    )
    assert 0.5 < record.metrics["test/auc"] <= 1.0


def test_reports_and_searches_minimise_logloss() -> None:
    from recbench.reporting.callbacks import infer_direction
    from recbench.reporting.tables import lower_is_better

    assert lower_is_better("test/logloss") and not lower_is_better("test/auc")
    assert infer_direction("val/logloss") == "minimize" and infer_direction("val/accuracy") == "maximize"
