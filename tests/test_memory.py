"""The estimate-before-allocating helper: available memory, refusals with the estimate, row budgets."""

from __future__ import annotations

from pathlib import Path

import pytest

from recbench import memory
from recbench.errors import ConfigError


def test_available_bytes_reads_meminfo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    info = tmp_path / "meminfo"
    info.write_text("MemTotal:       1000 kB\nMemFree:  10 kB\nMemAvailable:     2048 kB\n")
    monkeypatch.setattr(memory, "_MEMINFO", info)
    assert memory.available_bytes() == 2048 * 1024


def test_check_fits_refuses_with_estimate_and_options() -> None:
    memory.check_fits(80, "small", "nothing to do", available=100)  # within 90 %
    with pytest.raises(ConfigError) as err:
        memory.check_fits(
            3 << 30, "EASE Gram matrix", "Filter items (dataset.preprocess.item_core=10).", available=2 << 30
        )
    text = str(err.value)
    assert "EASE Gram matrix needs about 3.0 GiB" in text and "2.0 GiB" in text and "item_core" in text


def test_rows_within_budget_and_available(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memory, "available_bytes", lambda: None)  # unknown: the budget decides
    assert memory.rows_within(1000, 10, 10**6, "x", "y") == 100
    assert memory.rows_within(1000, 10, 30, "x", "y") == 30
    assert memory.rows_within(5, 10, 30, "x", "y") == 1  # at least one row when memory is unknown
    monkeypatch.setattr(memory, "available_bytes", lambda: 200)
    assert memory.rows_within(1000, 10, 10**6, "x", "y") == 18
    with pytest.raises(ConfigError, match="lower it"):
        memory.rows_within(1000, 500, 10, "rows", "lower it")
