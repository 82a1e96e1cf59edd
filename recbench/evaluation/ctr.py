"""CTR metrics (AUC, log-loss, accuracy) on labelled (user, item) pairs: the labelling and the scoring.

:class:`~recbench.evaluation.evaluator.EvalSpec` documents the protocol; :func:`ctr_metrics` is what
:func:`~recbench.evaluation.evaluator.evaluate` calls. Probabilities come from an optional
``predict_proba(users, items)`` method (see :func:`has_probabilities`); models without it still get an
AUC from their ranking scores, which the evaluator gathers and passes in as ``pair_scores``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp

from recbench.data.interactions import Interactions
from recbench.errors import ConfigError, TrainingError
from recbench.evaluation.metrics import CTR_METRICS, PROBABILITY_METRICS

if TYPE_CHECKING:
    from recbench.evaluation.evaluator import EvalSpec

log = logging.getLogger(__name__)


def has_probabilities(model: object) -> bool:
    """Whether ``model`` predicts click probabilities for logloss and accuracy.

    True when it has a callable ``predict_proba(users, items) -> float32[n]`` and does not set a
    false ``predicts_probabilities`` attribute (every recbench model has that attribute: its declared
    ``Capabilities.probabilities``, e.g. false for an FM trained with a BPR or squared loss).
    """
    return callable(getattr(model, "predict_proba", None)) and bool(
        getattr(model, "predicts_probabilities", True)
    )


def _member(csr: sp.csr_matrix, users: np.ndarray, items: np.ndarray) -> np.ndarray:
    """``bool[n]``: whether each pair ``(users[j], items[j])`` is stored in ``csr`` (sorted indices)."""
    if csr.nnz == 0:
        return np.zeros(len(users), dtype=bool)
    n_items = csr.shape[1]
    rows = np.repeat(np.arange(csr.shape[0], dtype=np.int64), np.diff(csr.indptr))
    keys = rows * n_items + csr.indices
    query = np.asarray(users, dtype=np.int64) * n_items + np.asarray(items, dtype=np.int64)
    pos = np.minimum(np.searchsorted(keys, query), len(keys) - 1)
    return keys[pos] == query


def uniform_unseen(
    excluded: sp.csr_matrix, users: np.ndarray, rng: np.random.Generator, pool: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """One item per entry of ``users``, uniform among the items of that user's row not in ``excluded``.

    Exact and without rejection: with the row's excluded items ``e_0 < e_1 < ...``, the ``k``-th
    allowed item (``k`` uniform below the number allowed) is ``k + #{j : e_j - j <= k}``, one
    ``searchsorted`` for all entries. ``pool`` (item ids) restricts the draw to those items. Returns
    ``(items int64[n], ok bool[n])``; ``ok`` is false (and the item meaningless) for a user with no
    allowed item left.
    """
    users = np.asarray(users, dtype=np.int64)
    if pool is not None:
        pool = np.unique(np.asarray(pool, dtype=np.int64))
        excluded = excluded[:, pool]
    excl = sp.csr_matrix(excluded)  # a copy: canonical form below must not touch the caller's matrix
    excl.sum_duplicates()
    excl.eliminate_zeros()
    n_items = excl.shape[1]
    counts = np.diff(excl.indptr)
    allowed = n_items - counts[users]
    ok = allowed > 0
    k = np.zeros(len(users), dtype=np.int64)
    k[ok] = rng.integers(0, allowed[ok])
    rows = np.repeat(np.arange(excl.shape[0], dtype=np.int64), counts)
    below = excl.indices - (np.arange(excl.nnz) - excl.indptr[rows])  # allowed items below each e_j
    keys = rows * (n_items + 1) + below  # sorted: rows ascending, ``below`` non-decreasing in a row
    count = np.searchsorted(keys, users * (n_items + 1) + k, side="right") - excl.indptr[users]
    items = k + count
    if pool is not None:
        items = pool[np.minimum(items, len(pool) - 1)] if len(pool) else items
    return items, ok


def _ctr_pairs(
    model: object, rel: sp.csr_matrix, target: Interactions, history: Interactions, spec: EvalSpec
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labelled pairs ``(users, items, labels)`` sorted by user (protocol: :class:`EvalSpec`)."""
    if spec.ctr_threshold is not None:
        if target.ratings is None:
            raise ConfigError(
                f"eval.ctr_threshold={spec.ctr_threshold:g} labels the test interactions by their ratings, "
                "but the data has no explicit ratings. Set eval.ctr_threshold=null (label by sampled "
                "negatives) or choose a rated dataset (e.g. ml-100k, dataset.preprocess.implicit=false)."
            )
        keep = _member(rel, target.users, target.items)
        users, items, ratings = target.users[keep], target.items[keep], target.ratings[keep]
        order = np.lexsort((items, users))
        labels = (ratings[order] >= spec.ctr_threshold).astype(np.int8)
        return users[order].astype(np.int64), items[order].astype(np.int64), labels
    n_neg = spec.ctr_negatives
    pos_users = np.repeat(np.arange(rel.shape[0], dtype=np.int64), np.diff(rel.indptr))
    pos_items = rel.indices.astype(np.int64)
    excluded = (history.binary_csr + target.binary_csr) if len(history) else target.binary_csr
    rng = np.random.default_rng(spec.sample_seed)
    negatives, ok = uniform_unseen(
        excluded, np.repeat(pos_users, n_neg), rng, getattr(model, "candidates", None)
    )
    if not ok.all():
        log.warning(
            "evaluate: %d CTR negatives not drawn: their users have interacted with every candidate item",
            int(np.count_nonzero(~ok)),
        )
    # row j: positive j, then its negatives; row-major order keeps the pairs sorted by user
    items = np.concatenate([pos_items[:, None], negatives.reshape(-1, n_neg)], axis=1).ravel()
    users = np.repeat(pos_users, 1 + n_neg)
    labels = np.zeros((len(pos_items), 1 + n_neg), dtype=np.int8)
    labels[:, 0] = 1
    valid = np.concatenate([np.ones((len(pos_items), 1), dtype=bool), ok.reshape(-1, n_neg)], axis=1).ravel()
    return users[valid], items[valid], labels.ravel()[valid]


def _pair_probabilities(model: object, users: np.ndarray, items: np.ndarray) -> np.ndarray:
    """``model.predict_proba`` at the pairs, shape, finiteness and range checked."""
    probs = np.asarray(model.predict_proba(users, items), dtype=np.float64)  # type: ignore[attr-defined]
    if probs.shape != (len(users),):
        raise ValueError(
            f"{type(model).__name__}.predict_proba returned shape {probs.shape}; expected ({len(users)},), "
            "one probability per (user, item) pair."
        )
    if not np.isfinite(probs).all():
        raise TrainingError(
            f"{type(model).__name__}.predict_proba returned {int(np.count_nonzero(~np.isfinite(probs)))} "
            "non-finite probabilities, so it cannot be evaluated. The model probably diverged (lower "
            "trainer.lr or set trainer.grad_clip_norm)."
        )
    if probs.size and (probs.min() < 0.0 or probs.max() > 1.0):
        raise ValueError(
            f"{type(model).__name__}.predict_proba returned values in [{probs.min():g}, {probs.max():g}]; "
            "probabilities must lie in [0, 1]."
        )
    return probs


def ctr_metrics(
    model: object,
    rel: sp.csr_matrix,
    target: Interactions,
    history: Interactions,
    spec: EvalSpec,
    pair_scores: Callable[[np.ndarray, np.ndarray], np.ndarray],
) -> dict[str, float]:
    """CTR metrics over the labelled pairs of :func:`_ctr_pairs`, pooled over all users.

    ``pair_scores(users, items)`` gives the ranking scores of pairs (used for AUC when the model has
    no probabilities).
    """
    names = spec.ctr_metrics
    with_probs = has_probabilities(model)
    wants_probs = [m for m in names if m in PROBABILITY_METRICS]
    if wants_probs and not with_probs:
        raise ConfigError(
            f"eval.metrics asks for {', '.join(wants_probs)}, which need click probabilities, but "
            f"{type(model).__name__} does not give them (no predict_proba(users, items), or with its "
            "settings its output is not a probability: see the model's declared capabilities). "
            "Keep only auc (it needs only scores), or use a model whose capabilities include probabilities."
        )
    users, items, labels = _ctr_pairs(model, rel, target, history, spec)
    if len(labels) == 0:
        log.warning("evaluate: no labelled CTR pair (no user has a target item); CTR metrics are NaN")
        return {name: float("nan") for name in names}
    one_class = bool(labels.all() or not labels.any())
    if one_class and "auc" in names:
        log.warning("evaluate: all %d CTR pairs have label %d; auc is NaN", len(labels), int(labels[0]))
    values = _pair_probabilities(model, users, items) if with_probs else pair_scores(users, items)
    return {
        name: float("nan") if name == "auc" and one_class else CTR_METRICS[name](labels, values)
        for name in names
    }
