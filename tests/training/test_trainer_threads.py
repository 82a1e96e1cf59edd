"""Trainer.fit sets torch's thread count for the fit only (issue 14: it was never restored)."""

from __future__ import annotations

import torch

from recbench.models.factorization import BPR
from recbench.training.trainer import Trainer
from tests.conftest import block_interactions


def test_fit_restores_the_global_thread_count() -> None:
    before = torch.get_num_threads()
    wanted = 2 if before != 2 else 3
    model = BPR(trainer=Trainer(epochs=1, batch_size=64, device="cpu", progress=False, num_threads=wanted))
    model.fit(block_interactions())
    assert torch.get_num_threads() == before
    assert model.trainer_.num_threads == wanted  # the effective setting is still recorded
