"""Non-personalised sanity baselines: :class:`Popularity` and :class:`Random`.

Every benchmark table should carry both: a personalised model that does not beat popularity is
broken or untuned, and anything at the level of random scores has learned nothing.
"""

from __future__ import annotations

import numpy as np

from recbench.data.interactions import Interactions
from recbench.models.adhoc import score_own_history
from recbench.models.base import Capabilities, Recommender


class Popularity(Recommender):
    """Most-popular recommender: an item's score is its number of training interactions.

    The classic non-personalised baseline (e.g. Cremonesi, Koren & Turrin, "Performance of
    recommender algorithms on top-N recommendation tasks", RecSys 2010, "TopPop"). Every user
    receives the same scores; the evaluator removes items the user has already seen.
    """

    capabilities = Capabilities(history=True, explain=True, concurrent_score=True)

    def __init__(self) -> None:
        pass

    def fit(self, train: Interactions, val: Interactions | None = None) -> Popularity:
        """Count interactions per item in ``train`` (duplicated pairs count once each row)."""
        self.n_items_ = train.n_items
        self.item_counts_ = train.item_counts().astype(np.float32)
        return self

    def score(self, users: np.ndarray, history: Interactions) -> np.ndarray:
        """``float32[len(users), n_items]``: the training counts repeated for every user."""
        users = np.asarray(users, dtype=np.int64)
        return np.broadcast_to(self.item_counts_, (len(users), self.n_items_)).copy()

    #: The same counts for any session: the fallback of a service (see :mod:`recbench.models.adhoc`).
    score_history = score_own_history


class Random(Recommender):
    """Uniformly random scores in ``[0, 1)``: the floor every model must beat.

    Scores are a counter-based hash of ``(seed, user, item)`` (the SplitMix64 finaliser of
    Steele, Lea & Flood, "Fast splittable pseudorandom number generators", OOPSLA 2014), so a user's
    scores depend only on ``seed`` and the user id, not on the batch the user is scored in.

    Parameters
    ----------
    seed:
        Seed of the score hash; the same seed gives the same scores.
    """

    def __init__(self, *, seed: int = 0) -> None:
        self.seed = seed

    def fit(self, train: Interactions, val: Interactions | None = None) -> Random:
        """Record the item count and derive the hash offset from ``seed``."""
        self.n_items_ = train.n_items
        self.offset_ = int(_splitmix64(np.array([self.seed], dtype=np.uint64))[0])
        return self

    def score(self, users: np.ndarray, history: Interactions) -> np.ndarray:
        """``float32[len(users), n_items]`` pseudo-random scores, fixed per (seed, user, item)."""
        users = np.asarray(users, dtype=np.uint64)
        items = np.arange(self.n_items_, dtype=np.uint64)
        with np.errstate(over="ignore"):
            keys = users[:, None] * np.uint64(self.n_items_) + items[None, :] + np.uint64(self.offset_)
        bits = _splitmix64(keys) >> np.uint64(40)  # top 24 bits: exactly representable in float32
        return (bits.astype(np.float32) * np.float32(2.0**-24)).astype(np.float32)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser applied element-wise to ``uint64`` values (wrap-around arithmetic)."""
    with np.errstate(over="ignore"):
        z = x + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))
