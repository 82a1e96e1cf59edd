"""RunRecord files: round trip, atomic writes, tolerant reading."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import IO

import numpy as np
import pandas as pd
import pytest

from recbench.errors import RecbenchError
from recbench.reporting.records import (
    RunRecord,
    atomic_write,
    atomic_write_text,
    read_per_user,
    read_record,
    read_runs,
    write_run,
)


def test_round_trip_of_every_file(tmp_path: Path, new_record: Callable[..., RunRecord]) -> None:
    run = tmp_path / "run"
    params = {"model.factors": np.int64(8), "model.layers": [64, 32], "trainer.lr": 0.01, "seed": 0}
    record = new_record(run, params=params, tags=["a", "b"])
    history = [{"epoch": 1, "loss": 0.9, "val/ndcg@10": 0.1}, {"epoch": 2, "loss": 0.5, "val/ndcg@10": 0.2}]
    per_user = {"test": {"users": np.array([3, 1, 2]), "ndcg@10": np.array([0.5, 0.0, 1.0])}}
    write_run(record, run, history=history, per_user=per_user)

    assert sorted(p.name for p in run.iterdir()) == [
        "history.csv",
        "metrics.json",
        "per_user.npz",
        "results.csv",
    ]
    back = read_record(run / "metrics.json")
    assert back.params["model.layers"] == [64, 32] and back.params["model.factors"] == 8
    assert back == RunRecord.from_dict(json.loads((run / "metrics.json").read_text()))
    assert back.metrics == record.metrics and back.tags == ["a", "b"] and back.extra == record.extra

    df = read_runs([tmp_path])
    assert len(df) == 1
    row = df.iloc[0]
    assert row["run_dir"] == str(run) and row["model"] == "pop" and row["dataset"] == "ml-100k"
    assert row["test/ndcg@10"] == 0.1 and row["fit_s"] == 1.0 and row["seed"] == 0
    assert row["param.trainer.lr"] == 0.01 and row["param.seed"] == 0  # param prefix: no clash with seed
    assert row["param.model.layers"] == "[64, 32]" and row["tags"] == "a,b"
    assert row["extra.test_skipped_users"] == 0 and "extra.dataset" not in df.columns

    results = pd.read_csv(run / "results.csv")
    assert list(results.columns[:7]) == ["run_dir", "status", "error", "seed", "model", "dataset", "split"]
    assert results.loc[0, "test/ndcg@10"] == 0.1
    assert pd.read_csv(run / "history.csv")["loss"].tolist() == [0.9, 0.5]
    arrays = read_per_user(run)
    assert arrays["test/users"].tolist() == [3, 1, 2] and arrays["test/ndcg@10"].tolist() == [0.5, 0.0, 1.0]


def test_non_finite_metrics_are_written_as_null_and_read_as_nan(
    tmp_path: Path, new_record: Callable[..., RunRecord]
) -> None:
    write_run(new_record(tmp_path, metrics={"test/rmse": float("nan")}), tmp_path)
    assert json.loads((tmp_path / "metrics.json").read_text())["metrics"]["test/rmse"] is None
    assert np.isnan(read_runs([tmp_path]).loc[0, "test/rmse"])


def test_no_temporary_file_is_left_behind(tmp_path: Path, new_record: Callable[..., RunRecord]) -> None:
    write_run(new_record(tmp_path), tmp_path, history=[{"epoch": 1, "loss": 1.0}])
    assert not list(tmp_path.glob("*.tmp"))


def test_failed_write_keeps_the_old_file_and_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "summary.csv"
    atomic_write_text(target, "old\n")

    def dies_half_way(fh: IO[bytes]) -> None:
        fh.write(b"new, half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, dies_half_way)
    assert target.read_text() == "old\n" and not list(tmp_path.glob("*.tmp"))


def test_tmp_leftover_is_ignored_and_truncated_file_skipped_with_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, new_record: Callable[..., RunRecord]
) -> None:
    good, partial, killed = tmp_path / "0", tmp_path / "1", tmp_path / "2"
    write_run(new_record(good), good)
    text = json.dumps(new_record(partial).to_dict())
    partial.mkdir()
    (partial / "metrics.json").write_text(
        text[: len(text) // 2]
    )  # truncated by a crash of a non-atomic writer
    killed.mkdir()
    (killed / "metrics.json.tmp").write_text(text[:10])  # leftover of a killed atomic writer
    with caplog.at_level(logging.WARNING, logger="recbench.reporting.records"):
        df = read_runs([tmp_path])
    assert df["run_dir"].tolist() == [str(good)]
    assert "skipping unreadable run record" in caplog.text and str(partial) in caplog.text


def test_older_and_newer_schemas_are_tolerated(tmp_path: Path, new_record: Callable[..., RunRecord]) -> None:
    old, new = tmp_path / "old", tmp_path / "new"
    old.mkdir()
    new.mkdir()
    (old / "metrics.json").write_text(json.dumps({"schema": 0, "metrics": {"test/ndcg@10": 0.3}, "seed": 1}))
    newer = new_record(new).to_dict() | {"schema": 99, "device": "cuda", "notes": {"x": 1}}
    (new / "metrics.json").write_text(json.dumps(newer))
    df = read_runs([tmp_path]).set_index("run_dir")
    assert df.loc[str(old), "test/ndcg@10"] == 0.3 and df.loc[str(old), "status"] == "ok"
    assert df.loc[str(new), "schema"] == 99 and df.loc[str(new), "model"] == "pop"


def test_paths_may_be_files_parents_or_missing_and_order_is_natural(
    tmp_path: Path, new_record: Callable[..., RunRecord]
) -> None:
    for j in (10, 2, 1):
        write_run(new_record(tmp_path / str(j), seed=j), tmp_path / str(j))
    df = read_runs([tmp_path, tmp_path / "2" / "metrics.json", tmp_path / "nope"])
    assert [Path(p).name for p in df["run_dir"]] == ["1", "2", "10"]
    assert read_runs([tmp_path / "nope"]).empty


def test_read_per_user_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(RecbenchError, match="per_user.npz"):
        read_per_user(tmp_path)
