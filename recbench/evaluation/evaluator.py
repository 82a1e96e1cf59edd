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
import sys
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import scipy.sparse as sp
import torch
from threadpoolctl import threadpool_limits
from tqdm.auto import tqdm

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
from recbench.evaluation.sharding import gather_rows, shard_rows
from recbench.evaluation.side import POPULARITY, SideInfo
from recbench.memory import rows_within

log = logging.getLogger(__name__)

BEYOND_METRICS: tuple[str, ...] = (*USER_LIST_METRICS, *LIST_SET_METRICS)
VALID_METRICS: tuple[str, ...] = (
    *TOPK_METRICS,
    *CATALOGUE_METRICS,
    *BEYOND_METRICS,
    *RATING_METRICS,
    *CTR_METRICS,
)

#: Bytes per (user, item) score held during evaluation: the model's float32 block, a converted copy
#: when the model returns another type, and the next block scored ahead.
_BYTES_PER_SCORE = 12

#: Largest float32 score block when ``eval.batch_size`` is unset. The C allocator reuses a freed block of
#: this size for the next one; larger blocks are mapped fresh from the operating system every time, and
#: faulting in their new pages costs as much CPU as ranking them (README, "Large data").
_REUSED_BLOCK_BYTES = 24 << 20


class Scorer(Protocol):
    """Anything with ``score(users, history) -> float32[len(users), n_items]`` (higher is better).

    A scorer whose ``capabilities.concurrent_score`` is true (see
    :class:`~recbench.models.base.Capabilities`) may be called from several threads at once; the
    evaluator then scores the blocks in its worker threads too.
    """

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
    batch_size: users per ``model.score`` call; ``None`` (default) sizes the blocks from
        ``memory_mb`` (and the memory available), so any catalogue size fits.
    memory_mb: memory budget of the score blocks (MiB) when ``batch_size`` is ``None``, shared by the
        blocks alive at once (one per thread plus the one being scored).
    num_threads: threads of the evaluation (``None``: torch's setting, i.e. every core unless the trainer
        or ``OMP_NUM_THREADS`` set fewer). With more than one, the calling thread scores the blocks while
        that many workers mask and rank them, each on one torch thread (:func:`top_lists`).
    progress: progress bar (users ranked per second) on a terminal.
    exclude_seen: mask the items of ``history`` from each user's ranking.
    exclude_self: also mask item ``u`` for user ``u`` (user-user graphs such as friend recommendation,
        where the "items" are users; the pipeline sets it for sources marked ``user_graph``).
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
    batch_size: int | None = None
    memory_mb: int = 512
    num_threads: int | None = None
    progress: bool = True
    exclude_seen: bool = True
    exclude_self: bool = False
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
        positive = ("batch_size", "memory_mb", "num_threads")
        for name in (*positive, "sampled_negatives", "sample_seed", "ctr_negatives"):
            value = getattr(self, name)
            if value is None and name in ("batch_size", "num_threads"):
                continue  # automatic
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise ConfigError(f"eval.{name}={value!r} must be an integer.")
            if name in positive and value < 1:
                raise ConfigError(f"eval.{name}={value} must be >= 1 (batch_size/num_threads: or null).")
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
        object.__setattr__(self, "exclude_self", bool(self.exclude_self))
        object.__setattr__(self, "progress", bool(self.progress))

    def users_per_block(self, n_items: int, n_users: int) -> int:
        """Users scored at once: ``batch_size``, else as many as ``memory_mb`` and free memory allow."""
        return block_users(self.batch_size, self.memory_mb, n_items, n_users)

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


def block_users(batch_size: int | None, memory_mb: int, n_items: int, n_users: int) -> int:
    """Users per score block: ``batch_size`` if given, else what fits ``memory_mb`` and free memory, at
    most a block the allocator reuses (:data:`_REUSED_BLOCK_BYTES`)."""
    if batch_size is not None:
        return int(batch_size)
    fits = rows_within(
        memory_mb << 20,
        _BYTES_PER_SCORE * max(n_items, 1),
        max(n_users, 1),
        f"Evaluation score blocks ({n_items} items per user)",
        "Lower eval.memory_mb or set eval.batch_size to a small number of users (e.g. 64).",
    )
    return max(1, min(fits, _REUSED_BLOCK_BYTES // (4 * max(n_items, 1))))


def concurrent_score(model: object) -> bool:
    """Whether ``model`` declares that its ``score`` may run in several threads at once
    (``capabilities.concurrent_score``)."""
    return bool(getattr(getattr(model, "capabilities", None), "concurrent_score", False))


def _model_name(model: object) -> str:
    return type(model).__name__


def _checked_scores(model: Scorer, users: np.ndarray, history: Interactions, raw: Any = None) -> np.ndarray:
    """``model.score`` (or its result ``raw``, already computed) as a writable float32 array that owns its
    memory, shape and finiteness checked."""
    scores = np.asarray(model.score(users, history) if raw is None else raw, dtype=np.float32)
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
    model: Scorer,
    target: Interactions,
    history: Interactions,
    spec: EvalSpec,
    side: SideInfo | None = None,
    *,
    label: str = "eval",
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
    label: name of the progress bar (e.g. the evaluated part, ``val`` or ``test``).

    Returns
    -------
    EvalResult with mean metrics, per-user top-k metrics and the evaluated users.
    """
    if (target.n_users, target.n_items) != (history.n_users, history.n_items):
        raise ValueError("target and history must share the id space (n_users, n_items)")
    with _torch_threads(spec.num_threads):
        return _evaluate(model, target, history, spec, side, label)


@contextmanager
def _torch_threads(n: int | None) -> Iterator[None]:
    """``torch.set_num_threads(n)`` inside the block (nothing when ``n`` is ``None``)."""
    if n is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _evaluate(
    model: Scorer,
    target: Interactions,
    history: Interactions,
    spec: EvalSpec,
    side: SideInfo | None,
    label: str,
) -> EvalResult:
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
            full, catalogue, labels = _full_ranking(model, rel, users, history, spec, side, label)
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


def masked(history: Interactions, exclude_seen: bool, exclude_self: bool) -> sp.csr_matrix | None:
    """Users x items matrix of what is masked from the rankings: the history (``exclude_seen``) and
    the diagonal (``exclude_self``, for user-user graphs); ``None`` when nothing is masked."""
    if exclude_self and history.n_users != history.n_items:
        raise ConfigError(
            f"eval.exclude_self masks user u's own id among the items, which needs a user-user graph, but "
            f"the data has {history.n_users} users and {history.n_items} items. Set eval.exclude_self=false."
        )
    seen = history.binary_csr if exclude_seen else None
    if not exclude_self:
        return seen
    diagonal = sp.identity(history.n_users, dtype=np.float32, format="csr")
    both = diagonal if seen is None else (seen + diagonal).tocsr()
    both.data[:] = 1.0
    return both


def top_lists(
    model: Scorer,
    users: np.ndarray,
    history: Interactions,
    k: int,
    *,
    exclude_seen: bool = True,
    exclude_self: bool = False,
    batch_size: int | None = None,
    memory_mb: int = 512,
    label: str | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The top-``k`` lists that full-ranking evaluation reads, and their scores.

    ``model.score(batch, history)`` as ``float32``, the items of ``history`` masked when
    ``exclude_seen`` (and item ``u`` for user ``u`` when ``exclude_self``), best first with ties to
    the lower item id; a slot left empty because too few items remain holds item ``-1`` (score
    ``-inf``). ``k <= n_items`` required. ``recbench recommend
    --history test`` writes these same lists, so the metrics can be recomputed from its file.

    Users go in blocks of ``batch_size`` (``None``: sized from ``memory_mb`` and the available memory,
    see :func:`block_users`). With ``n > 1`` torch threads, ``n`` worker threads mask and rank the scored
    blocks, each on one torch (and BLAS) thread: the whole of a block's ranking runs in parallel, not
    only the top-k selection. A model that declares ``concurrent_score`` is also scored in the workers
    (each scores and ranks whole blocks); any other is scored by this thread, one block after the other,
    so its ``score`` is never called from two threads at once. The lists do not depend on the number of
    threads.
    ``label`` names a progress bar (users per second), shown on a terminal only.
    """
    seen = masked(history, exclude_seen, exclude_self)
    n_all = len(users)
    users = users[shard_rows(n_all)]  # distributed training: this rank's share, the lists gathered below
    top = np.full((len(users), k), -1, dtype=np.int64)
    top_scores = np.full((len(users), k), -np.inf, dtype=np.float32)
    workers = torch.get_num_threads()
    concurrent = workers > 1 and concurrent_score(model)
    # score blocks alive at once (the memory budget is theirs): one per worker, plus the one this
    # thread scores ahead when the workers only rank
    alive = workers + 1 if workers > 1 and not concurrent else workers
    step = block_users(batch_size, max(1, memory_mb // alive), history.n_items, len(users))
    starts = range(0, len(users), step)
    blocks = (users[start : start + step] for start in starts)
    show = label is not None and sys.stderr.isatty()
    bar = tqdm(total=len(users), desc=label, unit="user", disable=not show, leave=False, smoothing=0.1)

    def rank(start: int, batch: np.ndarray, raw: Any) -> int:
        """Check, mask and rank one block's scores ``raw`` (what ``model.score`` returned) into
        ``top``/``top_scores``; returns the block's user count."""
        scores = _checked_scores(model, batch, history, raw)
        if seen is not None:
            sub = seen[batch]
            scores[np.repeat(np.arange(len(batch)), np.diff(sub.indptr)), sub.indices] = -np.inf
        items, values = top_k(scores, k)
        top[start : start + len(batch)] = np.where(np.isneginf(values), -1, items)
        top_scores[start : start + len(batch)] = values
        return len(batch)

    def score_and_rank(start: int, batch: np.ndarray) -> int:
        return rank(start, batch, model.score(batch, history))

    if workers == 1 or len(starts) == 1:
        with threadpool_limits(workers, user_api="blas"):  # numpy's BLAS follows the torch threads
            for start, batch in zip(starts, blocks):
                bar.update(score_and_rank(start, batch))
    else:
        with _torch_threads(1), threadpool_limits(1, user_api="blas"), ThreadPoolExecutor(workers) as pool:
            pending: deque[Future[int]] = deque()
            for start, batch in zip(starts, blocks):
                if concurrent:  # the worker scores the block too
                    pending.append(pool.submit(score_and_rank, start, batch))
                else:  # scored here, ranked by a worker
                    pending.append(pool.submit(rank, start, batch, model.score(batch, history)))
                while len(pending) >= alive:  # at most `alive` score blocks at once
                    bar.update(pending.popleft().result())
            while pending:
                bar.update(pending.popleft().result())
    bar.close()
    return gather_rows(top, n_all), gather_rows(top_scores, n_all)


def _full_ranking(
    model: Scorer,
    rel: sp.csr_matrix,
    users: np.ndarray,
    history: Interactions,
    spec: EvalSpec,
    side: SideInfo | None = None,
    label: str = "eval",
) -> tuple[dict[str, np.ndarray], dict[str, float], dict[str, np.ndarray]]:
    n_items = history.n_items
    big_k = min(max(spec.ks), n_items)
    if max(spec.ks) > n_items:
        log.info("k=%d exceeds the catalogue (%d items): top-k lists are shorter", max(spec.ks), n_items)
    top, _ = top_lists(
        model,
        users,
        history,
        big_k,
        exclude_seen=spec.exclude_seen,
        exclude_self=spec.exclude_self,
        batch_size=spec.batch_size,
        memory_mb=spec.memory_mb,
        label=label if spec.progress else None,
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
    seen = masked(history, bool(len(history)), spec.exclude_self)
    excluded = (rel_u + seen[users]).tocsr() if seen is not None else rel_u
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
    step = spec.users_per_block(history.n_items, len(users))
    for start in range(0, len(users), step):
        sl = slice(start, start + step)
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
    """``model.score`` at the pairs (``users`` sorted), in blocks of :meth:`EvalSpec.users_per_block`."""
    out = np.empty(len(users), dtype=np.float64)
    distinct = np.unique(users)
    bounds = np.append(np.searchsorted(users, distinct), len(users))  # pairs of distinct[j]: bounds[j:j+2]
    step = spec.users_per_block(history.n_items, len(distinct))
    for start in range(0, len(distinct), step):
        batch = distinct[start : start + step]
        lo, hi = bounds[start], bounds[start + len(batch)]
        scores = _checked_scores(model, batch, history)
        out[lo:hi] = scores[np.searchsorted(batch, users[lo:hi]), items[lo:hi]]
    return out
