"""Beyond-accuracy metrics of top-k lists: popularity bias, concentration, diversity, calibration.

Every metric reads the same top-k matrix as the accuracy metrics (``int64[n_users, K]`` item ids in
rank order, ``-1`` for an empty slot) and a :class:`ListContext` describing what the lists were made
from. ``pop(i)`` is the number of distinct users of item ``i`` in the *history* the lists were masked
with (the training data of the evaluated part). The **short head** is the most popular items, taken
in decreasing ``pop`` (ties to the lower item id) until they hold at least 80% of the history's
(distinct) interactions; the **long tail** is every other item.

Two kinds, each a literal name -> function dict:

* :data:`USER_LIST_METRICS` give one value per user (``float64[n_users]``; NaN where the value is
  undefined, e.g. an empty list); the run's value is the mean over users with a value, and user
  groups re-aggregate them like the accuracy metrics: ``arp``, ``aplt``, ``epc``, ``ild``,
  ``miscalibration``.
* :data:`LIST_SET_METRICS` give one number for a set of lists: ``gini``, ``entropy``, ``pop_rsp``,
  ``pop_reo``; a user group recomputes them on the lists of its users.

``ild`` and ``miscalibration`` read item categories (e.g. genres) as the rows of
:attr:`ListContext.categories`: a distribution over categories per item (rows summing to 1), or an
all-zero row for an item without features. Definitions follow Elliot (ARP, APLT, PopRSP, PopREO,
EPC) and RecBole (GiniIndex); each docstring says where they differ.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from functools import cached_property
from typing import Final

import numpy as np
import scipy.sparse as sp

#: Share of the history's interactions that the short head holds.
SHORT_HEAD_SHARE: Final[float] = 0.8
#: Steck's smoothing weight of the user's own distribution in the list's distribution.
CALIBRATION_ALPHA: Final[float] = 0.01
_CHUNK = 4096  # users per block in the metrics that gather per-slot feature vectors


def short_head(pop: np.ndarray, share: float = SHORT_HEAD_SHARE) -> np.ndarray:
    """``bool[n_items]``: the items of the short head of popularity counts ``pop`` (see the module)."""
    pop = np.asarray(pop, dtype=np.int64)
    head = np.zeros(len(pop), dtype=bool)
    total = int(pop.sum())
    if total == 0:
        return head
    order = np.lexsort((np.arange(len(pop)), -pop))  # decreasing popularity, ties by item id
    covered = np.cumsum(pop[order])
    n_head = int(np.searchsorted(covered, share * total, side="left")) + 1
    head[order[:n_head]] = True
    return head


@dataclass(frozen=True)
class ListContext:
    """What the beyond-accuracy metrics know besides the lists; row ``r`` describes list ``r``.

    Parameters
    ----------
    pop: ``int64[n_items]``, distinct history users per item.
    n_history_users: users with at least one history interaction (EPC's normaliser).
    head: ``bool[n_items]``, the short head (:func:`short_head` of ``pop``).
    seen: binary ``[n_lists, n_items]`` history of each list's user.
    relevant: binary ``[n_lists, n_items]`` relevant (target) items of each list's user.
    hits: ``bool[n_lists, K]``, whether each slot holds a relevant item.
    categories: ``[n_items, n_categories]`` rows summing to 1 (or 0: no features), or ``None``.
    """

    pop: np.ndarray
    n_history_users: int
    head: np.ndarray
    seen: sp.csr_matrix
    relevant: sp.csr_matrix
    hits: np.ndarray
    categories: sp.csr_matrix | None = None

    @classmethod
    def build(
        cls,
        history: sp.csr_matrix,
        users: np.ndarray,
        relevant: sp.csr_matrix,
        hits: np.ndarray,
        categories: sp.csr_matrix | None = None,
    ) -> ListContext:
        """Context of the lists of ``users`` from the binary ``history`` (all users x items),
        ``relevant`` (rows aligned with ``users``) and ``hits``."""
        history = sp.csr_matrix(history)
        pop = np.bincount(history.indices, minlength=history.shape[1]).astype(np.int64)
        return cls(
            pop=pop,
            n_history_users=int(np.count_nonzero(np.diff(history.indptr))),
            head=short_head(pop),
            seen=history[users],
            relevant=sp.csr_matrix(relevant),
            hits=np.asarray(hits, dtype=bool),
            categories=categories,
        )

    @cached_property
    def category_rows(self) -> np.ndarray:
        """Dense ``float64[n_items + 1, n_categories]`` category rows; the last (zero) row is item ``-1``."""
        if self.categories is None:
            raise ValueError("the metric needs item categories (features); none were given")
        return _padded(sp.csr_matrix(self.categories).toarray().astype(np.float64))

    @cached_property
    def history_categories(self) -> tuple[np.ndarray, np.ndarray]:
        """Each list's user's history category distribution ``p(g|u)`` and its unnormalised total."""
        if self.categories is None:
            raise ValueError("the metric needs item categories (features); none were given")
        hist = np.asarray((self.seen @ sp.csr_matrix(self.categories, dtype=np.float64)).todense())
        total = hist.sum(axis=1, keepdims=True)
        return np.divide(hist, total, out=np.zeros_like(hist), where=total > 0), total[:, 0]

    def subset(self, rows: np.ndarray) -> ListContext:
        """The context of the lists selected by ``rows`` (a bool mask or indices); catalogue-wide
        values (popularity, short head) stay those of the whole history."""
        return replace(self, seen=self.seen[rows], relevant=self.relevant[rows], hits=self.hits[rows])


def _valid(top: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The first ``k`` columns of ``top`` and their mask of filled slots."""
    t = np.asarray(top, dtype=np.int64)[:, :k]
    return t, t >= 0


def _per_list_mean(values: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Mean of ``values`` over the filled slots of each row; NaN for an empty row."""
    n = valid.sum(axis=1)
    total = np.where(valid, values, 0.0).sum(axis=1)
    out = np.full(len(n), np.nan)
    np.divide(total, n, out=out, where=n > 0)
    return out


def arp(top: np.ndarray, k: int, ctx: ListContext) -> np.ndarray:
    """Average recommendation popularity: mean ``pop(i)`` of each user's recommended items (Elliot ARP).

    The run value is the mean over users; an empty list has no value (NaN).
    """
    t, valid = _valid(top, k)
    return _per_list_mean(ctx.pop[np.maximum(t, 0)].astype(np.float64), valid)


def aplt(top: np.ndarray, k: int, ctx: ListContext) -> np.ndarray:
    """Average percentage of long tail: share of each user's recommended items in the long tail
    (Elliot APLT, ``|L_u ∩ tail| / |L_u|``); NaN for an empty list."""
    t, valid = _valid(top, k)
    return _per_list_mean((~ctx.head[np.maximum(t, 0)]).astype(np.float64), valid)


def epc(top: np.ndarray, k: int, ctx: ListContext) -> np.ndarray:
    """Expected popularity complement (Vargas & Castells 2011), computed as Elliot does.

    Per user: ``sum_r rel_r disc(r) (1 - pop(i_r) / n_history_users) / sum_r disc(r)`` over the filled
    ranks ``r < k`` (``disc(r) = 1 / log2(r + 2)``, binary relevance): relevant, unpopular items high
    in the list score high. Users without a relevant item or with an empty list have no value (NaN).
    """
    t, valid = _valid(top, k)
    disc = 1.0 / np.log2(np.arange(2, t.shape[1] + 2, dtype=np.float64))
    novelty = 1.0 - ctx.pop[np.maximum(t, 0)] / max(ctx.n_history_users, 1)
    gain = np.where(valid & ctx.hits[:, :k], novelty * disc, 0.0).sum(axis=1)
    norm = np.where(valid, disc, 0.0).sum(axis=1)
    out = np.full(len(t), np.nan)
    has_rel = np.diff(ctx.relevant.indptr) > 0
    np.divide(gain, norm, out=out, where=(norm > 0) & has_rel)
    return out


def _blocks(n: int) -> Iterator[slice]:
    for start in range(0, n, _CHUNK):
        yield slice(start, min(start + _CHUNK, n))


def _padded(matrix: np.ndarray) -> np.ndarray:
    """``matrix`` with one extra zero row, so that the item id ``-1`` (empty slot) gathers zeros."""
    return np.vstack([matrix, np.zeros((1, matrix.shape[1]), dtype=matrix.dtype)])


def ild(top: np.ndarray, k: int, ctx: ListContext) -> np.ndarray:
    """Intra-list diversity: mean cosine distance ``1 - cos(x_i, x_j)`` over the ``m (m - 1) / 2``
    pairs of a list's ``m`` items that have features (category vectors ``x``).

    Computed without forming the pairs: with unit vectors, the sum of the pairwise cosines is
    ``(|sum_i x_i|^2 - m) / 2``. A list with fewer than two items with features has no value (NaN).
    """
    dense = ctx.category_rows
    norms = np.linalg.norm(dense, axis=1, keepdims=True)
    unit = np.divide(dense, norms, out=np.zeros_like(dense), where=norms > 0)
    has = (norms[:, 0] > 0).astype(np.float64)
    t, _ = _valid(top, k)
    out = np.full(len(t), np.nan)
    for sl in _blocks(len(t)):
        idx = t[sl]
        m = has[idx].sum(axis=1)
        s = unit[idx].sum(axis=1)
        pairs = m * (m - 1) / 2.0
        cos_sum = ((s * s).sum(axis=1) - m) / 2.0
        ok = pairs > 0
        out[sl][ok] = 1.0 - cos_sum[ok] / pairs[ok]
    return out


def miscalibration(top: np.ndarray, k: int, ctx: ListContext) -> np.ndarray:
    """Steck's miscalibration (RecSys 2018): ``KL(p || q~) = sum_g p(g|u) log(p(g|u) / q~(g|u))``.

    ``p(g|u)`` is the mean category distribution of the items in the user's history, ``q(g|u)`` that
    of the recommended items (equal weight per item; items without features are left out of both),
    and ``q~ = (1 - a) q + a p`` with ``a = 0.01``, the paper's smoothing, which keeps the divergence
    finite when the list misses a category of the history. Natural logarithm (nats); 0 = the list
    reproduces the history's mix. Users whose history or list has no item with features: NaN.
    """
    p_all, hist_total = ctx.history_categories
    padded = ctx.category_rows
    t, _ = _valid(top, k)
    out = np.full(len(t), np.nan)
    a = CALIBRATION_ALPHA
    for sl in _blocks(len(t)):
        q = padded[t[sl]].sum(axis=1)
        q_total = q.sum(axis=1, keepdims=True)
        q = np.divide(q, q_total, out=np.zeros_like(q), where=q_total > 0)
        p = p_all[sl]
        q_smooth = (1.0 - a) * q + a * p
        terms = np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0) / np.where(p > 0, q_smooth, 1.0)), 0.0)
        ok = (hist_total[sl] > 0) & (q_total[:, 0] > 0)
        out[sl][ok] = terms.sum(axis=1)[ok]
    return out


def _counts(top: np.ndarray, k: int, n_items: int) -> np.ndarray:
    t, valid = _valid(top, k)
    return np.bincount(t[valid], minlength=n_items).astype(np.float64)


def gini(top: np.ndarray, k: int, ctx: ListContext) -> float:
    """Gini index of how often each catalogue item is recommended (RecBole's GiniIndex form).

    With the ``n`` items' recommendation counts ``c`` sorted ascending (items never recommended count
    0): ``G = sum_j (2j - n - 1) c_(j) / (n sum c)``, ``j = 1..n``. 0 = every item recommended equally
    often; ``(n - 1) / n`` = one item fills every list. Elliot's ``Gini`` reports diversity instead,
    ``1 - sum_j (2j - n - 1) c_(j) / ((n - 1) sum c)``, i.e. ``1 - G n / (n - 1)``. NaN when nothing
    was recommended.
    """
    counts = np.sort(_counts(top, k, len(ctx.pop)))
    n, total = len(counts), counts.sum()
    if total == 0:
        return float("nan")
    j = np.arange(1, n + 1, dtype=np.float64)
    return float(((2.0 * j - n - 1.0) * counts).sum() / (n * total))


def entropy(top: np.ndarray, k: int, ctx: ListContext) -> float:
    """Shannon entropy (bits) of the share of all recommendations that each item receives.

    ``-sum_i p_i log2 p_i`` with ``p_i = c_i / sum c``: 0 when one item fills every list, at most
    ``log2(n_items)``. NaN when nothing was recommended.
    """
    counts = _counts(top, k, len(ctx.pop))
    total = counts.sum()
    if total == 0:
        return float("nan")
    p = counts[counts > 0] / total
    return float(-(p * np.log2(p)).sum())


def _parity(num: np.ndarray, den: np.ndarray) -> float:
    """Population std of the two rates ``num / den`` over their mean (NaN if undefined)."""
    if np.any(den == 0):
        return float("nan")
    rates = num / den
    mean = rates.mean()
    return float(rates.std() / mean) if mean > 0 else float("nan")


def pop_rsp(top: np.ndarray, k: int, ctx: ListContext) -> float:
    """Popularity ranking-based statistical parity (Elliot PopRSP) between short head and long tail.

    For each group ``g``: ``P_g = sum_u |L_u ∩ g| / sum_u |g \\ history_u|`` (how often an item of the
    group that the user has not seen is recommended); the metric is ``std(P_head, P_tail) /
    mean(P_head, P_tail)`` with the population std, 0 = parity.
    """
    t, valid = _valid(top, k)
    in_head = ctx.head[np.maximum(t, 0)] & valid
    num = np.array([in_head.sum(), (valid & ~in_head).sum()], dtype=np.float64)
    n_head = int(ctx.head.sum())
    seen_head = np.asarray(ctx.seen @ ctx.head.astype(np.float64)).ravel()
    seen_all = np.diff(ctx.seen.indptr)
    n_lists = len(t)
    den = np.array(
        [
            n_lists * n_head - seen_head.sum(),
            n_lists * (len(ctx.head) - n_head) - (seen_all.sum() - seen_head.sum()),
        ]
    )
    return _parity(num, den)


def pop_reo(top: np.ndarray, k: int, ctx: ListContext) -> float:
    """Popularity ranking-based equal opportunity (Elliot PopREO) between short head and long tail.

    For each group ``g``: ``P_g = sum_u |L_u ∩ g ∩ rel_u| / sum_u |g ∩ rel_u \\ history_u|`` over the
    users with at least one relevant item (how often a relevant item of the group is recommended);
    the metric is ``std(P_head, P_tail) / mean(P_head, P_tail)`` (population std), 0 = parity.
    """
    t, valid = _valid(top, k)
    hit = valid & ctx.hits[:, :k]
    in_head = ctx.head[np.maximum(t, 0)]
    num = np.array([(hit & in_head).sum(), (hit & ~in_head).sum()], dtype=np.float64)
    reachable = (ctx.relevant - ctx.relevant.multiply(ctx.seen)).tocsr()
    reachable.eliminate_zeros()
    rel_head = int(ctx.head[reachable.indices].sum())
    den = np.array([rel_head, reachable.nnz - rel_head], dtype=np.float64)
    return _parity(num, den)


UserListMetric = Callable[[np.ndarray, int, ListContext], np.ndarray]
ListSetMetric = Callable[[np.ndarray, int, ListContext], float]

USER_LIST_METRICS: Final[Mapping[str, UserListMetric]] = {
    "arp": arp,
    "aplt": aplt,
    "epc": epc,
    "ild": ild,
    "miscalibration": miscalibration,
}
LIST_SET_METRICS: Final[Mapping[str, ListSetMetric]] = {
    "gini": gini,
    "entropy": entropy,
    "pop_rsp": pop_rsp,
    "pop_reo": pop_reo,
}
#: The metrics that read item categories (features).
NEEDS_CATEGORIES: Final[frozenset[str]] = frozenset({"ild", "miscalibration"})
