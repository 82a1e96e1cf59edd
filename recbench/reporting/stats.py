"""Paired significance tests between runs on the same split, from per-user metric values.

Two runs evaluated on the same split score the same users, so their per-user values (``per_user.npz``,
aligned by user id) form paired samples. :func:`paired_test` runs the paired t-test and the Wilcoxon
signed-rank test on them (``scipy.stats``); :func:`holm` corrects a family of p-values for multiple
comparisons; :func:`bootstrap_ci` gives a seeded percentile bootstrap interval of a mean.
:func:`baseline_comparison` compares every row group of a runs table against a baseline group, and
:func:`compare_runs` two single runs metric by metric.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from recbench.errors import RecbenchError
from recbench.reporting.records import read_per_user

log = logging.getLogger(__name__)

_BOOTSTRAP_CHUNK = 4_000_000  # resample indices drawn per chunk, to bound memory on large user sets


@dataclass(frozen=True)
class PairedResult:
    """Outcome of a paired comparison of B against A (differences are B - A)."""

    n: int
    mean_a: float
    mean_b: float
    mean_diff: float
    t_stat: float
    t_p: float
    wilcoxon_stat: float
    wilcoxon_p: float


def align(
    users_a: np.ndarray, values_a: np.ndarray, users_b: np.ndarray, values_b: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Values of the users present in both runs, in ascending user order.

    Returns
    -------
    users : int64[n], a : float64[n], b : float64[n]
    """
    users, ia, ib = np.intersect1d(np.asarray(users_a), np.asarray(users_b), return_indices=True)
    return users, np.asarray(values_a, dtype=np.float64)[ia], np.asarray(values_b, dtype=np.float64)[ib]


def paired_test(a: np.ndarray, b: np.ndarray) -> PairedResult:
    """Paired t-test and Wilcoxon signed-rank test (two-sided) of ``b`` against ``a``.

    Degenerate samples are answered without scipy's warnings: fewer than two pairs give NaN p-values,
    identical samples give p = 1, and a constant non-zero difference gives p = 0 for the t-test.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired samples differ in length: {a.shape} vs {b.shape}")
    n = len(a)
    d = b - a
    mean_a, mean_b = (float(a.mean()), float(b.mean())) if n else (math.nan, math.nan)
    mean_d = float(d.mean()) if n else math.nan
    nan = math.nan
    if n < 2:
        return PairedResult(n, mean_a, mean_b, mean_d, nan, nan, nan, nan)
    if not np.any(d):
        return PairedResult(n, mean_a, mean_b, mean_d, 0.0, 1.0, nan, 1.0)
    if np.all(d == d[0]):
        t = math.copysign(math.inf, mean_d)
        t_stat, t_p = t, 0.0
    else:
        res = stats.ttest_rel(b, a)
        t_stat, t_p = float(res.statistic), float(res.pvalue)
    w = stats.wilcoxon(d)
    return PairedResult(n, mean_a, mean_b, mean_d, t_stat, t_p, float(w.statistic), float(w.pvalue))


def holm(pvalues: Sequence[float] | np.ndarray) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values (step-down, monotone, capped at 1); NaNs stay NaN and do not count.

    The i-th smallest of m p-values is multiplied by ``m - i`` (i from 0), then a running maximum keeps
    the order.
    """
    p = np.asarray(pvalues, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(~np.isnan(p))
    m = len(ok)
    if m == 0:
        return out
    order = ok[np.argsort(p[ok], kind="stable")]
    adjusted = np.maximum.accumulate(p[order] * (m - np.arange(m)))
    out[order] = np.minimum(adjusted, 1.0)
    return out


def bootstrap_ci(
    values: np.ndarray, *, confidence: float = 0.95, n_resamples: int = 10_000, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of the mean of ``values``; the same seed gives the same CI.

    Returns ``(nan, nan)`` for an empty sample.
    """
    x = np.asarray(values, dtype=np.float64).ravel()
    n = len(x)
    if n == 0:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    means = np.empty(n_resamples)
    step = max(1, _BOOTSTRAP_CHUNK // n)
    for start in range(0, n_resamples, step):
        stop = min(start + step, n_resamples)
        means[start:stop] = x[rng.integers(0, n, size=(stop - start, n))].mean(axis=1)
    alpha = (1.0 - confidence) / 2.0
    lo, hi = np.quantile(means, [alpha, 1.0 - alpha])
    return float(lo), float(hi)


def per_user_values(run_dir: str, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """``(users, values)`` of ``metric`` (e.g. ``"test/ndcg@10"``) from a run's ``per_user.npz``.

    For a k-fold run whose file holds ``foldJ/<metric>`` instead, the folds are concatenated and a user
    id becomes ``J * 2**32 + user``, so that pairs stay matched fold by fold.
    """
    return select_per_user(read_per_user(run_dir), metric, source=run_dir)


def select_per_user(
    arrays: Mapping[str, np.ndarray], metric: str, *, source: str = "the run"
) -> tuple[np.ndarray, np.ndarray]:
    """``(users, values)`` of ``metric`` from already loaded per-user arrays (see :func:`per_user_values`)."""
    prefix = metric.rpartition("/")[0]
    users_key = f"{prefix}/users" if prefix else "users"
    if metric in arrays and users_key in arrays:
        return arrays[users_key], arrays[metric]
    folds = sorted(
        int(m.group(1)) for k in arrays if (m := re.fullmatch(rf"fold(\d+)/{re.escape(metric)}", k))
    )
    if folds and all(f"fold{j}/{users_key}" in arrays for j in folds):
        users = [arrays[f"fold{j}/{users_key}"].astype(np.int64) + (j << 32) for j in folds]
        return np.concatenate(users), np.concatenate([arrays[f"fold{j}/{metric}"] for j in folds])
    raise RecbenchError(
        f"The per-user file of {source} has no '{metric}' (or no '{users_key}'); it holds "
        f"{', '.join(sorted(arrays)) or 'nothing'}. Choose a metric kept per user (top-k metrics are; "
        "catalogue metrics such as coverage are not)."
    )


def baseline_comparison(
    runs: pd.DataFrame,
    metric: str,
    rows: Sequence[str],
    baseline: Mapping[str, str],
    *,
    cols: Sequence[str] = (),
    pair_on: Sequence[str] = ("seed", "dataset", "split"),
) -> pd.DataFrame:
    """Compare every row group of ``runs`` against the baseline group on ``metric``.

    A run is paired with the baseline run that shares its ``pair_on`` and ``cols`` values (same seed,
    dataset and split, hence the same test users). Per-user values of all paired runs of a group are
    pooled (a pair is a (seed, user)) and tested with :func:`paired_test`; when some run lacks
    ``per_user.npz``, the group falls back to the same tests over run-level values (``unit = "run"``,
    needs two pairs or more). Failed runs are ignored. P-values are Holm-corrected across all
    comparisons of the table.

    Returns
    -------
    DataFrame
        One row per compared group (and ``cols`` value): the group keys, ``n_runs``, ``unit``, ``n``,
        ``baseline``, ``mean``, ``diff``, ``t_p``, ``wilcoxon_p`` (Holm-adjusted) and the raw p-values.
    """
    runs = runs[runs["status"] == "ok"] if "status" in runs.columns else runs
    missing = [k for k in baseline if k not in runs.columns]
    if missing:
        raise RecbenchError(f"--baseline names the column '{missing[0]}', which the runs do not have.")
    is_base = np.ones(len(runs), dtype=bool)
    for key, value in baseline.items():
        is_base &= runs[key].astype(str).to_numpy() == str(value)
    if not is_base.any():
        wanted = ", ".join(f"{k}={v}" for k, v in baseline.items())
        raise RecbenchError(f"No run matches the baseline {wanted}; check the value against the report rows.")
    keys = [k for k in (*pair_on, *cols) if k in runs.columns]
    base = runs[is_base].drop_duplicates(subset=keys or None, keep="last")
    others = runs[~is_base]
    out = []
    for group, sub in others.groupby(list(rows), sort=True, dropna=False):
        for col_key, part in sub.groupby(list(cols), sort=True, dropna=False) if cols else [(None, sub)]:
            how = {"on": keys} if keys else {"how": "cross"}
            pairs = part.merge(base, suffixes=("", "_base"), **how)
            row = dict(zip(rows, group if isinstance(group, tuple) else (group,)))
            if cols:
                row.update(dict(zip(cols, col_key if isinstance(col_key, tuple) else (col_key,))))
            row.update(_compare_pairs(pairs, metric))
            out.append(row)
    table = pd.DataFrame(out)
    if table.empty:
        return table
    table["t_p_raw"], table["wilcoxon_p_raw"] = table["t_p"], table["wilcoxon_p"]
    table["t_p"] = holm(table["t_p_raw"].to_numpy())
    table["wilcoxon_p"] = holm(table["wilcoxon_p_raw"].to_numpy())
    return table


def _compare_pairs(pairs: pd.DataFrame, metric: str) -> dict[str, object]:
    """Test one group's paired runs (columns ``run_dir``/``run_dir_base``, ``metric``/``metric_base``)."""
    nan = math.nan
    result: dict[str, object] = {"n_runs": len(pairs), "unit": "user", "n": 0}
    if pairs.empty:
        return result | {"baseline": nan, "mean": nan, "diff": nan, "t_p": nan, "wilcoxon_p": nan}
    try:
        a_parts, b_parts = [], []
        for run_b, run_a in zip(pairs["run_dir"], pairs["run_dir_base"]):
            _, a, b = align(*per_user_values(run_a, metric), *per_user_values(run_b, metric))
            a_parts.append(a)
            b_parts.append(b)
        a_all, b_all = np.concatenate(a_parts), np.concatenate(b_parts)
    except RecbenchError as exc:
        log.info("run-level test for %s: %s", metric, exc)
        result["unit"] = "run"
        a_all = pairs[f"{metric}_base"].to_numpy(dtype=np.float64)
        b_all = pairs[metric].to_numpy(dtype=np.float64)
    res = paired_test(a_all, b_all)
    return result | {
        "n": res.n,
        "baseline": res.mean_a,
        "mean": res.mean_b,
        "diff": res.mean_diff,
        "t_p": res.t_p,
        "wilcoxon_p": res.wilcoxon_p,
    }


def compare_runs(a: pd.Series, b: pd.Series, metrics: Sequence[str], *, seed: int = 0) -> pd.DataFrame:
    """One row per metric: A, B, ``diff`` (B - A), ``rel`` (diff / |A|), per-user ``n``, 95% bootstrap
    CI of the mean per-user difference, and Holm-corrected paired t-test and Wilcoxon p-values."""
    per_a, per_b = _per_user_or_none(a["run_dir"]), _per_user_or_none(b["run_dir"])
    rows = []
    for m in metrics:
        va, vb = float(a.get(m, math.nan)), float(b.get(m, math.nan))
        row = {"metric": m, "A": va, "B": vb, "diff": vb - va, "rel": (vb - va) / abs(va) if va else math.nan}
        row |= {"n": 0, "ci_low": math.nan, "ci_high": math.nan, "t_p": math.nan, "wilcoxon_p": math.nan}
        if per_a is not None and per_b is not None:
            try:
                ua, xa = select_per_user(per_a, m, source=a["run_dir"])
                ub, xb = select_per_user(per_b, m, source=b["run_dir"])
            except RecbenchError:
                rows.append(row)
                continue
            _, xa, xb = align(ua, xa, ub, xb)
            res = paired_test(xa, xb)
            lo, hi = bootstrap_ci(xb - xa, seed=seed)
            row |= {"n": res.n, "ci_low": lo, "ci_high": hi, "t_p": res.t_p, "wilcoxon_p": res.wilcoxon_p}
        rows.append(row)
    frame = pd.DataFrame(rows)
    frame["t_p"] = holm(frame["t_p"].to_numpy())
    frame["wilcoxon_p"] = holm(frame["wilcoxon_p"].to_numpy())
    return frame


def _per_user_or_none(run_dir: str) -> dict[str, np.ndarray] | None:
    try:
        return read_per_user(run_dir)
    except RecbenchError:
        return None
