"""Plots write non-empty PNG files (Agg canvas, no display needed)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

from recbench.errors import RecbenchError
from recbench.reporting.plots import bar_plot, learning_curves
from recbench.reporting.records import read_runs

pytest.importorskip("matplotlib")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_bar_plot_writes_png(tmp_path: Path, make_run: Callable[..., object]) -> None:
    for seed in range(2):
        for model, value in (("pop", 0.1), ("bpr", 0.3)):
            metrics = {"test/ndcg@10": value + 0.01 * seed}
            make_run(tmp_path / "runs" / f"{model}{seed}", model=model, seed=seed, metrics=metrics)
    out = bar_plot(
        read_runs([tmp_path / "runs"]), "test/ndcg@10", ["model"], tmp_path / "bars.png", cols=["dataset"]
    )
    assert out == tmp_path / "bars.png"
    data = out.read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 1000


def test_learning_curves_write_png_and_skip_runs_without_history(tmp_path: Path) -> None:
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        history = {"epoch": [1, 2, 3], "loss": [0.9, 0.5, 0.4], "val/ndcg@10": [0.1, 0.2, float("nan")]}
        pd.DataFrame(history).to_csv(tmp_path / name / "history.csv", index=False)
    (tmp_path / "c").mkdir()
    out = learning_curves([tmp_path / "a", tmp_path / "b", tmp_path / "c"], tmp_path / "curves.png")
    assert out.read_bytes().startswith(PNG_MAGIC) and out.stat().st_size > 1000


def test_learning_curves_without_any_history_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(RecbenchError, match="history.csv"):
        learning_curves([tmp_path], tmp_path / "x.png")
