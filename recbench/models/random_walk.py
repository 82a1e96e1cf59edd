"""RP3beta: the item-item random-walk model of Paudel et al. (P3alpha when ``beta = 0``)."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from recbench.data.interactions import Interactions
from recbench.errors import ConfigError
from recbench.models.adhoc import score_own_history
from recbench.models.base import Capabilities, Recommender
from recbench.models.similarity import BLOCK_ENTRIES, gram_blocks, matrix_rows, sparse_times_sparse, topk_rows


class RP3beta(Recommender):
    r"""Three-step random walk user -> item -> user -> item, re-ranked by item popularity.

    Paudel, Christoffel, Newell & Bernstein, "Updatable, Accurate, Diverse, and Scalable
    Recommendations for Interactive Applications", ACM TiiS 7(1), 2017; P3alpha is Cooper, Lee,
    Radecki & Sun, "Random Walks in Recommender Systems", WWW 2014 (``beta = 0``). With the binary
    training matrix :math:`X`, user degrees :math:`d_u` and item degrees :math:`d_i`, the one-step
    transition probabilities are :math:`P_{ui} = x_{ui}/d_u` and :math:`P_{iu} = x_{ui}/d_i`, and
    the item-item weight is

    .. math:: W_{ij} = \frac{\sum_u P_{iu}^{\alpha} P_{uj}^{\alpha}}{d_j^{\beta}},

    the probability of walking from :math:`i` to :math:`j` in two steps (each step sharpened by
    :math:`\alpha`), divided by :math:`j`'s popularity to the power :math:`\beta`. The diagonal is
    dropped and each row keeps its ``k`` largest weights (optionally rescaled to sum to one); a
    user's scores are :math:`x_u W`, so users and interactions added to ``history`` after
    training fold in. The weights are computed in row blocks
    (:func:`~recbench.models.similarity.gram_blocks`), never as a dense ``n_items x n_items`` matrix.

    Parameters
    ----------
    k:
        Neighbours kept per item (row of ``W``).
    alpha:
        Exponent of the transition probabilities (1 = the plain random walk).
    beta:
        Popularity penalty exponent; 0 gives P3alpha.
    normalize:
        Rescale each kept row of ``W`` to sum to one.
    """

    capabilities = Capabilities(history=True, explain=True, similar=True)
    score_history = score_own_history

    def __init__(
        self, *, k: int = 400, alpha: float = 1.0, beta: float = 0.6, normalize: bool = True
    ) -> None:
        self.k = k
        self.alpha = alpha
        self.beta = beta
        self.normalize = normalize

    def fit(self, train: Interactions, val: Interactions | None = None) -> RP3beta:
        """Top-``k`` rows of the popularity-penalised two-step transition matrix; returns ``self``."""
        if int(self.k) < 1 or float(self.alpha) <= 0 or float(self.beta) < 0:
            raise ConfigError(
                f"RP3beta: need k >= 1, alpha > 0 and beta >= 0 (got k={self.k!r}, alpha={self.alpha!r}, "
                f"beta={self.beta!r}); P3alpha is beta=0."
            )
        x = train.binary_csr.astype(np.float64)
        user_deg = np.asarray(x.sum(axis=1)).ravel()
        item_deg = np.asarray(x.sum(axis=0)).ravel()
        p_ui = sp.diags(_safe_inverse(user_deg)) @ x  # users x items, rows sum to 1
        p_iu = (x @ sp.diags(_safe_inverse(item_deg))).T.tocsr()  # items x users, rows sum to 1
        p_ui.data **= float(self.alpha)
        p_iu.data **= float(self.alpha)
        penalty = (np.where(item_deg > 0, item_deg, 1.0) ** -float(self.beta)).astype(np.float32)
        n = train.n_items
        block = max(1, BLOCK_ENTRIES // max(n, 1))
        rows, cols, vals = [], [], []
        # gram_blocks(a, b) gives a @ b.T in row blocks: here P_iu^a @ P_ui^a, items x items
        for lo, prod in gram_blocks(p_iu.astype(np.float32), p_ui.T.tocsr().astype(np.float32), block):
            weights = prod * penalty[None, :]
            local = np.arange(len(weights))
            weights[local, lo + local] = 0.0
            r, c, v = topk_rows(weights, min(int(self.k), n))
            rows.append(r + lo)
            cols.append(c)
            vals.append(v)
        w = sp.csr_matrix(
            (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
            shape=(n, n),
            dtype=np.float32,
        )
        if self.normalize:
            w = (sp.diags(_safe_inverse(np.asarray(w.sum(axis=1)).ravel())) @ w).astype(np.float32)
        w.sort_indices()
        self.weights_ = w.tocsr()
        return self

    def score(self, users: np.ndarray, history: Interactions) -> np.ndarray:
        """``float32[len(users), n_items]``: binary history rows times ``W``."""
        return sparse_times_sparse(history.binary_csr, self.weights_, rows=users)

    def similar_items(self, items: np.ndarray) -> np.ndarray:
        """``float32[len(items), n_items]``: the rows of ``W`` (where a walk from each item leads)."""
        return matrix_rows(self.weights_, items)


def _safe_inverse(values: np.ndarray) -> np.ndarray:
    """``1 / values`` with zeros kept at zero (users or items without interactions)."""
    return np.divide(1.0, values, out=np.zeros_like(values, dtype=np.float64), where=values > 0)
