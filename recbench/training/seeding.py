"""Seeding and device selection."""

from __future__ import annotations

import os
import random

import numpy as np
import torch

from recbench.errors import ConfigError


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch global RNGs. Only the pipeline calls this; library code takes seeds."""
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 - deliberately the legacy global RNG
    torch.manual_seed(seed)
    os.environ.setdefault("PYTHONHASHSEED", str(seed))


def resolve_device(device: str) -> torch.device:
    """``auto`` -> cuda when available else cpu; ``cpu`` / ``cuda`` / ``cuda:N`` as given."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(
            f"trainer.device={device!r} but CUDA is not available on this machine. "
            "Use trainer.device=cpu or trainer.device=auto."
        )
    if device != "cpu" and not device.startswith("cuda") and device != "mps":
        raise ConfigError(f"trainer.device={device!r} is not one of auto, cpu, cuda, cuda:N.")
    return torch.device(device)
