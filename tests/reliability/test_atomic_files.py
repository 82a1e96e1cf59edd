"""A process that dies at any moment leaves no half-written result, cache, checkpoint or model file.

Every writer goes through a temporary sibling and ``os.replace``. These tests make the rename fail
(the writer must then leave the previous file intact and remove its temporary file), SIGKILL writers
in the middle of their work (the file on disk must be absent or whole), and check that every reader
ignores the ``*.tmp`` leftovers a kill can leave.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import signal
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from recbench.data.cache import cache_path, load_cached, params_key
from recbench.data.interactions import IdMaps, Interactions
from recbench.errors import DataError
from recbench.models.baselines import Popularity
from recbench.models.persistence import NUMPY_FILE, TORCH_FILE, save_model
from recbench.reporting.callbacks import AggregateSweep
from recbench.reporting.records import (
    METRICS_FILE,
    RESULTS_FILE,
    SCHEMA_VERSION,
    RunRecord,
    read_runs,
    write_run,
)
from recbench.training.checkpoint import CHECKPOINT_FILE, TrainState, load_checkpoint, save_checkpoint


def record(run_dir: Path, value: float, n_metrics: int = 3) -> RunRecord:
    metrics = {f"test/m{j}@10": value for j in range(n_metrics)}
    return RunRecord(
        schema=SCHEMA_VERSION,
        run_dir=str(run_dir),
        started_at="2025-01-01T00:00:00+00:00",
        choices={"model": "pop", "dataset": "tiny"},
        params={"model.x": 1},
        metrics=metrics,
        timings={"fit_s": 0.1},
        seed=0,
        status="ok",
    )


def temp_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if p.name.endswith((".tmp", ".part")))


def failing_replace(monkeypatch: pytest.MonkeyPatch, fail_on_call: int = 0) -> None:
    """Make the ``fail_on_call``-th ``os.replace`` (0-based) and every later one raise, as on a full disk."""
    real = os.replace
    calls = {"n": 0}

    def replace(src, dst, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] > fail_on_call:
            raise OSError(28, "No space left on device (simulated)")
        return real(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", replace)


class Source:
    """A tiny dataset source for the cache."""

    name = "atomic"

    def cache_key(self) -> dict:
        return params_key(self)

    def load(self) -> tuple[Interactions, IdMaps]:
        users = np.arange(50) % 7
        data = Interactions(users, np.arange(50) % 11, 7, 11, ratings=np.ones(50, dtype=np.float32))
        return data, IdMaps(users=np.arange(7), items=np.arange(11))


def train_state(epoch: int, width: int = 16) -> TrainState:
    net = nn.Linear(width, width)
    return TrainState(
        epoch=epoch,
        network=net.state_dict(),
        optimizer=torch.optim.Adam(net.parameters()).state_dict(),
        numpy_rng=np.random.default_rng(epoch).bit_generator.state,
        torch_rng=torch.get_rng_state(),
        rows=[{"epoch": e, "loss": 0.5} for e in range(1, epoch + 1)],
        best_value=None,
        best_epoch=None,
        best_network=None,
        bad_rounds=0,
    )


# -- a failed rename keeps the previous file and removes the temporary one -------------------------------


@pytest.mark.parametrize("fail_on_call", [0, 1, 2, 3])
def test_failed_rename_keeps_the_previous_run_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fail_on_call: int
) -> None:
    old = record(tmp_path, 0.1)
    write_run(old, tmp_path, history=[{"epoch": 1, "loss": 1.0}], per_user={"test": {"users": np.arange(3)}})
    old_metrics = (tmp_path / METRICS_FILE).read_text()
    failing_replace(monkeypatch, fail_on_call)  # per_user.npz, history.csv, results.csv, metrics.json
    with pytest.raises(OSError, match="No space left"):
        write_run(
            record(tmp_path, 0.9),
            tmp_path,
            history=[{"epoch": 2, "loss": 0.5}],
            per_user={"test": {"users": [1]}},
        )
    assert (tmp_path / METRICS_FILE).read_text() == old_metrics  # metrics.json goes last: still the old run
    assert temp_files(tmp_path) == []
    assert len(pd.read_csv(tmp_path / RESULTS_FILE)) == 1
    assert read_runs([tmp_path])["test/m0@10"].tolist() == [0.1]


def test_failed_rename_keeps_the_previous_summary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_run(record(tmp_path / "0", 0.1), tmp_path / "0")
    sweep = OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path)}}})
    AggregateSweep().on_multirun_end(sweep)
    before = (tmp_path / "summary.csv").read_text()
    write_run(record(tmp_path / "1", 0.2), tmp_path / "1")
    failing_replace(monkeypatch)
    with pytest.raises(OSError):
        AggregateSweep().on_multirun_end(sweep)
    assert (tmp_path / "summary.csv").read_text() == before and temp_files(tmp_path) == []


def test_failed_rename_leaves_no_cache_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    failing_replace(monkeypatch)
    with pytest.raises(DataError, match="cannot write the dataset cache"):
        load_cached(Source(), tmp_path)
    assert not cache_path(Source(), tmp_path).exists() and temp_files(tmp_path) == []
    monkeypatch.undo()
    data, _ = load_cached(Source(), tmp_path)
    assert len(data) == 50 and cache_path(Source(), tmp_path).is_file()


def test_failed_rename_keeps_the_previous_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    save_checkpoint(train_state(3), tmp_path)
    failing_replace(monkeypatch)
    with pytest.raises(OSError):
        save_checkpoint(train_state(4), tmp_path)
    assert load_checkpoint(tmp_path).epoch == 3 and temp_files(tmp_path) == []


@pytest.mark.parametrize("kind", ["numpy", "torch"])
def test_failed_rename_keeps_the_previous_model_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, blocks: Interactions, kind: str
) -> None:
    model, name = Popularity().fit(blocks), NUMPY_FILE
    if kind == "torch":
        model.network_ = nn.Linear(3, 3)  # save_model writes the state_dict of any network_
        name = TORCH_FILE
    save_model(model, tmp_path)
    before = (tmp_path / name).read_bytes()
    failing_replace(monkeypatch)
    with pytest.raises(OSError):
        save_model(model, tmp_path)
    assert (tmp_path / name).read_bytes() == before and temp_files(tmp_path) == []


# -- SIGKILL in the middle of writing ---------------------------------------------------------------------


def _stall_renames_after_first(folder: Path, state: dict[str, int]) -> None:
    """From the second write on, block inside ``os.replace`` (temp file complete, rename pending)."""
    state["writes"] = state.get("writes", 0) + 1
    if state["writes"] == 2:
        real = os.replace

        def stalled(src, dst, *args, **kwargs):
            (folder / "stalled").touch()
            time.sleep(3600)
            return real(src, dst, *args, **kwargs)

        os.replace = stalled  # only in this forked child


def _write_runs(run_dir: str, stall: bool) -> None:
    state: dict[str, int] = {}
    for j in range(1, 1_000_000):  # small and large records in turn, so that kills land mid-write
        if stall:
            _stall_renames_after_first(Path(run_dir), state)
        write_run(record(Path(run_dir), float(j), n_metrics=5 if j % 2 else 5000), run_dir)


def _write_checkpoints(run_dir: str, stall: bool) -> None:
    state: dict[str, int] = {}
    for j in range(1, 1_000_000):
        if stall:
            _stall_renames_after_first(Path(run_dir), state)
        save_checkpoint(train_state(j, width=8 if j % 2 else 300), run_dir)


def _write_cache(cache_dir: str, stall: bool) -> None:
    from recbench.data import cache

    data, ids = Source().load()
    state: dict[str, int] = {}
    while True:
        if stall:
            _stall_renames_after_first(Path(cache_dir), state)
        cache._save(cache_path(Source(), cache_dir), data, ids)


def _run_files_whole(folder: Path) -> None:
    if (folder / METRICS_FILE).exists():
        assert json.loads((folder / METRICS_FILE).read_text())["status"] == "ok"
    if (folder / RESULTS_FILE).exists():
        assert len(pd.read_csv(folder / RESULTS_FILE)) == 1
    assert len(read_runs([folder])) <= 1


def _checkpoint_whole(folder: Path) -> None:
    if (folder / CHECKPOINT_FILE).exists():
        assert load_checkpoint(folder).epoch >= 1


def _cache_whole(folder: Path) -> None:
    path = cache_path(Source(), folder)
    if path.exists():
        with np.load(path, allow_pickle=False) as z:
            assert len(z["users"]) == 50
    assert len(load_cached(Source(), folder)[0]) == 50  # and the reader is happy either way


@pytest.mark.parametrize(
    ("writer", "check"),
    [(_write_runs, _run_files_whole), (_write_checkpoints, _checkpoint_whole), (_write_cache, _cache_whole)],
    ids=["run-files", "checkpoint", "cache"],
)
def test_sigkill_while_writing_leaves_whole_files(tmp_path: Path, writer: Callable, check: Callable) -> None:
    """Kills at random moments, and one that surely lands between writing the temp file and renaming it."""
    ctx = multiprocessing.get_context("fork")
    rnd = random.Random(0)
    for attempt, stall in enumerate([False, False, False, True]):
        folder = tmp_path / str(attempt)
        folder.mkdir()
        proc = ctx.Process(target=writer, args=(str(folder), stall), daemon=True)
        proc.start()
        if stall:
            deadline = time.monotonic() + 30
            while not (folder / "stalled").exists() and time.monotonic() < deadline:
                time.sleep(0.01)
            (folder / "stalled").unlink()
        else:
            time.sleep(rnd.uniform(0.05, 0.5))
        os.kill(proc.pid, signal.SIGKILL)
        proc.join(10)
        assert proc.exitcode == -signal.SIGKILL
        if stall:
            assert temp_files(folder), "the kill was meant to land mid-write"
        check(folder)


# -- readers skip the leftovers of a killed writer --------------------------------------------------------


def test_readers_ignore_leftover_temporary_files(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    write_run(record(run_dir, 0.3), run_dir)
    save_checkpoint(train_state(2), run_dir)
    load_cached(Source(), tmp_path / "cache")
    cached = cache_path(Source(), tmp_path / "cache")
    garbage = b'{"status": "ok", "metrics": {"test/m0@10": 9'  # what a killed writer leaves
    for name in (f"{METRICS_FILE}.k1ll3d.tmp", f"{RESULTS_FILE}.k1ll3d.tmp", f".{CHECKPOINT_FILE}.123.tmp"):
        (run_dir / name).write_bytes(garbage)
    (cached.parent / f".{cached.stem}.k1ll3d.tmp").write_bytes(garbage)
    (run_dir / "sub").mkdir()
    (run_dir / "sub" / f"{METRICS_FILE}.x.tmp").write_bytes(garbage)

    runs = read_runs([tmp_path])
    assert runs["test/m0@10"].tolist() == [0.3]
    assert load_checkpoint(run_dir).epoch == 2
    assert len(load_cached(Source(), tmp_path / "cache")[0]) == 50
    AggregateSweep().on_multirun_end(OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path)}}}))
    assert len(pd.read_csv(tmp_path / "summary.csv")) == 1


def test_truncated_metrics_file_is_skipped_not_fatal(tmp_path: Path) -> None:
    write_run(record(tmp_path / "a", 0.3), tmp_path / "a")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / METRICS_FILE).write_text('{"schema": 1, "status": "ok", "metr')  # e.g. a copy cut short
    assert read_runs([tmp_path])["test/m0@10"].tolist() == [0.3]
