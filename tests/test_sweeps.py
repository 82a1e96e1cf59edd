"""Sweeps through the real CLI: launchers, Optuna search, best.json, resume and failed jobs.

The ``slow`` tests run ``python -m recbench train -m ...`` in a subprocess on the tiny synthetic data with
``trainer=fast``, each into its own ``hydra.sweep.dir``; the others check the best-job logic of
:class:`~recbench.reporting.callbacks.AggregateSweep` on hand-written run folders.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from omegaconf import OmegaConf

from recbench.reporting.callbacks import AggregateSweep, best_run, infer_direction, sweep_direction
from recbench.reporting.records import SCHEMA_VERSION, RunRecord, read_runs, write_run

TINY = ("dataset=tiny", "trainer=fast")


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One dataset cache for every subprocess of this module."""
    return tmp_path_factory.mktemp("cache")


def sweep(
    sweep_dir: Path, *overrides: str, cache: Path, timeout: float = 240
) -> subprocess.CompletedProcess[str]:
    """``python -m recbench train -m <overrides> dataset=tiny trainer=fast hydra.sweep.dir=<sweep_dir>``."""
    env = {**os.environ, "RECBENCH_CACHE_DIR": str(cache), "HYDRA_FULL_ERROR": "1"}
    args = ["-m", *overrides, *TINY, f"hydra.sweep.dir={sweep_dir}"]
    proc = subprocess.run(
        [sys.executable, "-m", "recbench", "train", *args],
        cwd=sweep_dir.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    return proc


def summary(sweep_dir: Path) -> pd.DataFrame:
    return pd.read_csv(sweep_dir / "summary.csv")


# --- best.json on hand-written sweeps (fast) ---------------------------------------------------------


def fake_job(
    run_dir: Path, metrics: dict[str, float], status: str = "ok", overrides: list[str] | None = None
) -> None:
    record = RunRecord(
        schema=SCHEMA_VERSION,
        run_dir=str(run_dir),
        started_at="2025-01-31T10:00:00+00:00",
        choices={"model": "mf", "dataset": "tiny"},
        params={"model.factors": 8},
        metrics=metrics,
        timings={"total_s": 1.0},
        seed=1,
        status=status,  # type: ignore[arg-type]
        error=None if status == "ok" else "ConfigError: bad",
    )
    write_run(record, run_dir)
    if overrides is not None:
        (run_dir / ".hydra").mkdir()
        (run_dir / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))


@pytest.mark.parametrize(
    ("metric", "expected"),
    [
        ("val/ndcg@10", "maximize"),
        ("val/rmse", "minimize"),
        ("test/mae", "minimize"),
        ("fold0/val/rmse", "minimize"),
        ("val/ndcg@10_sampled100", "maximize"),
        ("val/recall@20", "maximize"),
    ],
)
def test_direction_is_inferred_from_the_metric_name(metric: str, expected: str) -> None:
    assert infer_direction(metric) == expected


def test_sweeper_direction_wins_over_the_inferred_one() -> None:
    optuna = OmegaConf.create({"hydra": {"sweeper": {"direction": "minimize"}}})
    basic = OmegaConf.create({"hydra": {"sweeper": {"max_batch_size": None}}})
    assert sweep_direction(optuna, "val/ndcg@10") == "minimize"
    assert sweep_direction(basic, "val/rmse") == "minimize"
    assert sweep_direction(basic, "val/ndcg@10") == "maximize"


def test_best_json_names_the_lowest_rmse_among_finished_jobs(tmp_path: Path) -> None:
    fake_job(tmp_path / "0", {"val/rmse": 0.95, "test/rmse": 0.96}, overrides=["model.factors=8"])
    fake_job(tmp_path / "1", {"val/rmse": 0.91, "test/rmse": 0.93}, overrides=["model.factors=32"])
    fake_job(tmp_path / "2", {}, status="failed")
    fake_job(tmp_path / "3", {"val/rmse": math.nan, "test/rmse": math.nan})
    config = OmegaConf.create({"optimized_metric": "val/rmse", "hydra": {"sweep": {"dir": str(tmp_path)}}})

    AggregateSweep().on_multirun_end(config)

    best = json.loads((tmp_path / "best.json").read_text())
    assert best["job"] == "1" and best["direction"] == "minimize" and best["value"] == 0.91
    assert best["overrides"] == ["model.factors=32"]
    assert best["test_metrics"] == {"test/rmse": 0.93}
    assert best["params"] == {"model.factors": 8} and best["n_runs"] == 4 and best["n_ranked"] == 2
    assert len(summary(tmp_path)) == 4 and not list(tmp_path.glob("*.tmp"))


def test_no_best_json_without_optimized_metric_or_finished_jobs(tmp_path: Path) -> None:
    fake_job(tmp_path / "0", {"val/ndcg@10": 0.3})
    AggregateSweep().on_multirun_end(OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path)}}}))
    assert (tmp_path / "summary.csv").exists() and not (tmp_path / "best.json").exists()
    assert best_run(read_runs([tmp_path]), "val/recall@10", "maximize") is None


# --- real sweeps (slow) --------------------------------------------------------------------------------


@pytest.mark.slow
def test_joblib_sweep_writes_summary(tmp_path: Path, cache_dir: Path) -> None:
    out = tmp_path / "sweep"
    sweep(out, "model=pop,random", "hydra/launcher=parallel", cache=cache_dir)
    table = summary(out)
    assert sorted(table["model"]) == ["pop", "random"]
    assert table["status"].tolist() == ["ok", "ok"]
    assert table["test/ndcg@10"].notna().all()


@pytest.mark.slow
def test_submitit_local_sweep_writes_summary(tmp_path: Path, cache_dir: Path) -> None:
    out = tmp_path / "sweep"
    sweep(out, "model=pop", "seed=1,2", "hydra/launcher=slurm_local", cache=cache_dir)
    table = summary(out)
    assert table["status"].tolist() == ["ok", "ok"] and sorted(table["seed"]) == [1, 2]
    assert (out / ".submitit").is_dir()


@pytest.mark.slow
def test_optuna_search_writes_results_and_best(tmp_path: Path, cache_dir: Path) -> None:
    out = tmp_path / "search"
    sweep(out, "search=bpr_optuna", "hydra.sweeper.n_trials=3", cache=cache_dir)
    table = summary(out)
    assert len(table) == 3 and (table["status"] == "ok").all()
    assert (out / "optimization_results.yaml").is_file()
    best = json.loads((out / "best.json").read_text())
    assert best["metric"] == "val/ndcg@10" and best["direction"] == "maximize"
    assert best["value"] == pytest.approx(table["val/ndcg@10"].max())
    assert any(o.startswith("model.factors=") for o in best["overrides"])
    assert "test/ndcg@10" in best["test_metrics"] and best["choices"]["model"] == "bpr"
    results = OmegaConf.load(out / "optimization_results.yaml")
    assert results.best_value == pytest.approx(best["value"])


@pytest.mark.slow
def test_rerun_into_the_same_sweep_dir_skips_finished_jobs(tmp_path: Path, cache_dir: Path) -> None:
    out = tmp_path / "sweep"
    args = ("model=pop,random",)
    sweep(out, *args, cache=cache_dir)
    finished = out / "0" / "metrics.json"
    before = finished.stat().st_mtime_ns
    (out / "1" / "metrics.json").unlink()  # job 1 "was interrupted"

    sweep(out, *args, cache=cache_dir)

    assert finished.stat().st_mtime_ns == before  # job 0 was skipped, not re-run
    assert (out / "1" / "metrics.json").is_file()
    assert summary(out)["status"].tolist() == ["ok", "ok"]


@pytest.mark.slow
def test_failed_job_does_not_stop_the_sweep(tmp_path: Path, cache_dir: Path) -> None:
    out = tmp_path / "sweep"
    sweep(out, "model=pop", "eval.batch_size=0,1024", cache=cache_dir)  # job 0 has an invalid value
    table = summary(out).sort_values("run_dir")
    assert table["status"].tolist() == ["failed", "ok"]
    assert "eval.batch_size=0" in table["error"].iloc[0]
    assert table["test/ndcg@10"].notna().tolist() == [False, True]


@pytest.mark.slow
@pytest.mark.skipif(
    importlib.util.find_spec("hydra_plugins.hydra_ray_launcher") is None,
    reason="hydra-ray-launcher is not installed (pip install 'recbench[ray]')",
)
def test_ray_local_sweep_writes_summary(tmp_path: Path, cache_dir: Path) -> None:
    out = tmp_path / "sweep"
    sweep(
        out, "model=pop,random", "hydra/launcher=ray", "hydra.launcher.ray.init.num_cpus=2", cache=cache_dir
    )
    table = summary(out)
    assert sorted(table["model"]) == ["pop", "random"] and (table["status"] == "ok").all()
