"""AggregateSweep on a fake sweep folder (no Hydra run needed)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd
from omegaconf import OmegaConf

from recbench.reporting.callbacks import AggregateSweep


def test_summary_has_one_row_per_job_failed_included(tmp_path: Path, make_run: Callable[..., object]) -> None:
    make_run(tmp_path / "0", model="pop", seed=0)
    make_run(tmp_path / "1", model="bpr", seed=0)
    make_run(
        tmp_path / "2", model="ncf", seed=0, status="failed", error="TrainingError: NaN loss", metrics={}
    )
    (tmp_path / "3").mkdir()  # a job killed before writing anything
    (tmp_path / "3" / "metrics.json.x1y2.tmp").write_text("{")
    config = OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path)}}})

    AggregateSweep().on_multirun_end(config)

    summary = pd.read_csv(tmp_path / "summary.csv")
    assert summary["model"].tolist() == ["pop", "bpr", "ncf"]
    assert summary["status"].tolist() == ["ok", "ok", "failed"]
    assert summary.loc[2, "error"] == "TrainingError: NaN loss"
    assert "test/ndcg@10" in summary.columns and not list(tmp_path.glob("*.tmp"))


def test_custom_filename_and_empty_sweep(tmp_path: Path, make_run: Callable[..., object]) -> None:
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    config = OmegaConf.create({"hydra": {"sweep": {"dir": str(sweep)}}})
    AggregateSweep(filename="all.csv").on_multirun_end(config)
    assert not (sweep / "all.csv").exists()  # nothing finished: no file rather than an empty table
    make_run(sweep / "0")
    AggregateSweep(filename="all.csv").on_multirun_end(config)
    assert len(pd.read_csv(sweep / "all.csv")) == 1
