"""Trackers against their real stores: CSV files, an MLflow SQLite store, TensorBoard event files and
W&B offline run folders, all written by real pipeline runs on tiny data."""

from __future__ import annotations

import json
import logging
import os
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from recbench.errors import ConfigError
from recbench.pipeline import RunContext, run
from recbench.reporting.records import read_runs
from recbench.tracking.mlflow_tracker import mlflow_key

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"


def cfg_for(*overrides: str, tmp_path: Path) -> DictConfig:
    with initialize_config_dir(version_base="1.3", config_dir=str(CONFIG_DIR)):
        return compose(
            "train",
            overrides=["dataset=tiny", "trainer=fast", f"paths.cache_dir={tmp_path / 'cache'}", *overrides],
        )


@pytest.fixture(scope="module")
def mlflow_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One SQLite store for the module (creating its tables is the slow part)."""
    mlflow = pytest.importorskip("mlflow")
    before = mlflow.get_tracking_uri()
    uri = f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)  # what mlflow.search_runs reads
    yield uri
    mlflow.set_tracking_uri(before)


def test_mlflow_key_maps_names_mlflow_refuses() -> None:
    assert mlflow_key("test/ndcg@10") == "test/ndcg_at_10"
    assert mlflow_key("val/recall@20_sampled100") == "val/recall_at_20_sampled100"
    assert mlflow_key("time/fit_s") == "time/fit_s"
    assert mlflow_key("model.layers[0]") == "model.layers_0_"


def test_csv_logs_params_epochs_final_metrics_and_files(tmp_path: Path) -> None:
    out = tmp_path / "r"
    record = run(cfg_for("model=bpr", "logger=csv", tmp_path=tmp_path), RunContext(out, {"model": "bpr"}))
    params = dict(pd.read_csv(out / "csv" / "params.csv").itertuples(index=False))
    assert params["model.num_negatives"] == "1" and params["tag.model"] == "bpr"
    assert params["effective.trainer.epochs"] == "2"  # settings filled from defaults are logged too
    metrics = pd.read_csv(out / "csv" / "metrics.csv")
    loss = metrics[metrics["name"] == "train/loss"]
    assert loss["step"].tolist() == [1, 2]
    final = metrics[metrics["name"] == "test/ndcg@10"]
    assert final["value"].tolist() == [pytest.approx(record.metrics["test/ndcg@10"])]
    assert json.loads((out / "csv" / "status.json").read_text())["status"] == "ok"
    listed = pd.read_csv(out / "csv" / "artifacts.csv")
    assert {"metrics.json", "history.csv", "results.csv"} <= {Path(p).name for p in listed["path"]}
    assert len(read_runs([out])) == 1  # the tracker's files add no second metrics.json to the run folder


def test_failed_run_is_logged_as_failed(tmp_path: Path) -> None:
    out = tmp_path / "r"
    with pytest.raises(ConfigError):
        run(cfg_for("model=bpr", "logger=csv", "trainer.lr=-1", tmp_path=tmp_path), RunContext(out))
    assert json.loads((out / "csv" / "status.json").read_text())["status"] == "failed"
    params = dict(pd.read_csv(out / "csv" / "params.csv").itertuples(index=False))
    assert "trainer.lr" in params["error"]


def test_mlflow_sqlite_store_holds_params_metrics_status_artifacts(tmp_path: Path, mlflow_uri: str) -> None:
    import mlflow
    from mlflow.tracking import MlflowClient

    cfg = cfg_for(
        "model=bpr",
        "logger=mlflow",
        f"logger.mlflow.tracking_uri={mlflow_uri}",
        "logger.mlflow.experiment_name=single",
        "logger.mlflow.run_name=my-bpr",
        tmp_path=tmp_path,
    )
    record = run(cfg, RunContext(tmp_path / "r", {"model": "bpr"}, run_name="model=bpr"))
    runs = mlflow.search_runs(experiment_names=["single"])
    assert len(runs) == 1
    row = runs.iloc[0]
    assert row["status"] == "FINISHED" and row["tags.mlflow.runName"] == "my-bpr"
    assert row["tags.model"] == "bpr" and row["params.model.num_negatives"] == "1"
    assert row["params.effective.trainer.epochs"] == "2"
    assert row["metrics.test/ndcg_at_10"] == pytest.approx(record.metrics["test/ndcg@10"])
    assert row["metrics.time/fit_s"] > 0
    client = MlflowClient(tracking_uri=mlflow_uri)
    assert [m.step for m in client.get_metric_history(row["run_id"], "train/loss")] == [1, 2]
    files = {a.path for a in client.list_artifacts(row["run_id"])}
    assert {"metrics.json", "history.csv", "results.csv"} <= files


def test_unreachable_mlflow_server_warns_and_the_run_finishes(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    pytest.importorskip("mlflow")
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = cfg_for(
        "model=pop",
        "logger=mlflow",
        f"logger.mlflow.tracking_uri=http://127.0.0.1:{port}",
        "logger.mlflow.http_timeout=1",
        "logger.mlflow.http_retries=0",
        tmp_path=tmp_path,
    )
    with caplog.at_level(logging.WARNING, logger="recbench.tracking.hook"):
        record = run(cfg, RunContext(tmp_path / "r"))
    assert record.status == "ok" and (tmp_path / "r" / "metrics.json").is_file()
    assert any("logger mlflow failed" in m for m in caplog.messages)


def test_missing_library_fails_before_training_with_the_install_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "mlflow" else real(n, *a))
    with pytest.raises(ConfigError, match=r"pip install 'recbench\[track\]'"):
        run(cfg_for("model=bpr", "logger=mlflow", tmp_path=tmp_path), RunContext(tmp_path / "r"))
    assert not (tmp_path / "r" / "history.csv").exists()


def test_tensorboard_event_files_hold_epochs_and_final_metrics(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = cfg_for(
        "model=bpr", "logger=tensorboard", f"logger.tensorboard.save_dir={tmp_path / 'tb'}", tmp_path=tmp_path
    )
    record = run(cfg, RunContext(tmp_path / "r"))
    (folder,) = (tmp_path / "tb" / "runs").iterdir()
    acc = EventAccumulator(str(folder))
    acc.Reload()
    assert [e.step for e in acc.Scalars("train/loss")] == [1, 2]
    (final,) = acc.Scalars("test/ndcg@10")
    assert final.value == pytest.approx(record.metrics["test/ndcg@10"])
    assert {"params/text_summary", "status/text_summary"} <= set(acc.Tags()["tensors"])
    assert acc.SummaryMetadata("_hparams_/session_start_info").plugin_data.plugin_name == "hparams"


def wandb_records(run_folder: Path) -> list[object]:
    """The protobuf records of an offline W&B run file (LevelDB-style log: 7-byte header, 32 KiB blocks)."""
    from wandb.proto import wandb_internal_pb2

    data = next(run_folder.glob("run-*.wandb")).read_bytes()
    assert data[:4] == b":W&B"
    out, pos, chunk = [], 7, b""
    while pos + 7 <= len(data):
        if 32768 - pos % 32768 < 7:
            pos += 32768 - pos % 32768
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if kind == 0:
            break
        chunk += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # a full record, or the last piece of one
            record = wandb_internal_pb2.Record()
            record.ParseFromString(chunk)
            out.append(record)
            chunk = b""
    return out


@pytest.mark.slow
def test_two_job_sweep_is_one_group_in_every_tracker(tmp_path: Path) -> None:
    """``recbench train -m seed=1,2 logger=many``: one MLflow parent run with both jobs nested, one
    TensorBoard sub-folder, one W&B group."""
    for lib in ("mlflow", "tensorboard", "wandb"):
        pytest.importorskip(lib)
    import mlflow

    sweep_dir, uri = tmp_path / "sweep", f"sqlite:///{tmp_path / 'mlflow.db'}"
    args = [
        "-m",
        "model=pop",
        "seed=1,2",
        "logger=many",
        f"logger.mlflow.tracking_uri={uri}",
        "logger.mlflow.experiment_name=sweeps",
        f"logger.tensorboard.save_dir={tmp_path / 'tb'}",
        f"logger.wandb.save_dir={tmp_path / 'wb'}",
        "dataset=tiny",
        f"paths.cache_dir={tmp_path / 'cache'}",
        f"hydra.sweep.dir={sweep_dir}",
    ]
    proc = subprocess.run(
        [sys.executable, "-m", "recbench", "train", *args],
        cwd=tmp_path,
        env={**os.environ, "HYDRA_FULL_ERROR": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "failed" not in proc.stderr
    group = "_".join(sweep_dir.parts[-2:])

    before = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    try:
        runs = mlflow.search_runs(experiment_names=["sweeps"])
    finally:
        mlflow.set_tracking_uri(before)
    parent = runs[runs["tags.mlflow.runName"] == group]
    children = runs[runs["tags.mlflow.parentRunId"].notna()]
    assert len(parent) == 1 and len(children) == 2
    assert set(children["tags.mlflow.parentRunId"]) == {parent["run_id"].iloc[0]}
    assert set(children["tags.sweep"]) == {group} and set(children["tags.seed"]) == {"1", "2"}
    names = ["dataset=tiny,model=pop,seed=1", "dataset=tiny,model=pop,seed=2"]
    assert sorted(children["tags.mlflow.runName"]) == names
    assert set(children["status"]) == {"FINISHED"} and children["metrics.test/ndcg_at_10"].notna().all()

    (tb_group,) = (tmp_path / "tb").iterdir()
    assert tb_group.name == group
    assert sorted(p.name for p in tb_group.iterdir()) == [f"{i}_{name}" for i, name in enumerate(names)]

    folders = sorted((tmp_path / "wb" / "wandb").glob("offline-run-*"))
    assert len(folders) == 2
    for folder in folders:
        check_wandb_run(folder, group)
    for job in ("0", "1"):
        assert json.loads((sweep_dir / job / "csv" / "status.json").read_text())["status"] == "ok"


def check_wandb_run(folder: Path, group: str) -> None:
    """An offline W&B run of a pop job: grouped by the sweep, with config, final metrics, files, exit 0."""
    for _ in range(100):  # wandb-core writes the file in its own process: wait for its last record
        records = wandb_records(folder)
        kinds = [r.WhichOneof("record_type") for r in records]
        if "exit" in kinds:
            break
        time.sleep(0.2)
    assert "run" in kinds and "exit" in kinds, kinds
    (head,) = [r.run for r in records if r.WhichOneof("record_type") == "run"]
    assert head.run_group == group and head.display_name.startswith("dataset=tiny,model=pop,seed=")
    config = {
        i.key: json.loads(i.value_json) for r in records if r.HasField("config") for i in r.config.update
    }
    assert config["model._target_"] == "recbench.models.baselines.Popularity"
    history = {
        i.nested_key[0]: json.loads(i.value_json)
        for r in records
        if r.HasField("history")
        for i in r.history.item
    }
    assert 0 < history["test/ndcg@10"] <= 1 and history["time/fit_s"] >= 0
    assert (folder / "files" / "metrics.json").is_file()
    (end,) = [r.exit for r in records if r.HasField("exit")]
    assert end.exit_code == 0
