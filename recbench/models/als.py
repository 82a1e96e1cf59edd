"""Implicit-feedback ALS (Hu, Koren & Volinsky, ICDM 2008) with batched conjugate-gradient solves."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from recbench.data.interactions import Interactions
from recbench.errors import ConfigError
from recbench.models import kernels
from recbench.models.adhoc import FoldIn, score_by_fold_in
from recbench.models.base import Capabilities, Recommender
from recbench.models.similarity import cosine_similar


class ImplicitALS(Recommender):
    """Weighted matrix factorisation for implicit feedback (Hu, Koren & Volinsky, ICDM 2008).

    Minimises ``sum_{u,i} c_ui (p_ui - x_u . y_i)^2 + reg (|X|^2 + |Y|^2)`` over *all* user-item
    pairs, with preference ``p_ui = 1`` on observed pairs (0 elsewhere) and confidence
    ``c_ui = 1 + alpha * r_ui`` (``r_ui = 1``, or the rating when ``implicit=False``).

    Each half-sweep solves the ``n`` ridge systems ``(Y^T Y + Y^T (C_u - I) Y + reg I) x_u =
    Y^T C_u p_u`` of one side *together* with warm-started conjugate-gradient steps (Takacs,
    Pilaszy & Tikk, RecSys 2011), each a batched product ``V (Y^T Y + reg I) + ((C - 1) * (V Y^T)) Y``
    whose sparse part touches only the observed pairs. CG is preconditioned with the shared part
    ``Y^T Y + reg I`` of all systems (one ``factors x factors`` inverse per half-sweep): the
    per-user term is a low-rank correction of it, so a single step is nearly exact (one
    preconditioned step ranks about as well as several plain ones). The predictions ``x_u . y_i`` on
    observed pairs are updated from the CG steps instead of being recomputed, so the residual at
    the start of a half-sweep costs one sparse product. The objective after every sweep is kept in
    ``loss_history_``; CG never increases it.

    Parameters
    ----------
    factors:
        Latent dimension.
    iterations:
        Alternating sweeps (users then items).
    reg:
        L2 regularisation of both factor matrices.
    alpha:
        Confidence slope: ``c = 1 + alpha * r``.
    cg_steps:
        Preconditioned conjugate-gradient steps per half-sweep.
    implicit:
        Treat every interaction as ``r = 1`` (``True``) or use the ratings as ``r``.
    seed:
        Seed of the Gaussian initialisation (standard deviation 0.01).
    """

    capabilities = Capabilities(history=True, fold_in=True, explain=True, similar=True, concurrent_score=True)

    def __init__(
        self,
        *,
        factors: int = 64,
        iterations: int = 15,
        reg: float = 30.0,
        alpha: float = 2.0,
        cg_steps: int = 1,
        implicit: bool = True,
        seed: int = 0,
    ) -> None:
        self.factors = factors
        self.iterations = iterations
        self.reg = reg
        self.alpha = alpha
        self.cg_steps = cg_steps
        self.implicit = implicit
        self.seed = seed

    def fit(self, train: Interactions, val: Interactions | None = None) -> ImplicitALS:
        """Alternate batched CG solves for users and items; returns ``self``."""
        if int(self.factors) < 1 or int(self.cg_steps) < 1 or float(self.reg) < 0 or float(self.alpha) < 0:
            raise ConfigError(
                f"ImplicitALS: need factors >= 1, cg_steps >= 1, reg >= 0 and alpha >= 0 (got "
                f"factors={self.factors!r}, cg_steps={self.cg_steps!r}, reg={self.reg!r}, "
                f"alpha={self.alpha!r})."
            )
        mat = train.binary_csr if self.implicit or not train.has_ratings else train.csr
        extra = (float(self.alpha) * mat.data).astype(np.float32)  # c - 1 on observed pairs
        to_t = np.argsort(mat.indices, kind="stable")  # CSR entry order -> item-major entry order
        mat_t = mat.T.tocsr()
        side_u = _Side(mat.indptr, mat.indices, mat.shape[1], None, extra)
        side_i = _Side(mat_t.indptr, mat_t.indices, mat.shape[0], to_t, extra[to_t])
        rng = np.random.default_rng(self.seed)
        f = int(self.factors)
        x = (0.01 * rng.standard_normal((mat.shape[0], f))).astype(np.float32)
        y = (0.01 * rng.standard_normal((mat.shape[1], f))).astype(np.float32)
        pred = side_u.dots(x, y)  # x_u . y_i on observed pairs, CSR order
        self.loss_history_: list[float] = []
        for _ in range(int(self.iterations)):
            self._half_sweep(side_u, x, y, pred)
            self._half_sweep(side_i, y, x, pred)
            self.loss_history_.append(self._loss(x, y, pred, side_u.conf))
        self.user_factors_, self.item_factors_ = x, y
        return self

    def _half_sweep(self, side: _Side, x: np.ndarray, y: np.ndarray, pred: np.ndarray) -> None:
        """CG steps on ``x`` (rows of this side) with ``y`` fixed; updates ``x`` and ``pred`` in place."""
        gram64 = y.T.astype(np.float64) @ y + float(self.reg) * np.eye(y.shape[1])
        gram = gram64.astype(np.float32)
        # preconditioner: the part of every system shared by all rows (any SPD matrix is valid, so
        # a tiny jitter keeps it invertible when reg = 0 and Y is rank-deficient)
        jitter = 1e-9 * np.trace(gram64) / len(gram64) + 1e-30
        precond = np.linalg.inv(gram64 + jitter * np.eye(len(gram64))).astype(np.float32)
        w = side.extra
        # predictions in this side's entry order (a view for the user side), written back at the end
        local = pred if side.order is None else pred[side.order]
        # residual b - A x = (C p - (C - I) x.y) Y - x (Y^T Y + reg I), with C p = 1 + extra
        r = side.spmm(side.conf - w * local, y) - x @ gram
        z = r @ precond
        d = z.copy()
        rz = np.einsum("ij,ij->i", r, z)
        for _ in range(int(self.cg_steps)):
            s = side.dots(d, y)
            ad = d @ gram + side.spmm(w * s, y)
            den = np.einsum("ij,ij->i", d, ad)
            step = np.divide(rz, den, out=np.zeros_like(rz), where=den > 0)
            x += step[:, None] * d
            local += np.repeat(step, side.counts) * s
            r -= step[:, None] * ad
            z = r @ precond
            rz_new = np.einsum("ij,ij->i", r, z)
            d *= np.divide(rz_new, rz, out=np.zeros_like(rz), where=rz > 0)[:, None]
            d += z
            rz = rz_new
        if side.order is not None:
            pred[side.order] = local

    def _loss(self, x: np.ndarray, y: np.ndarray, pred: np.ndarray, conf: np.ndarray) -> float:
        """Full objective: observed terms from ``pred`` plus ``sum_all (x.y)^2`` via the two Gram matrices."""
        miss = 1.0 - pred
        terms = conf * miss * miss - pred * pred  # float32 terms, float64 (pairwise) sum
        observed = float(terms.sum(dtype=np.float64))
        all_sq = float(np.sum((x.T.astype(np.float64) @ x) * (y.T.astype(np.float64) @ y)))
        norms = float(np.sum(x.astype(np.float64) ** 2)) + float(np.sum(y.astype(np.float64) ** 2))
        return float(observed + all_sq + float(self.reg) * norms)

    def score(self, users: np.ndarray, history: Interactions) -> np.ndarray:
        """``float32[len(users), n_items]``: ``X[users] Y^T``."""
        return np.asarray(self.user_factors_[np.asarray(users, dtype=np.int64)] @ self.item_factors_.T)

    def fold_in_spec(self) -> FoldIn:
        """The user half-step solved exactly for a session: ``(Y^T C_u Y + reg I) x = Y^T C_u p_u``."""
        y = self.item_factors_
        alpha = float(self.alpha)
        return FoldIn(
            factors=y,
            offset=np.zeros(len(y), dtype=np.float32),
            reg=float(self.reg),
            gram=y.T.astype(np.float64) @ y,
            weight=lambda r: alpha * r,
            target=lambda r, items: 1.0 + alpha * r,
            implicit=bool(self.implicit),
        )

    #: A session's scores from its exactly solved user factor (see :mod:`recbench.models.adhoc`).
    score_history = score_by_fold_in

    def similar_items(self, items: np.ndarray) -> np.ndarray:
        """``float32[len(items), n_items]``: cosine similarity of the item factors ``y_i``."""
        return cosine_similar(self.item_factors_, items)


class _Side:
    """One orientation of the observed pairs: CSR structure of rows -> columns, plus the map from
    these entries to the shared (user-major) prediction vector."""

    def __init__(
        self, indptr: np.ndarray, cols: np.ndarray, n_cols: int, order: np.ndarray | None, extra: np.ndarray
    ) -> None:
        self.counts = np.diff(indptr)
        self.order = order
        self.extra = extra  # c - 1 of the entries, in this side's order
        self.conf = 1.0 + extra
        self.dots = kernels.ObservedDots(indptr, cols, n_cols)
        # one matrix whose values are swapped in by spmm (no index validation or casting per call)
        self.matrix = sp.csr_matrix((extra.copy(), cols, indptr), shape=(len(indptr) - 1, n_cols))

    def spmm(self, values: np.ndarray, y: np.ndarray) -> np.ndarray:
        """``S @ y`` for the sparse matrix ``S`` with this structure and entry ``values``."""
        self.matrix.data = values.astype(np.float32, copy=False)
        return np.asarray(self.matrix @ y, dtype=np.float32)
