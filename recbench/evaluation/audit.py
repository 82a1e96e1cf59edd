"""The beyond-accuracy part of a full-ranking evaluation: list metrics, user groups and item groups.

:func:`audit_lists` takes the top-k lists and hits that the accuracy metrics were computed from and
adds, as requested by the :class:`~recbench.evaluation.evaluator.EvalSpec`:

* the metrics of :mod:`recbench.evaluation.beyond` at every cut-off;
* user groups (``spec.user_groups``): ``activity`` (every dataset: the users whose history length is
  at least that of the user at the 20th percentile from the top, i.e. the top 20% most active with
  ties kept together, are ``top20``; the others ``rest``) and user attributes of
  :class:`~recbench.evaluation.side.SideInfo` (gender, age, occupation); sliced by
  :func:`recbench.evaluation.groups.slice_by_group`;
* item groups (``spec.item_groups``): ``popularity`` (``head`` / ``tail``, the short head of
  :func:`recbench.evaluation.beyond.short_head`) and the item field of ``spec.item_field`` (one group
  per category, an item in every category it has): the accuracy metrics with only the group's
  target items counted as relevant, over the users with such a target, plus ``n_users`` and
  ``n_items`` (the group's size in the catalogue).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp

from recbench.data.interactions import Interactions
from recbench.errors import ConfigError
from recbench.evaluation.beyond import LIST_SET_METRICS, NEEDS_CATEGORIES, USER_LIST_METRICS, ListContext
from recbench.evaluation.groups import flatten_groups, mean_ignoring_nan, slice_by_group
from recbench.evaluation.metrics import TOPK_METRICS
from recbench.evaluation.side import ACTIVITY, POPULARITY, SideInfo

if TYPE_CHECKING:
    from recbench.evaluation.evaluator import EvalSpec

#: Share of the most active users in the ``activity=top20`` group.
ACTIVE_SHARE = 0.2


def activity_labels(history: Interactions, users: np.ndarray) -> np.ndarray:
    """``top20`` / ``rest`` for ``users`` by the length of their (distinct-item) history."""
    lengths = np.diff(history.binary_csr.indptr)
    active = np.sort(lengths[lengths > 0])[::-1]
    if len(active) == 0:
        return np.full(len(users), "rest")
    threshold = active[max(math.ceil(ACTIVE_SHARE * len(active)) - 1, 0)]
    return np.where(lengths[users] >= threshold, "top20", "rest")


def _user_labels(
    spec: EvalSpec, history: Interactions, users: np.ndarray, side: SideInfo | None
) -> dict[str, np.ndarray]:
    labels: dict[str, np.ndarray] = {}
    for attr in spec.user_groups:
        if attr == ACTIVITY:
            labels[attr] = activity_labels(history, users)
        elif side is not None and attr in side.user_labels:
            labels[attr] = np.asarray(side.user_labels[attr])[users]
        else:
            known = sorted(side.user_labels) if side is not None else []
            raise ConfigError(
                f"eval.user_groups asks for {attr!r}, but no such user attribute was loaded (available: "
                f"{[ACTIVITY, *known]}). Drop it, or use a dataset whose users have it (ml-100k, ml-1m)."
            )
    return labels


def _item_groups(spec: EvalSpec, ctx: ListContext, side: SideInfo | None) -> dict[str, dict[str, np.ndarray]]:
    groups: dict[str, dict[str, np.ndarray]] = {}
    for attr in spec.item_groups:
        if attr == POPULARITY:
            groups[attr] = {"head": ctx.head, "tail": ~ctx.head}
        elif side is not None and side.categories is not None:
            member = (side.categories > 0).tocsc()
            groups[attr] = {
                name: np.asarray(member[:, j].toarray()).ravel() for j, name in enumerate(side.category_names)
            }
        else:
            raise ConfigError(
                f"eval.item_groups asks for {attr!r}, but the dataset has no item field {attr!r} loaded; "
                f"use item_groups=[{POPULARITY}] or a dataset with item features (ml-100k, ml-1m)."
            )
    return groups


def _restricted(top: np.ndarray, ctx: ListContext, member: np.ndarray, spec: EvalSpec) -> dict[str, float]:
    """Accuracy with only the targets in ``member`` relevant, over users with such a target."""
    n_rel = np.asarray(ctx.relevant @ member.astype(np.float64)).ravel().astype(np.int64)
    rows = n_rel > 0
    hits = ctx.hits[rows] & member[np.maximum(top[rows], 0)] & (top[rows] >= 0)
    out = {"n_users": float(rows.sum()), "n_items": float(member.sum())}
    for name in spec.topk_metrics:
        for k in spec.ks:
            values = TOPK_METRICS[name](hits, n_rel[rows], k) if rows.any() else np.zeros(0)
            out[f"{name}@{k}"] = mean_ignoring_nan(values)
    return out


def audit_lists(
    top: np.ndarray,
    hits: np.ndarray,
    users: np.ndarray,
    relevant: sp.csr_matrix,
    history: Interactions,
    spec: EvalSpec,
    side: SideInfo | None,
    per_user: Mapping[str, np.ndarray],
    list_metrics: Callable[[np.ndarray], dict[str, float]],
) -> tuple[dict[str, np.ndarray], dict[str, float], dict[str, np.ndarray]]:
    """Beyond-accuracy metrics and group slices of the lists ``top`` of ``users``.

    Parameters
    ----------
    top, hits: ``int64[n, K]`` lists and ``bool[n, K]`` hits of the evaluated ``users``.
    relevant: binary relevant items, rows aligned with ``users``.
    history: what the lists were masked with (popularity, activity and calibration read it).
    per_user: the accuracy metrics' per-user values (sliced by user group too).
    list_metrics: the catalogue metrics (coverage, novelty) of a subset of lists, given ``top`` rows.

    Returns
    -------
    ``(per_user, run_level, user_labels)``: per-user beyond metrics (``arp@10``...), run-level values
    (``gini@10``, ``group/...``, ``disparity/...``) and the user group labels of the evaluated users.
    """
    categories = side.categories if side is not None else None
    missing = [m for m in spec.beyond_metrics if m in NEEDS_CATEGORIES and categories is None]
    if missing:
        raise ConfigError(
            f"eval.metrics asks for {missing}, which compare item categories, but no item field "
            f"{spec.item_field!r} was loaded; drop them or use a dataset with item features (ml-100k, ml-1m)."
        )
    ctx = ListContext.build(history.binary_csr, users, relevant, hits, categories)
    mine = {
        f"{name}@{k}": USER_LIST_METRICS[name](top, k, ctx)
        for name in spec.beyond_metrics
        if name in USER_LIST_METRICS
        for k in spec.ks
    }
    set_names = [m for m in spec.beyond_metrics if m in LIST_SET_METRICS]

    def on_lists(rows: np.ndarray) -> dict[str, float]:
        sub, sub_ctx = top[rows], ctx.subset(rows)
        out = list_metrics(sub)
        out |= {f"{n}@{k}": LIST_SET_METRICS[n](sub, k, sub_ctx) for n in set_names for k in spec.ks}
        return out

    run_level = {f"{n}@{k}": LIST_SET_METRICS[n](top, k, ctx) for n in set_names for k in spec.ks}
    labels = _user_labels(spec, history, users, side)
    if labels:
        run_level |= slice_by_group({**per_user, **mine}, labels, on_lists)
    for attr, members in _item_groups(spec, ctx, side).items():
        by_value = {value: _restricted(top, ctx, member, spec) for value, member in members.items()}
        run_level |= flatten_groups(attr, by_value)
    return mine, run_level, labels
