"""``recbench tune``: validation only selects (test never scored in the search), resumable studies,
final runs on the search's split; plus the SQLite storage helper and the pipeline's test switch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir

import recbench.pipeline as pipeline
from recbench.pipeline import RunContext, run
from recbench.tuning.protocol import parse_args, search_configs
from recbench.tuning.storage import prepare_sqlite, sqlite_url, study_state
from tests.conftest import CONFIG_DIR

optuna = pytest.importorskip("optuna")


def cfg_for(*overrides: str, tmp_path: Path):
    with initialize_config_dir(version_base="1.3", config_dir=str(CONFIG_DIR)):
        return compose(
            "train",
            overrides=["dataset=tiny", "trainer=fast", f"paths.cache_dir={tmp_path / 'cache'}", *overrides],
        )


def test_search_run_never_scores_the_test_set(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen = []
    real = pipeline.evaluate

    def spy(model, target, *args, **kwargs):
        seen.append(target)
        return real(model, target, *args, **kwargs)

    monkeypatch.setattr(pipeline, "evaluate", spy)
    record = run(cfg_for("model=ease", "evaluate_test=false", tmp_path=tmp_path), RunContext(tmp_path / "s"))
    assert len(seen) == 1 and not any(k.startswith("test/") for k in record.metrics)
    assert "val/ndcg@10" in record.metrics
    seen.clear()
    full = run(cfg_for("model=ease", tmp_path=tmp_path), RunContext(tmp_path / "f"))
    assert len(seen) == 2 and "test/ndcg@10" in full.metrics
    assert full.metrics["val/ndcg@10"] == record.metrics["val/ndcg@10"]


def test_split_seed_fixes_the_split_while_seed_changes(tmp_path: Path) -> None:
    a = run(cfg_for("model=ease", "seed=1", "split_seed=7", tmp_path=tmp_path), RunContext(tmp_path / "a"))
    b = run(cfg_for("model=ease", "seed=2", "split_seed=7", tmp_path=tmp_path), RunContext(tmp_path / "b"))
    c = run(cfg_for("model=ease", "seed=2", tmp_path=tmp_path), RunContext(tmp_path / "c"))
    # EASE is deterministic: equal metrics mean an equal split
    assert a.metrics["test/ndcg@10"] == b.metrics["test/ndcg@10"]
    assert c.metrics["test/ndcg@10"] != b.metrics["test/ndcg@10"]


def test_sqlite_storage_works_with_optuna_2_and_counts_interrupted_trials(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "deep" / "optuna.db")
    assert prepare_sqlite(url) == tmp_path / "deep" / "optuna.db"
    assert prepare_sqlite("postgresql://host/db") is None
    study = optuna.create_study(storage=url, study_name="m", direction="minimize", load_if_exists=True)
    study.optimize(lambda t: (t.suggest_float("x", -1, 1) - 0.25) ** 2, n_trials=4)
    study.ask().suggest_float("x", -1, 1)  # a trial an interruption left running
    assert study_state(url, "nope").used == 0
    state = study_state(url, "m", close_running=True)
    assert (state.used, state.complete, state.interrupted) == (4, 4, 1)
    best = min(study.trials[:4], key=lambda t: t.value)
    assert state.best_params == best.params and state.best_value == best.value
    again = optuna.create_study(storage=url, study_name="m", direction="minimize", load_if_exists=True)
    assert len(again.trials) == 5  # the file stays readable by Optuna itself


def test_every_learning_model_has_a_search_space() -> None:
    from recbench.config import model_capabilities, model_config

    models = {p.stem for p in (CONFIG_DIR / "model").glob("*.yaml")}
    # friend-recommendation models rank users on a user graph (split=link): not in the item comparison
    links = {m for m in models if model_capabilities(model_config(m)).needs_user_graph}
    assert models - links - set(search_configs()) == {"pop", "random"}
    ns = parse_args(["--models", "ease,slim", "--trials", "4", "--seeds", "3,4", "dataset=tiny"])
    assert ns.model_list == ["ease", "slim"] and ns.seed_list == [3, 4] and ns.overrides == ["dataset=tiny"]
    for bad in (
        ["--models", "ease", "seed=3"],
        ["--models", "ease", "--trials", "0"],
        ["--models", "e", "x"],
    ):
        with pytest.raises(SystemExit):
            parse_args(bad)


def tune(out: Path, *args: str, cache: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "RECBENCH_CACHE_DIR": str(cache), "HYDRA_FULL_ERROR": "1", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "recbench", "tune", "--out", str(out), *args, "dataset=tiny"]
    proc = subprocess.run(cmd, cwd=out.parent, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    return proc


def metrics_of(run_dir: Path) -> dict[str, float]:
    return json.loads((run_dir / "metrics.json").read_text())["metrics"]


@pytest.mark.slow
def test_tune_selects_on_validation_resumes_and_tests_the_best_config(tmp_path: Path) -> None:
    out, cache = tmp_path / "tune", tmp_path / "cache"
    tune(out, "--models", "ease", "--trials", "2", "--seeds", "1,2", cache=cache)
    trials = sorted((out / "ease" / "search").glob("*/*/metrics.json"))
    assert len(trials) == 2
    for path in trials:  # the search never scored the test set
        assert not [k for k in metrics_of(path.parent) if k.startswith("test/")], path
    url = sqlite_url(out.resolve() / "optuna.db")
    state = study_state(url, "ease")
    best = max(trials, key=lambda p: metrics_of(p.parent)["val/ndcg@10"]).parent
    finals = [out / "ease" / "final" / f"seed{s}" for s in (1, 2)]
    for run_dir in finals:  # same split and config as the best trial: the same validation score
        assert metrics_of(run_dir)["val/ndcg@10"] == metrics_of(best)["val/ndcg@10"] == state.best_value
        assert "test/ndcg@10" in metrics_of(run_dir)
    table = (out / "tuned.csv").read_text()
    assert "ease" in table and "2/2" in table and "model.l2" in table
    mean = np.mean([metrics_of(d)["test/ndcg@10"] for d in finals])
    assert f"{mean:.4f}" in (out / "tuned.md").read_text()

    # resume: a trial left running by an interruption is redrawn, the budget is topped up to 3
    study = optuna.load_study(study_name="ease", storage=url)
    study.ask()
    stamp = (finals[0] / "metrics.json").stat().st_mtime
    tune(out, "--models", "ease", "--trials", "3", "--seeds", "1,2", cache=cache)
    state = study_state(url, "ease")
    assert (state.used, state.interrupted) == (3, 1)
    assert len(list((out / "ease" / "search" / "1").glob("*/metrics.json"))) == 1
    if state.best_value == metrics_of(best)["val/ndcg@10"]:  # same best trial: final runs kept
        assert (finals[0] / "metrics.json").stat().st_mtime == stamp
