"""The estimate-before-allocating helper: available memory, refusals with the estimate, row budgets."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
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


def test_reuse_freed_memory_stops_page_faults_of_repeated_large_temporaries() -> None:
    """In a fresh process, 40 MiB temporaries freed and allocated again fault their pages in every time
    under glibc's defaults, and almost never once :func:`memory.reuse_freed_memory` ran."""
    if platform.libc_ver()[0] != "glibc":
        pytest.skip("mallopt is glibc's")
    code = (
        "import resource, sys, numpy as np\n"
        "from recbench import memory\n"
        "assert not sys.argv[1] or memory.reuse_freed_memory()\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt\n"
        "for _ in range(20):\n"
        "    a = np.ones(10 << 20, dtype=np.float32); b = a * 2; del a, b\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)\n"
    )

    def faults(reuse: bool) -> int:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
        argv = [sys.executable, "-c", code, "1" if reuse else ""]
        out = subprocess.run(argv, capture_output=True, text=True, env=env, check=True)
        return int(out.stdout.strip())

    default, reused = faults(reuse=False), faults(reuse=True)
    assert reused * 5 < default, (reused, default)  # measured: about 1,000 against 20,000 and more
