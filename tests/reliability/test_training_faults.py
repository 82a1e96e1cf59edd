"""Faults during training: a killed run resumes to identical results; a NaN loss fails the run clearly."""

from __future__ import annotations

import json
import re
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from recbench.data.interactions import Interactions
from recbench.data.splits import RandomHoldout, Split
from recbench.errors import ConfigError, TrainingError
from recbench.models.factorization import BPR
from recbench.pipeline import RunContext, run
from recbench.training import EarlyStopping, Trainer
from recbench.training import trainer as trainer_module
from recbench.training.checkpoint import CHECKPOINT_FILE


def checkpoint_epoch(path: Path) -> int:
    """Epoch of the checkpoint at ``path``; -1 while it is absent or being replaced."""
    try:
        return int(torch.load(path, map_location="cpu", weights_only=True)["epoch"])
    except Exception:
        return -1


# The killed run's harness: every checkpoint write is followed by a pause, so an epoch on tiny data (about a
# millisecond) cannot outrun the poller below and the kill lands between two checkpoints on any machine.
SLOW_CHECKPOINTS = """
import sys, time
from recbench.cli import main
from recbench.training import trainer

save = trainer.save_checkpoint

def save_then_pause(*args, **kwargs):
    path = save(*args, **kwargs)
    time.sleep(0.4)
    return path

trainer.save_checkpoint = save_then_pause
main(sys.argv[1:])
"""


@pytest.mark.slow
def test_killed_cli_run_resumes_to_identical_metrics(tmp_path: Path, cli, cli_spawn) -> None:
    """SIGKILL a CLI run after epoch >= 2, resume it elsewhere: metrics equal an uninterrupted run's."""
    args = [
        "train",
        "model=bpr",
        "dataset=tiny",
        "trainer.epochs=15",
        "trainer.device=cpu",
        "trainer.progress=false",
        "trainer.early_stopping.patience=15",  # early-stopping state (best weights) is kept, never fires
        "trainer.checkpoint_every=1",
        "seed=7",
    ]
    a, b, c = tmp_path / "A", tmp_path / "B", tmp_path / "C"
    proc = cli_spawn(*args, f"hydra.run.dir={a}", log=tmp_path / "a.log", code=SLOW_CHECKPOINTS)
    killed_after = -1
    deadline = time.monotonic() + 240
    while proc.poll() is None and time.monotonic() < deadline:
        killed_after = checkpoint_epoch(a / CHECKPOINT_FILE)
        if killed_after >= 2:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.02)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, (tmp_path / "a.log").read_text()
    assert 2 <= killed_after < 15
    assert not (a / "metrics.json").exists()  # it never got to write results

    resumed = cli(*args, f"trainer.resume={a}", f"hydra.run.dir={b}")
    assert resumed.returncode == 0, resumed.stderr
    after = re.search(r"resuming from .* after epoch (\d+)", (b / "train.log").read_text())
    assert after and killed_after <= int(after.group(1)) < 15  # it did continue, not start afresh
    whole = cli(*args, f"hydra.run.dir={c}")
    assert whole.returncode == 0, whole.stderr

    rec_b, rec_c = (json.loads((d / "metrics.json").read_text()) for d in (b, c))
    assert rec_b["status"] == rec_c["status"] == "ok"
    assert rec_b["metrics"] == rec_c["metrics"]
    hist_b, hist_c = (pd.read_csv(d / "history.csv").filter(regex="^(?!.*seconds)") for d in (b, c))
    assert len(hist_b) == 15  # the epochs before the kill are part of the resumed run's history
    pd.testing.assert_frame_equal(hist_b, hist_c)
    weights_b = torch.load(b / "model.pt", weights_only=True)
    weights_c = torch.load(c / "model.pt", weights_only=True)
    assert all(torch.equal(weights_b[k], weights_c[k]) for k in weights_c)
    assert not (b / CHECKPOINT_FILE).exists() and not (c / CHECKPOINT_FILE).exists()


# -- in-process: interrupt after every epoch, with early stopping that fires ---------------------------

EPOCHS = 12


def make_model(tmp: Path | None = None, resume: Path | None = None) -> BPR:
    trainer = Trainer(
        epochs=EPOCHS,
        batch_size=32,
        lr=0.2,
        device="cpu",
        progress=False,
        early_stopping=EarlyStopping(metric="ndcg@10", patience=2, every=1),
        checkpoint_dir=str(tmp) if tmp else None,
        checkpoint_every=1,
        resume=str(resume) if resume else None,
    )
    return BPR(factors=8, trainer=trainer, seed=3)


@pytest.fixture(scope="module")
def split() -> Split:
    rng = np.random.default_rng(0)
    n_users, n_items = 48, 40
    users = np.repeat(np.arange(n_users), 14)
    items = (users // 12) * 10 + rng.integers(0, 10, len(users))  # four taste blocks
    keep = np.unique(users * n_items + items, return_index=True)[1]
    data = Interactions(users[keep], items[keep], n_users, n_items)
    return RandomHoldout(ratios=(0.7, 0.3))(data, seed=0)


@pytest.fixture(scope="module")
def uninterrupted(split: Split) -> BPR:
    model = make_model().fit(split.train, split.test)
    assert model.history_.stopped_early and len(model.history_.rows) < EPOCHS  # the setting is meaningful
    return model


def rows_without_time(rows: list[dict[str, float]]) -> list[dict[str, float]]:
    return [{k: v for k, v in r.items() if not k.endswith("seconds")} for r in rows]


class Interrupted(BaseException):
    """Stands for a kill that lands right after a checkpoint was written."""


@pytest.mark.parametrize("stop_after", [1, 4, 5, 6])  # first, best, one bad round, stopped
def test_resume_after_any_epoch_matches_uninterrupted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, split: Split, uninterrupted: BPR, stop_after: int
) -> None:
    n_epochs = len(uninterrupted.history_.rows)
    stop_after = min(stop_after, n_epochs)
    real_save = trainer_module.save_checkpoint

    def save_then_die(state, where):
        path = real_save(state, where)
        if state.epoch == stop_after:
            raise Interrupted
        return path

    monkeypatch.setattr(trainer_module, "save_checkpoint", save_then_die)
    with pytest.raises(Interrupted):
        make_model(tmp_path / "first").fit(split.train, split.test)
    monkeypatch.setattr(trainer_module, "save_checkpoint", real_save)

    resumed = make_model(tmp_path / "second", resume=tmp_path / "first").fit(split.train, split.test)
    a, b = resumed.history_, uninterrupted.history_
    assert rows_without_time(a.rows) == rows_without_time(b.rows)
    assert (a.best_epoch, a.best_value, a.stopped_early) == (b.best_epoch, b.best_value, b.stopped_early)
    for key, value in uninterrupted.network_.state_dict().items():
        assert torch.equal(resumed.network_.state_dict()[key], value), key
    np.testing.assert_array_equal(
        resumed.score(np.arange(5), split.train), uninterrupted.score(np.arange(5), split.train)
    )


def test_resume_from_a_missing_or_broken_checkpoint_is_a_config_error(tmp_path: Path, split: Split) -> None:
    with pytest.raises(ConfigError, match=r"trainer.resume=.*no checkpoint"):
        make_model(resume=tmp_path / "nowhere").fit(split.train, split.test)
    (tmp_path / CHECKPOINT_FILE).write_bytes(b"PK\x03\x04 a truncated archive")
    with pytest.raises(ConfigError, match="not a readable recbench checkpoint"):
        make_model(resume=tmp_path).fit(split.train, split.test)


# -- NaN / inf loss -------------------------------------------------------------------------------------


def test_diverging_run_fails_with_epoch_and_learning_rate(tmp_path: Path, make_cfg: Callable) -> None:
    with pytest.raises(TrainingError) as info:
        run(make_cfg("model=mf", "trainer.lr=1e10"), RunContext(tmp_path / "r"))
    assert "epoch 1" in str(info.value) and "trainer.lr=10000000000.0" in str(info.value)
    record = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert record["status"] == "failed" and record["metrics"] == {}
    assert record["error"].startswith("TrainingError: ") and "epoch 1" in record["error"]


def test_nan_loss_in_a_later_epoch_names_that_epoch(
    tmp_path: Path, make_cfg: Callable, monkeypatch: pytest.MonkeyPatch
) -> None:
    epochs = {"started": 0}
    real_batches, real_loss = BPR.batches, BPR.loss

    def counting_batches(self, train, batch_size, rng) -> Iterator:
        epochs["started"] += 1
        yield from real_batches(self, train, batch_size, rng)

    def poisoned_loss(self, net, batch) -> torch.Tensor:
        loss = real_loss(self, net, batch)
        return loss * float("nan") if epochs["started"] >= 3 else loss

    monkeypatch.setattr(BPR, "batches", counting_batches)
    monkeypatch.setattr(BPR, "loss", poisoned_loss)
    with pytest.raises(TrainingError, match=r"became nan in epoch 3\b.*trainer.lr=0.05"):
        run(make_cfg("model=bpr", "trainer.epochs=5", "trainer.lr=0.05"), RunContext(tmp_path / "r"))
    record = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert record["status"] == "failed" and "epoch 3" in record["error"]
    assert not (tmp_path / "r" / "model.pt").exists()
