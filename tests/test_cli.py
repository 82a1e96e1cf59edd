"""End-to-end CLI tests on tiny data: train, a 2-job multirun with summary.csv, report, errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]


def recbench(*args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "RECBENCH_CACHE_DIR": str(cwd / "cache"), "HYDRA_FULL_ERROR": "0"}
    proc = subprocess.run(
        [sys.executable, "-m", "recbench", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"recbench {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


def test_help_lists_commands(tmp_path: Path) -> None:
    out = recbench("--help", cwd=tmp_path).stdout
    for word in ("train", "report", "compare", "data", "list"):
        assert word in out


def test_train_writes_results_and_prints_table(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    proc = recbench("train", "dataset=tiny", f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert "ndcg@10" in proc.stdout
    record = json.loads((run_dir / "metrics.json").read_text())
    assert record["status"] == "ok"
    assert record["choices"]["model"] == "pop"
    assert "test/ndcg@10" in record["metrics"]
    assert (run_dir / "results.csv").is_file()
    assert (run_dir / ".hydra" / "config.yaml").is_file()


@pytest.mark.slow
def test_multirun_two_jobs_then_report(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    recbench(
        "train",
        "-m",
        "dataset=tiny",
        "trainer=fast",
        "model=pop,bpr",
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
    )
    summary = pd.read_csv(sweep / "summary.csv")
    assert sorted(summary["model"]) == ["bpr", "pop"]
    assert (summary["status"] == "ok").all()
    out = tmp_path / "table.md"
    recbench(
        "report",
        str(sweep),
        "--metric",
        "test/ndcg@10",
        "--format",
        "markdown",
        "--out",
        str(out),
        cwd=tmp_path,
    )
    text = out.read_text()
    assert "pop" in text and "bpr" in text


def test_bad_input_gives_one_paragraph_error_not_traceback(tmp_path: Path) -> None:
    proc = recbench(
        "train",
        "dataset=tiny",
        "trainer.lr=-1",
        "model=bpr",
        f"hydra.run.dir={tmp_path / 'r'}",
        cwd=tmp_path,
        check=False,
    )
    assert proc.returncode == 2
    assert "trainer.lr" in proc.stderr
    assert "Traceback" not in proc.stderr
    record = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert record["status"] == "failed" and "trainer.lr" in record["error"]


def test_unknown_model_lists_choices(tmp_path: Path) -> None:
    proc = recbench("train", "model=nope", cwd=tmp_path, check=False)
    assert proc.returncode != 0
    assert "Available options" in proc.stderr + proc.stdout


def test_list_prints_groups(tmp_path: Path) -> None:
    out = recbench("list", "model", cwd=tmp_path).stdout
    assert "model:" in out and "pop" in out


@pytest.mark.parametrize("model", ["itemknn", "bpr"])
def test_recommend_and_similar_from_a_trained_run(tmp_path: Path, model: str) -> None:
    run_dir = tmp_path / "run"
    recbench(
        "train", "dataset=tiny", "trainer=fast", f"model={model}", f"hydra.run.dir={run_dir}", cwd=tmp_path
    )
    user = json.loads((run_dir / "metrics.json").read_text())["extra"]["dataset"]["n_users"]
    out = tmp_path / "recs.csv"
    recbench(
        "recommend", str(run_dir), "--all", "--history", "all", "--k", "5", "--out", str(out), cwd=tmp_path
    )
    recs = pd.read_csv(out)
    assert 0 < len(recs) <= user * 5 and set(recs["rank"]) <= {1, 2, 3, 4, 5}
    first = str(recs["user"].iloc[0])
    shown = recbench("recommend", str(run_dir), "--user", first, "--k", "3", cwd=tmp_path).stdout
    assert str(recs["item"].iloc[0]) in shown
    item = str(recs["item"].iloc[0])
    similar = recbench("similar", str(run_dir), "--item", item, "--k", "4", cwd=tmp_path).stdout
    assert "similarity" in similar
    bad = recbench("recommend", str(run_dir), "--user", "no-such-user", cwd=tmp_path, check=False)
    assert bad.returncode == 2 and "no-such-user" in bad.stderr


def test_recommend_excludes_items_the_user_has(tmp_path: Path) -> None:
    from recbench import serving

    run_dir = tmp_path / "run"
    recbench("train", "dataset=tiny", "model=itemknn", f"hydra.run.dir={run_dir}", cwd=tmp_path)
    os.environ["RECBENCH_CACHE_DIR"] = str(tmp_path / "cache")
    try:
        run = serving.load_run(run_dir)
    finally:
        os.environ.pop("RECBENCH_CACHE_DIR")
    import numpy as np

    users = np.arange(run.data.n_users)
    recs = serving.recommend(run, users, k=5)
    seen = {(str(run.ids.users[u]), str(run.ids.items[i])) for u, i in zip(run.data.users, run.data.items)}
    assert not any((str(u), str(i)) in seen for u, i in zip(recs["user"], recs["item"]))
