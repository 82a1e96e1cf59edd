"""The training settings a run really used are recorded and decide whether a finished run is reused
(issue 14: ``metrics.json`` held ``trainer.lr: null`` when the model's ``training_defaults`` gave it)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from hydra import compose, initialize_config_dir

from recbench.models.factorization import BPR
from recbench.pipeline import RunContext, run
from recbench.reporting.commands import report_main

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"


def bpr_run(out: Path, cache: Path, *overrides: str) -> dict:
    with initialize_config_dir(version_base="1.3", config_dir=str(CONFIG_DIR)):
        cfg = compose(
            "train",
            overrides=[
                "dataset=tiny",
                "model=bpr",
                "trainer.epochs=1",
                f"paths.cache_dir={cache}",
                *overrides,
            ],
        )
    run(cfg, RunContext(out, {"model": "bpr"}))
    return json.loads((out / "metrics.json").read_text())


def test_defaults_are_recorded_and_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Settings left null take the model's defaults, and those values are what metrics.json,
    results.csv and ``recbench report --rows trainer.lr`` show."""
    record = bpr_run(tmp_path / "sweep" / "0", tmp_path / "cache")
    params = record["params"]
    assert params["trainer.lr"] == BPR.training_defaults["lr"]
    assert params["trainer.batch_size"] == BPR.training_defaults["batch_size"]
    assert params["trainer.epochs"] == 1  # set on the command line: the config wins
    assert params["trainer.early_stopping.every"] == BPR.training_defaults["validate_every"]
    assert params["trainer.early_stopping.patience"] == 3  # the global default
    csv = pd.read_csv(tmp_path / "sweep" / "0" / "results.csv")
    assert csv["param.trainer.lr"].iloc[0] == pytest.approx(BPR.training_defaults["lr"])
    bpr_run(tmp_path / "sweep" / "1", tmp_path / "cache", "trainer.lr=0.05")
    out = tmp_path / "table.csv"
    assert report_main([str(tmp_path / "sweep"), "--rows", "trainer.lr", "--out", str(out)]) == 0
    lrs = pd.read_csv(out)["trainer.lr"]
    assert sorted(lrs.astype(float)) == pytest.approx(sorted([BPR.training_defaults["lr"], 0.05]))


def test_changed_default_retrains_instead_of_reusing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The config digest holds the effective settings: a finished run is reused while they are the
    same, and trained again once the model's default changed."""
    first = bpr_run(tmp_path / "run", tmp_path / "cache")
    again = bpr_run(tmp_path / "run", tmp_path / "cache")
    assert again["started_at"] == first["started_at"]  # skipped: same config, same defaults
    monkeypatch.setattr(BPR, "training_defaults", {**BPR.training_defaults, "lr": 0.02})
    changed = bpr_run(tmp_path / "run", tmp_path / "cache")
    assert changed["params"]["trainer.lr"] == 0.02
    assert changed["extra"]["config_digest"] != first["extra"]["config_digest"]
