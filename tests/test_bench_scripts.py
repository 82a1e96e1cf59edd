"""Every benchmark row of ``scripts/bench_*.py`` is a valid ``recbench train`` command (composed, not run)."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from recbench.config import config_dir

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"
BENCHES = (
    "bench_classic",
    "bench_factorization",
    "bench_ncf",
    "bench_cold_start",
    "bench_sequential",
    "bench_data",
    "bench_epoch_ratio",
    "bench_seq_scale",
)


@pytest.fixture(scope="module")
def benches() -> dict[str, object]:
    saved = {k: v for k, v in __import__("os").environ.items() if k.endswith("_NUM_THREADS")}
    sys.path.insert(0, str(SCRIPTS))
    try:
        return {name: importlib.import_module(name) for name in BENCHES}
    finally:
        sys.path.remove(str(SCRIPTS))
        env = __import__("os").environ
        for key in [k for k in env if k.endswith("_NUM_THREADS") and k not in saved]:
            del env[key]  # benchkit pins BLAS to one thread for its own process only


def _cases(module: object) -> list:
    if hasattr(module, "CASES"):
        return list(module.CASES)
    if hasattr(module, "QUALITY"):
        return [*module.QUALITY, *module.SPEED]
    if module.__name__ == "bench_epoch_ratio":  # paths only: no feature file is written
        return module.cases(Path("features"), list(module.SIZES), list(module.MODELS), {("bpr", "20m"): 5})
    return list(module.cases("/tmp/cache") if module.__name__ == "bench_data" else module.cases(12))


def _shape(overrides: tuple[str, ...]) -> frozenset[str]:
    """The keys the overrides set (``model=bpr`` -> ``model``): rows of one shape compose alike."""
    return frozenset(o.split("=", 1)[0] for o in overrides)


def test_every_benchmark_row_composes_with_the_harness_overrides(benches: dict[str, object]) -> None:
    kit = sys.modules["benchkit"]
    configs = Path(config_dir())
    shapes: set[frozenset[str]] = set()
    with initialize_config_dir(version_base="1.3", config_dir=str(configs)):
        for name, module in benches.items():
            cases = _cases(module)
            assert cases, name
            for case in cases:
                overrides = (*kit.ONE_THREAD, *case.overrides, "seed=0")
                for group, choice in (o.split("=", 1) for o in case.overrides if "." not in o.split("=")[0]):
                    assert (configs / group / f"{choice}.yaml").is_file(), (name, case.name, group, choice)
                if _shape(overrides) in shapes:  # the same keys with other values: composed once
                    continue
                shapes.add(_shape(overrides))
                cfg = compose("train", overrides=list(overrides))
                assert cfg.trainer.num_threads == 1 and cfg.save_model is False, (name, case)
                for metric in case.metrics:  # every reported metric is one the run's eval produces
                    if metric.startswith("test/"):
                        assert metric.split("/")[-1].split("@")[0] in cfg.eval.metrics, (name, case)
    assert len(shapes) >= 8
