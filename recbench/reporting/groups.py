"""Per-group reports: the ``test/group/<attr>=<value>/...`` keys of runs as a table, and a two-sample
test of the gap between two groups on the per-user values (the users of two groups differ, so the test
is unpaired: Welch's t-test and the Mann-Whitney U test, both two-sided).

Used by ``recbench report --groups ATTR``; reads only run files (``metrics.json``, ``per_user.npz``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from recbench.errors import RecbenchError
from recbench.reporting.records import read_per_user
from recbench.reporting.stats import holm


def group_values(runs: pd.DataFrame, attr: str) -> list[str]:
    """The values of ``attr`` that some run has group metrics for, largest group (``n_users``) first."""
    pattern = re.compile(rf"^test/group/{re.escape(attr)}=(.*)/n_users$")
    sizes = {
        m.group(1): pd.to_numeric(runs[c], errors="coerce").mean()
        for c in runs.columns
        if (m := pattern.match(c))
    }
    if not sizes:
        found = sorted({c.split("/")[2].split("=")[0] for c in runs.columns if c.startswith("test/group/")})
        raise RecbenchError(
            f"--groups {attr}: no run has test/group/{attr}=... metrics (group attributes in these runs: "
            f"{', '.join(found) or 'none'}). Train with eval=beyond or eval.user_groups=[{attr}]."
        )
    return sorted(sizes, key=lambda v: (-np.nan_to_num(sizes[v]), v))


def long_by_group(runs: pd.DataFrame, attr: str, metrics: Sequence[str]) -> pd.DataFrame:
    """One row per (run, group value): column ``attr`` holds the value, each ``metric`` (e.g.
    ``test/ndcg@10``) the group's number, and ``n_users`` the group's size."""
    base = runs[[c for c in runs.columns if "/" not in c]]
    parts = []
    for value in group_values(runs, attr):
        prefix = f"test/group/{attr}={value}/"
        wanted = {f"{prefix}{m.removeprefix('test/')}": m for m in metrics} | {f"{prefix}n_users": "n_users"}
        values = runs[[c for c in wanted if c in runs.columns]].rename(columns=wanted)
        parts.append(pd.concat([base, values, pd.Series(value, index=runs.index, name=attr)], axis=1))
    frame = pd.concat(parts, ignore_index=True)
    missing = [m for m in metrics if m not in frame.columns]
    if missing:
        raise RecbenchError(f"--groups {attr}: the runs have no per-group value of {missing}.")
    return frame


@dataclass(frozen=True)
class TwoSampleResult:
    """Unpaired comparison of sample B against sample A (``diff = mean_b - mean_a``)."""

    n_a: int
    n_b: int
    mean_a: float
    mean_b: float
    diff: float
    welch_p: float
    mannwhitney_p: float


def two_sample_test(a: np.ndarray, b: np.ndarray) -> TwoSampleResult:
    """Welch's t-test and the Mann-Whitney U test (two-sided) of two independent samples; NaN values
    are dropped; fewer than two values on a side give NaN p-values, two constant equal samples p = 1."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    a, b = a[~np.isnan(a)], b[~np.isnan(b)]
    mean_a = float(a.mean()) if len(a) else math.nan
    mean_b = float(b.mean()) if len(b) else math.nan
    welch = mw = math.nan
    if len(a) >= 2 and len(b) >= 2:
        if np.ptp(np.concatenate([a, b])) == 0:
            welch = mw = 1.0
        else:
            welch = float(stats.ttest_ind(a, b, equal_var=False).pvalue)
            mw = float(stats.mannwhitneyu(a, b, alternative="two-sided").pvalue)
    return TwoSampleResult(len(a), len(b), mean_a, mean_b, mean_b - mean_a, welch, mw)


def group_gap_tests(
    runs: pd.DataFrame, attr: str, pair: tuple[str, str], metrics: Sequence[str], rows: Sequence[str]
) -> pd.DataFrame:
    """Test group ``pair[1]`` against ``pair[0]`` for every row group of ``runs`` and every metric.

    Per-user values of the row group's runs are pooled (one sample point per (run, user)), split by the
    user's label (``test/group:<attr>`` in ``per_user.npz``) and compared with :func:`two_sample_test`.
    P-values are Holm-corrected across the table.
    """
    out = []
    for key, sub in runs.groupby(list(rows), sort=True, dropna=False):
        samples: dict[str, dict[str, list[np.ndarray]]] = {m: {pair[0]: [], pair[1]: []} for m in metrics}
        for run_dir in sub["run_dir"]:
            arrays = read_per_user(run_dir)
            labels = arrays.get(f"test/group:{attr}")
            if labels is None:
                raise RecbenchError(
                    f"{run_dir}/per_user.npz has no user labels for {attr!r} (test/group:{attr}); only user "
                    "attributes have per-user labels (item groups such as popularity do not)."
                )
            for m in metrics:
                if m not in arrays:
                    raise RecbenchError(
                        f"{run_dir}/per_user.npz has no per-user {m}; choose a per-user metric."
                    )
                for g in pair:
                    samples[m][g].append(arrays[m][labels == g])
        for m in metrics:
            res = two_sample_test(np.concatenate(samples[m][pair[0]]), np.concatenate(samples[m][pair[1]]))
            row = dict(zip(rows, key if isinstance(key, tuple) else (key,)))
            out.append(row | {"metric": m, "n_runs": len(sub), **res.__dict__})
    frame = pd.DataFrame(out)
    frame["welch_p"] = holm(frame["welch_p"].to_numpy())
    frame["mannwhitney_p"] = holm(frame["mannwhitney_p"].to_numpy())
    return frame
