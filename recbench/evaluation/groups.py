"""Group slicing: re-aggregate per-user metric values by user group, and summarise the gaps.

:func:`slice_by_group` is the one place that turns per-user values into per-group numbers, so every
per-user metric (accuracy or beyond accuracy) gets groups for free; metrics that are defined on a
set of lists (coverage, gini, ...) are recomputed on each group's lists through a callback. Keys:

* ``group/<attr>=<value>/<metric>``: mean over the group's users with a value (NaN ignored);
* ``group/<attr>=<value>/n_users``: the group's size (evaluated users);
* ``disparity/<attr>/<metric>``: max - min over the groups with a known value, and
  ``disparity/<attr>/<metric>_ratio``: max / min (NaN when the min is 0).

Users whose attribute is unknown form the group ``<attr>=unknown``, which is reported but left out of
the disparities. Weighted by ``n_users``, the groups' means of a metric defined for every user
recompute the overall mean.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

UNKNOWN_GROUP = "unknown"
_SIZES = ("n_users", "n_items")


def mean_ignoring_nan(values: np.ndarray) -> float:
    """Mean of the finite-or-infinite (non-NaN) values; NaN when there is none."""
    v = np.asarray(values, dtype=np.float64)
    ok = ~np.isnan(v)
    return float(v[ok].mean()) if ok.any() else float("nan")


def disparities(attr: str, by_value: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """``disparity/<attr>/<metric>`` (max - min) and ``..._ratio`` (max / min) over the known groups."""
    known = [v for v in by_value if v != UNKNOWN_GROUP]
    names = dict.fromkeys(n for v in known for n in by_value[v] if n not in _SIZES)
    out: dict[str, float] = {}
    for name in names:
        vals = np.array([by_value[v].get(name, np.nan) for v in known], dtype=np.float64)
        vals = vals[~np.isnan(vals)]
        if len(vals) < 2:
            continue
        hi, lo = float(vals.max()), float(vals.min())
        out[f"disparity/{attr}/{name}"] = hi - lo
        out[f"disparity/{attr}/{name}_ratio"] = hi / lo if lo > 0 else float("nan")
    return out


def flatten_groups(attr: str, by_value: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """``group/<attr>=<value>/<metric>`` keys of the per-group numbers, then the disparities."""
    out = {f"group/{attr}={value}/{name}": v for value, m in by_value.items() for name, v in m.items()}
    return out | disparities(attr, by_value)


def slice_by_group(
    per_user: Mapping[str, np.ndarray],
    labels: Mapping[str, np.ndarray],
    recompute: Callable[[np.ndarray], Mapping[str, float]] | None = None,
) -> dict[str, float]:
    """Per-group means, sizes and disparities of per-user metrics (see the module docstring).

    Parameters
    ----------
    per_user: metric name -> ``float64[n]`` values of the evaluated users (NaN: no value).
    labels: attribute -> ``str[n]`` group of each evaluated user (``""``: unknown).
    recompute: given a ``bool[n]`` row mask, the metrics of the group's lists that are not per-user
        means (coverage, gini, ...); ``None`` when there are none.
    """
    out: dict[str, float] = {}
    for attr, lab in labels.items():
        lab = np.asarray(lab).astype(str)
        lab = np.where(lab == "", UNKNOWN_GROUP, lab)
        by_value: dict[str, dict[str, float]] = {}
        for value in sorted(set(lab.tolist())):
            rows = lab == value
            metrics = {"n_users": float(rows.sum())}
            metrics |= {name: mean_ignoring_nan(v[rows]) for name, v in per_user.items()}
            if recompute is not None:
                metrics |= dict(recompute(rows))
            by_value[value] = metrics
        out |= flatten_groups(attr, by_value)
    return out
