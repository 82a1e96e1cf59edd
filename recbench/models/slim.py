"""SLIM: sparse linear item-item model, one non-negative ElasticNet per item (scikit-learn)."""

from __future__ import annotations

import os
import warnings
from typing import Any

import numpy as np
import scipy.sparse as sp

from recbench.data.interactions import Interactions
from recbench.errors import ConfigError, RecbenchError
from recbench.models.adhoc import score_own_history
from recbench.models.base import Capabilities, Recommender
from recbench.models.similarity import matrix_rows, sparse_times_sparse, topk_rows

#: Items per task handed to a worker thread (each worker fits its items on a private matrix copy).
_CHUNK = 64


class SLIM(Recommender):
    r"""Sparse LInear Method (Ning & Karypis, "SLIM: Sparse Linear Methods for Top-N Recommender
    Systems", ICDM 2011), in the ElasticNet form of the reproducibility studies (Ferrari Dacrema,
    Cremonesi & Jannach, RecSys 2019).

    For every item :math:`j` the column :math:`w_j` of the item-item matrix :math:`W` solves

    .. math:: \min_{w \ge 0,\; w_j = 0}\; \frac{1}{2n}\|x_j - X w\|^2
              + a\,\rho\,\|w\|_1 + \frac{a (1 - \rho)}{2}\|w\|^2,

    with :math:`X` the binary ``users x items`` training matrix, :math:`n` its number of rows,
    :math:`a` = ``alpha`` and :math:`\rho` = ``l1_ratio``: exactly scikit-learn's
    ``ElasticNet(positive=True, fit_intercept=False)`` fitted on :math:`X` with column :math:`j`
    zeroed. Each column keeps its ``k`` largest weights; scores are :math:`x_u W`, so users and
    interactions added to ``history`` after training fold in.

    The items are fitted in parallel by a thread pool (``n_jobs`` threads; scikit-learn's
    coordinate descent runs without the GIL), each thread on its own copy of :math:`X`.
    Needs scikit-learn: ``pip install "recbench[linear]"``.

    Parameters
    ----------
    alpha:
        Overall penalty weight :math:`a`.
    l1_ratio:
        Share :math:`\rho` of the L1 penalty (1 = lasso, 0 = ridge).
    k:
        Largest weights kept per item column.
    max_iter, tol:
        Coordinate-descent iterations and tolerance of each ElasticNet.
    n_jobs:
        Worker threads; ``None`` = every core this process may use.
    """

    capabilities = Capabilities(history=True, explain=True, similar=True)
    score_history = score_own_history

    def __init__(
        self,
        *,
        alpha: float = 0.02,
        l1_ratio: float = 0.05,
        k: int = 200,
        max_iter: int = 100,
        tol: float = 1e-3,
        n_jobs: int | None = None,
    ) -> None:
        self.alpha = alpha
        self.l1_ratio = l1_ratio
        self.k = k
        self.max_iter = max_iter
        self.tol = tol
        self.n_jobs = n_jobs

    def fit(self, train: Interactions, val: Interactions | None = None) -> SLIM:
        """One ElasticNet per item (parallel threads), top-``k`` weights per column; returns ``self``."""
        if float(self.alpha) <= 0 or not 0.0 <= float(self.l1_ratio) <= 1.0 or int(self.k) < 1:
            raise ConfigError(
                f"SLIM: need alpha > 0, 0 <= l1_ratio <= 1 and k >= 1 (got alpha={self.alpha!r}, "
                f"l1_ratio={self.l1_ratio!r}, k={self.k!r})."
            )
        make = _elastic_net_factory(self)
        x = train.binary_csr.astype(np.float64).tocsc()
        x.sort_indices()
        n = x.shape[1]
        chunks = [np.arange(lo, min(n, lo + _CHUNK)) for lo in range(0, n, _CHUNK)]
        workers = _workers(self.n_jobs, len(chunks))
        from concurrent.futures import ThreadPoolExecutor

        parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        copies = [x.copy() for _ in range(workers)]
        with ThreadPoolExecutor(max_workers=workers) as pool:
            # worker w handles chunks w, w + workers, ... on its own copy (no shared mutation)
            futures = [
                pool.submit(_fit_chunks, copies[w], chunks[w::workers], make, int(self.k))
                for w in range(workers)
            ]
            for future in futures:
                parts.extend(future.result())
        rows = np.concatenate([p[0] for p in parts])
        cols = np.concatenate([p[1] for p in parts])
        vals = np.concatenate([p[2] for p in parts])
        w = sp.csr_matrix((vals.astype(np.float32), (rows, cols)), shape=(n, n), dtype=np.float32)
        w.sort_indices()
        self.weights_ = w
        return self

    def score(self, users: np.ndarray, history: Interactions) -> np.ndarray:
        """``float32[len(users), n_items]``: binary history rows times ``W``."""
        return sparse_times_sparse(history.binary_csr, self.weights_, rows=users)

    def similar_items(self, items: np.ndarray) -> np.ndarray:
        """``float32[len(items), n_items]``: how much each item's presence raises every other item's score."""
        return matrix_rows(self.weights_, items)


def _elastic_net_factory(model: SLIM) -> Any:
    try:
        from sklearn.linear_model import ElasticNet
    except ImportError as exc:
        raise RecbenchError(
            f"model=slim fits scikit-learn's ElasticNet, but scikit-learn is not installed ({exc}). "
            'Install it with: pip install "recbench[linear]" (or pip install scikit-learn).'
        ) from None

    def make() -> Any:
        return ElasticNet(
            alpha=float(model.alpha),
            l1_ratio=float(model.l1_ratio),
            positive=True,
            fit_intercept=False,
            copy_X=False,
            precompute=False,
            selection="cyclic",
            max_iter=int(model.max_iter),
            tol=float(model.tol),
        )

    return make


def _fit_chunks(
    x: sp.csc_matrix, chunks: list[np.ndarray], make: Any, k: int
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Fit the items of ``chunks`` on ``x`` (column ``j`` zeroed while item ``j`` is fitted)."""
    from sklearn.exceptions import ConvergenceWarning

    net = make()
    out = []
    dense_y = np.zeros(x.shape[0], dtype=np.float64)
    for chunk in chunks:
        coefs = np.zeros((len(chunk), x.shape[1]), dtype=np.float64)
        for pos, j in enumerate(chunk):
            lo, hi = x.indptr[j], x.indptr[j + 1]
            if lo == hi:
                continue  # an item nobody has: its column stays empty
            saved = x.data[lo:hi].copy()
            dense_y[:] = 0.0
            dense_y[x.indices[lo:hi]] = saved
            x.data[lo:hi] = 0.0
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                net.fit(x, dense_y, check_input=False)
            x.data[lo:hi] = saved
            coefs[pos] = net.coef_
        r, c, v = topk_rows(coefs, min(k, x.shape[1]))
        out.append((c, chunk[r], v))  # coefs row pos is column chunk[pos] of W: W[c, chunk[r]]
    return out


def _workers(n_jobs: int | None, n_tasks: int) -> int:
    if n_jobs is None or int(n_jobs) < 1:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    else:
        cores = int(n_jobs)
    return max(1, min(cores, n_tasks))
