"""A seeded, MovieLens-shaped synthetic dataset: the embedded default that works offline.

The generator (fully vectorised) plants the three kinds of structure that recommenders exploit:

- **Popularity**: item weights follow a power law over a random ranking of the items.
- **Taste clusters**: items and users belong to ``n_clusters`` latent clusters; with probability
  ``affinity`` an interaction is drawn from the user's own cluster (popularity-weighted), otherwise
  from the whole catalogue. Ratings (1..5) are higher on own-cluster items.
- **Order**: the items of each cluster lie on a hidden cyclic order. A user starts at a random point
  of it and consumes their own-cluster items along it, so the next item is predictable from the last
  ones (sequential models can beat popularity); off-cluster items land at random times.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from recbench.data.cache import params_key
from recbench.data.filters import Preprocess, encode
from recbench.data.interactions import IdMaps, Interactions
from recbench.errors import ConfigError

_EPOCH_2000 = 946_684_800
_SPAN_S = 3 * 365 * 86_400


class Synthetic:
    """Seeded synthetic interactions with popularity, cluster and sequential structure.

    Parameters
    ----------
    n_users, n_items:
        Size of the population and the catalogue.
    n_interactions:
        Target number of distinct (user, item) pairs; users who exhaust what they can draw get fewer.
    n_clusters:
        Number of latent taste clusters (each item and user belongs to one).
    seed:
        Different seeds give different data; the same seed gives identical data.
    popularity_exponent:
        Exponent ``a`` of the item weights ``rank**-a`` (0 = uniform popularity).
    affinity:
        Probability that an interaction comes from the user's own cluster.
    min_user_interactions:
        Every user gets at least this many interactions (activity is log-normal above it).
    preprocess:
        Filters applied after generation (see :class:`~recbench.data.filters.Preprocess`).
    """

    name = "synthetic"

    def __init__(
        self,
        *,
        n_users: int = 1000,
        n_items: int = 800,
        n_interactions: int = 60_000,
        n_clusters: int = 10,
        seed: int = 0,
        popularity_exponent: float = 1.0,
        affinity: float = 0.8,
        min_user_interactions: int = 5,
        preprocess: Preprocess | Mapping | None = None,
    ) -> None:
        self.n_users = n_users
        self.n_items = n_items
        self.n_interactions = n_interactions
        self.n_clusters = n_clusters
        self.seed = seed
        self.popularity_exponent = popularity_exponent
        self.affinity = affinity
        self.min_user_interactions = min_user_interactions
        self.preprocess = preprocess

    def cache_key(self) -> dict:
        """Class and parameters (the data is a pure function of them)."""
        return params_key(self)

    def load(self) -> tuple[Interactions, IdMaps]:
        """Generate, preprocess and id-encode the data."""
        frame = Preprocess.coerce(self.preprocess)(self.generate(), source="the synthetic dataset")
        return encode(frame)

    def _validate(self) -> None:
        checks = {
            "n_users": self.n_users >= 1,
            "n_clusters": 1 <= self.n_clusters <= self.n_items,
            "n_interactions": self.n_interactions >= self.n_users * self.min_user_interactions,
            "affinity": 0.0 <= self.affinity <= 1.0,
            "popularity_exponent": self.popularity_exponent >= 0,
            "min_user_interactions": 1 <= self.min_user_interactions <= self.n_items,
        }
        for key, ok in checks.items():
            if not ok:
                raise ConfigError(
                    f"synthetic dataset: {key}={getattr(self, key)!r} is out of range (need n_users >= 1, "
                    "1 <= n_clusters <= n_items, n_interactions >= n_users * min_user_interactions, "
                    "0 <= affinity <= 1, popularity_exponent >= 0, 1 <= min_user_interactions <= n_items)."
                )

    def generate(self) -> pd.DataFrame:
        """Raw frame (user, item, rating, timestamp) with raw ids starting at 1."""
        return self.generate_with_clusters()[0]

    def generate_with_clusters(self) -> tuple[pd.DataFrame, np.ndarray]:
        """:meth:`generate`'s frame and, per row, whether the item is in the user's own cluster."""
        self._validate()
        rng = np.random.default_rng(self.seed)
        n_users, n_items, n_clusters = int(self.n_users), int(self.n_items), int(self.n_clusters)
        # Items: cluster, place on the cluster's cyclic order (a table cluster x slot), power-law weight.
        item_cluster = rng.permutation(n_items) % n_clusters
        size = np.bincount(item_cluster, minlength=n_clusters)
        by_cluster = np.lexsort((rng.random(n_items), item_cluster))
        slot = np.empty(n_items, dtype=np.int64)
        slot[by_cluster] = np.arange(n_items) - np.repeat(np.cumsum(size) - size, size)
        members = np.full((n_clusters, size.max()), -1, dtype=np.int64)
        members[item_cluster, slot] = np.arange(n_items)
        position = slot / size[item_cluster]
        weight = (rng.permutation(n_items) + 1.0) ** -float(self.popularity_exponent)
        # Users: cluster and activity, split between their own cluster and the rest of the catalogue.
        user_cluster = rng.integers(n_clusters, size=n_users)
        target = self._activity(rng, n_users, n_items)
        own_size = size[user_cluster]
        n_own = np.minimum(np.rint(self.affinity * target).astype(np.int64), own_size)
        n_off = np.minimum(target - n_own, n_items - own_size)
        u_own, i_own = _own_cluster(rng, n_own, user_cluster, members, weight)
        u_off, i_off = _elsewhere(rng, n_off, user_cluster, item_cluster, weight)
        users, items = np.r_[u_own, u_off], np.r_[i_own, i_off]
        own = np.r_[np.ones(len(u_own), bool), np.zeros(len(u_off), bool)]
        # Order: own-cluster items along the cyclic order from the user's start, others at random.
        start = rng.random(n_users)
        key = np.where(own, (position[items] - start[users]) % 1.0, rng.random(len(users)))
        order = np.argsort(users + key, kind="stable")  # by user, then key in [0, 1)
        users, items, own = users[order], items[order], own[order]
        gaps = rng.exponential(6 * 3600.0, size=len(users)) + 60.0
        csum = np.cumsum(gaps)
        head = np.r_[0, np.flatnonzero(users[1:] != users[:-1]) + 1]
        begin = np.repeat(csum[head] - gaps[head], np.diff(np.r_[head, len(users)]))
        t0 = _EPOCH_2000 + rng.integers(0, _SPAN_S, size=n_users)
        timestamps = t0[users] + (csum - begin).astype(np.int64)
        # Ratings: higher on own-cluster items, plus item quality, user leniency and noise.
        quality = rng.normal(0.0, 0.5, n_items)
        leniency = rng.normal(0.0, 0.3, n_users)
        mean = 2.7 + 1.2 * own + quality[items] + leniency[users]
        ratings = np.clip(np.rint(mean + rng.normal(0.0, 0.6, len(users))), 1, 5)
        frame = pd.DataFrame(
            {"user": users + 1, "item": items + 1, "rating": ratings, "timestamp": timestamps}
        )
        return frame, own

    def _activity(self, rng: np.random.Generator, n_users: int, n_items: int) -> np.ndarray:
        """Interactions per user: ``min_user_interactions`` plus a log-normal share of the rest."""
        k = int(self.min_user_interactions)
        extra = min(int(self.n_interactions), n_users * n_items) - k * n_users
        share = rng.lognormal(0.0, 1.0, n_users)
        raw = extra * share / share.sum()
        for _ in range(20):  # water-filling: what users above the catalogue size lose goes to the others
            over = np.maximum(raw + k - n_items, 0.0)
            if over.sum() < 0.5:
                break
            raw -= over
            free = raw + k < n_items
            raw[free] += over.sum() * share[free] / share[free].sum()
        count = np.floor(raw).astype(np.int64)
        short = extra - int(count.sum())
        count[np.argsort(count - raw)[: max(short, 0)]] += 1
        return np.minimum(k + count, n_items)


_CHUNK_ENTRIES = 1 << 24  # Gumbel keys drawn and sorted at once in _own_cluster (64 MiB of float32)


def _own_cluster(
    rng: np.random.Generator,
    n_own: np.ndarray,
    user_cluster: np.ndarray,
    members: np.ndarray,
    weight: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """``n_own[u]`` distinct items of u's cluster, popularity-weighted (Gumbel top-k, no replacement).

    Users go in chunks of about :data:`_CHUNK_ENTRIES` keys, so memory does not grow with users x
    cluster size; the Gumbel draws are taken in the same order, so the result does not depend on it.
    """
    log_w = np.where(members >= 0, np.log(weight[members.clip(0)]), -np.inf).astype(np.float32)
    width = members.shape[1]
    step = max(1, _CHUNK_ENTRIES // max(width, 1))
    parts = []
    for lo in range(0, len(n_own), step):
        hi = min(len(n_own), lo + step)
        keys = log_w[user_cluster[lo:hi]] + rng.gumbel(size=(hi - lo, width)).astype(np.float32)
        ranked = np.argsort(-keys, axis=1)
        take = np.arange(width) < n_own[lo:hi, None]
        parts.append(members[user_cluster[lo:hi, None], ranked][take])
    items = np.concatenate(parts) if parts else np.zeros(0, dtype=members.dtype)
    return np.repeat(np.arange(len(n_own)), n_own), items


def _elsewhere(
    rng: np.random.Generator,
    n_off: np.ndarray,
    user_cluster: np.ndarray,
    item_cluster: np.ndarray,
    weight: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Up to ``n_off[u]`` distinct popularity-weighted items outside u's cluster (rejection, in rounds)."""
    n_items = len(weight)
    cum = np.cumsum(weight)
    keys = np.empty(0, dtype=np.int64)
    need = n_off.copy()
    for _ in range(4):
        du = np.repeat(np.arange(len(n_off)), np.ceil(need * 2.0).astype(np.int64))
        # i.i.d. draws: sorted needles make the search cache-friendly, the shuffle undoes the order.
        di = np.searchsorted(cum, np.sort(rng.random(len(du))) * cum[-1], side="right")
        di = np.minimum(di, n_items - 1)[rng.permutation(len(du))]
        ok = item_cluster[di] != user_cluster[du]
        new = _new_keys(du[ok] * n_items + di[ok], keys)
        # Keep all earlier pairs, then a random subset of the new ones up to n_off[u].
        users = new // n_items
        order = np.argsort(users + rng.random(len(new)), kind="stable")
        counts = np.bincount(users, minlength=len(n_off))
        rank = np.empty(len(new), dtype=np.int64)
        rank[order] = np.arange(len(new)) - np.repeat(np.cumsum(counts) - counts, counts)
        keys = np.r_[keys, new[rank < need[users]]]
        need = n_off - np.bincount(keys // n_items, minlength=len(n_off))
        if not need.any():
            break
    return keys // n_items, keys % n_items


def _new_keys(cand: np.ndarray, old: np.ndarray) -> np.ndarray:
    """Distinct values of ``cand`` not in ``old`` (sort-based; faster here than hashing)."""
    tagged = np.sort(np.r_[old * 2, cand * 2 + 1])
    first = np.r_[True, (tagged[1:] >> 1) != (tagged[:-1] >> 1)]
    return tagged[first & (tagged & 1 == 1)] >> 1
