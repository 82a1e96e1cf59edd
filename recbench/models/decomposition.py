"""Closed-form and multiplicative-update models on the interaction matrix: PureSVD, NMF and EASE.

All three are plain numpy / scipy (no torch). PureSVD and EASE rank items from a user's history
row (fold-in), so users and items added to ``history`` after training are scored without refitting
as long as the id space is the same; NMF is a rating model and scores with its user factors.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.linalg import lapack
from scipy.sparse.linalg import svds

from recbench.data.interactions import Interactions
from recbench.errors import ConfigError, DataError, TrainingError
from recbench.memory import check_fits
from recbench.models import kernels
from recbench.models.adhoc import score_own_history
from recbench.models.base import Capabilities, Recommender
from recbench.models.similarity import (
    DENSE_LIMIT,
    cosine_similar,
    gram_blocks,
    matrix_rows,
    sparse_rows_times_dense,
)

#: Batches up to this many users are scored by EASE as sparse rows times ``B``.
_FEW_USERS = 16

#: Density under which a block of history rows is multiplied as sparse rows: the dense product does
#: ``n_items / row length`` times the multiply-adds, at a far higher rate each (wins on dense blocks only).
_SPARSE_BELOW = 64


def _history_rows(history: Interactions, users: np.ndarray, implicit: bool) -> sp.csr_matrix:
    mat = history.binary_csr if implicit or not history.has_ratings else history.csr
    return mat[np.asarray(users, dtype=np.int64)]


class PureSVD(Recommender):
    """PureSVD (Cremonesi, Koren & Turrin, "Performance of recommender algorithms on top-N
    recommendation tasks", RecSys 2010).

    A truncated SVD ``X ~ U S V^T`` of the users x items matrix with missing entries as zeros;
    a user's scores are ``x_u V V^T``, the projection of the history row ``x_u`` onto the top
    ``factors`` right singular vectors.

    Parameters
    ----------
    factors:
        Number of singular vectors kept.
    implicit:
        Decompose the binary matrix (``True``) or the rating matrix.
    seed:
        Seed of the ARPACK start vector (makes the decomposition reproducible).
    """

    capabilities = Capabilities(history=True, explain=True, similar=True, concurrent_score=True)

    def __init__(self, *, factors: int = 20, implicit: bool = True, seed: int = 0) -> None:
        self.factors = factors
        self.implicit = implicit
        self.seed = seed

    def fit(self, train: Interactions, val: Interactions | None = None) -> PureSVD:
        """Top ``factors`` right singular vectors of the training matrix; returns ``self``."""
        mat = train.binary_csr if self.implicit or not train.has_ratings else train.csr
        rank = int(self.factors)
        if not 1 <= rank < min(mat.shape):
            raise ConfigError(
                f"PureSVD: factors={self.factors!r} must lie in [1, {min(mat.shape) - 1}] for a "
                f"{mat.shape[0]} x {mat.shape[1]} matrix; lower model.factors."
            )
        v0 = np.random.default_rng(self.seed).uniform(-1.0, 1.0, size=min(mat.shape))
        _, sing, vt = svds(mat.astype(np.float64), k=rank, v0=v0, solver="arpack")
        order = np.argsort(-sing)
        self.singular_values_ = sing[order].astype(np.float32)
        self.item_factors_ = np.ascontiguousarray(vt[order].T, dtype=np.float32)  # V: items x factors
        return self

    def score(self, users: np.ndarray, history: Interactions) -> np.ndarray:
        """``float32[len(users), n_items]``: ``x_u V V^T`` for each user's history row ``x_u``."""
        rows = _history_rows(history, users, self.implicit)
        return np.asarray((rows @ self.item_factors_) @ self.item_factors_.T, dtype=np.float32)

    #: A session is a history row: its projection ``x V V^T`` (see :mod:`recbench.models.adhoc`).
    score_history = score_own_history

    def similar_items(self, items: np.ndarray) -> np.ndarray:
        """``float32[len(items), n_items]``: cosine similarity of the item factors (rows of ``V``)."""
        return cosine_similar(self.item_factors_, items)


#: Rows of the Gram matrix computed at once by EASE (bounds the temporary product blocks).
_EASE_ROWS = 2048


def _ease_block(n: int) -> int:
    return max(1, min(n, _EASE_ROWS))


def ease_bytes(n_items: int) -> int:
    """Estimated peak memory of :meth:`EASE.fit`: the float32 ``n x n`` matrix, the temporary Gram
    row blocks and the dense operands of :func:`~recbench.models.similarity.gram_blocks`."""
    return 4 * n_items * n_items + 3 * 4 * _ease_block(n_items) * n_items + 8 * DENSE_LIMIT


def _inverse_spd_in_place(a: np.ndarray) -> None:
    """Replace the symmetric positive definite C-ordered float32 ``a`` by its inverse, in place.

    LAPACK ``spotrf`` (Cholesky) then ``spotri`` (inverse from the factor) on ``a.T``, the same
    matrix seen in Fortran order, so both overwrite ``a``'s memory; they fill one triangle, which is
    then mirrored in row blocks. No second ``n x n`` array is allocated.
    """
    n = a.shape[0]
    f = a.T  # Fortran-ordered view of the same (symmetric) matrix
    c, info = lapack.spotrf(f, lower=0, clean=0, overwrite_a=1)
    if info == 0:
        c, info = lapack.spotri(c, lower=0, overwrite_c=1)
    if info != 0:
        raise TrainingError(
            f"EASE: the regularised Gram matrix is not positive definite for LAPACK (info={info}); "
            "raise model.l2."
        )
    if not np.shares_memory(c, a):  # a LAPACK wrapper that copied: bring the result back
        a[...] = c.T
    # the upper triangle of f (Fortran) is the lower triangle of a (C): mirror it to the upper one
    step = _ease_block(n)
    for lo in range(0, n, step):
        hi = min(n, lo + step)
        a[lo:hi, hi:] = a[hi:, lo:hi].T
        block = a[lo:hi, lo:hi]
        block[np.triu_indices(hi - lo, 1)] = block.T[np.triu_indices(hi - lo, 1)]


class EASE(Recommender):
    """EASE^R (Steck, "Embarrassingly shallow autoencoders for sparse data", WWW 2019).

    Closed form: ``P = (X^T X + l2 I)^-1`` and ``B = I - P diag(1 / diag(P))``, so that ``B`` has
    a zero diagonal (an item may not predict itself); scores are ``x_u B`` for the binary history
    row ``x_u``. The Gram matrix is built in float32 and inverted in place (Cholesky, LAPACK
    ``spotrf``/``spotri``), then turned into ``B`` in the same memory: one ``n x n`` float32 array
    in all. The memory this needs is estimated first and a catalogue that would not fit is refused
    with a :class:`~recbench.errors.ConfigError` (see :mod:`recbench.memory`) before allocating.

    Parameters
    ----------
    l2:
        L2 regularisation added to the diagonal of the Gram matrix.
    """

    capabilities = Capabilities(history=True, explain=True, similar=True, concurrent_score=True)

    def __init__(self, *, l2: float = 500.0) -> None:
        self.l2 = l2

    def fit(self, train: Interactions, val: Interactions | None = None) -> EASE:
        """Solve for the item-item weight matrix ``B`` (dense, ``n_items x n_items``); returns ``self``."""
        if float(self.l2) <= 0:
            raise ConfigError(f"EASE: l2={self.l2!r} must be positive (the Gram matrix may be singular).")
        x = train.binary_csr
        n = x.shape[1]
        check_fits(
            ease_bytes(n),
            f"EASE on {n} items (one dense float32 item x item matrix, inverted in place)",
            "Options: shrink the catalogue with an item k-core filter (dataset.preprocess.item_core=20, "
            "for example), use a sparse item-neighbourhood model instead (model=itemknn), or run on a "
            "machine with more free memory.",
        )
        gram = np.empty((n, n), dtype=np.float32)
        x_t = x.T.tocsr()
        for lo, block in gram_blocks(x_t, x_t, block=_ease_block(n), symmetric=True):
            gram[lo : lo + len(block)] = block
        gram[np.diag_indices(n)] += np.float32(self.l2)
        _inverse_spd_in_place(gram)
        diag = np.diag(gram).copy()
        gram /= -diag[None, :]  # B = I - P diag(1 / diag(P)): the off-diagonal part, in place
        gram[np.diag_indices(n)] = 0.0
        self.weights_ = gram
        return self

    def score(self, users: np.ndarray, history: Interactions) -> np.ndarray:
        """``float32[len(users), n_items]``: binary history rows times ``B``.

        A few users (a served request), or a block whose rows hold less than one in
        :data:`_SPARSE_BELOW` of the items, sum only their history rows of ``B`` (sparse times dense,
        its cost linear in the stored entries); denser blocks use one dense product (BLAS is faster there).
        """
        users = np.asarray(users, dtype=np.int64)
        csr = history.binary_csr
        stored = int((csr.indptr[users + 1] - csr.indptr[users]).sum())
        if len(users) <= _FEW_USERS or stored * _SPARSE_BELOW < len(users) * csr.shape[1]:
            return sparse_rows_times_dense(csr, users, self.weights_)
        return np.asarray(csr[users].toarray() @ self.weights_, dtype=np.float32)

    #: A session is a history row times ``B`` (see :mod:`recbench.models.adhoc`).
    score_history = score_own_history

    def similar_items(self, items: np.ndarray) -> np.ndarray:
        """``float32[len(items), n_items]``: rows of ``B`` (how much each item raises every other's score)."""
        return matrix_rows(self.weights_, items)


class NMF(Recommender):
    """Non-negative matrix factorisation of the observed ratings by multiplicative updates.

    Lee & Seung ("Algorithms for non-negative matrix factorization", NIPS 2001) updates restricted
    to the observed entries, with L2 terms weighted by each user's / item's number of ratings (Luo,
    Zhou, Xia & Zhu, IEEE TNNLS 2014; the same objective as Surprise's ``NMF``)::

        P <- P * (R Q) / (R_hat Q + reg * n_u * P)      Q <- Q * (R^T P) / (R_hat^T P + reg * n_i * Q)

    where ``R_hat`` holds the current predictions at the observed entries only. Starting from a
    positive seeded initialisation the factors stay non-negative. ``predict`` returns clipped
    ``p_u . q_i``; ``score`` returns ``p_u Q^T`` for ranking.

    Parameters
    ----------
    factors:
        Latent dimension.
    iterations:
        Number of (user, item) update sweeps.
    reg:
        L2 weight on the factors, scaled per user / item by its number of ratings.
    seed:
        Seed of the uniform initialisation.
    """

    capabilities = Capabilities(ratings=True, similar=True, needs_ratings=True)

    def __init__(self, *, factors: int = 15, iterations: int = 100, reg: float = 0.15, seed: int = 0) -> None:
        self.factors = factors
        self.iterations = iterations
        self.reg = reg
        self.seed = seed

    def fit(self, train: Interactions, val: Interactions | None = None) -> NMF:
        """Run ``iterations`` multiplicative sweeps on ``train.ratings``; returns ``self``."""
        if not train.has_ratings:
            raise DataError(
                "NMF needs explicit ratings but the training data has none; choose a rated dataset."
            )
        r = train.csr.astype(np.float64)
        if r.nnz and r.data.min() < 0:
            raise DataError("NMF needs non-negative ratings; the training data has negative values.")
        r_t = r.T.tocsr()
        dots = kernels.ObservedDots(r.indptr, r.indices.astype(np.int64), r.shape[1])
        order_t = np.argsort(r.indices, kind="stable")  # CSR entry order -> order of r_t's entries
        n_u = np.diff(r.indptr)[:, None].astype(np.float64)
        n_i = np.diff(r_t.indptr)[:, None].astype(np.float64)
        f = int(self.factors)
        rng = np.random.default_rng(self.seed)
        scale = 2.0 * np.sqrt(max(float(r.data.mean()) if r.nnz else 1.0, 1e-6) / f)
        p = rng.uniform(0.0, scale, size=(r.shape[0], f))
        q = rng.uniform(0.0, scale, size=(r.shape[1], f))
        reg, tiny = float(self.reg), 1e-12
        est = r.copy()
        est_t = r_t.copy()
        for _ in range(int(self.iterations)):
            est.data = dots(p, q)
            p *= (r @ q) / (est @ q + reg * n_u * p + tiny)
            est_t.data = dots(p, q)[order_t]
            q *= (r_t @ p) / (est_t @ p + reg * n_i * q + tiny)
        self.user_factors_ = p.astype(np.float32)
        self.item_factors_ = q.astype(np.float32)
        self.rating_range_ = np.array([r.data.min(), r.data.max()] if r.nnz else [0.0, 0.0])
        return self

    def predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """``float32[n]`` ratings ``p_u . q_i`` clipped to the training rating range."""
        users = np.asarray(users, dtype=np.int64)
        items = np.asarray(items, dtype=np.int64)
        est = np.einsum("ij,ij->i", self.user_factors_[users], self.item_factors_[items])
        return np.clip(est, self.rating_range_[0], self.rating_range_[1]).astype(np.float32)

    def score(self, users: np.ndarray, history: Interactions) -> np.ndarray:
        """``float32[len(users), n_items]`` predicted ratings ``P[users] Q^T``."""
        return np.asarray(self.user_factors_[np.asarray(users, dtype=np.int64)] @ self.item_factors_.T)

    def similar_items(self, items: np.ndarray) -> np.ndarray:
        """``float32[len(items), n_items]``: cosine similarity of the item factors (rows of ``Q``)."""
        return cosine_similar(self.item_factors_, items)
