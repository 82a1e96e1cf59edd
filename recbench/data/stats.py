"""Dataset statistics, the table papers report: sizes, density, activity, popularity skew, ratings, time.

:func:`dataset_stats` computes one ordered mapping of statistic -> value from an
:class:`~recbench.data.interactions.Interactions` (with its side features, when loaded), and
:func:`stats_table` lines several of them up (e.g. before and after preprocessing) as a frame of
formatted cells. Definitions:

* density = interactions / (users x items);
* interactions per user / per item: min, median, mean, max over the users (items) present;
* popularity Gini: Gini coefficient of the items' interaction counts (all items of the id space,
  0 = uniform, towards 1 = all on one item);
* short head: share of the interactions that fall on the 20% most popular items;
* same-timestamp share: among each user's consecutive interactions in time order, the share whose
  two timestamps are equal (the ties that make "the next item" ambiguous in sequential protocols);
* feature coverage: share of users (items) with a known value in at least one side-feature field.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timezone

import numpy as np
import pandas as pd

from recbench.data.interactions import FeatureTable, Interactions

SHORT_HEAD = 0.2
_MAX_RATING_LEVELS = 12


def gini(counts: np.ndarray) -> float:
    """Gini coefficient of non-negative counts (0 for uniform; 0.0 for an empty or all-zero array)."""
    x = np.sort(np.asarray(counts, dtype=np.float64))
    n, total = len(x), x.sum()
    if n == 0 or total == 0:
        return 0.0
    ranks = np.arange(1, n + 1)
    return float((2 * ranks - n - 1) @ x / (n * total))


def short_head_share(item_counts: np.ndarray, head: float = SHORT_HEAD) -> float:
    """Share of all interactions that fall on the ``head`` fraction of most popular items."""
    counts = np.sort(np.asarray(item_counts, dtype=np.int64))[::-1]
    total = counts.sum()
    if total == 0:
        return 0.0
    k = max(1, int(np.ceil(head * len(counts))))
    return float(counts[:k].sum() / total)


def tie_share(data: Interactions) -> float | None:
    """Share of consecutive (per user, in time order) interaction pairs with equal timestamps."""
    if data.timestamps is None or len(data) < 2:
        return None
    order = np.lexsort((data.timestamps, data.users))
    users, times = data.users[order], data.timestamps[order]
    same_user = users[1:] == users[:-1]
    pairs = int(same_user.sum())
    if pairs == 0:
        return None
    return float(((times[1:] == times[:-1]) & same_user).sum() / pairs)


def _coverage(table: FeatureTable | None) -> float | None:
    if table is None:
        return None
    unknown_cols = np.array([c.endswith("=<unknown>") for c in table.columns], dtype=bool)
    known = table.matrix[:, np.flatnonzero(~unknown_cols)]
    return float(np.mean(known.getnnz(axis=1) > 0)) if table.matrix.shape[0] else 0.0


def _summary(counts: np.ndarray) -> tuple[float, float, float, float]:
    if len(counts) == 0:
        return (0.0, 0.0, 0.0, 0.0)
    return float(counts.min()), float(np.median(counts)), float(counts.mean()), float(counts.max())


def _date(seconds: int) -> str:
    try:
        return datetime.fromtimestamp(int(seconds), tz=timezone.utc).strftime("%Y-%m-%d")
    except (OverflowError, OSError, ValueError):
        return str(int(seconds))


def dataset_stats(data: Interactions) -> dict[str, object]:
    """Ordered statistic -> value (ints, floats or text; ``None`` where it does not apply)."""
    out: dict[str, object] = {}
    user_counts = np.bincount(data.users, minlength=data.n_users)
    item_counts = np.bincount(data.items, minlength=data.n_items)
    present_users, present_items = user_counts[user_counts > 0], item_counts[item_counts > 0]
    out["users"] = len(present_users)
    out["items"] = len(present_items)
    out["interactions"] = len(data)
    out["density"] = len(data) / max(1, len(present_users) * len(present_items))
    for who, counts in (("user", present_users), ("item", present_items)):
        lo, med, mean, hi = _summary(counts)
        out[f"interactions per {who} (min / median / mean / max)"] = f"{lo:g} / {med:g} / {mean:.1f} / {hi:g}"
    out["popularity Gini (items)"] = gini(item_counts)
    out[f"short-head share (top {SHORT_HEAD:.0%} items)"] = short_head_share(present_items)
    if data.ratings is not None and len(data):
        values, counts = np.unique(data.ratings, return_counts=True)
        out["rating mean (std)"] = f"{float(data.ratings.mean()):.3f} ({float(data.ratings.std()):.3f})"
        if len(values) <= _MAX_RATING_LEVELS:
            shares = ", ".join(f"{v:g}: {c / len(data):.1%}" for v, c in zip(values, counts))
            out["rating distribution"] = shares
        else:
            q = np.quantile(data.ratings, [0, 0.25, 0.5, 0.75, 1])
            out["rating quantiles (0/25/50/75/100%)"] = " / ".join(f"{v:g}" for v in q)
    else:
        out["rating mean (std)"] = "implicit"
    if data.timestamps is not None and len(data):
        first, last = int(data.timestamps.min()), int(data.timestamps.max())
        out["time span"] = f"{_date(first)} .. {_date(last)} ({(last - first) / 86_400:.0f} days)"
        out["same-timestamp share of consecutive interactions"] = tie_share(data)
    else:
        out["time span"] = "no timestamps"
    for who, table in (("user", data.user_features), ("item", data.item_features)):
        if table is not None:
            out[f"{who} feature coverage ({', '.join(table.fields)})"] = _coverage(table)
    return out


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, (bool, np.bool_)):
        return str(value)
    if isinstance(value, (int, np.integer)):
        return f"{int(value):,}"
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) >= 1e-3 or value == 0 else f"{value:.3e}"
    return str(value)


def stats_table(
    columns: Mapping[str, Mapping[str, object]], order: Sequence[str] | None = None
) -> pd.DataFrame:
    """A frame of formatted cells: one row per statistic, one column per mapping in ``columns``."""
    names = list(order) if order is not None else []
    for stats in columns.values():
        names += [k for k in stats if k not in names]
    rows = [[name, *(_cell(stats.get(name)) for stats in columns.values())] for name in names]
    return pd.DataFrame(rows, columns=["statistic", *columns])


def stats_csv(columns: Mapping[str, Mapping[str, object]]) -> str:
    """The statistics as CSV with raw (unformatted) values."""
    frame = stats_table({k: {n: "" for n in v} for k, v in columns.items()})
    for label, stats in columns.items():
        frame[label] = [stats.get(name) for name in frame["statistic"]]
    return frame.to_csv(index=False, lineterminator="\n")
