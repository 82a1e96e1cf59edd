"""Progress inside an epoch: the log line's content and its rate limit; the trainer's use of it."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from recbench.models.sequential.gru4rec import GRU4Rec
from recbench.training import progress
from recbench.training.progress import batch_total, epoch_progress, progress_line
from recbench.training.trainer import Trainer
from tests.models.test_sequential import cycles


def test_progress_line_gives_count_rate_and_time_left() -> None:
    line = progress_line(1, 2048, 8656, 166.0)
    assert line.startswith("epoch 1: 2,048/8,656 batches (24%), 12.3 batches/s, 2:46 elapsed")
    assert line.endswith("about 8:56 left")
    assert progress_line(3, 10, None, 4000.0) == "epoch 3: 10 batches, 0.0 batches/s, 1:06:40 elapsed"


def test_epoch_progress_yields_every_batch_and_logs_at_its_rate(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger=progress.__name__):
        assert list(epoch_progress(iter(range(5)), 2, total=5, every_s=0.0)) == list(range(5))
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 5 and lines[-1].startswith("epoch 2: 5/5 batches (100%)")
    caplog.clear()
    with caplog.at_level(logging.INFO, logger=progress.__name__):
        assert list(epoch_progress(range(5), 2, total=5)) == list(range(5))  # well under 30 s: silent
    assert not caplog.records


def test_trainer_reports_the_epochs_batches(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = cycles()
    model = GRU4Rec(
        max_len=6, embedding_dim=8, hidden_dim=8, trainer=Trainer(epochs=1, batch_size=8, progress=False)
    )
    assert batch_total(object(), data, 8) is None  # a model that cannot count its batches
    monkeypatch.setattr(progress, "LOG_EVERY_S", 0.0)
    with caplog.at_level(logging.INFO, logger=progress.__name__):
        model.fit(data)
    n_rows = int(((data.sequences(7) != 0).sum(axis=1) >= 2).sum())
    expected = -(-n_rows // 8)
    assert model.batch_count(data, 8) == expected
    messages = [r.getMessage() for r in caplog.records]
    assert messages[-1].startswith(f"epoch 1: {expected}/{expected} batches (100%)")
    assert np.isfinite(model.history_.rows[0]["loss"])
