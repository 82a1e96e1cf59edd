"""Per-epoch training checkpoints, so an interrupted run resumes exactly where it stopped.

A checkpoint holds the network and optimiser state, the numpy and torch RNG states, the history so
far and the early-stopping state (best value, best weights, rounds without improvement). It is a
plain dict of tensors and primitives written with ``torch.save`` to a temporary file and renamed,
and read back with ``torch.load(..., weights_only=True)``: nothing is unpickled.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from recbench.errors import ConfigError
from recbench.files import atomic_write

CHECKPOINT_FILE = "checkpoint.pt"


@dataclass
class TrainState:
    """Everything needed to continue training after ``epoch``."""

    epoch: int
    network: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    numpy_rng: dict[str, Any]
    torch_rng: torch.Tensor
    rows: list[dict[str, float]]
    best_value: float | None
    best_epoch: int | None
    best_network: dict[str, torch.Tensor] | None
    bad_rounds: int


def checkpoint_path(where: str | Path) -> Path:
    """``where`` itself when it is a file, else ``where/checkpoint.pt``."""
    where = Path(where)
    return where if where.suffix == ".pt" else where / CHECKPOINT_FILE


def save_checkpoint(state: TrainState, where: str | Path) -> Path:
    """Write ``state`` atomically (temp file + rename) and return its path."""
    path = checkpoint_path(where)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "epoch": state.epoch,
        "network": state.network,
        "optimizer": state.optimizer,
        "numpy_rng": json.dumps(state.numpy_rng),
        "torch_rng": state.torch_rng,
        "rows": json.dumps(state.rows),
        "best_value": state.best_value,
        "best_epoch": state.best_epoch,
        "best_network": state.best_network,
        "bad_rounds": state.bad_rounds,
    }
    atomic_write(path, lambda fh: torch.save(payload, fh))
    return path


def load_checkpoint(where: str | Path) -> TrainState:
    """Read a checkpoint written by :func:`save_checkpoint` (weights only; no pickle)."""
    path = checkpoint_path(where)
    if not path.is_file():
        raise ConfigError(
            f"trainer.resume={where}: no checkpoint at {path}. Point it at the run directory of an "
            "interrupted torch run (it holds checkpoint.pt), or drop trainer.resume to start afresh."
        )
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a truncated or foreign file
        raise ConfigError(f"trainer.resume: {path} is not a readable recbench checkpoint ({exc}).") from exc
    return TrainState(
        epoch=int(raw["epoch"]),
        network=raw["network"],
        optimizer=raw["optimizer"],
        numpy_rng=json.loads(raw["numpy_rng"]),
        torch_rng=raw["torch_rng"],
        rows=json.loads(raw["rows"]),
        best_value=raw["best_value"],
        best_epoch=raw["best_epoch"],
        best_network=raw["best_network"],
        bad_rounds=int(raw["bad_rounds"]),
    )


def restore_rng(rng: np.random.Generator, state: dict[str, Any]) -> None:
    """Put ``rng`` back into a saved ``bit_generator.state``."""
    rng.bit_generator.state = state
