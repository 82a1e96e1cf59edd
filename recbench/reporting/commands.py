"""``recbench report`` and ``recbench compare``: argparse front ends over records, tables, stats and plots.

Both read runs through :func:`recbench.reporting.records.read_runs` (the same reader as the sweep
callback) and never import torch.
"""

from __future__ import annotations

import argparse
import io
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from rich.console import Console

from recbench.errors import RecbenchError
from recbench.reporting import groups, stats, tables
from recbench.reporting.plain import echo
from recbench.reporting.plots import TRADEOFF_PLOT
from recbench.reporting.records import atomic_write_text, read_runs

FORMATS = ("rich", "csv", "markdown", "latex")
_NOT_METRICS = ("param.", "extra.", "version.")
_SUFFIX_FORMATS = {".csv": "csv", ".md": "markdown", ".markdown": "markdown", ".tex": "latex"}


def report_main(argv: list[str]) -> int:
    """``recbench report PATH... [options]``: comparison table of the runs under the given paths.

    Returns 0 when a table was shown, 1 when every matching run failed. Raises
    :class:`~recbench.errors.RecbenchError` when no run is found or an option names an unknown column.
    """
    ns = _report_parser().parse_args(argv)
    df = read_runs(ns.paths)
    if df.empty:
        raise RecbenchError(
            f"No runs found under {', '.join(map(str, ns.paths))}: no readable metrics.json file is there. "
            "Pass a run folder, a sweep folder (outputs/multirun/<date>/<time>) or a parent of them, and "
            "check that the runs finished writing (a run killed before its end leaves no metrics.json)."
        )
    df = apply_where(df, ns.where or [])
    fmt = _format(ns.format, ns.out)
    rows, cols = _keys(ns.rows), _keys(ns.cols)
    df = with_param_keys(df, [*rows, *cols])
    ok = df[df["status"] == "ok"]
    failed = df[df["status"] != "ok"]
    console = _console()
    if ok.empty:
        _print_failures(failed, _console(stderr=fmt != "rich" and not ns.out))
        return 1
    if ns.groups:
        _emit(_group_sections(ok, ns, rows, cols, fmt), fmt, ns.out, console)
        _print_failures(failed, _console(stderr=fmt != "rich" and not ns.out))
        return 0
    metrics = ns.metric or default_metrics(ok)
    table = tables.compare(df, metrics, rows=rows, cols=cols, agg=ns.agg)
    sections = [_render_table(table, fmt, ns.digits)]
    if ns.baseline:
        sig = _baseline_frame(ok, metrics, rows, cols, _pairs([ns.baseline], "--baseline"))
        title = f"paired tests vs {ns.baseline} (two-sided, Holm-corrected)"
        shown = sig if fmt == "csv" else _baseline_display(sig, rows + cols, ns.digits)
        sections.append(_render_frame(shown, fmt, len(rows) + len(cols) + 1, title))
    _emit(sections, fmt, ns.out, console)
    if ns.plot == TRADEOFF_PLOT:
        from recbench.reporting.plots import tradeoff_plot

        y = ns.metric[0] if ns.metric else "test/ndcg@10"
        path = tradeoff_plot(ok, y, ns.plot_x, rows, ns.plot_file or f"{TRADEOFF_PLOT}.png")
        echo(console, f"plot: {path}")
    elif ns.plot:
        from recbench.reporting.plots import bar_plot

        echo(console, f"plot: {bar_plot(ok, metrics[0], rows, ns.plot, cols=cols)}")
    if ns.html:
        from recbench.reporting.html import write_html

        baseline = _pairs([ns.baseline], "--baseline") if ns.baseline else None
        kw = dict(metrics=metrics, rows=rows, cols=cols, agg=ns.agg, baseline=baseline, digits=ns.digits)
        echo(console, f"wrote {write_html(df, ns.html, sources=ns.paths, **kw)}")
    _print_failures(failed, _console(stderr=fmt != "rich" and not ns.out))
    return 0


def compare_main(argv: list[str]) -> int:
    """``recbench compare RUN_A RUN_B``: metric-by-metric differences with paired per-user tests."""
    parser = argparse.ArgumentParser(
        prog="recbench compare",
        description="Compare two runs metric by metric; p-values come from paired tests on the per-user "
        "values (per_user.npz) of users evaluated in both runs, Holm-corrected across metrics.",
    )
    parser.add_argument("run_a", help="run folder (or its metrics.json) of A, the reference")
    parser.add_argument("run_b", help="run folder (or its metrics.json) of B; differences are B - A")
    parser.add_argument(
        "--metric", action="append", help="metric to compare (repeatable; default: all but group slices)"
    )
    parser.add_argument("--format", choices=FORMATS, help="output format (default: rich, or from --out)")
    parser.add_argument("--out", help="also write the table to this file")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed of the 95%% CI (default 0)")
    parser.add_argument("--digits", type=int, default=4, help="decimals shown (default 4)")
    ns = parser.parse_args(argv)
    a, b = _single_run(ns.run_a), _single_run(ns.run_b)
    metrics = ns.metric or sorted(
        c
        for c in a.index
        if "/" in c
        and c in b.index
        and _is_number(a[c])
        and not c.startswith(_NOT_METRICS)
        and not _sliced(c)
    )
    if not metrics:
        raise RecbenchError(f"Runs {ns.run_a} and {ns.run_b} share no metric; did both finish (status ok)?")
    frame = stats.compare_runs(a, b, metrics, seed=ns.seed)
    fmt = _format(ns.format, ns.out)
    console = _console()
    title = f"A = {a['run_dir']}\nB = {b['run_dir']}\n(B - A; paired tests two-sided, Holm-corrected)"
    notes = [f"{k}: A={a.get(k)} B={b.get(k)}" for k in ("dataset", "split", "seed") if a.get(k) != b.get(k)]
    if fmt == "csv":
        sections = [frame.to_csv(index=False)]
    else:
        sections = [_render_frame(_compare_display(frame, ns.digits), fmt, 1, title)]
    _emit(sections, fmt, ns.out, console)
    if notes:
        echo(
            _console(stderr=fmt != "rich"),
            ("warning:", "yellow"),
            f" the runs differ in {'; '.join(notes)}, so users may not be paired on the same test items.",
        )
    return 0


def default_metrics(runs: pd.DataFrame) -> list[str]:
    """The ``test/`` metrics with a value in some run (fold spreads ``*_std`` and the group slices
    ``test/group/...``, ``test/disparity/...`` left out: ``--groups`` shows those)."""
    found = [c for c in runs.columns if c.startswith("test/") and not c.endswith("_std") and not _sliced(c)]
    found = [c for c in found if pd.to_numeric(runs[c], errors="coerce").notna().any()]
    if not found:
        raise RecbenchError(
            "The runs have no test/ metric to show; name one with --metric (columns with '/': "
            f"{', '.join(c for c in runs.columns if '/' in c) or 'none'})."
        )
    return found


def _sliced(column: str) -> bool:
    return "/group/" in column or "/disparity/" in column


def with_param_keys(df: pd.DataFrame, keys: Sequence[str]) -> pd.DataFrame:
    """``df`` with a column ``key`` copied from ``param.<key>`` for each of ``keys`` that is only a
    parameter, so that ``--rows trainer.lr`` groups runs by it (as ``--where`` reads such keys)."""
    extra = {k: df[f"param.{k}"] for k in keys if k not in df.columns and f"param.{k}" in df.columns}
    return df.assign(**extra) if extra else df


def apply_where(df: pd.DataFrame, where: Sequence[str]) -> pd.DataFrame:
    """Keep the runs matching every ``key=value`` (``key=v1,v2`` matches either value).

    A key that is not a column is looked up as ``param.<key>`` (``trainer.lr=0.01``). Numeric columns
    compare numerically, so ``trainer.lr=1e-2`` matches 0.01.
    """
    for key, value in _pairs(where, "--where").items():
        col = key if key in df.columns else f"param.{key}"
        if col not in df.columns:
            keys = [c for c in df.columns if "/" not in c and not c.startswith(("extra.", "version."))]
            raise RecbenchError(f"--where names '{key}', which no run has; keys are: {', '.join(keys)}.")
        wanted = value.split(",")
        numbers = pd.to_numeric(pd.Series(wanted), errors="coerce")
        if pd.api.types.is_numeric_dtype(df[col]) and numbers.notna().all():
            mask = np.isclose(df[col].to_numpy(dtype=float)[:, None], numbers.to_numpy()[None, :]).any(axis=1)
        else:
            mask = df[col].astype(str).isin(wanted).to_numpy()
        df = df[mask]
        if df.empty:
            raise RecbenchError(f"No run left after --where {key}={value}; check the value's spelling.")
    return df


def _report_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="recbench report",
        description="Table of results from the metrics.json files found under the given paths: "
        "mean ± std over seeds per group, best value per column in bold.",
    )
    parser.add_argument("paths", nargs="+", help="run folders, sweep folders, or any parent of them")
    parser.add_argument("--metric", action="append", help="metric column (repeatable; default: all test/)")
    parser.add_argument("--rows", default="model", help="comma-separated row keys (default: model)")
    parser.add_argument("--cols", default="", help="comma-separated column keys, e.g. dataset")
    parser.add_argument("--agg", choices=tables.AGGS, default="mean", help="aggregate over runs")
    parser.add_argument("--where", action="append", help="keep runs with key=value (repeatable)")
    parser.add_argument("--baseline", help="key=value of the group every other row is tested against")
    parser.add_argument("--format", choices=FORMATS, help="output format (default: rich, or from --out)")
    parser.add_argument("--out", help="write the output to this file instead of the terminal")
    parser.add_argument(
        "--plot",
        help=f"also draw a bar plot of the (first) metric to this PNG, or '{TRADEOFF_PLOT}': each row "
        "group as a point, the first --metric (default test/ndcg@10) against --plot-x, std over "
        "seeds as error bars",
    )
    parser.add_argument("--html", help="also write a self-contained HTML report (charts, runs) to this file")
    parser.add_argument(
        "--plot-x", default="test/arp@10", help=f"x axis of --plot {TRADEOFF_PLOT} (or test/aplt@10)"
    )
    parser.add_argument("--plot-file", help=f"PNG of --plot {TRADEOFF_PLOT} (default: {TRADEOFF_PLOT}.png)")
    parser.add_argument(
        "--groups",
        metavar="ATTR",
        help="per-group table of the runs' test/group/ATTR=<value>/ metrics (e.g. gender, activity, "
        "popularity) and, for user attributes, a two-sample test between two groups",
    )
    parser.add_argument(
        "--between", metavar="A,B", help="the two groups --groups tests (default: the two largest)"
    )
    parser.add_argument("--digits", type=int, default=4, help="decimals shown (default 4)")
    return parser


def _group_sections(
    ok: pd.DataFrame, ns: argparse.Namespace, rows: list[str], cols: list[str], fmt: str
) -> list:
    """The per-group table of ``--groups`` and the two-sample tests between two of its groups."""
    attr = ns.groups
    metrics = ns.metric or ["test/ndcg@10"]
    frame = groups.long_by_group(ok, attr, metrics)
    table = tables.compare(frame, [*metrics, "n_users"], rows=[*rows, attr], cols=cols, agg=ns.agg)
    table.best.loc[:, [c for c in table.best.columns if c.endswith("n_users")]] = False  # a size, not a score
    sections: list[object] = [_render_table(table, fmt, ns.digits)]
    values = [v for v in groups.group_values(ok, attr) if v != "unknown"]
    if not ns.between and len(values) < 2:
        return [*sections, f"no two-sample test: {attr} has fewer than two known groups\n"]
    pair = tuple(_keys(ns.between)) if ns.between else tuple(values[:2])
    if len(pair) != 2 or any(v not in values for v in pair):
        raise RecbenchError(
            f"--between expects two groups of {attr} separated by a comma, from: {', '.join(values)}."
        )
    try:
        gaps = groups.group_gap_tests(ok, attr, pair, metrics, rows)  # type: ignore[arg-type]
    except RecbenchError as exc:
        if ns.between:
            raise
        sections.append(f"no two-sample test: {exc}\n")
        return sections
    title = f"{attr}: {pair[1]} - {pair[0]} per user (Welch t and Mann-Whitney U, two-sided, Holm-corrected)"
    shown = gaps if fmt == "csv" else _gap_display(gaps, rows, pair, ns.digits)
    sections.append(_render_frame(shown, fmt, len(rows) + 1, title))
    return sections


def _gap_display(frame: pd.DataFrame, rows: list[str], pair: tuple[str, str], digits: int) -> pd.DataFrame:
    out = frame[[*rows, "metric"]].astype(str)
    for side, g in (("a", pair[0]), ("b", pair[1])):
        out[f"{g} (n)"] = [f"{m:.{digits}f} ({n})" for m, n in zip(frame[f"mean_{side}"], frame[f"n_{side}"])]
    out["diff"] = [_signed(d, digits) for d in frame["diff"]]
    out["Welch p"] = [_fmt_p(p) for p in frame["welch_p"]]
    out["Mann-Whitney p"] = [_fmt_p(p) for p in frame["mannwhitney_p"]]
    return out


def _keys(text: str) -> list[str]:
    return [k.strip() for k in text.split(",") if k.strip()]


def _pairs(items: Sequence[str], option: str) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise RecbenchError(f"{option} expects key=value (e.g. model=pop), got '{item}'.")
        out[key.strip()] = value.strip()
    return out


def _format(fmt: str | None, out: str | None) -> str:
    if fmt:
        return fmt
    return _SUFFIX_FORMATS.get(Path(out).suffix.lower(), "rich") if out else "rich"


def _render_table(table: tables.ComparisonTable, fmt: str, digits: int) -> object:
    if fmt == "rich":
        return tables.to_rich(table, digits)
    if fmt == "csv":
        return tables.to_csv(table)
    return tables.to_markdown(table, digits) if fmt == "markdown" else tables.to_latex(table, digits)


def _render_frame(frame: pd.DataFrame, fmt: str, n_left: int, title: str) -> object:
    if fmt == "rich":
        return tables.frame_to_rich(frame, n_left, title=title)
    if fmt == "csv":
        return frame.to_csv(index=False)
    return (
        tables.frame_to_markdown(frame, n_left) if fmt == "markdown" else tables.frame_to_latex(frame, n_left)
    )


def _emit(sections: list[object], fmt: str, out: str | None, console: Console) -> None:
    """Print the sections (rich tables or text) to the terminal, or write them all to ``out``."""
    if out is None and fmt == "rich":
        for section in sections:
            console.print(section)
    elif out is None:
        sys.stdout.write("\n".join(map(str, sections)))
        sys.stdout.flush()
    else:
        if fmt == "rich":
            recorder = Console(record=True, width=200, file=io.StringIO())
            for section in sections:
                recorder.print(section)
            text = recorder.export_text()
        else:
            text = "\n".join(map(str, sections))
        atomic_write_text(out, text)
        echo(console, f"wrote {out}")


def _console(stderr: bool = False) -> Console:
    """A console that never squeezes tables below 160 columns when the output is not a terminal."""
    console = Console(stderr=stderr)
    return console if console.is_terminal else Console(stderr=stderr, width=max(console.width, 160))


def _print_failures(failed: pd.DataFrame, console: Console) -> None:
    if failed.empty:
        return
    keys = [k for k in ("model", "dataset", "split", "seed") if k in failed.columns]
    frame = pd.DataFrame(
        {
            "run_dir": failed["run_dir"].astype(str),
            **{k: failed[k].astype(str) for k in keys},
            "error": failed["error"].fillna("(no error text)").astype(str),
        }
    )
    console.print(tables.frame_to_rich(frame, len(frame.columns), title=f"failed runs ({len(frame)})"))


def _baseline_frame(
    ok: pd.DataFrame, metrics: Sequence[str], rows: list[str], cols: list[str], baseline: dict[str, str]
) -> pd.DataFrame:
    parts = []
    for m in metrics:
        result = stats.baseline_comparison(ok, m, rows, baseline, cols=cols)
        if not result.empty:
            parts.append(result.assign(metric=m))
    if not parts:
        raise RecbenchError(f"Nothing to compare with the baseline {baseline}: every run belongs to it.")
    frame = pd.concat(parts, ignore_index=True)
    order = [*rows, *cols, "metric", "n_runs", "unit", "n", "baseline", "mean", "diff", "t_p", "wilcoxon_p"]
    return frame[order]


def _baseline_display(frame: pd.DataFrame, keys: list[str], digits: int) -> pd.DataFrame:
    out = frame[[*keys, "metric"]].astype(str)
    out["pairs"] = [f"{n} {unit}s" for n, unit in zip(frame["n"], frame["unit"])]
    out["diff"] = [_signed(d, digits) for d in frame["diff"]]
    out["t-test p"] = [_fmt_p(p) for p in frame["t_p"]]
    out["Wilcoxon p"] = [_fmt_p(p) for p in frame["wilcoxon_p"]]
    return out


def _compare_display(frame: pd.DataFrame, digits: int) -> pd.DataFrame:
    def num(v: float) -> str:
        return "–" if pd.isna(v) else f"{v:.{digits}f}"

    return pd.DataFrame(
        {
            "metric": frame["metric"],
            "A": [num(v) for v in frame["A"]],
            "B": [num(v) for v in frame["B"]],
            "diff": [_signed(v, digits) for v in frame["diff"]],
            "rel": ["–" if pd.isna(v) else f"{v:+.1%}" for v in frame["rel"]],
            "users": [str(n) if n else "–" for n in frame["n"]],
            "95% CI of diff": [
                "–" if pd.isna(lo) else f"[{lo:+.{digits}f}, {hi:+.{digits}f}]"
                for lo, hi in zip(frame["ci_low"], frame["ci_high"])
            ],
            "t-test p": [_fmt_p(p) for p in frame["t_p"]],
            "Wilcoxon p": [_fmt_p(p) for p in frame["wilcoxon_p"]],
        }
    )


def _signed(value: float, digits: int) -> str:
    return "–" if pd.isna(value) else f"{value:+.{digits}f}"


def _fmt_p(p: float) -> str:
    if pd.isna(p):
        return "–"
    return f"{p:.1e}" if p < 1e-3 else f"{p:.4f}"


def _single_run(path: str) -> pd.Series:
    df = read_runs([path])
    if len(df) != 1:
        found = "no run" if df.empty else f"{len(df)} runs"
        raise RecbenchError(
            f"{path} holds {found}; `recbench compare` needs exactly one run folder (the folder with "
            "metrics.json) per argument. Use `recbench report` for whole sweeps."
        )
    run = df.iloc[0]
    if run["status"] != "ok":
        raise RecbenchError(f"Run {run['run_dir']} failed ({run['error']}); it has no metrics to compare.")
    return run


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float, np.number)) and not isinstance(value, bool)
