"""The prefetch hint compiles for 1-D and 2-D arrays of any float/int type and changes no value."""

from __future__ import annotations

import numpy as np
from numba import njit

from recbench.training.prefetch import prefetch


@njit
def _sum_rows(table: np.ndarray, rows: np.ndarray) -> float:
    total = 0.0
    for k in range(rows.shape[0]):
        if k + 1 < rows.shape[0]:
            prefetch(table, rows[k + 1], 0)
        total += table[rows[k]].sum()
    return total


@njit
def _sum_entries(values: np.ndarray, rows: np.ndarray) -> float:
    total = 0.0
    for k in range(rows.shape[0]):
        prefetch(values, rows[-1 - k], 0)
        total += values[rows[k]]
    return total


def test_prefetch_changes_no_value() -> None:
    rng = np.random.default_rng(0)
    rows = rng.integers(0, 50, 200)
    for dtype in (np.float32, np.float64):
        table = rng.standard_normal((50, 16)).astype(dtype)
        assert np.isclose(_sum_rows(table, rows), table[rows].sum(), rtol=1e-5)
    values = np.arange(50, dtype=np.int64)
    assert _sum_entries(values, rows) == values[rows].sum()
