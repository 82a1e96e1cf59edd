"""Shared fixtures: tiny synthetic interactions and the shared real datasets (skipped when absent)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from recbench.data.interactions import Interactions

REPO = Path(__file__).resolve().parents[1]
CONFIG_DIR = REPO / "configs"


def shared_datasets_dir() -> Path | None:
    """``$RECBENCH_DATA_DIR`` or ``../shared/datasets`` beside the repo, if it exists."""
    env = os.environ.get("RECBENCH_DATA_DIR")
    for cand in ([Path(env)] if env else []) + [REPO.parent / "shared" / "datasets"]:
        if cand.is_dir():
            return cand
    return None


@pytest.fixture
def ml100k_dir() -> Path:
    """Folder of the shared MovieLens 100K copy (u.data, u.item, u.user); skips when absent."""
    root = shared_datasets_dir()
    if root is None or not (root / "ml-100k" / "u.data").is_file():
        pytest.skip("shared ml-100k not found (set RECBENCH_DATA_DIR to the folder holding ml-100k/)")
    return root / "ml-100k"


def block_interactions(
    n_blocks: int = 4,
    users_per_block: int = 10,
    items_per_block: int = 8,
    density: float = 0.6,
    seed: int = 0,
) -> Interactions:
    """Block-diagonal implicit data: users of block b interact only with items of block b.

    A sensible model's top recommendations for a user lie inside that user's block.
    """
    rng = np.random.default_rng(seed)
    n_users, n_items = n_blocks * users_per_block, n_blocks * items_per_block
    u, i = np.meshgrid(np.arange(n_users), np.arange(n_items), indexing="ij")
    same = (u // users_per_block) == (i // items_per_block)
    keep = same & (rng.random(same.shape) < density)
    users, items = u[keep], i[keep]
    ts = rng.permutation(len(users)).astype(np.int64)
    ratings = rng.integers(1, 6, size=len(users)).astype(np.float32)
    return Interactions(users, items, n_users, n_items, ratings=ratings, timestamps=ts)


@pytest.fixture
def blocks() -> Interactions:
    """Block-diagonal implicit data with ratings and timestamps (see :func:`block_interactions`)."""
    return block_interactions()


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread() -> None:
    """Tiny test fits run far faster single-threaded (and never oversubscribe a busy 2-core machine)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
