"""`recbench report --html`: the page content from hand-written runs, and the page in headless Chromium."""

from __future__ import annotations

import base64
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recbench.reporting.commands import report_main
from recbench.reporting.html import report_context
from recbench.reporting.records import read_runs

pytest.importorskip("jinja2")
pytest.importorskip("matplotlib")

MODELS = {"pop": 0.20, "itemknn": 0.35, "bpr": 0.30}


@pytest.fixture
def sweep(tmp_path: Path, make_run) -> Path:
    """Three models x two seeds (per-user values, histories, coverage), and one failed run."""
    rng = np.random.default_rng(0)
    root = tmp_path / "sweep"
    job = 0
    for model, level in MODELS.items():
        for seed in (1, 2):
            values = np.clip(level + rng.normal(0, 0.1, 200), 0, 1)
            metrics = {
                "test/ndcg@10": float(values.mean()),
                "test/coverage@10": 0.9 - level,
                "val/ndcg@10": level,
            }
            run_dir = root / str(job)
            make_run(run_dir, model=model, seed=seed, per_user_values=values, metrics=metrics)
            if model != "pop":
                epochs = np.arange(1, 6)
                hist = {"epoch": epochs, "loss": 1 / epochs + seed / 10, "val/ndcg@10": level * epochs / 5}
                pd.DataFrame(hist).to_csv(run_dir / "history.csv", index=False)
            job += 1
    make_run(
        root / str(job), model="bpr", seed=3, status="failed", metrics={}, error="TrainingError: loss nan"
    )
    return root


def test_context_holds_leaderboard_marks_charts_and_failures(sweep: Path) -> None:
    runs = read_runs([sweep])
    ctx = report_context(
        runs,
        metrics=["test/ndcg@10", "test/coverage@10"],
        rows=["model"],
        cols=[],
        agg="mean",
        baseline=None,
        digits=4,
    )
    board = ctx["leaderboard"]
    assert [row["labels"] for row in board["body"]] == [["bpr"], ["itemknn"], ["pop"]]
    ndcg = {row["labels"][0]: row["cells"][0] for row in board["body"]}
    assert ndcg["itemknn"]["best"] and not ndcg["pop"]["best"]
    assert ctx["baseline"] == "model=pop"  # the default baseline when pop is among the models
    assert ndcg["itemknn"]["mark"] == "▲" and ndcg["itemknn"]["mark_class"] == "better"
    assert ndcg["pop"]["mark"] == ""
    expected = runs[(runs["model"] == "itemknn")]["test/ndcg@10"].mean()
    assert float(ndcg["itemknn"]["sort"]) == pytest.approx(expected)
    ids = [c.id for c in ctx["other_charts"]]
    assert ids == ["fit-time", "learning-curves", "per-user", "tradeoff-coverage"]
    assert len(ctx["metric_charts"]) == 2
    svg = base64.b64decode(ctx["metric_charts"][0].src.split(",", 1)[1]).decode()
    assert "<svg" in svg and "test/ndcg@10" in svg
    assert [f["error"] for f in ctx["failed"]] == ["TrainingError: loss nan"]
    assert len(ctx["runs"]) == 7 and ctx["runs"][0]["group"] == "model=pop"
    assert ctx["datasets"][0]["test_users"] == 200 and ctx["datasets"][0]["users"] == 10


def _chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.skip("no chromium on PATH (.ci/run installs Debian's chromium)")
    return path


def test_report_html_is_self_contained_and_works_in_headless_chromium(sweep: Path, tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    assert report_main([str(sweep), "--html", str(out)]) == 0
    html = out.read_text()
    assert (
        "<script src" not in html and "<link" not in html and "http://" not in html and "https://" not in html
    )
    assert "TrainingError: loss nan" in html and "built-in method" not in html
    sync_api = pytest.importorskip("playwright.sync_api")
    chromium = _chromium()
    errors: list[str] = []
    fetched: list[str] = []
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on(
            "request", lambda r: fetched.append(r.url) if not r.url.startswith(("file:", "data:")) else None
        )
        page.goto(out.as_uri())
        page.wait_for_load_state("load")
        rows = page.locator("#leaderboard tbody tr")
        assert rows.count() == len(MODELS)
        first_column = page.locator("#leaderboard tbody tr td:first-child")
        assert first_column.all_inner_texts() == ["bpr", "itemknn", "pop"]
        page.locator("#leaderboard thead th", has_text="test/ndcg@10").click()  # best first
        assert first_column.all_inner_texts() == ["itemknn", "bpr", "pop"]
        page.locator("#leaderboard thead th", has_text="test/ndcg@10").click()  # and reversed
        assert first_column.all_inner_texts() == ["pop", "bpr", "itemknn"]
        charts = page.locator("figure.chart img")
        assert charts.count() >= 6
        for i in range(charts.count()):
            chart = charts.nth(i)
            chart.scroll_into_view_if_needed()
            assert chart.is_visible()
            assert chart.evaluate("img => img.complete && img.naturalWidth > 0"), f"chart {i} did not render"
        assert page.locator("details.run").count() == 7
        page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
        browser.close()
    assert errors == []
    assert fetched == []
    assert (tmp_path / "report.png").stat().st_size > 10_000
