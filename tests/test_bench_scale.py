"""scripts/bench_scale.py: its rows compose, its RSS guard stops a child, its per-phase CPU parser; and an
EASE refused for memory is a failed run whose metrics.json gives the reason (what the benchmark reports)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from recbench import memory
from recbench.config import config_dir
from recbench.errors import ConfigError
from recbench.pipeline import RunContext, run

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


@pytest.fixture(scope="module")
def bench():
    sys.path.insert(0, str(SCRIPTS))
    try:
        import bench_scale
    finally:
        sys.path.remove(str(SCRIPTS))
    return bench_scale


def test_every_row_composes_as_recbench_train(bench) -> None:
    rows = [("20m", name) for name in bench.MODELS] + [(shape, "pop") for shape in bench.SHAPES]
    with initialize_config_dir(version_base="1.3", config_dir=str(config_dir())):
        for shape, name in rows:
            overrides = [*bench.shape_overrides(shape), *bench.COMMON, *bench.MODELS[name]]
            cfg = compose("train", overrides=overrides)
            assert cfg.dataset.n_items == bench.SHAPES[shape][1]
            assert cfg.trainer.num_threads == 1 and cfg.split._target_.endswith("RandomHoldout")
            assert f"model={name}" in overrides


def test_rss_guard_stops_a_growing_child(bench, tmp_path: Path) -> None:
    grow = "import time; x = bytearray(400 << 20); x[::4096] = b'1' * len(x[::4096]); time.sleep(5)"
    child = bench.run_child(
        [sys.executable, "-c", grow],
        env=bench.one_thread_env(),
        limit_bytes=100 << 20,
        log=tmp_path / "c.log",
    )
    assert child["rss_guard"] and child["returncode"] != 0 and child["wall_s"] < 5
    ok = bench.run_child(
        [sys.executable, "-c", "pass"],
        env=bench.one_thread_env(),
        limit_bytes=1 << 30,
        log=tmp_path / "d.log",
    )
    assert not ok["rss_guard"] and ok["returncode"] == 0 and 0 < ok["peak_rss_gb"] < 1


def test_phase_cpu_reads_the_run_log(bench, tmp_path: Path) -> None:
    (tmp_path / "train.log").write_text(
        "[x][recbench.pipeline][INFO] - phase fit: 12.0 s (CPU 11.5 s)\n"
        "[x][recbench.pipeline][INFO] - phase eval val: 3.0 s (CPU 2.5 s)\n"
        "[x][recbench.pipeline][INFO] - phase eval test/cold: 1.0 s (CPU 0.5 s)\n"
    )
    assert bench.phase_cpu(tmp_path) == {"cpu_fit": 11.5, "cpu_eval_val": 2.5, "cpu_eval_test_cold": 0.5}


def test_ease_refused_for_memory_is_a_failed_run_with_its_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(memory, "available_bytes", lambda: 1 << 20)  # 1 MiB free: the Gram matrix cannot fit
    with initialize_config_dir(version_base="1.3", config_dir=str(config_dir())):
        cfg = compose(
            "train", overrides=["model=ease", "dataset=tiny", f"paths.cache_dir={tmp_path / 'cache'}"]
        )
    with pytest.raises(ConfigError, match="refused before allocating"):
        run(cfg, RunContext(tmp_path / "run", {"model": "ease"}))
    record = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert record["status"] == "failed"
    assert (
        "EASE on" in record["error"] and "item_core" in record["error"] and "needs about" in record["error"]
    )
