"""Hand-written run folders for the reporting tests (no training involved)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from recbench.reporting.records import SCHEMA_VERSION, RunRecord, write_run

MakeRun = Callable[..., RunRecord]


def make_record(run_dir: Path, model: str = "pop", seed: int = 0, **kw: Any) -> RunRecord:
    """A plausible record; keyword arguments override any field."""
    fields: dict[str, Any] = dict(
        schema=SCHEMA_VERSION,
        run_dir=str(run_dir),
        started_at=f"2025-01-31T10:00:0{seed}+00:00",
        choices={"model": model, "dataset": "ml-100k", "split": "random"},
        params={"model.factors": 8, "trainer.lr": 0.01, "seed": seed},
        metrics={"val/ndcg@10": 0.1, "test/ndcg@10": 0.1, "test/recall@10": 0.2},
        timings={"load_s": 0.1, "fit_s": 1.0, "total_s": 1.5},
        seed=seed,
        status="ok",
        versions={"python": "3.11", "recbench": "0.1.0"},
        extra={"dataset": {"n_users": 10}, "test_skipped_users": 0},
    )
    fields.update(kw)
    return RunRecord(**fields)


@pytest.fixture
def make_run() -> MakeRun:
    """``make_run(dir, model=..., seed=..., per_user_values=array, **fields)`` writes a run folder."""

    def _make(run_dir: Path, model: str = "pop", seed: int = 0, per_user_values: Any = None, **kw: Any):
        record = make_record(run_dir, model=model, seed=seed, **kw)
        per_user = None
        if per_user_values is not None:
            values = np.asarray(per_user_values, dtype=np.float64)
            per_user = {"test": {"users": np.arange(len(values)) * 3, "ndcg@10": values}}
        write_run(record, run_dir, per_user=per_user)
        return record

    return _make


@pytest.fixture
def new_record() -> Callable[..., RunRecord]:
    """The :func:`make_record` factory (test modules cannot import conftest under importlib mode)."""
    return make_record
