"""Group slicing and the beyond-accuracy evaluation: per-group numbers against re-evaluation of the
group alone, size-weighted recomposition of the overall numbers, side information and unable reasons."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp

from recbench.data.interactions import IdMaps, Interactions
from recbench.errors import ConfigError
from recbench.evaluation import beyond as B
from recbench.evaluation.audit import activity_labels
from recbench.evaluation.evaluator import EvalSpec, evaluate
from recbench.evaluation.groups import disparities, slice_by_group
from recbench.evaluation.side import SideInfo, side_for_spec
from tests.conftest import block_interactions

ALL = ("ndcg", "recall", "hit", "coverage", "novelty", *B.USER_LIST_METRICS, *B.LIST_SET_METRICS)


class Noisy:
    """Scores with many ties (rounded noise), so tie-breaking matters."""

    def score(self, users: np.ndarray, history: Interactions) -> np.ndarray:
        rng = np.random.default_rng(7)
        table = np.round(rng.random((history.n_users, history.n_items)), 1).astype(np.float32)
        return table[users]


@pytest.fixture
def parts() -> tuple[Interactions, Interactions, SideInfo]:
    data = block_interactions(n_blocks=4, users_per_block=12, items_per_block=10, seed=3)
    mask = np.random.default_rng(0).random(len(data)) < 0.7
    cats = np.eye(3)[np.arange(data.n_items) % 3]
    cats[::7] = 0.0  # some items without features
    labels = np.array(["F", "M", ""])[np.arange(data.n_users) % 3]  # a third unknown
    side = SideInfo(sp.csr_matrix(cats), ("a", "b", "c"), {"gender": labels})
    return data.select(mask), data.select(~mask), side


def test_groups_recompute_the_overall_and_match_evaluating_the_group_alone(parts) -> None:
    train, test, side = parts
    spec = EvalSpec(metrics=ALL, ks=(5, 50), user_groups=("gender", "activity"))
    res = evaluate(Noisy(), test, train, spec, side)
    m = res.metrics
    for attr in ("gender", "activity"):
        values = sorted({k.split("/")[1].split("=", 1)[1] for k in m if k.startswith(f"group/{attr}=")})
        sizes = np.array([m[f"group/{attr}={v}/n_users"] for v in values])
        assert sizes.sum() == len(res.users)
        for key in ("ndcg@5", "recall@50", "arp@5", "aplt@50"):
            weighted = sum(m[f"group/{attr}={v}/{key}"] * n for v, n in zip(values, sizes)) / sizes.sum()
            assert weighted == pytest.approx(m[key], abs=1e-12), (attr, key)
    # a group's numbers (list-set ones included) equal evaluating its users alone
    female = np.flatnonzero(side.user_labels["gender"] == "F")
    alone = evaluate(
        Noisy(), test.select(np.isin(test.users, female)), train, EvalSpec(metrics=ALL, ks=(5, 50)), side
    )
    for key, value in alone.metrics.items():
        assert m[f"group/gender=F/{key}"] == pytest.approx(value, abs=1e-12, nan_ok=True), key
    # disparity of NDCG@5 over the known groups only (unknown is reported but not compared)
    f, mm = m["group/gender=F/ndcg@5"], m["group/gender=M/ndcg@5"]
    assert "group/gender=unknown/ndcg@5" in m
    assert m["disparity/gender/ndcg@5"] == pytest.approx(abs(f - mm), abs=1e-15)
    assert m["disparity/gender/ndcg@5_ratio"] == pytest.approx(max(f, mm) / min(f, mm))
    assert set(res.user_groups) == {"gender", "activity"} and len(res.user_groups["gender"]) == len(res.users)


def test_item_groups_equal_evaluating_the_groups_targets(parts) -> None:
    train, test, side = parts
    spec = EvalSpec(metrics=("ndcg", "recall", "map"), ks=(5,), item_groups=("popularity", "genre"))
    m = evaluate(Noisy(), test, train, spec, side).metrics
    head = B.short_head(np.bincount(train.binary_csr.indices, minlength=train.n_items))
    genre_b = side.categories.toarray()[:, 1] > 0
    for key, member in (("popularity=head", head), ("popularity=tail", ~head), ("genre=b", genre_b)):
        only = evaluate(
            Noisy(),
            test.select(member[test.items]),
            train,
            EvalSpec(metrics=("ndcg", "recall", "map"), ks=(5,)),
        )
        for name, value in only.metrics.items():
            assert m[f"group/{key}/{name}"] == pytest.approx(value, abs=1e-12), (key, name)
        assert m[f"group/{key}/n_users"] == len(only.users)
        assert m[f"group/{key}/n_items"] == member.sum()
    assert "disparity/popularity/ndcg@5" in m and "disparity/genre/recall@5" in m


def test_slice_and_disparity_hand_computed() -> None:
    per_user = {"x": np.array([1.0, 0.0, 0.5, np.nan, 0.25])}
    labels = {"g": np.array(["a", "a", "b", "b", ""])}
    out = slice_by_group(per_user, labels)
    assert out["group/g=a/x"] == 0.5 and out["group/g=b/x"] == 0.5  # NaN ignored
    assert out["group/g=a/n_users"] == 2 and out["group/g=unknown/n_users"] == 1
    assert out["disparity/g/x"] == 0.0 and out["disparity/g/x_ratio"] == 1.0
    d = disparities("g", {"a": {"x": 0.2}, "b": {"x": 0.0}, "c": {"x": 0.1}, "unknown": {"x": 9.0}})
    assert d["disparity/g/x"] == pytest.approx(0.2) and math.isnan(d["disparity/g/x_ratio"])


def test_activity_top_20_percent_keeps_ties_together() -> None:
    # history lengths 10, 8, 8, 3, 2, 1, 1, 0 (user 7 has none): 7 users with history, 20% -> 2 users,
    # the second has 8 items, so both users with 8 are in the top group
    lengths = [10, 8, 8, 3, 2, 1, 1, 0]
    users = np.repeat(np.arange(8), lengths)
    items = np.concatenate([np.arange(n) for n in lengths])
    hist = Interactions(users, items, 8, 10)
    assert activity_labels(hist, np.arange(8)).tolist() == ["top20"] * 3 + ["rest"] * 5


def test_unable_without_side_files_and_errors_when_asked_directly(parts) -> None:
    train, test, _ = parts
    spec = EvalSpec(
        metrics=("ndcg", "ild", "gini"), ks=(5,), user_groups=("activity", "gender"), item_groups=("genre",)
    )
    ids = IdMaps(np.arange(train.n_users), np.arange(train.n_items))
    kept, side, unable = side_for_spec(spec, None, ids)
    assert kept.metrics == ("ndcg", "gini") and kept.user_groups == ("activity",) and kept.item_groups == ()
    assert set(unable) == {"ild", "group/gender", "group/genre"}
    assert all(v.startswith("unable:") and "synthetic" in v for v in unable.values())
    assert "group/activity=top20/ndcg@5" in evaluate(Noisy(), test, train, kept, side).metrics
    with pytest.raises(ConfigError, match="item categories"):
        evaluate(Noisy(), test, train, EvalSpec(metrics=("ild",), ks=(5,)))
    with pytest.raises(ConfigError, match="user attribute"):
        evaluate(Noisy(), test, train, EvalSpec(metrics=("ndcg",), user_groups=("gender",)))
    with pytest.raises(ConfigError, match="item_groups"):
        EvalSpec(item_groups=("year",))


def test_ml100k_side_information(ml100k_dir) -> None:
    from recbench.data.sources import MovieLens

    source = MovieLens(variant="ml-100k", path=str(ml100k_dir), download=False)
    data, ids = source.load()
    spec = EvalSpec(metrics=("ild", "miscalibration"), user_groups=("gender", "age", "occupation"))
    kept, side, unable = side_for_spec(spec, source, ids)
    assert not unable and kept == spec
    assert (
        set(side.user_labels["gender"]) == {"F", "M"} and len(side.user_labels["occupation"]) == data.n_users
    )
    assert len(side.category_names) == 19 and "Comedy" in side.category_names
    sums = np.asarray(side.categories.sum(axis=1)).ravel()
    assert np.allclose(sums, 1.0)  # every ml-100k movie has a genre (possibly "unknown")


def test_pipeline_beyond_preset_on_synthetic_data(tmp_path) -> None:
    """eval=beyond on data without side files: unable reasons, every other metric, test-only groups;
    with the run's own feature files (features.item_file/user_file) the same run gets all of them."""
    from pathlib import Path

    import pandas as pd
    from hydra import compose, initialize_config_dir

    from recbench.pipeline import RunContext, run

    config_dir = str(Path(__file__).resolve().parents[2] / "configs")
    base = ["dataset=tiny", "model=pop", "eval=beyond", f"paths.cache_dir={tmp_path / 'c'}"]
    with initialize_config_dir(version_base="1.3", config_dir=config_dir):
        record = run(compose("train", overrides=base), RunContext(tmp_path / "a"))
    m, extra = record.metrics, record.extra
    assert extra["test/ild"].startswith("unable:") and extra["test/group/gender"].startswith("unable:")
    assert "test/ild@10" not in m and "test/gini@10" in m and "val/arp@10" in m
    assert "test/group/activity=top20/ndcg@10" in m and "test/disparity/popularity/ndcg@10" in m
    assert not any(k.startswith("val/group/") for k in m)
    items = pd.DataFrame({"id": range(40), "genre": ["a|b", "b", "c", ""] * 10})
    users = pd.DataFrame({"id": range(60), "gender": ["F", "M", "M"] * 20})
    items.to_csv(tmp_path / "items.csv", index=False)
    users.to_csv(tmp_path / "users.csv", index=False)
    files = [
        "features=default",
        f"features.item_file={tmp_path / 'items.csv'}",
        f"features.user_file={tmp_path / 'users.csv'}",
        "features.item_fields=[genre:multi]",
        "features.user_fields=[gender]",
        "eval.user_groups=[activity,gender]",
    ]
    with initialize_config_dir(version_base="1.3", config_dir=config_dir):
        record = run(compose("train", overrides=[*base, *files]), RunContext(tmp_path / "b"))
    m = record.metrics
    assert not [v for v in record.extra.values() if str(v).startswith("unable")]
    assert 0 <= m["test/ild@10"] <= 1 and m["test/miscalibration@10"] >= 0
    assert {
        "test/group/gender=F/n_users",
        "test/group/genre=a/ndcg@10",
        "test/disparity/gender/ndcg@10",
    } <= set(m)
