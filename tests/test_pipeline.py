"""pipeline.run in-process (compose API, no Hydra runtime): records, failures, k-fold, checks."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from recbench.config import build
from recbench.errors import ConfigError
from recbench.pipeline import RunContext, _eval_threads, run
from recbench.reporting.records import read_runs

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"


def cfg_for(*overrides: str, tmp_path: Path) -> DictConfig:
    with initialize_config_dir(version_base="1.3", config_dir=str(CONFIG_DIR)):
        return compose(
            "train",
            overrides=["dataset=tiny", "trainer=fast", f"paths.cache_dir={tmp_path / 'cache'}", *overrides],
        )


def test_pop_run_writes_readable_record(tmp_path: Path) -> None:
    record = run(cfg_for("model=pop", tmp_path=tmp_path), RunContext(tmp_path / "r", {"model": "pop"}))
    assert record.status == "ok"
    assert {"val/ndcg@10", "test/ndcg@10", "test/recall@20"} <= set(record.metrics)
    assert record.timings["fit_s"] >= 0 and record.extra["dataset"]["n_users"] > 0
    df = read_runs([tmp_path])
    assert len(df) == 1 and df.loc[0, "model"] == "pop"
    assert (tmp_path / "r" / "model.npz").is_file()


def test_torch_run_writes_history_and_weights(tmp_path: Path) -> None:
    run(cfg_for("model=bpr", tmp_path=tmp_path), RunContext(tmp_path / "r", {"model": "bpr"}))
    assert (tmp_path / "r" / "history.csv").is_file()
    assert (tmp_path / "r" / "model.pt").is_file()


def test_same_seed_same_metrics_different_seed_different(tmp_path: Path) -> None:
    a = run(cfg_for("model=bpr", "seed=1", tmp_path=tmp_path), RunContext(tmp_path / "a"))
    b = run(cfg_for("model=bpr", "seed=1", tmp_path=tmp_path), RunContext(tmp_path / "b"))
    c = run(cfg_for("model=bpr", "seed=2", tmp_path=tmp_path), RunContext(tmp_path / "c"))
    assert a.metrics == b.metrics
    assert a.metrics != c.metrics


def test_failure_writes_failed_record_and_reraises(tmp_path: Path) -> None:
    cfg = cfg_for("model=bpr", "trainer.lr=-1", tmp_path=tmp_path)
    with pytest.raises(ConfigError, match="trainer.lr"):
        run(cfg, RunContext(tmp_path / "r"))
    record = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert record["status"] == "failed" and "trainer.lr" in record["error"]


def test_rating_metrics_need_a_rating_model(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not predict ratings"):
        run(cfg_for("model=pop", "eval=rating", tmp_path=tmp_path), RunContext(tmp_path / "r"))


def test_kfold_reports_each_fold_and_the_mean(tmp_path: Path) -> None:
    record = run(
        cfg_for("model=mf", "eval=rating", "split=kfold", "split.folds=3", tmp_path=tmp_path),
        RunContext(tmp_path / "r"),
    )
    folds = [record.metrics[f"fold{j}/test/rmse"] for j in range(3)]
    assert record.metrics["test/rmse"] == pytest.approx(sum(folds) / 3)
    assert "test/rmse_std" in record.metrics


def test_cold_items_split_reports_id_only_models_as_unable(tmp_path: Path) -> None:
    """pop and bpr have nothing trained for cold items: no test/cold numbers, a stated reason instead."""
    for name in ("pop", "bpr"):
        overrides = [f"model={name}", "split=cold_items", "trainer.epochs=1"]
        record = run(cfg_for(*overrides, tmp_path=tmp_path), RunContext(tmp_path / name))
        assert "test/ndcg@10" in record.metrics
        assert not any(k.startswith("test/cold/") for k in record.metrics)
        assert record.extra["test/cold"].startswith("unable:")
        saved = json.loads((tmp_path / name / "metrics.json").read_text())
        assert saved["extra"]["test/cold"] == record.extra["test/cold"]


def test_phases_are_logged_with_durations(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cfg = cfg_for("model=pop", "trainer.num_threads=1", tmp_path=tmp_path)
    with caplog.at_level(logging.INFO, logger="recbench.pipeline"):
        record = run(cfg, RunContext(tmp_path / "r"))
    phases = [r.getMessage().split(":")[0] for r in caplog.records if r.getMessage().startswith("phase ")]
    assert phases == [
        "phase load",
        "phase split",
        "phase fit",
        "phase eval val",
        "phase eval test",
        "phase eval",
    ]
    assert record.timings["eval_val_s"] + record.timings["eval_test_s"] <= record.timings["eval_s"]
    assert _eval_threads(build(cfg.eval, "eval"), cfg).num_threads == 1  # the trainer's thread setting
