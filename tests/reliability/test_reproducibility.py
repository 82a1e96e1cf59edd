"""Same seed, same data, CPU: identical results, for one model of each family; provenance is recorded."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas
import pytest
import scipy
import torch

import recbench
from recbench.errors import ConfigError
from recbench.pipeline import RunContext, run
from recbench.reporting.records import read_per_user

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"

#: One model per family, (config name, has its own random state). Missing configs are skipped.
FAMILIES = [
    ("pop", False),  # baseline
    ("itemknn", False),  # neighbourhood
    ("bpr", True),  # matrix factorisation
    ("ncf", True),  # neural CF
    ("neumf", True),
    ("sasrec", True),  # sequential
]


def available(name: str) -> None:
    if not (CONFIG_DIR / "model" / f"{name}.yaml").is_file():
        pytest.skip(f"configs/model/{name}.yaml does not exist (yet)")


@pytest.mark.parametrize(("model", "stochastic"), FAMILIES, ids=[m for m, _ in FAMILIES])
def test_same_seed_same_results_other_seed_other_results(
    tmp_path: Path, make_cfg: Callable, model: str, stochastic: bool
) -> None:
    available(model)
    common = (f"model={model}", "seed=5", "trainer.device=cpu", "trainer.epochs=1", "save_model=false")
    a = run(make_cfg(*common), RunContext(tmp_path / "a"))
    b = run(make_cfg(*common), RunContext(tmp_path / "b"))
    assert a.status == b.status == "ok"
    assert a.metrics == b.metrics
    pa, pb = read_per_user(tmp_path / "a"), read_per_user(tmp_path / "b")
    assert pa.keys() == pb.keys() and all(np.array_equal(pa[k], pb[k]) for k in pa)
    if stochastic:  # same split (seed=5), different initialisation and sampling
        c = run(make_cfg(*common, "model.seed=6"), RunContext(tmp_path / "c"))
        assert c.metrics != a.metrics


def test_every_metrics_json_records_versions_and_git_revision(tmp_path: Path, make_cfg: Callable) -> None:
    run(make_cfg("model=pop"), RunContext(tmp_path / "ok"))
    with pytest.raises(ConfigError):
        run(make_cfg("model=bpr", "trainer.lr=0"), RunContext(tmp_path / "failed"))
    expected = {
        "recbench": recbench.__version__,
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "pandas": pandas.__version__,
        "torch": torch.__version__,
    }
    try:
        in_git = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(recbench.__file__).parent, capture_output=True, check=True
        )
    except (OSError, subprocess.CalledProcessError):
        in_git = None
    for name in ("ok", "failed"):
        record = json.loads((tmp_path / name / "metrics.json").read_text())
        assert {k: record["versions"].get(k) for k in expected} == expected
        assert record["versions"]["python"] and record["versions"]["hydra"]
        assert record["seed"] == 42 and len(record["extra"]["config_digest"]) == 16
        if in_git is not None:
            assert re.fullmatch(r"[0-9a-f]{40}(\+dirty)?", record["git_rev"])
            assert record["git_rev"].startswith(in_git.stdout.decode().strip())
        else:
            assert record["git_rev"] is None
