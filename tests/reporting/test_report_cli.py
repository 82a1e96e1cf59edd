"""report_main and compare_main end to end on hand-written run folders."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recbench.errors import RecbenchError
from recbench.reporting.commands import compare_main, report_main


@pytest.fixture
def sweep(tmp_path: Path, make_run: Callable[..., object]) -> Path:
    """3 models x 3 seeds with per-user values (bpr clearly better than pop), plus one failed run."""
    rng = np.random.default_rng(1)
    root = tmp_path / "multirun"
    job = 0
    for seed in range(3):
        base = rng.random(30)
        for model, shift in (("pop", 0.0), ("bpr", 0.2), ("itemknn", 0.05)):
            values = np.clip(base + shift + rng.normal(0, 0.02, 30), 0, 1)
            metrics = {
                "val/ndcg@10": float(values.mean()),
                "test/ndcg@10": float(values.mean()),
                "test/rmse": 1.0,
            }
            make_run(root / str(job), model=model, seed=seed, per_user_values=values, metrics=metrics)
            job += 1
    make_run(
        root / str(job), model="ncf", seed=0, status="failed", error="TrainingError: loss is NaN", metrics={}
    )
    return root


def test_report_default_shows_test_metrics_and_failures(
    sweep: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert report_main([str(sweep)]) == 0
    out = capsys.readouterr().out
    assert "test/ndcg@10" in out and "test/rmse" in out and "val/ndcg@10" not in out
    assert all(m in out for m in ("pop", "bpr", "itemknn"))
    assert "failed runs (1)" in out and "TrainingError: loss is NaN" in out


def test_report_markdown_with_baseline(sweep: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = report_main(
        [str(sweep), "--metric", "test/ndcg@10", "--format", "markdown", "--baseline", "model=pop"]
    )
    assert code == 0
    captured = capsys.readouterr()
    tables = captured.out.split("\n\n")
    assert tables[0].splitlines()[0] == "| model | test/ndcg@10 |"
    assert "| **" in tables[0].splitlines()[2]  # bpr (sorted first) is best
    sig = tables[1].splitlines()
    assert sig[0] == "| model | metric | pairs | diff | t-test p | Wilcoxon p |"
    assert sig[2].startswith("| bpr | test/ndcg@10 | 90 users | +0.1")
    assert "failed runs" in captured.err  # machine formats keep stdout clean


def test_report_where_out_and_plot(sweep: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("matplotlib")
    out, png = tmp_path / "table.csv", tmp_path / "bars.png"
    args = [str(sweep), "--where", "model=pop,bpr", "--where", "trainer.lr=1e-2", "--metric", "test/ndcg@10"]
    assert report_main([*args, "--rows", "model,seed", "--out", str(out), "--plot", str(png)]) == 0
    table = pd.read_csv(out)
    assert sorted(table["model"].unique()) == ["bpr", "pop"] and len(table) == 6
    assert png.stat().st_size > 1000
    assert "wrote" in capsys.readouterr().out


def test_report_errors_are_one_paragraph(tmp_path: Path, sweep: Path) -> None:
    with pytest.raises(RecbenchError, match="No runs found under .*empty"):
        report_main([str(tmp_path / "empty")])
    with pytest.raises(RecbenchError, match="--where names 'optimizer'"):
        report_main([str(sweep), "--where", "optimizer=sgd"])
    with pytest.raises(RecbenchError, match="No metric 'test/ndcg@5'"):
        report_main([str(sweep), "--metric", "test/ndcg@5"])


def test_report_only_failed_runs_returns_1(sweep: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert report_main([str(sweep), "--where", "model=ncf"]) == 1
    assert "TrainingError" in capsys.readouterr().out


def test_compare_two_runs(sweep: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert compare_main([str(sweep / "0"), str(sweep / "1"), "--format", "csv"]) == 0
    frame = pd.read_csv(io.StringIO(capsys.readouterr().out)).set_index("metric")
    assert frame.at["test/ndcg@10", "n"] == 30 and frame.at["test/ndcg@10", "diff"] > 0.15
    assert (
        frame.at["test/ndcg@10", "ci_low"]
        < frame.at["test/ndcg@10", "diff"]
        < frame.at["test/ndcg@10", "ci_high"]
    )
    assert frame.at["test/ndcg@10", "t_p"] < 1e-6 and np.isnan(frame.at["test/rmse", "t_p"])
    assert compare_main([str(sweep / "0"), str(sweep / "4")]) == 0  # different seeds: a warning, not an error
    assert "differ in seed" in capsys.readouterr().out
    with pytest.raises(RecbenchError, match="exactly one run"):
        compare_main([str(sweep), str(sweep / "1")])
