"""Comparison tables: runs grouped by row (and column) keys, aggregated over seeds, best value marked.

:func:`compare` turns the frame of :func:`recbench.reporting.records.read_runs` into a
:class:`ComparisonTable`; :func:`to_rich`, :func:`to_csv`, :func:`to_markdown` and :func:`to_latex` render it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
from rich.table import Table
from rich.text import Text

from recbench.errors import RecbenchError
from recbench.evaluation.metrics import LOWER_IS_BETTER
from recbench.reporting.plain import plain

Agg = Literal["mean", "median", "max", "min", "last"]
AGGS: tuple[str, ...] = ("mean", "median", "max", "min", "last")


def lower_is_better(metric: str) -> bool:
    """Whether smaller values of ``metric`` are better: errors (rmse, mae, mse, loss, logloss), timings
    (``*_s``), spreads (``*_std``), concentration and miscalibration, and group gaps
    (``.../disparity/...``)."""
    name = metric.rsplit("/", 1)[-1]
    if name.endswith("_std") or "disparity/" in metric:
        return True
    return name.split("@", 1)[0] in LOWER_IS_BETTER or name.endswith("_s")


@dataclass(frozen=True)
class ComparisonTable:
    """Aggregated values of one or more metrics, one row per row-key group, one column per label.

    ``value``, ``std`` (across runs, ddof=1), ``n`` (runs with a value) and ``best`` share the same index
    (the row keys) and columns (a metric name, a column-key value, or ``"<col value> <metric>"``).
    """

    rows: tuple[str, ...]
    metrics: tuple[str, ...]
    agg: str
    value: pd.DataFrame
    std: pd.DataFrame
    n: pd.DataFrame
    best: pd.DataFrame

    @property
    def title(self) -> str:
        """Short description, e.g. ``"test/ndcg@10 (mean ± std)"``."""
        what = self.metrics[0] if len(self.metrics) == 1 else "metrics"
        return f"{what} ({'mean ± std' if self.agg == 'mean' else self.agg})"


def compare(
    df: pd.DataFrame,
    metric: str | Sequence[str],
    rows: Sequence[str] = ("model",),
    cols: Sequence[str] | None = None,
    agg: Agg = "mean",
) -> ComparisonTable:
    """Group runs by ``rows`` (and ``cols``) and aggregate ``metric`` over the runs of each group.

    Parameters
    ----------
    df : DataFrame
        Runs as returned by ``read_runs``; failed runs (``status != "ok"``) are left out.
    metric : str or sequence of str
        Metric column(s). Several metrics without ``cols`` give one column per metric.
    rows, cols : sequence of str
        Keys of the table rows and columns (``cols=None``: one column per metric).
    agg : {"mean", "median", "max", "min", "last"}
        Value shown per cell; ``"last"`` takes the latest run by ``started_at``.

    Returns
    -------
    ComparisonTable
        Best value per column marked (maximum, or minimum for errors and timings; ties all marked).
    """
    metrics = (metric,) if isinstance(metric, str) else tuple(metric)
    rows, cols = list(rows), list(cols or [])
    if agg not in AGGS:
        raise RecbenchError(f"Unknown aggregation '{agg}'; use one of {', '.join(AGGS)}.")
    _check_columns(df, [*rows, *cols], "row/column key")
    _check_columns(df, list(metrics), "metric")
    ok = df[df["status"] == "ok"] if "status" in df.columns else df
    if agg == "last" and "started_at" in ok.columns:
        ok = ok.sort_values("started_at", kind="stable")
    parts: dict[str, list[pd.DataFrame]] = {"value": [], "std": [], "n": []}
    lower: dict[str, bool] = {}
    for m in metrics:
        grouped = ok.assign(**{m: pd.to_numeric(ok[m], errors="coerce")}).groupby(
            rows + cols, dropna=False, sort=True
        )[m]
        frames = {"value": grouped.agg(agg), "std": grouped.std(ddof=1), "n": grouped.count()}
        for name, series in frames.items():
            frame = series.unstack(cols) if cols else series.to_frame(m)
            frame.columns = [_label(c, m, bool(cols), len(metrics) > 1) for c in frame.columns]
            lower.update(dict.fromkeys(frame.columns, lower_is_better(m)))
            parts[name].append(frame)
    value, std, n = (pd.concat(parts[k], axis=1) for k in ("value", "std", "n"))
    n = n.fillna(0).astype(int)
    best = pd.DataFrame(False, index=value.index, columns=value.columns)
    for c in value.columns:
        target = value[c].min() if lower[c] else value[c].max()
        best[c] = value[c].notna() & np.isclose(value[c], target, rtol=0, atol=1e-12)
    return ComparisonTable(tuple(rows), metrics, agg, value, std, n, best)


def _check_columns(df: pd.DataFrame, names: list[str], what: str) -> None:
    for name in names:
        if name not in df.columns:
            known = (
                ", ".join(c for c in df.columns if "/" in c)
                if what == "metric"
                else ", ".join(
                    c
                    for c in df.columns
                    if "/" not in c and not c.startswith(("param.", "extra.", "version."))
                )
            )
            raise RecbenchError(f"No {what} '{name}' in the runs; available: {known or 'none'}.")


def _label(col: object, metric: str, by_cols: bool, several: bool) -> str:
    if not by_cols:
        return metric
    text = "/".join(map(_key_text, col)) if isinstance(col, tuple) else _key_text(col)
    return f"{text} {metric}" if several else text


def _key_text(value: object) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)


def _cells(table: ComparisonTable, digits: int, pm: str) -> list[list[tuple[str, bool]]]:
    """``(text, is_best)`` for the row keys (never best) and then every column, for every row."""
    counts = table.n.to_numpy()[table.value.notna().to_numpy()]
    common = int(np.bincount(counts).argmax()) if counts.size else 0
    out = []
    value, std, n_runs, best = (f.to_numpy() for f in (table.value, table.std, table.n, table.best))
    for i, key in enumerate(table.value.index):  # positional: row keys may hold NaN
        keys = key if isinstance(key, tuple) else (key,)
        cells = [(_key_text(k), False) for k in keys]
        for j in range(value.shape[1]):
            v, s, n = value[i, j], std[i, j], int(n_runs[i, j])
            if pd.isna(v):
                cells.append(("–", False))
                continue
            text = f"{v:.{digits}f}"
            if table.agg == "mean" and not pd.isna(s):
                text += f" {pm} {s:.{digits}f}"
            if n != common:
                text += f" (n={n})"
            cells.append((text, bool(best[i, j])))
        out.append(cells)
    return out


def _caption(table: ComparisonTable) -> str:
    counts = table.n.to_numpy()[table.value.notna().to_numpy()]
    common = int(np.bincount(counts).argmax()) if counts.size else 0
    return f"n={common} runs per cell unless marked; best in bold"


def cells(table: ComparisonTable, digits: int = 4, pm: str = "±") -> list[list[tuple[str, bool]]]:
    """The table's cells as every renderer shows them: ``(text, is_best)``, row keys first, per row."""
    return _cells(table, digits, pm)


def caption(table: ComparisonTable) -> str:
    """What the numbers are (runs per cell, best marked), as every renderer's caption says."""
    return _caption(table)


def column_label(col: object, metric: str, by_cols: bool, several: bool) -> str:
    """The column name of ``metric`` for a column-key value ``col``, as :func:`compare` names it."""
    return _label(col, metric, by_cols, several)


def key_text(value: object) -> str:
    """A row or column key as shown in a table (``–`` for a missing value)."""
    return _key_text(value)


def to_rich(table: ComparisonTable, digits: int = 4) -> Table:
    """A rich table (best cells bold green) with a caption saying what the numbers are."""
    header = [*table.rows, *table.value.columns]
    return _rich(header, len(table.rows), _cells(table, digits, "±"), table.title, _caption(table))


def to_csv(table: ComparisonTable) -> str:
    """Wide CSV: the row keys, then ``<column>``, ``<column>_std``, ``<column>_n`` for every column."""
    frame = table.value.copy()
    for c in table.value.columns:
        frame[f"{c}_std"] = table.std[c]
        frame[f"{c}_n"] = table.n[c]
    order = [x for c in table.value.columns for x in (c, f"{c}_std", f"{c}_n")]
    return frame[order].reset_index().to_csv(index=False)


def to_markdown(table: ComparisonTable, digits: int = 4) -> str:
    """GitHub-flavoured Markdown pipe table; best values in bold."""
    return _markdown([*table.rows, *table.value.columns], len(table.rows), _cells(table, digits, "±"))


def to_latex(table: ComparisonTable, digits: int = 4) -> str:
    """A booktabs ``tabular`` (needs ``\\usepackage{booktabs}``); best values in ``\\textbf``."""
    return _latex([*table.rows, *table.value.columns], len(table.rows), _cells(table, digits, "±"))


def _frame_cells(frame: pd.DataFrame) -> list[list[tuple[str, bool]]]:
    return [[(str(v), False) for v in row] for row in frame.itertuples(index=False)]


def frame_to_rich(
    frame: pd.DataFrame, n_left: int = 1, title: str | None = None, caption: str | None = None
) -> Table:
    """A rich table of a frame of pre-formatted cells; the first ``n_left`` columns are left-aligned keys."""
    return _rich(list(map(str, frame.columns)), n_left, _frame_cells(frame), title, caption)


def frame_to_markdown(frame: pd.DataFrame, n_left: int = 1) -> str:
    """Markdown pipe table of a frame of pre-formatted cells."""
    return _markdown(list(map(str, frame.columns)), n_left, _frame_cells(frame))


def frame_to_latex(frame: pd.DataFrame, n_left: int = 1) -> str:
    """booktabs ``tabular`` of a frame of pre-formatted cells."""
    return _latex(list(map(str, frame.columns)), n_left, _frame_cells(frame))


def _rich(
    header: list[str], n_left: int, rows: list[list[tuple[str, bool]]], title: str | None, caption: str | None
) -> Table:
    out = Table(title=None if title is None else plain(title))
    out.caption = None if caption is None else plain(caption)
    for j, h in enumerate(header):
        style, justify = ("cyan", "left") if j < n_left else (None, "right")
        out.add_column(plain(h), style=style, justify=justify)
    for cells in rows:
        out.add_row(*(Text(t, style="bold green" if b else "") for t, b in cells))
    return out


def _markdown(header: list[str], n_left: int, rows: list[list[tuple[str, bool]]]) -> str:
    def line(texts: list[str]) -> str:
        return "| " + " | ".join(t.replace("|", r"\|") for t in texts) + " |"

    rule = "|" + "|".join(" --- " if j < n_left else " ---: " for j in range(len(header))) + "|"
    lines = [line(header), rule]
    lines += [line([f"**{t}**" if b else t for t, b in cells]) for cells in rows]
    return "\n".join(lines) + "\n"


_LATEX_ESCAPES = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\^{}",
    "–": "--",
    "±": r"$\pm$",
    "<": r"$<$",
    ">": r"$>$",
}


def _latex_escape(text: str) -> str:
    return "".join(_LATEX_ESCAPES.get(ch, ch) for ch in text)


def _latex(header: list[str], n_left: int, rows: list[list[tuple[str, bool]]]) -> str:
    spec = "".join("l" if j < n_left else "r" for j in range(len(header)))
    lines = [
        f"\\begin{{tabular}}{{{spec}}}",
        "\\toprule",
        " & ".join(map(_latex_escape, header)) + " \\\\",
        "\\midrule",
    ]
    for cells in rows:
        texts = [f"\\textbf{{{_latex_escape(t)}}}" if b else _latex_escape(t) for t, b in cells]
        lines.append(" & ".join(texts) + " \\\\")
    lines += ["\\bottomrule", "\\end{tabular}"]
    return "\n".join(lines) + "\n"
