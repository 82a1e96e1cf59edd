"""`recbench train` in two processes: ``trainer.strategy=ddp trainer.devices=2`` and under torchrun.

The slow tests run the real CLI on the tiny synthetic data (gloo on CPU) and check that the run
finishes, that only rank 0 wrote (one run folder with the usual files, nothing else), that the metrics
are within noise of one process with the same seed, and that torchrun and the spawned processes
give the same run. Bad settings are refused before anything is trained.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from recbench.errors import ConfigError
from recbench.pipeline import RunContext, run

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"
TINY = ("model=bpr", "dataset=tiny", "trainer=fast", "trainer.num_threads=1")


def train(tmp: Path, name: str, *overrides: str, torchrun: bool = False) -> dict:
    """Run ``recbench train`` (or ``torchrun --nproc_per_node 2 -m recbench train``) into ``tmp/name``."""
    env = {**os.environ, "RECBENCH_CACHE_DIR": str(tmp / "cache"), "HYDRA_FULL_ERROR": "1"}
    launcher = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"] if torchrun else []
    proc = subprocess.run(
        [
            sys.executable,
            *launcher,
            "-m",
            "recbench",
            "train",
            *TINY,
            *overrides,
            f"hydra.run.dir={tmp / name}",
        ],
        cwd=tmp,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    assert proc.stdout.count("recall@20") == 1  # one metrics table: rank 0's
    return json.loads((tmp / name / "metrics.json").read_text())


@pytest.mark.slow
def test_two_processes_write_one_run_within_noise_of_one_process(tmp_path: Path) -> None:
    alone = train(tmp_path, "one")
    spawned = train(tmp_path, "ddp", "trainer.strategy=ddp", "trainer.devices=2")
    launched = train(tmp_path, "torchrun", torchrun=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "ddp", "one", "torchrun"]
    files = sorted(p.name for p in (tmp_path / "one").iterdir())
    assert sorted(p.name for p in (tmp_path / "ddp").iterdir()) == files
    assert sorted(p.name for p in (tmp_path / "torchrun").iterdir()) == files
    assert spawned["status"] == launched["status"] == "ok"
    for key in ("val/ndcg@10", "test/ndcg@10", "test/recall@20"):
        assert abs(spawned["metrics"][key] - alone["metrics"][key]) < 0.05, key
    assert spawned["metrics"] == launched["metrics"]  # the same processes, however they were started
    log = (tmp_path / "ddp" / "train.log").read_text()
    assert "process 0 of 2 joined the gloo process group" in log and "epoch 2" in log


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        (("model=pop", "trainer.strategy=ddp", "trainer.devices=2"), "model=pop does not train with torch"),
        (("model=bpr", "trainer.strategy=ddp", "trainer.devices=0"), "trainer.devices=0"),
        (("model=bpr", "trainer.devices=2"), "needs trainer.strategy=ddp"),
    ],
)
def test_bad_distributed_settings_fail_before_training(
    tmp_path: Path, overrides: tuple[str, ...], match: str
) -> None:
    with initialize_config_dir(version_base="1.3", config_dir=str(CONFIG_DIR)):
        cfg = compose("train", overrides=["dataset=tiny", "trainer=fast", *overrides])
    with pytest.raises(ConfigError, match=match):
        run(cfg, RunContext(tmp_path / "r", {"model": overrides[0].split("=")[1]}))
    assert not (tmp_path / "r" / "history.csv").exists()
