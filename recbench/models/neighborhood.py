"""Neighbourhood models: :class:`ItemKNN` and :class:`UserKNN` on sparse top-k similarity matrices.

Similarities are computed in row blocks by :func:`recbench.models.similarity.topk_similarity`
(nothing larger than one ``block x n`` dense slab is materialised); each row keeps its ``k`` most
similar neighbours with a *positive* similarity (the self-similarity is dropped). Definitions, with
``a`` and ``b`` two rows (items for ItemKNN, users for UserKNN) and ``co`` their number of common
entries:

* ``cosine``: ``a.b / (|a| |b|)`` on binary (``implicit=True``) or rating vectors.
* ``jaccard``: ``co / (|A| + |B| - co)`` on the sets of entries (always binary).
* ``pearson``: cosine of rows centred on their own mean rating (mean over observed entries;
  norms over all observed entries, the "centred cosine"); needs ``implicit=False``.
* ``adjusted_cosine`` (Sarwar et al. 2001): cosine of ratings centred on the mean rating of the
  *other* side (the user's mean for ItemKNN, the item's mean for UserKNN); needs ``implicit=False``.

``shrink`` multiplies each similarity by ``co / (co + shrink)`` (Koren's support-based shrinkage),
which discounts similarities resting on few common entries. ``idf`` weights each column ``f`` by
``count_f ** -idf`` inside the dot products only (inverse user / item frequency, in the spirit of
Breese, Heckerman & Kadie, UAI 1998); norms and counts stay unweighted. The default ``idf=0.5``
ranks better than ``idf=0`` on MovieLens for both models.

Rating prediction (``predict``) is the baseline-centred weighted average of Koren (TKDD 2010,
"Factor in the neighbors"), as in Surprise's ``KNNBaseline``: ``b_ui + sum_j s_ij (r_uj - b_uj) /
sum_j s_ij`` over the neighbours ``j`` that rated the item, falling back to ``b_ui`` when none did.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import numpy as np
import scipy.sparse as sp

from recbench.data.interactions import Interactions
from recbench.errors import ConfigError, DataError
from recbench.models.adhoc import score_own_history
from recbench.models.base import Capabilities, Recommender
from recbench.models.similarity import centre, matrix_rows, sparse_times_sparse, topk_similarity

Similarity = Literal["cosine", "jaccard", "pearson", "adjusted_cosine"]
SIMILARITIES: tuple[str, ...] = ("cosine", "jaccard", "pearson", "adjusted_cosine")
_PREDICT_CHUNK = 8192  # (user, item) pairs per vectorised predict step


def fit_baselines(
    ratings: sp.csr_matrix, *, reg_users: float, reg_items: float, iterations: int
) -> tuple[float, np.ndarray, np.ndarray]:
    """Global mean and regularised user / item biases by alternating least squares (Koren 2010).

    Each step sets ``b_i = sum_u (r_ui - mu - b_u) / (reg_items + |R(i)|)`` for all items, then
    ``b_u = sum_i (r_ui - mu - b_i) / (reg_users + |R(u)|)`` for all users.
    """
    r = ratings.data.astype(np.float64)
    mu = float(r.mean()) if len(r) else 0.0
    centred = ratings.copy().astype(np.float64)
    centred.data = r - mu
    mask = centred.copy()
    mask.data[:] = 1.0
    mask_t = mask.T.tocsr()
    sum_u = np.asarray(centred.sum(axis=1)).ravel()
    sum_i = np.asarray(centred.sum(axis=0)).ravel()
    n_u = np.asarray(mask.sum(axis=1)).ravel()
    n_i = np.asarray(mask.sum(axis=0)).ravel()
    b_u = np.zeros(ratings.shape[0])
    b_i = np.zeros(ratings.shape[1])
    for _ in range(iterations):
        b_i = (sum_i - mask_t @ b_u) / (reg_items + n_i)
        b_u = (sum_u - mask @ b_i) / (reg_users + n_u)
    return mu, b_u, b_i


class _Neighbourhood(Recommender):
    """Shared fit / predict of the two KNN models; ``_item_based`` picks the orientation."""

    _item_based: ClassVar[bool]

    k: int
    similarity: str
    shrink: float
    idf: float
    implicit: bool
    baseline_reg_users: float
    baseline_reg_items: float
    baseline_iterations: int

    def _check(self, train: Interactions) -> None:
        name = type(self).__name__
        if self.similarity not in SIMILARITIES:
            raise ConfigError(
                f"{name}: similarity={self.similarity!r} is unknown; use one of {', '.join(SIMILARITIES)}."
            )
        if self.similarity in ("pearson", "adjusted_cosine") and self.implicit:
            raise ConfigError(
                f"{name}: similarity={self.similarity!r} centres ratings and needs implicit=false "
                "(with binary data every centred value is 0); set model.implicit=false or use cosine/jaccard."
            )
        if not self.implicit and not train.has_ratings:
            raise DataError(
                f"{name}: implicit=false needs explicit ratings but the training data has none; "
                "set model.implicit=true or choose a dataset with ratings."
            )
        if int(self.k) < 1:
            raise ConfigError(f"{name}: k={self.k!r} must be a positive integer.")

    def fit(self, train: Interactions, val: Interactions | None = None) -> _Neighbourhood:
        """Compute the top-``k`` similarity matrix (and rating baselines when ratings exist)."""
        self._check(train)
        binary = train.binary_csr
        values = None if self.implicit else train.csr
        if self.similarity in ("pearson", "adjusted_cosine"):
            values = centre(train.csr, binary, by_rows=(self.similarity == "pearson") != self._item_based)
        if self._item_based:
            binary = binary.T.tocsr()
            values = None if values is None else values.T.tocsr()
        self.similarity_ = topk_similarity(
            binary if values is None else values,
            similarity=self.similarity,
            k=int(self.k),
            shrink=float(self.shrink),
            idf=float(self.idf),
            binary=binary,
        )
        self.n_items_ = train.n_items
        if train.has_ratings:
            ratings = train.csr
            self.global_mean_, self.user_bias_, self.item_bias_ = fit_baselines(
                ratings,
                reg_users=float(self.baseline_reg_users),
                reg_items=float(self.baseline_reg_items),
                iterations=int(self.baseline_iterations),
            )
            coo = ratings.tocoo()
            resid = coo.data - self._baseline(coo.row, coo.col)
            self.residuals_ = sp.csr_matrix(
                (resid.astype(np.float32), (coo.row, coo.col)), shape=ratings.shape
            )
            self.rating_range_ = np.array([coo.data.min(), coo.data.max()], dtype=np.float64)
        return self

    def _baseline(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        return self.global_mean_ + self.user_bias_[users] + self.item_bias_[items]

    def _history(self, history: Interactions) -> sp.csr_matrix:
        return history.binary_csr if self.implicit or not history.has_ratings else history.csr

    def predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """``float32[n]`` baseline-centred neighbourhood ratings, clipped to the training rating range."""
        if not hasattr(self, "residuals_"):
            raise DataError(f"{type(self).__name__}.predict needs a model fitted on data with ratings.")
        users = np.asarray(users, dtype=np.int64)
        items = np.asarray(items, dtype=np.int64)
        resid = self.residuals_
        mask = resid.copy()
        mask.data[:] = 1.0
        if self._item_based:  # neighbours j of item i, rated by u
            sim_rows, own, resid_rows = items, users, resid
        else:  # neighbours v of user u, who rated i
            sim_rows, own, resid_rows = users, items, resid.T.tocsr()
            mask = mask.T.tocsr()
        out = np.empty(len(users), dtype=np.float64)
        for lo in range(0, len(users), _PREDICT_CHUNK):
            sl = slice(lo, lo + _PREDICT_CHUNK)
            sims = self.similarity_[sim_rows[sl]]
            num = np.asarray(sims.multiply(resid_rows[own[sl]]).sum(axis=1)).ravel()
            den = np.asarray(sims.multiply(mask[own[sl]]).sum(axis=1)).ravel()
            adj = np.divide(num, den, out=np.zeros_like(num), where=den > 0)
            out[sl] = self._baseline(users[sl], items[sl]) + adj
        return np.clip(out, self.rating_range_[0], self.rating_range_[1]).astype(np.float32)


class ItemKNN(_Neighbourhood):
    """Item-based collaborative filtering (Sarwar, Karypis, Konstan & Riedl, WWW 2001).

    Each item keeps its ``k`` most similar items; a user's score for item ``j`` is
    ``sum_i h_ui * s_ji`` over the neighbours ``i`` of ``j`` in the user's history ``h`` (binary, or
    ratings when ``implicit=False``). See the module docstring for the similarities and ``predict``.

    Parameters
    ----------
    k:
        Neighbours kept per item.
    similarity:
        ``cosine``, ``jaccard``, ``pearson`` or ``adjusted_cosine``.
    shrink:
        Support shrinkage ``co / (co + shrink)``; 0 disables it.
    idf:
        Inverse-frequency exponent: each user (item, for UserKNN) counts ``n ** -idf`` in the dot
        products, ``n`` being its number of interactions; 0 disables it.
    implicit:
        Compute similarities and scores on binary interactions instead of ratings.
    baseline_reg_users, baseline_reg_items, baseline_iterations:
        Regularisation and number of alternating steps of the rating baselines used by ``predict``.
    """

    _item_based = True
    capabilities = Capabilities(ratings=True, history=True, explain=True, similar=True, concurrent_score=True)

    def __init__(
        self,
        *,
        k: int = 100,
        similarity: Similarity = "cosine",
        shrink: float = 0.0,
        idf: float = 0.5,
        implicit: bool = True,
        baseline_reg_users: float = 15.0,
        baseline_reg_items: float = 10.0,
        baseline_iterations: int = 10,
    ) -> None:
        self.k = k
        self.similarity = similarity
        self.shrink = shrink
        self.idf = idf
        self.implicit = implicit
        self.baseline_reg_users = baseline_reg_users
        self.baseline_reg_items = baseline_reg_items
        self.baseline_iterations = baseline_iterations

    def fit(self, train: Interactions, val: Interactions | None = None) -> ItemKNN:
        """Item-item top-``k`` similarities (and rating baselines); returns ``self``."""
        super().fit(train, val)
        self.weights_ = self.similarity_.T.tocsr()  # weights_[i, j] = s_ji for i in N(j)
        return self

    def score(self, users: np.ndarray, history: Interactions) -> np.ndarray:
        """``float32[len(users), n_items]``: history rows times the neighbour weights."""
        return sparse_times_sparse(self._history(history), self.weights_, rows=users)

    #: A session is a history row times the neighbour weights (see :mod:`recbench.models.adhoc`).
    score_history = score_own_history

    def similar_items(self, items: np.ndarray) -> np.ndarray:
        """``float32[len(items), n_items]``: each item's kept top-``k`` similarities (0 elsewhere)."""
        return matrix_rows(self.similarity_, items)


class UserKNN(_Neighbourhood):
    """User-based collaborative filtering (Herlocker, Konstan, Borchers & Riedl, SIGIR 1999).

    Each user keeps the ``k`` most similar users (similarity computed on the training data); a
    user's score for item ``i`` is ``sum_v s_uv h_vi`` over the neighbours ``v``, whose interactions
    ``h`` are read from ``history`` (so items they added after training fold in). Parameters as in
    :class:`ItemKNN`, with neighbours being users.
    """

    _item_based = False
    capabilities = Capabilities(ratings=True, explain=True, concurrent_score=True)

    def __init__(
        self,
        *,
        k: int = 80,
        similarity: Similarity = "cosine",
        shrink: float = 0.0,
        idf: float = 0.5,
        implicit: bool = True,
        baseline_reg_users: float = 15.0,
        baseline_reg_items: float = 10.0,
        baseline_iterations: int = 10,
    ) -> None:
        self.k = k
        self.similarity = similarity
        self.shrink = shrink
        self.idf = idf
        self.implicit = implicit
        self.baseline_reg_users = baseline_reg_users
        self.baseline_reg_items = baseline_reg_items
        self.baseline_iterations = baseline_iterations

    def score(self, users: np.ndarray, history: Interactions) -> np.ndarray:
        """``float32[len(users), n_items]``: similarity rows times the neighbours' histories."""
        return sparse_times_sparse(self.similarity_, self._history(history), rows=users)
