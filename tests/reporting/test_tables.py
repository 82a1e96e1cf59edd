"""compare() aggregation, best marking and the renderers."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
from rich.console import Console

from recbench.errors import RecbenchError
from recbench.reporting.tables import compare, lower_is_better, to_csv, to_latex, to_markdown, to_rich

NDCG = {"pop": [0.10, 0.12, 0.14], "bpr": [0.30, 0.32, 0.37], "ncf": [0.31, 0.35, 0.36]}


@pytest.fixture
def runs() -> pd.DataFrame:
    rows = []
    for model, values in NDCG.items():
        for dataset, shift in (("ml-100k", 0.0), ("ml-1m", 0.1)):
            for seed, v in enumerate(values):
                rows.append(
                    {
                        "run_dir": f"{model}/{dataset}/{seed}",
                        "status": "ok",
                        "error": None,
                        "seed": seed,
                        "model": model,
                        "dataset": dataset,
                        "started_at": f"2025-01-0{seed + 1}",
                        "test/ndcg@10": v + shift,
                        "test/rmse": 1.0 - v,
                    }
                )
    rows.append({"run_dir": "x", "status": "failed", "error": "boom", "seed": 0, "model": "pop"})
    return pd.DataFrame(rows)


def test_mean_std_n_over_three_seeds(runs: pd.DataFrame) -> None:
    table = compare(runs, "test/ndcg@10", rows=["model"], cols=["dataset"])
    assert list(table.value.columns) == ["ml-100k", "ml-1m"]
    assert list(table.value.index) == ["bpr", "ncf", "pop"]
    for model, values in NDCG.items():
        assert table.value.at[model, "ml-100k"] == pytest.approx(np.mean(values))
        assert table.value.at[model, "ml-1m"] == pytest.approx(np.mean(values) + 0.1)
        assert table.std.at[model, "ml-100k"] == pytest.approx(np.std(values, ddof=1))
        assert table.n.at[model, "ml-100k"] == 3  # the failed pop run is left out


def test_best_is_max_for_ranking_and_min_for_errors_with_ties(runs: pd.DataFrame) -> None:
    table = compare(runs, ["test/ndcg@10", "test/rmse"], rows=["model"])
    assert table.best["test/ndcg@10"].tolist() == [False, True, False]  # ncf: 0.39 > bpr 0.38
    tie = runs.assign(**{"test/ndcg@10": np.where(runs["model"] == "pop", 0.0, 0.5)})
    tied = compare(tie, "test/ndcg@10")
    assert tied.best["test/ndcg@10"].tolist() == [True, True, False]
    assert table.best["test/rmse"].tolist() == [False, True, False]
    assert lower_is_better("test/rmse") and lower_is_better("fit_s") and not lower_is_better("test/ndcg@10")


def test_other_aggregations(runs: pd.DataFrame) -> None:
    assert compare(runs, "test/ndcg@10", agg="max").value.at["bpr", "test/ndcg@10"] == pytest.approx(0.47)
    last = compare(runs.iloc[::-1], "test/ndcg@10", cols=["dataset"], agg="last")
    assert last.value.at["ncf", "ml-100k"] == pytest.approx(0.36)  # latest started_at, not row order
    by_seed = compare(runs, "test/ndcg@10", rows=["model", "seed"], cols=["dataset"])
    assert by_seed.value.at[("pop", 1), "ml-100k"] == pytest.approx(0.12)


def test_unknown_metric_or_key_names_what_exists(runs: pd.DataFrame) -> None:
    with pytest.raises(RecbenchError, match=r"No metric 'test/ndcg@5'.*test/ndcg@10"):
        compare(runs, "test/ndcg@5")
    with pytest.raises(RecbenchError, match="No row/column key 'trainer'"):
        compare(runs, "test/ndcg@10", cols=["trainer"])


def test_markdown(runs: pd.DataFrame) -> None:
    text = to_markdown(compare(runs, "test/ndcg@10", cols=["dataset"]))
    lines = text.splitlines()
    assert lines[0] == "| model | ml-100k | ml-1m |"
    assert lines[1] == "| --- | ---: | ---: |"
    ncf_mean, ncf_std = np.mean(NDCG["ncf"]), np.std(NDCG["ncf"], ddof=1)
    assert (
        lines[3] == f"| ncf | **{ncf_mean:.4f} ± {ncf_std:.4f}** | **{ncf_mean + 0.1:.4f} ± {ncf_std:.4f}** |"
    )
    assert "**" not in lines[4]


def test_latex(runs: pd.DataFrame) -> None:
    text = to_latex(compare(runs, "test/ndcg@10", rows=["model"]))
    assert text.startswith("\\begin{tabular}{lr}\n\\toprule\nmodel & test/ndcg@10 \\\\\n\\midrule\n")
    assert "\\textbf{" in text and "$\\pm$" in text and text.rstrip().endswith("\\end{tabular}")
    assert text.count("\\\\") == 4  # header + 3 rows


def test_csv_is_wide_with_std_and_n(runs: pd.DataFrame) -> None:
    back = pd.read_csv(io.StringIO(to_csv(compare(runs, "test/ndcg@10", cols=["dataset"]))))
    assert list(back.columns) == [
        "model",
        "ml-100k",
        "ml-100k_std",
        "ml-100k_n",
        "ml-1m",
        "ml-1m_std",
        "ml-1m_n",
    ]
    assert back.set_index("model").at["pop", "ml-100k"] == pytest.approx(0.12)
    assert back["ml-1m_n"].tolist() == [3, 3, 3]


def test_rich_and_uneven_counts_are_marked(runs: pd.DataFrame) -> None:
    table = compare(runs.drop(index=0), "test/ndcg@10")  # pop loses a seed
    console = Console(file=io.StringIO(), width=120)
    console.print(to_rich(table))
    out = console.file.getvalue()
    assert out.count("(n=5)") == 1 and "bpr" in out and "n=6 runs per cell" in out


def test_missing_key_values_form_their_own_group(runs: pd.DataFrame) -> None:
    runs = runs.assign(experiment=np.where(runs["model"] == "pop", None, "e1"))
    text = to_markdown(compare(runs, "test/ndcg@10", rows=["model", "experiment"]))
    assert "| pop | – | 0.1700 ± 0.0576 |" in text and "| bpr | e1 |" in text
