"""``recbench report --html FILE``: one self-contained HTML page from the same runs as the terminal report.

The numbers come from the same functions as the terminal report: :func:`~recbench.reporting.tables.compare`
(leaderboard), :func:`~recbench.reporting.stats.baseline_comparison` (significance marks), the run records
and their ``history.csv`` / ``per_user.npz`` files. Charts are matplotlib SVG embedded as ``data:`` images,
styles and the small sorting script are inline, so the file opens offline and fetches nothing. The page is
rendered with Jinja2 from ``templates/report.html.j2`` (extra ``recbench[html]``).
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from recbench.errors import RecbenchError
from recbench.reporting import plots, stats, tables
from recbench.reporting.records import (
    HISTORY_FILE,
    METRICS_FILE,
    atomic_write_text,
    read_per_user,
    read_record,
)

log = logging.getLogger(__name__)

#: Adjusted p-value under which a leaderboard cell gets a significance mark.
ALPHA = 0.05
#: Catalogue metrics plotted against accuracy in the trade-off charts, when the runs have them.
TRADEOFF_METRICS = ("coverage", "novelty", "arp", "aplt")


@dataclass(frozen=True)
class Chart:
    """One figure of the page: an anchor id, a title, the SVG as a ``data:`` URI, and a caption."""

    id: str
    title: str
    src: str
    caption: str = ""


def write_html(
    runs: pd.DataFrame,
    out: str | Path,
    *,
    metrics: Sequence[str],
    rows: Sequence[str] = ("model",),
    cols: Sequence[str] = (),
    agg: str = "mean",
    baseline: Mapping[str, str] | None = None,
    digits: int = 4,
    sources: Sequence[str] = (),
) -> Path:
    """Render the report of ``runs`` (a :func:`~recbench.reporting.records.read_runs` frame) into ``out``.

    Parameters
    ----------
    runs : DataFrame
        All runs to show, failed ones included (they are listed with their errors).
    out : str or Path
        The HTML file (written atomically).
    metrics, rows, cols, agg, digits
        As for the terminal report.
    baseline : mapping, optional
        ``{"model": "pop"}``: the group every other row is tested against (paired per-user tests,
        Holm-corrected). None: ``model=pop`` when rows are models and pop is among them, else no marks.
    sources : sequence of str
        The paths the runs were read from (shown in the header).

    Returns
    -------
    Path
        The written file.
    """
    try:
        import jinja2
    except ImportError as exc:
        raise RecbenchError(
            "The HTML report needs Jinja2 and matplotlib; install them with `pip install 'recbench[html]'`."
        ) from exc
    context = report_context(
        runs, metrics=metrics, rows=rows, cols=cols, agg=agg, baseline=baseline, digits=digits
    )
    context["sources"] = list(sources)
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    html = env.get_template("report.html.j2").render(**context)
    atomic_write_text(out, html)
    return Path(out)


def report_context(
    runs: pd.DataFrame,
    *,
    metrics: Sequence[str],
    rows: Sequence[str],
    cols: Sequence[str],
    agg: str,
    baseline: Mapping[str, str] | None,
    digits: int,
) -> dict[str, Any]:
    """Everything the template shows, as plain values (also what the tests check)."""
    rows, cols, metrics = list(rows), list(cols), list(metrics)
    ok = runs[runs["status"] == "ok"]
    failed = runs[runs["status"] != "ok"]
    if baseline is None and rows == ["model"] and "model" in ok.columns and (ok["model"] == "pop").any():
        baseline = {"model": "pop"}
    table = tables.compare(ok, metrics, rows=rows, cols=cols, agg=agg)
    records = {str(d): read_record(Path(str(d)) / METRICS_FILE) for d in ok["run_dir"]}
    labels = _group_labels(ok, rows + cols)
    return {
        "title": "recbench report",
        "generated": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "n_ok": len(ok),
        "n_failed": len(failed),
        "leaderboard": _leaderboard(table, ok, metrics, rows, cols, baseline, digits),
        "baseline": ", ".join(f"{k}={v}" for k, v in (baseline or {}).items()),
        "alpha": ALPHA,
        "metric_charts": [
            _chart(f"bar-{i}", m, plots.bar_figure(ok, m, rows, cols), "mean over runs, error bars: ± std")
            for i, m in enumerate(metrics)
        ],
        "other_charts": _other_charts(ok, metrics, rows, cols, labels),
        "datasets": _dataset_rows(ok, records),
        "runs": _run_rows(runs, rows + cols, records),
        "versions": _version_rows(runs),
        "failed": [
            {"run_dir": str(r["run_dir"]), "group": _keys_text(r, rows + cols), "error": str(r.get("error"))}
            for _, r in failed.iterrows()
        ],
    }


def _leaderboard(
    table: tables.ComparisonTable,
    ok: pd.DataFrame,
    metrics: list[str],
    rows: list[str],
    cols: list[str],
    baseline: Mapping[str, str] | None,
    digits: int,
) -> dict[str, Any]:
    """Header, caption and cells (text, best flag, sort value, significance mark) of the leaderboard."""
    marks = _significance(ok, metrics, rows, cols, baseline, table) if baseline else {}
    values = table.value.to_numpy()
    body = []
    for i, cells in enumerate(tables.cells(table, digits)):
        keys = [text for text, _ in cells[: len(rows)]]
        out = []
        for j, (text, best) in enumerate(cells[len(rows) :]):
            mark = marks.get((i, j))
            value = values[i, j]
            out.append(
                {
                    "text": text,
                    "best": best,
                    "sort": "" if pd.isna(value) else repr(float(value)),
                    "mark": mark["symbol"] if mark else "",
                    "mark_class": mark["class"] if mark else "",
                    "tip": mark["tip"] if mark else "",
                }
            )
        body.append({"labels": keys, "cells": out})
    columns = [
        {"name": str(c), "lower": tables.lower_is_better(metrics[0] if cols else str(c))}
        for c in table.value.columns
    ]
    return {
        "title": table.title,
        "caption": tables.caption(table),
        "rows": rows,
        "columns": columns,
        "body": body,
    }


def _significance(
    ok: pd.DataFrame,
    metrics: list[str],
    rows: list[str],
    cols: list[str],
    baseline: Mapping[str, str],
    table: tables.ComparisonTable,
) -> dict[tuple[int, int], dict[str, str]]:
    """``(row, column) -> mark`` for cells whose group differs from the baseline (Wilcoxon, Holm-adjusted)."""
    index = {(k if isinstance(k, tuple) else (k,)): i for i, k in enumerate(table.value.index)}
    columns = {str(c): j for j, c in enumerate(table.value.columns)}
    out: dict[tuple[int, int], dict[str, str]] = {}
    for m in metrics:
        try:
            result = stats.baseline_comparison(ok, m, rows, baseline, cols=cols)
        except RecbenchError as exc:
            log.info("no significance marks for %s: %s", m, exc)
            continue
        for _, r in result.iterrows():
            i = index.get(tuple(r[k] for k in rows))
            col_key = tuple(r[k] for k in cols)
            label = tables.column_label(
                col_key[0] if len(cols) == 1 else col_key, m, bool(cols), len(metrics) > 1
            )
            j = columns.get(label)
            p, diff = r["wilcoxon_p"], r["diff"]
            if i is None or j is None or pd.isna(p) or p >= ALPHA or pd.isna(diff) or diff == 0:
                continue
            better = (diff < 0) == tables.lower_is_better(m)
            out[(i, j)] = {
                "symbol": "▲" if diff > 0 else "▼",
                "class": "better" if better else "worse",
                "tip": f"vs baseline: diff {diff:+.4g}, Wilcoxon p={p:.2g}, t-test p={r['t_p']:.2g} "
                f"(Holm-adjusted, {r['n']} paired {r['unit']}s)",
            }
    return out


def _chart(chart_id: str, title: str, fig: Any, caption: str = "") -> Chart:
    data = base64.b64encode(plots.svg_text(fig).encode("utf-8")).decode("ascii")
    return Chart(chart_id, title, f"data:image/svg+xml;base64,{data}", caption)


def _group_labels(ok: pd.DataFrame, keys: list[str]) -> pd.Series:
    """The group text of every run (``bpr``, ``bpr/ml-100k``), as in the leaderboard rows."""
    if not keys:
        return pd.Series("all", index=ok.index)
    return ok[keys].apply(lambda r: "/".join(tables.key_text(v) for v in r), axis=1)


def _other_charts(
    ok: pd.DataFrame, metrics: list[str], rows: list[str], cols: list[str], labels: pd.Series
) -> list[Chart]:
    charts = []
    if "fit_s" in ok.columns and pd.to_numeric(ok["fit_s"], errors="coerce").notna().any():
        fig = plots.bar_figure(ok, "fit_s", rows, cols, ylabel="time to fit (seconds)")
        charts.append(_chart("fit-time", "time to fit", fig, "seconds of model.fit per run, mean ± std"))
    histories: dict[str, list[pd.DataFrame]] = {}
    for run_dir, label in zip(ok["run_dir"], labels):
        path = Path(str(run_dir)) / HISTORY_FILE
        if path.is_file():
            histories.setdefault(label, []).append(pd.read_csv(path))
    if histories:
        fig = plots.learning_band_figure(histories)
        caption = "history.csv of every run; lines: mean over the group's runs, band: ± std"
        charts.append(_chart("learning-curves", "learning curves", fig, caption))
    per_user = _per_user_groups(ok, metrics, labels)
    if per_user is not None:
        metric, values = per_user
        caption = "per_user.npz; users of all runs of a group pooled; triangle: mean"
        charts.append(
            _chart("per-user", f"per-user {metric}", plots.distribution_figure(values, metric), caption)
        )
    charts.extend(_tradeoff_charts(ok, metrics, labels))
    return charts


def _per_user_groups(
    ok: pd.DataFrame, metrics: list[str], labels: pd.Series
) -> tuple[str, dict[str, np.ndarray]] | None:
    """Per-user values of the first metric kept per user, pooled per group."""
    for metric in metrics:
        values: dict[str, list[np.ndarray]] = {}
        for run_dir, label in zip(ok["run_dir"], labels):
            try:
                values.setdefault(label, []).append(stats.per_user_values(str(run_dir), metric)[1])
            except RecbenchError:
                continue
        if values:
            return metric, {k: np.concatenate(v) for k, v in sorted(values.items())}
    return None


def _tradeoff_charts(ok: pd.DataFrame, metrics: list[str], labels: pd.Series) -> list[Chart]:
    """Accuracy (the first metric that is not a catalogue metric) against coverage / novelty."""
    accuracy = next((m for m in metrics if _base_name(m) not in TRADEOFF_METRICS), None)
    if accuracy is None:
        return []
    k = accuracy.rpartition("@")[2] if "@" in accuracy else ""
    charts = []
    for name in TRADEOFF_METRICS:
        other = next(
            (
                c
                for c in ok.columns
                if c.startswith("test/") and _base_name(c) == name and c.endswith(f"@{k}")
            ),
            None,
        )
        if other is None:
            continue
        frame = pd.DataFrame(
            {
                "label": labels,
                "x": pd.to_numeric(ok[other], errors="coerce"),
                "y": pd.to_numeric(ok[accuracy], errors="coerce"),
            }
        )
        points = frame.groupby("label").agg(
            x=("x", "mean"), x_std=("x", "std"), y=("y", "mean"), y_std=("y", "std")
        )
        points = points.fillna(0.0).reset_index()
        fig = plots.tradeoff_figure(points, other, accuracy)
        caption = "beyond accuracy: one point per group, mean over runs, error bars ± std"
        charts.append(_chart(f"tradeoff-{name}", f"{accuracy} against {other}", fig, caption))
    return charts


def _base_name(metric: str) -> str:
    return metric.rsplit("/", 1)[-1].split("@", 1)[0]


def _dataset_rows(ok: pd.DataFrame, records: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Users, items, interactions, density and test users per (dataset, split, seed)."""
    seen: dict[tuple[str, str, str], dict[str, Any]] = {}
    for _, run in ok.iterrows():
        key = (str(run.get("dataset", "–")), str(run.get("split", "–")), str(run.get("seed", "–")))
        if key in seen:
            continue
        stats_ = records[str(run["run_dir"])].extra.get("dataset") or {}
        users, items, n = stats_.get("n_users"), stats_.get("n_items"), stats_.get("n_interactions")
        density = n / (users * items) if users and items and n else None
        try:
            test_users: int | str = len(read_per_user(str(run["run_dir"])).get("test/users", []))
        except RecbenchError:
            test_users = "–"
        seen[key] = {
            "dataset": key[0],
            "split": key[1],
            "seed": key[2],
            "users": users,
            "n_items": items,
            "interactions": n,
            "density": f"{density:.3%}" if density else "–",
            "test_users": test_users,
        }
    return list(seen.values())


def _run_rows(runs: pd.DataFrame, keys: list[str], records: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Each run: folder, group keys, seed, status, fit time and its config (the Hydra config if kept)."""
    out = []
    for _, run in runs.iterrows():
        run_dir = Path(str(run["run_dir"]))
        config_file = run_dir / ".hydra" / "config.yaml"
        if config_file.is_file():
            config = config_file.read_text(encoding="utf-8")
        else:
            record = records.get(str(run_dir))
            params = record.params if record is not None else {}
            config = "\n".join(f"{k}: {v}" for k, v in sorted(params.items()))
        fit = pd.to_numeric(pd.Series([run.get("fit_s")]), errors="coerce").iloc[0]
        out.append(
            {
                "run_dir": str(run_dir),
                "group": _keys_text(run, keys),
                "seed": run.get("seed"),
                "status": run["status"],
                "fit_s": "–" if pd.isna(fit) else f"{fit:.2f}",
                "config": config,
            }
        )
    return out


def _version_rows(runs: pd.DataFrame) -> list[dict[str, Any]]:
    """Distinct (versions, git revision) combinations with the number of runs that used each."""
    cols = sorted(c for c in runs.columns if c.startswith("version."))
    keys = [*cols, "git_rev"] if "git_rev" in runs.columns else cols
    if not keys:
        return []
    groups = runs[keys].astype(str).value_counts(sort=False).reset_index(name="runs")
    return [
        {
            "versions": ", ".join(
                f"{c.removeprefix('version.')} {g[c]}" for c in cols if g[c] not in ("nan", "None")
            ),
            "git_rev": g.get("git_rev", "–"),
            "runs": int(g["runs"]),
        }
        for _, g in groups.iterrows()
    ]


def _keys_text(run: pd.Series, keys: list[str]) -> str:
    return ", ".join(f"{k}={tables.key_text(run.get(k))}" for k in keys)
