"""Evaluate a fitted model on held-out interactions: full ranking (default) or sampled negatives.

The evaluator depends only on the :class:`Scorer` protocol (``score(users, history)``); it never
imports models or training code. Ranking conventions, shared by every model:

* Relevant items of a user are the distinct items of ``target`` for that user; with
  ``exclude_seen`` the items already in ``history`` are removed from them (they are masked from the
  ranking, so counting them would only add unreachable targets). Users left with no relevant item
  are not evaluated; those among them that have history are counted in ``n_skipped_users``.
* Top-k lists are ordered by score, ties broken by the lower item id first, so results are
  deterministic and do not depend on ``batch_size``. Masked (seen) items never count as
  recommended: when fewer than ``K`` items remain, the list is padded with ``-1``.

CTR metrics (``auc``, ``logloss``, ``accuracy``) score labelled (user, item) pairs instead of
rankings; :class:`EvalSpec` describes how the pairs are labelled. Probabilities come from an optional
``predict_proba(users, items)`` method; the pairs and the scoring live in :mod:`recbench.evaluation.ctr`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import scipy.sparse as sp

from recbench.data.interactions import Interactions
from recbench.errors import ConfigError, TrainingError
from recbench.evaluation.audit import audit_lists
from recbench.evaluation.beyond import LIST_SET_METRICS, USER_LIST_METRICS
from recbench.evaluation.ctr import ctr_metrics
from recbench.evaluation.groups import mean_ignoring_nan
from recbench.evaluation.metrics import (
    CATALOGUE_METRICS,
    CTR_METRICS,
    RATING_METRICS,
    TOPK_METRICS,
    CatalogueStats,
)
from recbench.evaluation.ranking import sample_negatives, top_k
from recbench.evaluation.side import POPULARITY, SideInfo

log = logging.getLogger(__name__)

BEYOND_METRICS: tuple[str, ...] = (*USER_LIST_METRICS, *LIST_SET_METRICS)
VALID_METRICS: tuple[str, ...] = (
    *TOPK_METRICS,
    *CATALOGUE_METRICS,
    *BEYOND_METRICS,
    *RATING_METRICS,
    *CTR_METRICS,
)


class Scorer(Protocol):
    """Anything with ``score(users, history) -> float32[len(users), n_items]`` (higher is better)."""

    def score(self, users: np.ndarray, history: Interactions) -> np.ndarray:
        """Scores of ``users`` over all items. The evaluator masks seen items in the returned array in
        place when it owns its memory, so return a fresh array (not a cached one)."""


def _as_tuple(value: Any) -> tuple[Any, ...]:
    if isinstance(value, (str, int)):
        return (value,)
    return tuple(value)


@dataclass(frozen=True)
class EvalSpec:
    """What to measure and how.

    Parameters
    ----------
    metrics: names from :data:`TOPK_METRICS` (reported at every k), :data:`CATALOGUE_METRICS`
        (at every k, full ranking only), :data:`RATING_METRICS` (``rmse``/``mae``: needs a model
        with ``predict(users, items)`` and rated targets) and :data:`CTR_METRICS` (``auc``,
        ``logloss``, ``accuracy``; see below).
    ks: cut-offs; a k larger than the catalogue is allowed (the lists are then shorter).
    batch_size: users per ``model.score`` call; bounds memory to ``batch_size x n_items`` floats.
    exclude_seen: mask the items of ``history`` from each user's ranking.
    sampled_negatives: 0 ranks all items; ``N > 0`` ranks each user's targets among ``N`` sampled
        unseen items (keys get the suffix ``_sampledN``).
    sample_seed: seed of the negative sample; it depends on nothing else, so every model sees the
        same negatives for the same data, split and seed.
    also_full_ranking: with ``sampled_negatives > 0``, also rank all items in the same call, so one
        run reports ``ndcg@10_sampled100`` beside ``ndcg@10`` (the paper protocol next to full ranking).
    ctr_negatives: for the CTR metrics, sampled negatives (label 0) per positive.
    ctr_threshold: ``None`` labels by sampled negatives; a number labels the rated target
        interactions instead (``rating >= ctr_threshold`` -> 1, else 0; no sampled negatives).
    user_groups: user groups to slice every per-user metric by (full ranking): ``activity`` (any
        dataset) and user attributes of the dataset (``gender``, ``age``, ``occupation``); see
        :mod:`recbench.evaluation.audit`.
    item_groups: item groups to slice the accuracy metrics by: ``popularity`` (short head / long
        tail) and ``item_field`` (one group per category).
    item_field: the item field whose categories ``ild``, ``miscalibration`` and item groups read.

    Beyond-accuracy metrics (:mod:`recbench.evaluation.beyond`: ``arp``, ``aplt``, ``epc``, ``ild``,
    ``miscalibration``, ``gini``, ``entropy``, ``pop_rsp``, ``pop_reo``) are read from the same top-k
    lists at every k (full ranking only).

    CTR protocol. Positives (label 1) are the relevant target pairs (as for ranking: the distinct
    target items of each user, minus the history with ``exclude_seen``). Each positive gets
    ``ctr_negatives`` items drawn uniformly, with replacement, among the items its user has not
    interacted with (history and target), from ``numpy.random.default_rng(sample_seed)``: the
    labelled pairs depend only on the data, the split and the seed, never on the model. A scorer
    with a ``candidates`` attribute (the cold-start
    :class:`~recbench.evaluation.candidates.CandidateScorer`) gets its negatives from those items only. With
    ``ctr_threshold`` set, every target interaction (minus seen pairs with ``exclude_seen``) is one
    example labelled by its rating (the usual "rating >= 4 is a click" setup). All labelled pairs
    of all users are pooled into one AUC (not a per-user mean), one log-loss and one accuracy
    (predicted 1 when the probability is >= 0.5). AUC ranks ``predict_proba`` when the model has
    it (:func:`has_probabilities`), else the model's ``score`` rows, so every model has an AUC;
    logloss and accuracy need probabilities. A metric whose labels hold one class only is NaN.
    """

    metrics: tuple[str, ...] = ("ndcg", "recall", "hit")
    ks: tuple[int, ...] = (10, 20)
    batch_size: int = 1024
    exclude_seen: bool = True
    sampled_negatives: int = 0
    sample_seed: int = 0
    also_full_ranking: bool = False
    ctr_negatives: int = 1
    ctr_threshold: float | None = None
    user_groups: tuple[str, ...] = ()
    item_groups: tuple[str, ...] = ()
    item_field: str = "genre"

    def __post_init__(self) -> None:
        metrics = tuple(dict.fromkeys(str(m) for m in _as_tuple(self.metrics)))
        unknown = [m for m in metrics if m not in VALID_METRICS]
        if not metrics:
            raise ConfigError(f"eval.metrics is empty; list at least one of {list(VALID_METRICS)}.")
        if unknown:
            raise ConfigError(
                f"eval.metrics={list(metrics)} contains unknown metric(s) {unknown}; "
                f"valid names are {list(VALID_METRICS)}."
            )
        ks = _as_tuple(self.ks)
        if not ks or any(isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k <= 0 for k in ks):
            raise ConfigError(
                f"eval.ks={list(ks)} must be a non-empty list of positive integers, e.g. [10, 20]."
            )
        for name in ("batch_size", "sampled_negatives", "sample_seed", "ctr_negatives"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise ConfigError(f"eval.{name}={value!r} must be an integer.")
        if self.batch_size < 1:
            raise ConfigError(f"eval.batch_size={self.batch_size} must be >= 1.")
        if self.sampled_negatives < 0:
            raise ConfigError(
                f"eval.sampled_negatives={self.sampled_negatives} must be >= 0 (0 = full ranking)."
            )
        if self.ctr_negatives < 0:
            raise ConfigError(
                f"eval.ctr_negatives={self.ctr_negatives} must be >= 0 (negatives per positive)."
            )
        threshold = self.ctr_threshold
        if threshold is not None:
            if isinstance(threshold, bool) or not isinstance(threshold, (int, float, np.number)):
                raise ConfigError(
                    f"eval.ctr_threshold={threshold!r} must be a rating (a number such as 4) or null "
                    "(label by sampled negatives)."
                )
            if not np.isfinite(float(threshold)):
                raise ConfigError(f"eval.ctr_threshold={threshold!r} must be a finite rating, such as 4.")
            object.__setattr__(self, "ctr_threshold", float(threshold))
        ctr = [m for m in metrics if m in CTR_METRICS]
        if ctr and self.ctr_threshold is None and self.ctr_negatives == 0:
            raise ConfigError(
                f"eval.metrics asks for {ctr}, but eval.ctr_negatives=0 and eval.ctr_threshold=null leave "
                "only positive labels. Set eval.ctr_negatives >= 1 (e.g. 1), or eval.ctr_threshold to a "
                "rating (e.g. 4) on a rated dataset."
            )
        object.__setattr__(self, "metrics", metrics)
        for name in ("user_groups", "item_groups"):
            object.__setattr__(
                self, name, tuple(dict.fromkeys(str(g) for g in _as_tuple(getattr(self, name))))
            )
        bad = [g for g in self.item_groups if g not in (POPULARITY, self.item_field)]
        if bad:
            raise ConfigError(
                f"eval.item_groups={list(self.item_groups)} contains {bad}; item groups are "
                f"{POPULARITY!r} (short head / long tail) and eval.item_field={self.item_field!r}."
            )
        object.__setattr__(self, "ks", tuple(dict.fromkeys(int(k) for k in ks)))
        object.__setattr__(self, "exclude_seen", bool(self.exclude_seen))

    @property
    def topk_metrics(self) -> tuple[str, ...]:
        """Requested per-user ranking metrics."""
        return tuple(m for m in self.metrics if m in TOPK_METRICS)

    @property
    def catalogue_metrics(self) -> tuple[str, ...]:
        """Requested catalogue metrics (coverage, novelty)."""
        return tuple(m for m in self.metrics if m in CATALOGUE_METRICS)

    @property
    def beyond_metrics(self) -> tuple[str, ...]:
        """Requested beyond-accuracy metrics (popularity bias, concentration, diversity, calibration)."""
        return tuple(m for m in self.metrics if m in BEYOND_METRICS)

    @property
    def audits(self) -> bool:
        """Whether the lists are audited: beyond-accuracy metrics or group slices requested."""
        return bool(self.beyond_metrics or self.user_groups or self.item_groups)

    @property
    def rating_metrics(self) -> tuple[str, ...]:
        """Requested rating-error metrics (rmse, mae)."""
        return tuple(m for m in self.metrics if m in RATING_METRICS)

    @property
    def ctr_metrics(self) -> tuple[str, ...]:
        """Requested CTR metrics (auc, logloss, accuracy)."""
        return tuple(m for m in self.metrics if m in CTR_METRICS)


@dataclass
class EvalResult:
    """Outcome of :func:`evaluate`.

    ``metrics`` maps keys such as ``ndcg@10``, ``coverage@10``, ``rmse``, ``auc`` or
    ``ndcg@10_sampled100`` to the mean over evaluated users (run-level values for catalogue, rating
    and CTR metrics). ``per_user`` holds the per-user values of the top-k metrics, aligned with
    ``users``.
    """

    metrics: dict[str, float]
    per_user: dict[str, np.ndarray] = field(default_factory=dict)
    users: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    n_skipped_users: int = 0
    user_groups: dict[str, np.ndarray] = field(default_factory=dict)


def _model_name(model: object) -> str:
    return type(model).__name__


def _checked_scores(model: Scorer, users: np.ndarray, history: Interactions) -> np.ndarray:
    """``model.score`` as a writable float32 array that owns its memory, shape and finiteness checked."""
    scores = np.asarray(model.score(users, history), dtype=np.float32)
    if not (scores.flags.writeable and scores.flags.owndata and scores.flags.c_contiguous):
        scores = np.array(scores, dtype=np.float32, order="C", copy=True)
    if scores.shape != (len(users), history.n_items):
        raise ValueError(
            f"{_model_name(model)}.score returned shape {scores.shape}; expected "
            f"({len(users)}, {history.n_items}) = (number of users, n_items)."
        )
    # a sum is a cheaper pass than isfinite(); only a non-finite sum needs the exact check
    if not np.isfinite(scores.sum()) and not np.isfinite(scores).all():
        bad = int(np.count_nonzero(~np.isfinite(scores)))
        raise TrainingError(
            f"{_model_name(model)}.score returned {bad} non-finite (NaN or infinite) scores for "
            f"{len(users)} users, so it cannot be evaluated. The model probably diverged (lower "
            "trainer.lr or set trainer.grad_clip_norm) or divides by zero; scores must be finite."
        )
    return scores


def _relevant(target: Interactions, history: Interactions, exclude_seen: bool) -> sp.csr_matrix:
    """Binary users x items matrix of the targets, minus the history when ``exclude_seen``."""
    rel = target.binary_csr
    if exclude_seen and len(history):
        rel = (rel - rel.multiply(history.binary_csr)).tocsr()
        rel.eliminate_zeros()
        rel.sort_indices()
    return rel


def _hits(rel: sp.csr_matrix, users: np.ndarray, items: np.ndarray) -> np.ndarray:
    """``bool`` matrix: ``items[r, j]`` (``-1`` = empty) is relevant for ``users[r]``."""
    n_items = rel.shape[1]
    rows = np.repeat(np.arange(rel.shape[0], dtype=np.int64), np.diff(rel.indptr))
    keys = rows * n_items + rel.indices  # sorted: csr rows in order, sorted indices
    query = users[:, None] * n_items + np.maximum(items, 0)
    pos = np.minimum(np.searchsorted(keys, query), max(len(keys) - 1, 0))
    return (items >= 0) & (keys[pos] == query) if len(keys) else np.zeros(items.shape, dtype=bool)


def evaluate(
    model: Scorer, target: Interactions, history: Interactions, spec: EvalSpec, side: SideInfo | None = None
) -> EvalResult:
    """Score ``model`` on ``target`` given what it may know (``history``).

    Parameters
    ----------
    model: any :class:`Scorer`; rating metrics also need ``predict(users, items)``, logloss and
        accuracy ``predict_proba(users, items)`` (:func:`has_probabilities`).
    target: held-out interactions (validation or test).
    history: interactions the model may use at inference and that are masked with ``exclude_seen``
        (train for validation, train + validation for test).
    spec: :class:`EvalSpec`.
    side: item categories and user attributes for the beyond-accuracy metrics and groups.

    Returns
    -------
    EvalResult with mean metrics, per-user top-k metrics and the evaluated users.
    """
    if (target.n_users, target.n_items) != (history.n_users, history.n_items):
        raise ValueError("target and history must share the id space (n_users, n_items)")
    rel = _relevant(target, history, spec.exclude_seen)
    n_rel_all = np.diff(rel.indptr)
    users = np.flatnonzero(n_rel_all > 0).astype(np.int64)
    n_skipped = int(np.count_nonzero((n_rel_all == 0) & (history.user_counts() > 0)))
    metrics: dict[str, float] = {}
    per_user: dict[str, np.ndarray] = {}
    labels: dict[str, np.ndarray] = {}
    if spec.topk_metrics or spec.catalogue_metrics or spec.audits:
        if len(users) == 0:
            log.warning("evaluate: no user has a target item; ranking metrics are NaN")
        catalogue: dict[str, float] = {}
        if spec.sampled_negatives:
            per_user = _sampled(model, rel, users, history, spec)
        if not spec.sampled_negatives or spec.also_full_ranking:
            full, catalogue, labels = _full_ranking(model, rel, users, history, spec, side)
            per_user.update(full)
        for key, values in per_user.items():
            metrics[key] = mean_ignoring_nan(values)
        metrics.update(catalogue)
    if spec.rating_metrics:
        metrics.update(_rating(model, target, history, spec))
    if spec.ctr_metrics:
        metrics.update(
            ctr_metrics(
                model, rel, target, history, spec, lambda u, i: _pair_scores(model, u, i, history, spec)
            )
        )
    return EvalResult(
        metrics=metrics, per_user=per_user, users=users, n_skipped_users=n_skipped, user_groups=labels
    )


def _topk_values(hits: np.ndarray, n_rel: np.ndarray, spec: EvalSpec, suffix: str) -> dict[str, np.ndarray]:
    return {
        f"{name}@{k}{suffix}": TOPK_METRICS[name](hits, n_rel, k)
        for name in spec.topk_metrics
        for k in spec.ks
    }


def top_lists(
    model: Scorer,
    users: np.ndarray,
    history: Interactions,
    k: int,
    *,
    exclude_seen: bool = True,
    batch_size: int = 1024,
) -> tuple[np.ndarray, np.ndarray]:
    """The top-``k`` lists that full-ranking evaluation reads, and their scores.

    ``model.score(batch, history)`` as ``float32``, the items of ``history`` masked when
    ``exclude_seen``, best first with ties to the lower item id; a slot left empty because too few
    items remain holds item ``-1`` (score ``-inf``). ``k <= n_items`` required. ``recbench recommend
    --history test`` writes these same lists, so the metrics can be recomputed from its file.
    """
    seen = history.binary_csr if exclude_seen else None
    top = np.full((len(users), k), -1, dtype=np.int64)
    top_scores = np.full((len(users), k), -np.inf, dtype=np.float32)
    for start in range(0, len(users), batch_size):
        batch = users[start : start + batch_size]
        scores = _checked_scores(model, batch, history)
        if seen is not None:
            sub = seen[batch]
            scores[np.repeat(np.arange(len(batch)), np.diff(sub.indptr)), sub.indices] = -np.inf
        items, values = top_k(scores, k)
        top[start : start + len(batch)] = np.where(np.isneginf(values), -1, items)
        top_scores[start : start + len(batch)] = values
    return top, top_scores


def _full_ranking(
    model: Scorer,
    rel: sp.csr_matrix,
    users: np.ndarray,
    history: Interactions,
    spec: EvalSpec,
    side: SideInfo | None = None,
) -> tuple[dict[str, np.ndarray], dict[str, float], dict[str, np.ndarray]]:
    n_items = history.n_items
    big_k = min(max(spec.ks), n_items)
    if max(spec.ks) > n_items:
        log.info("k=%d exceeds the catalogue (%d items): top-k lists are shorter", max(spec.ks), n_items)
    top, _ = top_lists(
        model, users, history, big_k, exclude_seen=spec.exclude_seen, batch_size=spec.batch_size
    )
    hits = _hits(rel[users], np.arange(len(users)), top)
    per_user = _topk_values(hits, np.diff(rel.indptr)[users], spec, "")
    stats = CatalogueStats.from_interactions(history)

    def catalogue_of(lists: np.ndarray) -> dict[str, float]:
        return {
            f"{name}@{k}": float(CATALOGUE_METRICS[name](lists, k, stats))
            for name in spec.catalogue_metrics
            for k in spec.ks
        }

    catalogue = catalogue_of(top)
    labels: dict[str, np.ndarray] = {}
    if spec.audits:
        rel_u = rel[users]
        more, run_level, labels = audit_lists(
            top, hits, users, rel_u, history, spec, side, per_user, catalogue_of
        )
        per_user |= more
        catalogue |= run_level
    return per_user, catalogue, labels


def _sampled(
    model: Scorer, rel: sp.csr_matrix, users: np.ndarray, history: Interactions, spec: EvalSpec
) -> dict[str, np.ndarray]:
    n_neg = spec.sampled_negatives
    if spec.catalogue_metrics:
        log.warning(
            "eval.metrics %s are catalogue metrics and are not computed with sampled negatives "
            "(eval.sampled_negatives=%d); use full ranking for them",
            list(spec.catalogue_metrics),
            n_neg,
        )
    rel_u = rel[users]
    n_rel = np.diff(rel_u.indptr)
    excluded = (rel_u + history.binary_csr[users]).tocsr() if len(history) else rel_u
    negatives = sample_negatives(excluded, n_neg, spec.sample_seed)
    width = int(n_rel.max(initial=0)) + n_neg
    cand = np.full((len(users), width), -1, dtype=np.int64)
    rows = np.repeat(np.arange(len(users)), n_rel)
    cand[rows, np.arange(len(rows)) - np.repeat(rel_u.indptr[:-1], n_rel)] = rel_u.indices
    cand[:, width - n_neg :] = negatives
    is_target = np.zeros(cand.shape, dtype=bool)
    is_target[:, : width - n_neg] = cand[:, : width - n_neg] >= 0
    # candidates in item-id order, so that a stable sort by score breaks ties to the lower id
    by_id = np.argsort(cand, axis=1)
    cand, is_target = np.take_along_axis(cand, by_id, axis=1), np.take_along_axis(is_target, by_id, axis=1)
    big_k = min(max(spec.ks), width)
    hits = np.zeros((len(users), big_k), dtype=bool)
    for start in range(0, len(users), spec.batch_size):
        sl = slice(start, start + spec.batch_size)
        scores = _checked_scores(model, users[sl], history)
        c = cand[sl]
        vals = np.where(c >= 0, np.take_along_axis(scores, np.maximum(c, 0), axis=1), -np.inf)
        order = np.argsort(-vals, axis=1, kind="stable")[:, :big_k]
        hits[sl] = np.take_along_axis(is_target[sl], order, axis=1)
    return _topk_values(hits, n_rel, spec, f"_sampled{n_neg}")


def _rating(model: Scorer, target: Interactions, history: Interactions, spec: EvalSpec) -> dict[str, float]:
    predict = getattr(model, "predict", None)
    if not callable(predict):
        raise ConfigError(
            f"eval.metrics={list(spec.metrics)} asks for {list(spec.rating_metrics)}, but "
            f"{_model_name(model)} does not predict ratings (no predict(users, items) method). Use a "
            "rating model (e.g. mf, pmf, nmf) or drop rmse/mae (eval=default)."
        )
    if target.ratings is None or history.ratings is None or len(history) == 0:
        raise ConfigError(
            f"eval.metrics={list(spec.metrics)} asks for {list(spec.rating_metrics)}, but the dataset "
            "has no explicit ratings. Choose a rated dataset (e.g. ml-100k) or drop rmse/mae (eval=default)."
        )
    if len(target) == 0:
        return {name: float("nan") for name in spec.rating_metrics}
    pred = np.asarray(predict(target.users, target.items), dtype=np.float64)
    if pred.shape != (len(target),) or not np.isfinite(pred).all():
        raise ValueError(
            f"{_model_name(model)}.predict must return {len(target)} finite ratings; got shape "
            f"{pred.shape} with {int(np.count_nonzero(~np.isfinite(pred)))} non-finite values."
        )
    pred = np.clip(pred, float(history.ratings.min()), float(history.ratings.max()))
    return {name: RATING_METRICS[name](pred, target.ratings) for name in spec.rating_metrics}


def _pair_scores(
    model: Scorer, users: np.ndarray, items: np.ndarray, history: Interactions, spec: EvalSpec
) -> np.ndarray:
    """``model.score`` at the pairs (``users`` sorted), ``spec.batch_size`` users per call."""
    out = np.empty(len(users), dtype=np.float64)
    distinct = np.unique(users)
    bounds = np.append(np.searchsorted(users, distinct), len(users))  # pairs of distinct[j]: bounds[j:j+2]
    for start in range(0, len(distinct), spec.batch_size):
        batch = distinct[start : start + spec.batch_size]
        lo, hi = bounds[start], bounds[start + len(batch)]
        scores = _checked_scores(model, batch, history)
        out[lo:hi] = scores[np.searchsorted(batch, users[lo:hi]), items[lo:hi]]
    return out
