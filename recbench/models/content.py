"""Content-based item-item recommendation: :class:`ContentKNN` (cosine of item feature vectors).

An item's neighbours come from what it *is* (genres, TF-IDF text from ``text=tfidf``, any item
feature field), not from who interacted with it, so an item nobody has interacted with yet gets
neighbours and scores like any other: the cold-start baseline of content-based filtering
(Lops, de Gemmis & Semeraro, "Content-based recommender systems", Recommender Systems Handbook 2011).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from recbench.data.interactions import Interactions
from recbench.errors import ConfigError
from recbench.models.base import Capabilities, Recommender
from recbench.models.similarity import matrix_rows, topk_similarity


class ContentKNN(Recommender):
    """Item-item cosine similarity of item feature rows, top-``k`` neighbours per item.

    ``score(u, i) = sum over j in history(u) of sim(i, j)``, where ``sim(i, .)`` keeps the ``k``
    items most similar to ``i``. ``similar_items`` returns the same similarities.

    Parameters
    ----------
    k:
        Neighbours kept per item.
    """

    capabilities = Capabilities(needs_features=True, similar=True)

    def __init__(self, *, k: int = 100) -> None:
        self.k = k

    def fit(self, train: Interactions, val: Interactions | None = None) -> ContentKNN:
        """Cosine top-``k`` similarities between the items' feature rows (interactions are not used)."""
        if isinstance(self.k, bool) or not isinstance(self.k, int) or self.k < 1:
            raise ConfigError(f"model.k={self.k!r} must be an integer >= 1.")
        if train.item_features is None:
            raise ConfigError(
                "model=content_knn compares items by their features, but the dataset loaded none. Give "
                "your own CSV file (an 'id' column, then one column per field) with `features=default "
                "features.item_file=items.csv`, use a dataset with item features (`dataset=ml-100k`), or "
                "add the items' text with `text=tfidf` (on a dataset with item texts)."
            )
        values = sp.csr_matrix(train.item_features.matrix, dtype=np.float32)
        binary = values.copy()
        binary.data[:] = 1.0
        k = min(self.k, max(train.n_items - 1, 1))
        self.similarity_ = topk_similarity(values, similarity="cosine", k=k, binary=binary)
        return self

    def score(self, users: np.ndarray, history: Interactions) -> np.ndarray:
        """``float32[len(users), n_items]``: the users' histories times the item similarities."""
        rows = history.binary_csr[np.asarray(users, dtype=np.int64)]
        return (rows @ self.similarity_.T).toarray().astype(np.float32)

    def similar_items(self, items: np.ndarray) -> np.ndarray:
        """``float32[len(items), n_items]``: each item's kept content similarities (0 elsewhere)."""
        return matrix_rows(self.similarity_, items)
