"""Scoring ad-hoc histories: a session of items (oldest first) for a user the model never trained on.

A model that can do this has a ``score_history(history)`` method. ``history`` is an
:class:`~recbench.data.interactions.Interactions` over its *own* user space (row ``b`` = session ``b``,
``history.n_users`` sessions) and the model's item space, built by :func:`session_interactions`; the
method returns ``float32[history.n_users, n_items]``. Two routes exist:

* :func:`score_own_history` for models whose :meth:`score` already reads everything it needs from
  ``history`` (item-item weights, projections, sequences, popularity): the sessions are scored as users
  ``0..B-1`` of that history.
* :func:`fold_in` for factor models: each session's user factor is the solution of the model's own
  ridge objective with the item factors fixed (Hu, Koren & Volinsky, ICDM 2008, for implicit ALS; the
  same with a plain squared loss for BPR-MF and MF). The solution is linear in the session's targets,
  so :func:`fold_in_contributions` splits a score exactly into one term per session item.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from recbench.data.interactions import Interactions


def session_interactions(
    sessions: Sequence[Sequence[int]],
    n_items: int,
    ratings: Sequence[Sequence[float]] | None = None,
) -> Interactions:
    """Interactions of ad-hoc sessions: user ``b`` holds ``sessions[b]`` (dense item ids, oldest first).

    Timestamps are the positions, so sequence models read the items in the given order.
    """
    lengths = [len(s) for s in sessions]
    items = np.concatenate([np.asarray(s, dtype=np.int64) for s in sessions]) if sessions else np.zeros(0)
    users = np.repeat(np.arange(len(sessions), dtype=np.int64), lengths)
    stamps = np.concatenate([np.arange(n, dtype=np.int64) for n in lengths]) if sessions else np.zeros(0)
    values = None
    if ratings is not None:
        values = np.concatenate([np.asarray(r, dtype=np.float32) for r in ratings])
    return Interactions(
        users=users,
        items=items.astype(np.int64),
        n_users=len(sessions),
        n_items=n_items,
        ratings=values,
        timestamps=stamps.astype(np.int64),
    )


def score_own_history(model: Any, history: Interactions) -> np.ndarray:
    """``model.score`` of the sessions of ``history`` as users ``0..B-1`` (see the module docstring).

    Assigned as ``score_history = score_own_history`` in the class body of models whose scores depend
    on the user only through ``history``.
    """
    return np.asarray(model.score(np.arange(history.n_users, dtype=np.int64), history), dtype=np.float32)


def _system(
    factors: np.ndarray,
    items: np.ndarray,
    weights: np.ndarray,
    reg: float,
    gram: np.ndarray | None,
) -> np.ndarray:
    """``G + Y_h^T diag(w) Y_h + reg I`` in float64 for one session."""
    y = factors[items].astype(np.float64)
    a = (y.T * weights) @ y
    if gram is not None:
        a += gram
    a[np.diag_indices_from(a)] += reg
    return a


def fold_in(
    factors: np.ndarray,
    rows: sp.csr_matrix,
    *,
    reg: float,
    reg_per_item: float = 0.0,
    gram: np.ndarray | None = None,
    weight: Any = None,
    target: Any = None,
) -> np.ndarray:
    """``float32[n_rows, f]`` user factors solving each row's ridge system with the item factors fixed.

    Row ``u`` of ``rows`` holds the session's items ``h`` with values ``r``; its factor solves
    ``(G + sum_h w(r_i) y_i y_i^T + (reg + reg_per_item |h|) I) p = sum_h t(r_i) y_i`` where ``G`` is
    ``gram`` (``Y^T Y`` for objectives over all items, ``None`` for observed-only ones), ``w = weight(r)``
    (default 1) and ``t = target(r, items)`` (default ``r``). An empty row gets the zero factor.
    """
    out = np.zeros((rows.shape[0], factors.shape[1]), dtype=np.float64)
    for u in range(rows.shape[0]):
        lo, hi = rows.indptr[u], rows.indptr[u + 1]
        if lo == hi:
            continue
        items, values = rows.indices[lo:hi], rows.data[lo:hi].astype(np.float64)
        w = np.ones_like(values) if weight is None else np.asarray(weight(values), dtype=np.float64)
        t = values if target is None else np.asarray(target(values, items), dtype=np.float64)
        a = _system(factors, items, w, reg + reg_per_item * len(items), gram)
        out[u] = np.linalg.solve(a, factors[items].astype(np.float64).T @ t)
    return out.astype(np.float32)


def fold_in_contributions(
    factors: np.ndarray,
    items: np.ndarray,
    values: np.ndarray,
    item: int,
    *,
    reg: float,
    reg_per_item: float = 0.0,
    gram: np.ndarray | None = None,
    weight: Any = None,
    target: Any = None,
) -> np.ndarray:
    """``float64[len(items)]``: the share of each session item in ``y_item . p`` (same arguments as
    :func:`fold_in`, for one session); the shares sum to that dot product exactly.

    With ``A`` the session's system matrix, ``p = A^-1 sum_h t_i y_i``, so
    ``y_item . p = sum_h t_i (y_item^T A^-1 y_i)``: the target of history item ``i`` times its
    similarity to ``item`` in the metric ``A^-1`` of the model's factor space.
    """
    items = np.asarray(items, dtype=np.int64)
    values = np.asarray(values, dtype=np.float64)
    if len(items) == 0:
        return np.zeros(0)
    w = np.ones_like(values) if weight is None else np.asarray(weight(values), dtype=np.float64)
    t = values if target is None else np.asarray(target(values, items), dtype=np.float64)
    a = _system(factors, items, w, reg + reg_per_item * len(items), gram)
    probe = np.linalg.solve(a, factors[item].astype(np.float64))
    return t * (factors[items].astype(np.float64) @ probe)


@dataclass(frozen=True)
class FoldIn:
    """A factor model's fold-in: its item factors, score offset and per-session ridge objective.

    Scores are ``offset + Y p`` with ``p`` from :func:`fold_in`. Sessions are read as binary rows
    when ``implicit`` (or when they carry no ratings, then every value is ``default_value``), else as
    rating rows. Factor models return one from ``fold_in_spec()`` and set
    ``score_history = score_by_fold_in``.
    """

    factors: np.ndarray
    offset: np.ndarray
    reg: float
    reg_per_item: float = 0.0
    gram: np.ndarray | None = None
    weight: Callable[[np.ndarray], np.ndarray] | None = None
    target: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None
    implicit: bool = True
    default_value: float = 1.0

    def rows(self, history: Interactions) -> sp.csr_matrix:
        """The sessions as a CSR matrix of the values the objective reads."""
        if self.implicit or not history.has_ratings:
            rows = history.binary_csr.copy()
            rows.data[:] = self.default_value
            return rows
        return history.csr

    def _kwargs(self) -> dict[str, Any]:
        return dict(
            reg=self.reg,
            reg_per_item=self.reg_per_item,
            gram=self.gram,
            weight=self.weight,
            target=self.target,
        )

    def score(self, history: Interactions) -> np.ndarray:
        """``float32[n_sessions, n_items]`` scores of the folded-in sessions."""
        p = fold_in(self.factors, self.rows(history), **self._kwargs())
        return (p @ self.factors.T + self.offset[None, :]).astype(np.float32)

    def contributions(self, items: np.ndarray, values: np.ndarray, item: int) -> np.ndarray:
        """Exact per-session-item shares of ``score - offset[item]`` (see :func:`fold_in_contributions`)."""
        return fold_in_contributions(self.factors, items, values, item, **self._kwargs())


def score_by_fold_in(model: Any, history: Interactions) -> np.ndarray:
    """``score_history`` of factor models: fold each session in with ``model.fold_in_spec()``."""
    return model.fold_in_spec().score(history)
