"""`recbench report --groups ATTR` (per-group table and two-sample tests) and the trade-off plot."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from recbench.errors import RecbenchError
from recbench.reporting.commands import report_main
from recbench.reporting.groups import group_gap_tests, long_by_group, two_sample_test
from recbench.reporting.records import read_runs, write_run


def _runs(tmp_path: Path, new_record) -> Path:
    """Two models x two seeds with gender groups (F users better for bpr) and per-user labels."""
    rng = np.random.default_rng(0)
    labels = np.array(["F", "M", "M", "M"] * 25)
    for model, gap in (("pop", 0.0), ("bpr", 0.3)):
        for seed in (1, 2):
            values = rng.random(len(labels)) * 0.2 + np.where(labels == "F", gap, 0.0)
            arp = rng.random(len(labels)) * 10 + (100 if model == "pop" else 40)
            metrics = {"test/ndcg@10": values.mean(), "test/arp@10": arp.mean()}
            for g in ("F", "M"):
                rows = labels == g
                metrics |= {
                    f"test/group/gender={g}/ndcg@10": values[rows].mean(),
                    f"test/group/gender={g}/n_users": float(rows.sum()),
                }
            for g, n in (("head", 5.0), ("tail", 9.0)):
                metrics |= {
                    f"test/group/popularity={g}/ndcg@10": 0.1,
                    f"test/group/popularity={g}/n_users": n,
                }
            run_dir = tmp_path / "sweep" / f"{model}{seed}"
            per_user = {"test": {"users": np.arange(len(labels)), "ndcg@10": values, "group:gender": labels}}
            write_run(
                new_record(run_dir, model=model, seed=seed, metrics=metrics), run_dir, per_user=per_user
            )
    return tmp_path / "sweep"


def test_two_sample_test_matches_scipy_and_handles_degenerate_samples() -> None:
    rng = np.random.default_rng(1)
    a, b = rng.normal(0, 1, 50), rng.normal(0.5, 2, 70)
    res = two_sample_test(a, np.append(b, np.nan))  # NaN values are dropped
    assert res.n_a == 50 and res.n_b == 70 and res.diff == pytest.approx(b.mean() - a.mean())
    assert res.welch_p == pytest.approx(stats.ttest_ind(a, b, equal_var=False).pvalue)
    assert res.mannwhitney_p == pytest.approx(stats.mannwhitneyu(a, b, alternative="two-sided").pvalue)
    assert two_sample_test(np.ones(3), np.ones(4)).welch_p == 1.0
    assert math.isnan(two_sample_test(np.ones(1), np.ones(4)).mannwhitney_p)


def test_groups_table_and_gap_tests(tmp_path: Path, new_record, capsys) -> None:
    sweep = _runs(tmp_path, new_record)
    runs = read_runs([sweep])
    long = long_by_group(runs, "gender", ["test/ndcg@10"])
    assert len(long) == 8 and set(long["gender"]) == {"F", "M"} and set(long["n_users"]) == {25.0, 75.0}
    # bpr's F users are 0.3 better: the gap F - M is significant; pop's is not (pooled over 2 seeds)
    gaps = group_gap_tests(runs, "gender", ("M", "F"), ["test/ndcg@10"], ["model"]).set_index("model")
    assert gaps.loc["bpr", "n_b"] == 50 and gaps.loc["bpr", "n_a"] == 150
    assert gaps.loc["bpr", "diff"] > 0.25 and gaps.loc["bpr", "welch_p"] < 1e-6
    assert gaps.loc["pop", "welch_p"] > 0.01 and gaps.loc["pop", "mannwhitney_p"] > 0.01
    out = tmp_path / "groups.csv"
    assert report_main([str(sweep), "--groups", "gender", "--out", str(out)]) == 0
    text = out.read_text()
    assert "gender" in text and "welch_p" in text and "mannwhitney_p" in text
    assert report_main([str(sweep), "--groups", "gender", "--between", "F,M"]) == 0
    # item groups have a table but no per-user labels: the table is shown with a note
    assert report_main([str(sweep), "--groups", "popularity"]) == 0
    assert "no two-sample test" in capsys.readouterr().out
    with pytest.raises(RecbenchError, match="no run has test/group/age"):
        report_main([str(sweep), "--groups", "age"])
    with pytest.raises(RecbenchError, match="--between"):
        report_main([str(sweep), "--groups", "gender", "--between", "F,X"])


def test_accuracy_vs_popularity_plot(tmp_path: Path, new_record, monkeypatch) -> None:
    pytest.importorskip("matplotlib")
    sweep = _runs(tmp_path, new_record)
    monkeypatch.chdir(tmp_path)
    assert report_main([str(sweep), "--metric", "test/ndcg@10", "--plot", "accuracy-vs-popularity"]) == 0
    png = tmp_path / "accuracy-vs-popularity.png"
    assert png.read_bytes().startswith(b"\x89PNG") and png.stat().st_size > 1000
    other = tmp_path / "aplt.png"
    args = ["--plot", "accuracy-vs-popularity", "--plot-x", "test/arp@10", "--plot-file", str(other)]
    assert report_main([str(sweep), *args]) == 0 and other.is_file()


def test_gaps_concentration_and_popularity_are_lower_is_better() -> None:
    from recbench.reporting.tables import lower_is_better

    assert lower_is_better("test/disparity/gender/ndcg@10") and lower_is_better(
        "test/disparity/age/ndcg@10_ratio"
    )
    assert all(
        lower_is_better(f"test/{m}@10") for m in ("gini", "arp", "pop_rsp", "pop_reo", "miscalibration")
    )
    assert not any(
        lower_is_better(f"test/{m}@10") for m in ("ndcg", "aplt", "ild", "epc", "entropy", "coverage")
    )
    assert not lower_is_better("test/group/gender=F/ndcg@10")
