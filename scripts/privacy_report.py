"""Privacy-utility table and plot of ``experiment=privacy_ml-100k`` sweeps.

    python scripts/privacy_report.py SWEEP_DIR [SWEEP_DIR ...] [--out outputs/privacy_ml100k]

Reads every run's ``metrics.json`` below the given folders (the same reader as ``recbench report``), groups
the runs by model (user-level runs, ``trainer.privacy.unit=user``, apart as ``<model> (user-level)``) and
target epsilon (``'inf'``: privacy off) and writes ``<out>.csv`` (mean, std and number of seeds of test
NDCG@10, test RMSE where the run has it, and the spent epsilon), ``<out>.md`` (the README table) and
``<out>.png`` (NDCG@10, and RMSE where present, against epsilon; 'inf' drawn at the right end).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import pandas as pd

from recbench.reporting.records import read_runs

EPS_COL = "param.trainer.privacy.target_epsilon"
UNIT_COL = "param.trainer.privacy.unit"
METRICS = ("test/ndcg@10", "test/rmse")


def summarise(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per (model, target epsilon): mean, std and count of the metrics, and the spent epsilon."""
    ok = runs[runs["status"] == "ok"].copy()
    ok["target_epsilon"] = ok[EPS_COL].map(lambda v: math.inf if str(v) == "inf" else float(v))
    if UNIT_COL in ok:  # user-level runs are a different guarantee: never averaged with example-level ones
        user = ok[UNIT_COL].astype(str) == "user"
        ok.loc[user, "model"] = ok.loc[user, "model"].astype(str) + " (user-level)"
    spent = "extra.privacy.epsilon"
    if spent not in ok:
        ok[spent] = float("nan")
    agg: dict[str, tuple[str, str]] = {"seeds": ("seed", "nunique"), "spent_epsilon": (spent, "mean")}
    for metric in METRICS:
        if metric in ok:
            agg[f"{metric}_mean"] = (metric, "mean")
            agg[f"{metric}_std"] = (metric, "std")
    return (
        ok.groupby(["model", "target_epsilon"])
        .agg(**agg)
        .reset_index()
        .sort_values(["model", "target_epsilon"])
    )


def markdown(table: pd.DataFrame) -> str:
    """The README table: a row per model and epsilon, mean ± std over the seeds."""
    lines = [
        "| model | epsilon (target) | spent epsilon | test NDCG@10 | test RMSE | seeds |",
        "|---|---|---|---|---|---|",
    ]
    for _, row in table.iterrows():
        eps = "∞ (privacy off)" if math.isinf(row.target_epsilon) else f"{row.target_epsilon:g}"
        spent = "" if pd.isna(row.spent_epsilon) else f"{row.spent_epsilon:.3f}"
        cells = []
        for metric in METRICS:
            mean, std = row.get(f"{metric}_mean"), row.get(f"{metric}_std")
            if mean is None or pd.isna(mean):
                cells.append("")
            else:
                cells.append(f"{mean:.4f}" + ("" if pd.isna(std) else f" ± {std:.4f}"))
        lines.append(f"| {row.model} | {eps} | {spent} | {cells[0]} | {cells[1]} | {row.seeds} |")
    return "\n".join(lines) + "\n"


def plot(table: pd.DataFrame, path: Path) -> None:
    """NDCG@10 (and RMSE where present) against epsilon, one line per model; 'inf' at the right end."""
    import matplotlib.pyplot as plt

    panels = [m for m in METRICS if f"{m}_mean" in table and table[f"{m}_mean"].notna().any()]
    finite = sorted(e for e in table.target_epsilon.unique() if math.isfinite(e))
    at_inf = (finite[-1] * 2) if finite else 1.0
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4), squeeze=False)
    colours = {m: f"C{j}" for j, m in enumerate(sorted(table.model.unique()))}  # one colour per model
    for ax, metric in zip(axes[0], panels):
        for model, group in table.groupby("model"):
            group = group[group[f"{metric}_mean"].notna()]
            if group.empty:
                continue
            x = [at_inf if math.isinf(e) else e for e in group.target_epsilon]
            ax.errorbar(
                x,
                group[f"{metric}_mean"],
                yerr=group[f"{metric}_std"].fillna(0),
                marker="o",
                capsize=3,
                label=model,
                color=colours[model],
            )
        ax.set_xscale("log")
        ax.set_xticks([*finite, at_inf], [*(f"{e:g}" for e in finite), "∞"])
        ax.set_xlabel("epsilon (example-level DP, delta = 1e-5)")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        ax.legend()
    seeds = int(table.seeds.max()) if len(table) else 0
    spread = " (mean ± std over seeds)" if seeds > 1 else f" ({seeds} seed)"
    fig.suptitle("DP-SGD on MovieLens-100K: utility against privacy" + spread)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sweeps", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, default=Path("outputs") / "privacy_ml100k")
    args = parser.parse_args()
    table = summarise(read_runs(args.sweeps))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out.with_suffix(".csv"), index=False)
    args.out.with_suffix(".md").write_text(markdown(table))
    plot(table, args.out.with_suffix(".png"))
    print(markdown(table))
    print(f"wrote {args.out}.csv, .md, .png")


if __name__ == "__main__":
    main()
