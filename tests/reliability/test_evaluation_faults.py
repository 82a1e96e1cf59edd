"""A run killed during evaluation resumes without training (its fitted model was saved before
evaluation) and gives identical metrics; ``trainer.checkpoint_every`` checkpoints keep resume exact."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from recbench import pipeline
from recbench.data.interactions import Interactions
from recbench.data.splits import RandomHoldout, Split
from recbench.fitted import FITTED_FILE
from recbench.models.factorization import BPR
from recbench.models.neighborhood import ItemKNN
from recbench.pipeline import RunContext, run
from recbench.training import Trainer
from recbench.training import trainer as trainer_module
from recbench.training.checkpoint import CHECKPOINT_FILE
from recbench.training.trainer import epoch_listener


class Killed(BaseException):
    """Stands for a kill (not an ordinary error)."""


@pytest.mark.parametrize(("model", "cls"), [("bpr", BPR), ("itemknn", ItemKNN)])
def test_run_killed_in_evaluation_resumes_without_training(
    tmp_path: Path, make_cfg: Callable, monkeypatch: pytest.MonkeyPatch, model: str, cls: type
) -> None:
    args = (f"model={model}", "trainer.epochs=3", "seed=5")
    whole = run(make_cfg(*args), RunContext(tmp_path / "whole"))

    real_evaluate = pipeline.evaluate
    calls = {"n": 0}

    def dies_in_test(*a, **kw):
        calls["n"] += 1
        if kw.get("label") == "test":
            raise Killed
        return real_evaluate(*a, **kw)

    monkeypatch.setattr(pipeline, "evaluate", dies_in_test)
    first = tmp_path / "first"
    with pytest.raises(Killed):
        run(make_cfg(*args), RunContext(first))
    assert calls["n"] == 2 and (first / FITTED_FILE).is_file()  # val evaluated, then the kill
    monkeypatch.setattr(pipeline, "evaluate", real_evaluate)

    def no_training(*a, **kw):
        raise AssertionError("the resumed run trained again")

    monkeypatch.setattr(cls, "fit", no_training)
    resumed = run(make_cfg(*args, f"trainer.resume={first}"), RunContext(tmp_path / "resumed"))
    assert resumed.status == "ok" and resumed.extra["fit_loaded"] is True
    assert resumed.metrics == whole.metrics
    assert not (tmp_path / "resumed" / FITTED_FILE).exists()  # the marker only lives until the run ends
    saved = sorted(p.name for p in (tmp_path / "resumed").glob("model.*"))
    assert saved == sorted(p.name for p in (tmp_path / "whole").glob("model.*"))


def test_resume_refits_when_the_settings_differ(tmp_path: Path, make_cfg: Callable) -> None:
    first = tmp_path / "first"
    run(make_cfg("model=itemknn", "seed=5"), RunContext(first))
    (first / FITTED_FILE).write_text(json.dumps({"key": "another config", "model": "ItemKNN", "history": {}}))
    resumed = run(make_cfg("model=itemknn", "seed=5", f"trainer.resume={first}"), RunContext(tmp_path / "b"))
    assert resumed.extra["fit_loaded"] is False


# -- checkpoint_every ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def split() -> Split:
    rng = np.random.default_rng(1)
    users = np.repeat(np.arange(30), 10)
    items = (users // 10) * 8 + rng.integers(0, 8, len(users))
    keep = np.unique(users * 24 + items, return_index=True)[1]
    return RandomHoldout(ratios=(0.8, 0.2))(Interactions(users[keep], items[keep], 30, 24), seed=0)


def bpr(checkpoint_dir: Path | None = None, resume: Path | None = None) -> BPR:
    trainer = Trainer(
        epochs=7,
        batch_size=32,
        lr=0.1,
        device="cpu",
        progress=False,
        checkpoint_dir=str(checkpoint_dir) if checkpoint_dir else None,
        checkpoint_every=3,
        resume=str(resume) if resume else None,
    )
    return BPR(factors=8, trainer=trainer, seed=2)


def test_checkpoint_every_n_epochs_and_at_the_end_resumes_exactly(
    tmp_path: Path, split: Split, monkeypatch: pytest.MonkeyPatch
) -> None:
    whole = bpr().fit(split.train)
    saved: list[int] = []
    real_save = trainer_module.save_checkpoint

    def recording_save(state, where):
        saved.append(state.epoch)
        return real_save(state, where)

    monkeypatch.setattr(trainer_module, "save_checkpoint", recording_save)
    bpr(tmp_path / "all").fit(split.train)
    assert saved == [3, 6, 7]

    def kill_in_epoch_5(row: dict[str, float]) -> None:
        if row["epoch"] == 5:
            raise Killed

    with epoch_listener(kill_in_epoch_5), pytest.raises(Killed):
        bpr(tmp_path / "killed").fit(split.train)
    assert torch.load(tmp_path / "killed" / CHECKPOINT_FILE, weights_only=True)["epoch"] == 3
    resumed = bpr(tmp_path / "second", resume=tmp_path / "killed").fit(split.train)
    assert [r["loss"] for r in resumed.history_.rows] == [r["loss"] for r in whole.history_.rows]
    for key, value in whole.network_.state_dict().items():
        assert torch.equal(resumed.network_.state_dict()[key], value), key


def test_checkpoint_every_must_be_positive() -> None:
    from recbench.errors import ConfigError

    with pytest.raises(ConfigError, match="checkpoint_every"):
        Trainer(checkpoint_every=0)
