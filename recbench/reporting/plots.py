"""Figures for reports: grouped bars with error bars, and per-epoch learning curves.

matplotlib is an optional dependency (``pip install 'recbench[plot]'``). Figures are drawn with the Agg
canvas directly (no ``pyplot``), so plotting never changes the caller's matplotlib backend or global state.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from recbench.errors import RecbenchError
from recbench.files import atomic_write
from recbench.reporting.records import HISTORY_FILE
from recbench.reporting.tables import compare

if TYPE_CHECKING:
    from matplotlib.figure import Figure

log = logging.getLogger(__name__)


def _figure(width: float, height: float, ncols: int = 1) -> tuple[Figure, Any]:
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise RecbenchError(
            "Plotting needs matplotlib, which is not installed; install it with "
            "`pip install 'recbench[plot]'` (or `pip install matplotlib`), or leave out the plot option."
        ) from exc
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.subplots(1, ncols, squeeze=False)[0]


def _save(fig: Figure, out_png: str | Path) -> Path:
    out = Path(out_png)
    atomic_write(out, lambda fh: fig.savefig(fh, format="png", dpi=120))
    log.info("wrote %s", out)
    return out


def bar_plot(
    df: pd.DataFrame,
    metric: str,
    rows: Sequence[str],
    out_png: str | Path,
    cols: Sequence[str] | None = None,
) -> Path:
    """Bars of the mean of ``metric`` per row group (one bar per ``cols`` value), std as error bars.

    Parameters
    ----------
    df : DataFrame
        Runs as returned by ``read_runs`` (failed runs are left out).
    metric : str
        Metric column, e.g. ``"test/ndcg@10"``.
    rows : sequence of str
        Keys of the groups along the x axis.
    out_png : str or Path
        Output file (PNG, written atomically).
    cols : sequence of str, optional
        Keys of the bars within a group (e.g. ``["dataset"]``).

    Returns
    -------
    Path
        The written file.
    """
    return _save(bar_figure(df, metric, rows, cols=cols), out_png)


def bar_figure(
    df: pd.DataFrame,
    metric: str,
    rows: Sequence[str],
    cols: Sequence[str] | None = None,
    ylabel: str | None = None,
) -> Figure:
    """The figure of :func:`bar_plot`: mean of ``metric`` per group with std error bars (not saved)."""
    table = compare(df, metric, rows=rows, cols=cols, agg="mean")
    value, std = table.value, table.std.fillna(0.0)
    labels = ["/".join(map(str, k)) if isinstance(k, tuple) else str(k) for k in value.index]
    x = np.arange(len(labels))
    n_bars = max(1, len(value.columns))
    width = 0.8 / n_bars
    fig, (ax,) = _figure(max(4.0, 0.9 * len(labels) * max(1, n_bars / 2) + 1.5), 3.6)
    for j, col in enumerate(value.columns):
        offset = (j - (n_bars - 1) / 2) * width
        ax.bar(x + offset, value[col].to_numpy(), width, yerr=std[col].to_numpy(), capsize=3, label=str(col))
    crowded = len(labels) > 6
    ax.set_xticks(x, labels, rotation=30 if crowded else 0, ha="right" if crowded else "center")
    ax.set_ylabel(ylabel or metric)
    ax.set_xlabel("/".join(rows))
    ax.set_title(table.title)
    if cols:
        ax.legend(title="/".join(cols), fontsize="small")
    ax.grid(axis="y", alpha=0.3)
    return fig


def learning_curves(run_dirs: Iterable[str | Path], out_png: str | Path, metric: str | None = None) -> Path:
    """Training loss (left) and a validation metric (right) per epoch, one line per run.

    Parameters
    ----------
    run_dirs : iterable of str or Path
        Run folders holding ``history.csv`` (runs without one are skipped with a warning).
    out_png : str or Path
        Output file (PNG, written atomically).
    metric : str, optional
        Validation column of ``history.csv``; default: the first column whose name contains ``@`` or
        starts with ``val``.

    Returns
    -------
    Path
        The written file.
    """
    histories = []
    for run in map(Path, run_dirs):
        path = run / HISTORY_FILE
        if not path.is_file():
            log.warning("no %s in %s; run left out of the learning curves", HISTORY_FILE, run)
            continue
        histories.append((run.name or str(run), pd.read_csv(path)))
    if not histories:
        raise RecbenchError(
            f"None of the given run folders has a {HISTORY_FILE}; only models trained epoch by epoch "
            "(torch models) write one. Pass the folders of such runs."
        )
    fig, (ax_loss, ax_val) = _figure(9.0, 3.6, ncols=2)
    for name, hist in histories:
        epochs = hist["epoch"].to_numpy() if "epoch" in hist.columns else np.arange(1, len(hist) + 1)
        if "loss" in hist.columns:
            ax_loss.plot(epochs, hist["loss"].to_numpy(), marker=".", label=name)
        col = metric if metric in hist.columns else _val_column(hist)
        if col is not None:
            ok = hist[col].notna().to_numpy()
            ax_val.plot(epochs[ok], hist[col].to_numpy()[ok], marker=".", label=f"{name}: {col}")
    ax_loss.set(xlabel="epoch", ylabel="training loss", title="loss")
    ax_val.set(xlabel="epoch", ylabel=metric or "validation metric", title="validation")
    for ax in (ax_loss, ax_val):
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize="small")
    return _save(fig, out_png)


def _val_column(hist: pd.DataFrame) -> str | None:
    for c in hist.columns:
        if "@" in c or c.startswith("val"):
            return c
    return None


def learning_band_figure(
    histories: Mapping[str, Sequence[pd.DataFrame]], metric: str | None = None
) -> Figure:
    """Training loss (left) and a validation metric (right) per epoch: one line per group (e.g. model),
    the mean over its runs (seeds), with a band of ± one standard deviation where there are several.

    Parameters
    ----------
    histories : mapping of label to sequence of DataFrame
        The ``history.csv`` frames of each group's runs.
    metric : str, optional
        Validation column; default: the first column of the first history that looks like one.
    """
    frames_by_label = {
        k: pd.concat([_with_epoch(h) for h in v], ignore_index=True) for k, v in histories.items()
    }
    val_cols = {
        k: metric if metric in f.columns else _val_column(f.drop(columns="epoch"))
        for k, f in frames_by_label.items()
    }
    has_val = any(c is not None for c in val_cols.values())
    fig, axes = _figure(9.0 if has_val else 5.0, 3.6, ncols=2 if has_val else 1)
    ax_loss, ax_val = axes[0], axes[-1]
    shown = metric
    for label, frames in histories.items():
        frame, col = frames_by_label[label], val_cols[label]
        shown = shown or col
        for ax, name in ((ax_loss, "loss"), (ax_val, col)):
            if name is None or name not in frame.columns:
                continue
            stats = frame.groupby("epoch")[name].agg(["mean", "std"]).dropna(subset=["mean"])
            epochs, mean, std = stats.index.to_numpy(), stats["mean"].to_numpy(), stats["std"].to_numpy()
            (line,) = ax.plot(epochs, mean, marker=".", label=f"{label} (n={len(frames)})")
            if len(frames) > 1:
                spread = np.nan_to_num(std)
                ax.fill_between(epochs, mean - spread, mean + spread, color=line.get_color(), alpha=0.2)
    ax_loss.set(xlabel="epoch", ylabel="training loss (model's objective)", title="training loss")
    if has_val:
        ax_val.set(
            xlabel="epoch", ylabel=shown or "validation metric", title=f"validation {shown or ''}".strip()
        )
    for ax in axes:
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize="small")
    return fig


def _with_epoch(hist: pd.DataFrame) -> pd.DataFrame:
    if "epoch" in hist.columns:
        return hist
    return hist.assign(epoch=np.arange(1, len(hist) + 1))


def distribution_figure(values: Mapping[str, np.ndarray], metric: str) -> Figure:
    """Box plots of per-user values of ``metric``, one box per group (users of all its runs pooled);
    the mean is marked with a triangle."""
    labels = list(values)
    fig, (ax,) = _figure(max(4.0, 0.9 * len(labels) + 1.5), 3.6)
    ax.boxplot([np.asarray(values[k], dtype=float) for k in labels], showmeans=True, sym=".")
    crowded = len(labels) > 6
    ax.set_xticks(np.arange(1, len(labels) + 1), labels, rotation=30 if crowded else 0)
    ax.set(ylabel=f"{metric} per user", title=f"per-user {metric}")
    ax.grid(axis="y", alpha=0.3)
    return fig


def tradeoff_figure(points: pd.DataFrame, x: str, y: str) -> Figure:
    """One point per group: mean ``x`` against mean ``y`` with std error bars (``points`` has columns
    ``label``, ``x``, ``x_std``, ``y``, ``y_std``)."""
    fig, (ax,) = _figure(5.5, 4.0)
    for row in points.itertuples(index=False):
        ax.errorbar(row.x, row.y, xerr=row.x_std, yerr=row.y_std, fmt="o", capsize=3, label=str(row.label))
        ax.annotate(
            str(row.label), (row.x, row.y), textcoords="offset points", xytext=(5, 5), fontsize="small"
        )
    ax.set(xlabel=x, ylabel=y, title=f"{y} against {x}")
    ax.grid(alpha=0.3)
    return fig


def svg_text(fig: Figure) -> str:
    """The figure as SVG markup (text kept as text, deterministic ids)."""
    import io

    from matplotlib import rc_context

    buf = io.StringIO()
    with rc_context({"svg.fonttype": "none", "svg.hashsalt": "recbench"}):
        fig.savefig(buf, format="svg")
    return buf.getvalue()


#: Name of the trade-off plot of ``recbench report --plot``.
TRADEOFF_PLOT = "accuracy-vs-popularity"


def tradeoff_plot(
    df: pd.DataFrame,
    y_metric: str,
    x_metric: str,
    rows: Sequence[str],
    out_png: str | Path,
) -> Path:
    """Each row group (model) as a point: ``y_metric`` (accuracy) against ``x_metric`` (popularity
    bias, e.g. ``test/arp@10`` or ``test/aplt@10``), mean over runs with the std over seeds as error bars
    (:func:`tradeoff_figure`), written to ``out_png`` (PNG, atomically). Failed runs are left out."""
    table = compare(df, [x_metric, y_metric], rows=rows, agg="mean")
    value, std = table.value, table.std.fillna(0.0)
    labels = ["/".join(map(str, k)) if isinstance(k, tuple) else str(k) for k in value.index]
    points = pd.DataFrame(
        {
            "label": labels,
            "x": value[x_metric].to_numpy(),
            "x_std": std[x_metric].to_numpy(),
            "y": value[y_metric].to_numpy(),
            "y_std": std[y_metric].to_numpy(),
        }
    )
    return _save(tradeoff_figure(points, x_metric, y_metric), out_png)


def dataset_plot(counts: Mapping[str, tuple[np.ndarray, np.ndarray]], out_png: str | Path) -> Path:
    """Popularity long tail (left: item interaction counts by popularity rank, log-log) and the
    histogram of history lengths (right: interactions per user, log-spaced bins), one line per
    labelled ``(item_counts, user_counts)`` pair, e.g. before and after preprocessing."""
    fig, (ax_tail, ax_hist) = _figure(9.0, 3.6, ncols=2)
    longest = max((int(u.max()) for _, u in counts.values() if len(u)), default=1)
    bins = np.unique(np.geomspace(1, max(2, longest + 1), 40).astype(int))
    for label, (items, users) in counts.items():
        ranked = np.sort(items[items > 0])[::-1]
        ax_tail.plot(np.arange(1, len(ranked) + 1), ranked, label=label)
        ax_hist.hist(users[users > 0], bins=bins, histtype="step", label=label)
    ax_tail.set(
        xscale="log", yscale="log", xlabel="item popularity rank", ylabel="interactions", title="long tail"
    )
    ax_hist.set(
        xscale="log", yscale="log", xlabel="interactions per user", ylabel="users", title="history length"
    )
    for ax in (ax_tail, ax_hist):
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    return _save(fig, out_png)
