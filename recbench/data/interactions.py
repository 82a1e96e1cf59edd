"""The one in-memory data type: user-item feedback as parallel numpy arrays over dense ids."""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cached_property

import numpy as np
import scipy.sparse as sp


@dataclass(frozen=True, eq=False)
class FeatureTable:
    """Side features of users or items over the dense id space, one-hot / multi-hot encoded.

    Parameters
    ----------
    matrix:
        ``float32`` sparse ``[n_entities, n_columns]``; categorical fields are one-hot (1.0), multi-valued
        fields (genres, tags) multi-hot with weights summing to 1 per entity, numeric fields bucketised.
    column_field:
        ``int64[n_columns]``: the field each column belongs to (index into ``fields``).
    fields:
        Field names, e.g. ``("age", "gender", "occupation")``.
    columns:
        Column names, e.g. ``("gender=F", "gender=M", ...)``.
    """

    matrix: sp.csr_matrix
    column_field: np.ndarray
    fields: tuple[str, ...]
    columns: tuple[str, ...]

    @property
    def n_columns(self) -> int:
        """Number of encoded feature columns."""
        return int(self.matrix.shape[1])


@dataclass(frozen=True, eq=False)
class Interactions:
    """Feedback as parallel arrays over a dense id space fixed for the whole dataset.

    Ids are encoded once on the filtered full dataset, before splitting, so every part of a
    split shares ``n_users`` and ``n_items``.

    Parameters
    ----------
    users, items:
        ``int64[n]`` with ``0 <= u < n_users`` and ``0 <= i < n_items``.
    n_users, n_items:
        Size of the id spaces (may exceed the largest id present in this part).
    ratings:
        ``float32[n]`` explicit ratings, or ``None`` for implicit feedback.
    timestamps:
        ``int64[n]`` seconds, or ``None``; required by temporal splits and sequential models.
    user_features, item_features:
        Optional :class:`FeatureTable` side information over the whole id space; every part of a
        split shares them (feature-aware models such as FM and DeepFM read them).
    """

    users: np.ndarray
    items: np.ndarray
    n_users: int
    n_items: int
    ratings: np.ndarray | None = None
    timestamps: np.ndarray | None = None
    user_features: FeatureTable | None = None
    item_features: FeatureTable | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "users", np.ascontiguousarray(self.users, dtype=np.int64))
        object.__setattr__(self, "items", np.ascontiguousarray(self.items, dtype=np.int64))
        if self.ratings is not None:
            object.__setattr__(self, "ratings", np.ascontiguousarray(self.ratings, dtype=np.float32))
        if self.timestamps is not None:
            object.__setattr__(self, "timestamps", np.ascontiguousarray(self.timestamps, dtype=np.int64))
        n = len(self.users)
        for name in ("items", "ratings", "timestamps"):
            arr = getattr(self, name)
            if arr is not None and len(arr) != n:
                raise ValueError(f"Interactions.{name} has {len(arr)} entries but users has {n}")
        if n and (self.users.min() < 0 or self.users.max() >= self.n_users):
            raise ValueError(f"user ids must lie in [0, {self.n_users})")
        if n and (self.items.min() < 0 or self.items.max() >= self.n_items):
            raise ValueError(f"item ids must lie in [0, {self.n_items})")

    def __len__(self) -> int:
        return len(self.users)

    @property
    def has_ratings(self) -> bool:
        """Whether explicit ratings are present."""
        return self.ratings is not None

    @property
    def has_timestamps(self) -> bool:
        """Whether timestamps are present."""
        return self.timestamps is not None

    def select(self, mask: np.ndarray) -> Interactions:
        """Rows where ``mask`` (bool[n] or an index array) holds, over the same id space."""
        return Interactions(
            users=self.users[mask],
            items=self.items[mask],
            n_users=self.n_users,
            n_items=self.n_items,
            ratings=None if self.ratings is None else self.ratings[mask],
            timestamps=None if self.timestamps is None else self.timestamps[mask],
            user_features=self.user_features,
            item_features=self.item_features,
        )

    def concat(self, other: Interactions) -> Interactions:
        """Rows of ``self`` followed by rows of ``other`` (same id space required)."""
        if (self.n_users, self.n_items) != (other.n_users, other.n_items):
            raise ValueError("cannot concatenate Interactions over different id spaces")

        def cat(a: np.ndarray | None, b: np.ndarray | None) -> np.ndarray | None:
            return None if a is None or b is None else np.concatenate([a, b])

        return Interactions(
            users=np.concatenate([self.users, other.users]),
            items=np.concatenate([self.items, other.items]),
            n_users=self.n_users,
            n_items=self.n_items,
            ratings=cat(self.ratings, other.ratings),
            timestamps=cat(self.timestamps, other.timestamps),
            user_features=self.user_features,
            item_features=self.item_features,
        )

    def with_features(
        self, user_features: FeatureTable | None, item_features: FeatureTable | None
    ) -> Interactions:
        """The same interactions carrying the given side features."""
        for table, n, what in ((user_features, self.n_users, "user"), (item_features, self.n_items, "item")):
            if table is not None and table.matrix.shape[0] != n:
                raise ValueError(f"{what} features have {table.matrix.shape[0]} rows, expected {n}")
        return replace(self, user_features=user_features, item_features=item_features)

    @cached_property
    def csr(self) -> sp.csr_matrix:
        """``float32`` users x items matrix; values are ratings (or 1.0). Duplicates keep the last value."""
        values = self.ratings if self.ratings is not None else np.ones(len(self), dtype=np.float32)
        shape = (self.n_users, self.n_items)
        # scipy sums duplicated (user, item) pairs; when none repeats (the usual case: the loaders
        # deduplicate), nothing was summed and this direct build, linear in the interactions, is the matrix
        mat = sp.csr_matrix((values.astype(np.float32), (self.users, self.items)), shape=shape)
        if mat.nnz == len(self):
            mat.sort_indices()
            return mat
        # Keep the last occurrence of a duplicated (user, item) pair rather than summing them.
        key = self.users * self.n_items + self.items
        _, last = np.unique(key[::-1], return_index=True)
        keep = len(key) - 1 - last
        mat = sp.csr_matrix(
            (values[keep].astype(np.float32), (self.users[keep], self.items[keep])), shape=shape
        )
        mat.sort_indices()
        return mat

    @cached_property
    def binary_csr(self) -> sp.csr_matrix:
        """Like :attr:`csr` but with every stored value 1.0 (implicit view)."""
        mat = self.csr.copy()
        mat.data[:] = 1.0
        return mat

    def item_counts(self) -> np.ndarray:
        """``int64[n_items]``: number of interactions per item (popularity)."""
        return np.bincount(self.items, minlength=self.n_items)

    def user_counts(self) -> np.ndarray:
        """``int64[n_users]``: number of interactions per user."""
        return np.bincount(self.users, minlength=self.n_users)

    def chronological_order(self) -> np.ndarray:
        """Stable order by (user, timestamp), ties kept in input order; by user only without timestamps."""
        if self.timestamps is None:
            return np.argsort(self.users, kind="stable")
        return np.lexsort((self.timestamps, self.users))

    def sequences(self, max_len: int, *, timestamps: bool = False) -> np.ndarray:
        """``int64[n_users, max_len]`` time-ordered item histories, left-padded with 0, ids shifted by +1.

        This is the one place where the padding id 0 and the +1 shift are defined. Only the most
        recent ``max_len`` items of each user are kept. With ``timestamps=True`` the cells hold the
        interactions' timestamps instead of item tokens (padding ``-1``; requires timestamps), aligned
        cell for cell with the item matrix.
        """
        order = self.chronological_order()
        users = self.users[order]
        if timestamps:
            if self.timestamps is None:
                raise ValueError("these interactions have no timestamps")
            values, pad = self.timestamps[order], -1
        else:
            values, pad = self.items[order] + 1, 0
        counts = np.bincount(users, minlength=self.n_users)
        ends = np.cumsum(counts)
        # position of each interaction counted from the end of its user's sequence (0 = most recent)
        from_end = ends[users] - 1 - np.arange(len(users))
        keep = from_end < max_len
        out = np.full((self.n_users, max_len), pad, dtype=np.int64)
        out[users[keep], max_len - 1 - from_end[keep]] = values[keep]
        return out


@dataclass(frozen=True)
class IdMaps:
    """Raw ids of the dense users and items: ``users[u]`` is the original id of dense user ``u``.

    ``item_titles`` holds human-readable names (MovieLens titles) when the source has them.
    """

    users: np.ndarray
    items: np.ndarray
    item_titles: np.ndarray | None = None

    def user_index(self, raw: object) -> int:
        """Dense id of raw user id ``raw`` (compared as strings); ``KeyError`` when unknown."""
        return _lookup(self.users, raw, "user")

    def item_index(self, raw: object) -> int:
        """Dense id of raw item id ``raw`` (compared as strings); ``KeyError`` when unknown."""
        return _lookup(self.items, raw, "item")


def _lookup(ids: np.ndarray, raw: object, what: str) -> int:
    hits = np.flatnonzero(ids.astype(str) == str(raw))
    if len(hits) == 0:
        raise KeyError(f"unknown {what} id {raw!r}")
    return int(hits[0])
