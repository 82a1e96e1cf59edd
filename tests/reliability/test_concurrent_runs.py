"""Two CLI runs started at once, sharing the dataset cache and the outputs folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from recbench.reporting.records import read_runs


@pytest.mark.slow
def test_two_runs_at_once_build_the_cache_once_and_keep_their_own_files(tmp_path: Path, cli_spawn) -> None:
    outputs = tmp_path / "outputs"
    args = ["train", "model=bpr", "dataset=tiny", "trainer=fast", "seed=3"]
    procs = [
        cli_spawn(*args, f"hydra.run.dir={outputs / f'run{j}'}", log=tmp_path / f"console{j}.log")
        for j in range(2)
    ]
    for j, proc in enumerate(procs):
        proc.wait(timeout=400)
        assert proc.returncode == 0, (tmp_path / f"console{j}.log").read_text()

    records = [json.loads((outputs / f"run{j}" / "metrics.json").read_text()) for j in range(2)]
    assert [r["status"] for r in records] == ["ok", "ok"]
    assert [Path(r["run_dir"]).name for r in records] == ["run0", "run1"]
    assert records[0]["metrics"] == records[1]["metrics"]  # same config and seed, no cross-talk
    runs = read_runs([outputs])
    assert sorted(Path(d).name for d in runs["run_dir"]) == ["run0", "run1"]

    cache = tmp_path / "cache"  # RECBENCH_CACHE_DIR of both processes
    assert sorted(p.suffix for p in cache.iterdir()) == [".lock", ".npz"]
    logs = "".join((outputs / f"run{j}" / "train.log").read_text() for j in range(2))
    assert logs.count("cached at") == 1  # built by one process; the other waited for it or read it
    leftovers = [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]
    assert leftovers == []
