"""Evaluation metrics as pure, vectorised numpy functions.

Three families, each with a literal name -> function dict that the evaluator and configs use:

* :data:`TOPK_METRICS`: per-user ranking metrics ``(hits, n_relevant, k) -> float64[n_users]`` where
  ``hits`` is ``bool[n_users, K]`` (``hits[u, r]``: the item at rank ``r`` of user ``u``'s list is
  relevant) and ``n_relevant`` is ``int[n_users]``, the number of relevant (target) items per user.
  ``k`` may exceed ``K`` (short lists on small catalogues): only the first ``min(k, K)`` columns are
  read, and the missing positions count as misses. A user with ``n_relevant == 0`` scores 0 on every
  metric (the evaluator never passes such users; it skips and counts them).
* :data:`CATALOGUE_METRICS`: one number per run from the top-k lists ``int[n_users, K]``
  (``-1`` marks an empty slot) and :class:`CatalogueStats` of the training data.
* :data:`RATING_METRICS`: ``rmse`` and ``mae`` of rating predictions.

* :data:`CTR_METRICS`: ``auc``, ``logloss`` and ``accuracy`` of pointwise click-through predictions,
  each ``(labels, values) -> float`` over labelled (user, item) pairs: ``labels`` are 0/1, ``values``
  are scores (``auc``: any monotone score) or probabilities (``logloss``, ``accuracy``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final

import numpy as np
from scipy.stats import rankdata

from recbench.data.interactions import Interactions

TopKMetric = Callable[[np.ndarray, np.ndarray, int], np.ndarray]


def _prepare(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The first ``min(k, K)`` columns of ``hits`` as bool and ``n_relevant`` as float64."""
    if k <= 0:
        raise ValueError(f"k must be positive, got {k}")
    hits = np.asarray(hits, dtype=bool)
    if hits.ndim != 2:
        raise ValueError(f"hits must be 2-D [n_users, K], got shape {hits.shape}")
    return hits[:, :k], np.asarray(n_relevant, dtype=np.float64)


def _safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """``num / den`` with 0 where ``den == 0``."""
    out = np.zeros(np.broadcast(num, den).shape, dtype=np.float64)
    np.divide(num, den, out=out, where=den > 0)
    return out


def precision(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    """Precision@k: relevant items in the top k, divided by ``k`` (also when the list is shorter)."""
    h, n_rel = _prepare(hits, n_relevant, k)
    return np.where(n_rel > 0, h.sum(axis=1) / k, 0.0)


def recall(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    """Recall@k: relevant items in the top k divided by the number of relevant items ``|R_u|``.

    This is the textbook definition, not the capped ``hits / min(|R_u|, k)`` variant, so recall@k
    cannot reach 1 when a user has more than ``k`` relevant items.
    """
    h, n_rel = _prepare(hits, n_relevant, k)
    return _safe_div(h.sum(axis=1), n_rel)


def _discounts(length: int) -> np.ndarray:
    """``1 / log2(rank + 1)`` for ranks ``1..length``."""
    return 1.0 / np.log2(np.arange(2, length + 2, dtype=np.float64))


def ndcg(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    """NDCG@k with binary relevance and the ``1 / log2(rank + 1)`` discount.

    The ideal DCG places ``min(|R_u|, k)`` relevant items at the top ranks.
    """
    h, n_rel = _prepare(hits, n_relevant, k)
    disc = _discounts(k)
    dcg = h @ disc[: h.shape[1]]
    ideal_cum = np.concatenate([[0.0], np.cumsum(disc)])
    idcg = ideal_cum[np.minimum(n_rel, k).astype(np.int64)]
    return _safe_div(dcg, idcg)


def mrr(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    """Reciprocal rank of the first relevant item within the top k; 0 when there is none."""
    h, n_rel = _prepare(hits, n_relevant, k)
    any_hit = h.any(axis=1) & (n_rel > 0)
    first = h.argmax(axis=1)
    return np.where(any_hit, 1.0 / (first + 1.0), 0.0)


def hit_rate(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    """Hit@k: 1 when at least one relevant item is in the top k, else 0."""
    h, n_rel = _prepare(hits, n_relevant, k)
    return (h.any(axis=1) & (n_rel > 0)).astype(np.float64)


def average_precision(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    """AP@k ("map"): sum of precision@i over the ranks i <= k holding a hit, over ``min(|R_u|, k)``."""
    h, n_rel = _prepare(hits, n_relevant, k)
    ranks = np.arange(1, h.shape[1] + 1, dtype=np.float64)
    prec_at_hits = np.where(h, np.cumsum(h, axis=1) / ranks, 0.0)
    return _safe_div(prec_at_hits.sum(axis=1), np.minimum(n_rel, k))


TOPK_METRICS: Final[Mapping[str, TopKMetric]] = {
    "precision": precision,
    "recall": recall,
    "ndcg": ndcg,
    "mrr": mrr,
    "hit": hit_rate,
    "map": average_precision,
}


@dataclass(frozen=True)
class CatalogueStats:
    """What catalogue metrics need to know about the training data.

    Parameters
    ----------
    n_items: size of the catalogue.
    item_users: ``int64[n_items]``, number of distinct training users who interacted with each item.
    n_users: number of distinct users in the training data.
    """

    n_items: int
    item_users: np.ndarray
    n_users: int

    @classmethod
    def from_interactions(cls, train: Interactions) -> CatalogueStats:
        """Stats of ``train`` (repeated (user, item) pairs count once)."""
        binary = train.binary_csr
        item_users = np.bincount(binary.indices, minlength=train.n_items).astype(np.int64)
        n_users = int(np.count_nonzero(np.diff(binary.indptr)))
        return cls(n_items=train.n_items, item_users=item_users, n_users=n_users)


CatalogueMetric = Callable[[np.ndarray, int, CatalogueStats], float]


def _recommended(topk_items: np.ndarray, k: int) -> np.ndarray:
    """Flat array of the valid (>= 0) item ids in the first ``k`` columns."""
    top = np.asarray(topk_items)[:, :k]
    return top[top >= 0]


def coverage(topk_items: np.ndarray, k: int, stats: CatalogueStats) -> float:
    """Catalogue coverage@k: distinct items recommended to anyone in a top-k list, over ``n_items``."""
    rec = _recommended(topk_items, k)
    if stats.n_items == 0:
        return 0.0
    return float(np.count_nonzero(np.bincount(rec, minlength=stats.n_items)) / int(stats.n_items))


def novelty(topk_items: np.ndarray, k: int, stats: CatalogueStats) -> float:
    """Mean self-information ``-log2(p_i)`` (bits) of the recommended items, over all top-k slots.

    ``p_i = (users_i + 1) / (n_users + 1)`` is the add-one smoothed share of training users who
    interacted with item ``i``: items never seen in training get a finite value (``log2(n_users + 1)``)
    and ``p_i <= 1`` keeps every term non-negative. Returns 0 when nothing was recommended.
    """
    rec = _recommended(topk_items, k)
    if rec.size == 0:
        return 0.0
    p = (stats.item_users[rec] + 1.0) / (stats.n_users + 1.0)
    return float(np.mean(-np.log2(p)))


CATALOGUE_METRICS: Final[Mapping[str, CatalogueMetric]] = {"coverage": coverage, "novelty": novelty}


def _pair(pred: np.ndarray, true: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p, t = np.asarray(pred, dtype=np.float64), np.asarray(true, dtype=np.float64)
    if p.shape != t.shape:
        raise ValueError(f"predictions have shape {p.shape} but targets have shape {t.shape}")
    if p.size == 0:
        raise ValueError("cannot compute an error over zero predictions")
    return p, t


def rmse(pred: np.ndarray, true: np.ndarray) -> float:
    """Root mean squared error."""
    p, t = _pair(pred, true)
    return float(np.sqrt(np.mean((p - t) ** 2)))


def mae(pred: np.ndarray, true: np.ndarray) -> float:
    """Mean absolute error."""
    p, t = _pair(pred, true)
    return float(np.mean(np.abs(p - t)))


RATING_METRICS: Final[Mapping[str, Callable[[np.ndarray, np.ndarray], float]]] = {"rmse": rmse, "mae": mae}

#: Metric names (without split prefix or ``@k``) for which smaller values are better: the errors, and the
#: beyond-accuracy metrics of concentration, popularity bias and disparity, and miscalibration. Every
#: other metric is maximised (reports mark the best value, searches and early stopping optimise it).
LOWER_IS_BETTER: Final[frozenset[str]] = frozenset(
    {"rmse", "mae", "mse", "loss", "logloss", "gini", "arp", "pop_rsp", "pop_reo", "miscalibration"}
)


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC of binary ``labels`` (0/1) under ``scores``; tied scores count one half (average ranks).

    Computed with the Mann-Whitney statistic: ``(sum of positive ranks - n_pos (n_pos + 1) / 2) /
    (n_pos n_neg)``. Raises ``ValueError`` when only one class is present.
    """
    y = np.asarray(labels).astype(bool).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    if y.shape != s.shape:
        raise ValueError(f"labels have shape {y.shape} but scores have shape {s.shape}")
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        raise ValueError("AUC needs at least one positive and one negative label")
    ranks = rankdata(s, method="average")
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def log_loss(labels: np.ndarray, probs: np.ndarray, eps: float = 1e-15) -> float:
    """Mean binary cross-entropy of probabilities ``probs`` (clipped to ``[eps, 1 - eps]``)."""
    y = np.asarray(labels, dtype=np.float64).ravel()
    p = np.clip(np.asarray(probs, dtype=np.float64).ravel(), eps, 1.0 - eps)
    if y.shape != p.shape:
        raise ValueError(f"labels have shape {y.shape} but probabilities have shape {p.shape}")
    if y.size == 0:
        raise ValueError("cannot compute log-loss over zero predictions")
    return float(-np.mean(y * np.log(p) + (1.0 - y) * np.log1p(-p)))


def accuracy(labels: np.ndarray, probs: np.ndarray, threshold: float = 0.5) -> float:
    """Share of pairs whose predicted class, 1 when ``probs >= threshold`` else 0, equals the 0/1 label."""
    y = np.asarray(labels).astype(bool).ravel()
    p = np.asarray(probs, dtype=np.float64).ravel()
    if y.shape != p.shape:
        raise ValueError(f"labels have shape {y.shape} but probabilities have shape {p.shape}")
    if y.size == 0:
        raise ValueError("cannot compute accuracy over zero predictions")
    return float(np.mean((p >= threshold) == y))


CTR_METRICS: Final[Mapping[str, Callable[[np.ndarray, np.ndarray], float]]] = {
    "auc": auc,
    "logloss": log_loss,
    "accuracy": accuracy,
}
#: The CTR metrics that read probabilities, not just an ordering (a model needs ``predict_proba``).
PROBABILITY_METRICS: Final[tuple[str, ...]] = ("logloss", "accuracy")
