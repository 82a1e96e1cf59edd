"""Sequence batching for the sequential models: cached histories, training windows and negatives.

All sequences come from :meth:`Interactions.sequences` (token ``0`` = padding, item ``i`` = token
``i + 1``, left padding, most recent items kept); nothing here pads or shifts ids by itself. Results
that depend only on an :class:`Interactions` object (its sequences, its positive set) are memoised per
object, so scoring many user batches against the same ``history`` builds its sequences once.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Hashable, Iterator
from typing import Any, TypeVar

import numpy as np
import torch

from recbench.data.interactions import Interactions
from recbench.training.samplers import PositiveSet, uniform_negatives

T = TypeVar("T")

#: Cells (users x positions) a full-length training matrix may hold before older items are dropped.
MAX_CELLS = 2**26

_MEMO: weakref.WeakKeyDictionary[Interactions, dict[Hashable, Any]] = weakref.WeakKeyDictionary()


def memo(data: Interactions, key: Hashable, build: Callable[[], T]) -> T:
    """``build()`` computed once per (``data`` object, ``key``); forgotten when ``data`` is freed."""
    entries = _MEMO.setdefault(data, {})
    if key not in entries:
        entries[key] = build()
    return entries[key]


def history_sequences(history: Interactions, max_len: int) -> np.ndarray:
    """``history.sequences(max_len)`` (``int64[n_users, max_len]``), computed once per history object."""
    return memo(history, ("sequences", max_len), lambda: history.sequences(max_len))


def full_sequences(
    train: Interactions, min_width: int, extra: int = 0, *, timestamps: bool = False
) -> np.ndarray:
    """Left-padded sequences wide enough for every user's whole history, plus ``extra`` pad columns.

    The width is the longest history, at least ``min_width``, and capped so that the matrix holds
    about :data:`MAX_CELLS` cells; beyond the cap only the most recent items of very long histories
    are used for training. ``timestamps=True`` gives the matching timestamp matrix instead (see
    :meth:`Interactions.sequences`).
    """
    longest = int(train.user_counts().max(initial=0))
    cap = max(min_width, MAX_CELLS // max(train.n_users, 1))
    width = max(min_width, min(longest, cap)) + extra
    return memo(
        train,
        ("full_sequences", width, timestamps),
        lambda: train.sequences(width, timestamps=timestamps),
    )


def rows_with(seqs: np.ndarray, min_items: int) -> np.ndarray:
    """Indices of the rows of ``seqs`` holding at least ``min_items`` real (non-padding) tokens."""
    return np.flatnonzero((seqs != 0).sum(axis=1) >= min_items)


def windows(seqs: np.ndarray, width: int, rng: np.random.Generator, *, crop: bool) -> np.ndarray:
    """``[n_rows, width]`` slices of the left-padded rows of ``seqs``.

    Without ``crop`` each row's most recent ``width`` tokens; with ``crop`` a window whose last
    position is drawn uniformly among those that keep the window full (a short history always
    gives its whole, left-padded sequence).
    """
    n, total = seqs.shape
    if width > total:
        raise ValueError(f"window width {width} exceeds the sequence width {total}")
    if not crop or total == width:
        return seqs[:, total - width :]
    lengths = (seqs != 0).sum(axis=1)
    first_end = np.minimum(total - lengths + width - 1, total - 1)
    ends = first_end + (rng.random(n) * (total - first_end)).astype(np.int64)
    cols = ends[:, None] - width + 1 + np.arange(width)
    return np.take_along_axis(seqs, cols, axis=1)


def tie_times(train: Interactions, min_width: int, extra: int = 0) -> np.ndarray | None:
    """The timestamps of :func:`full_sequences` when some user has two items at the same timestamp.

    ``None`` without timestamps or without any tie: :func:`shuffle_ties` would change nothing then.
    """
    if not train.has_timestamps:
        return None
    times = full_sequences(train, min_width, extra, timestamps=True)
    tied = memo(train, ("has_ties", times.shape[1]), lambda: bool(_has_ties(times)))
    return times if tied else None


def _has_ties(times: np.ndarray) -> bool:
    return bool(((times[:, 1:] == times[:, :-1]) & (times[:, 1:] >= 0)).any())


def shuffle_ties(seqs: np.ndarray, times: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``seqs`` with the items of each row that share a timestamp put in a random order.

    ``times`` holds the timestamp of each cell of ``seqs``, non-decreasing along each row (padding
    ``-1``, so it stays on the left).
    Items with distinct timestamps keep their order; items logged in the same second (a user rating
    a batch of films at once) have no true order, and presenting them in a new order each epoch
    keeps a model from learning the order in which the file happened to list them.
    """
    # rank the timestamps of each row (0, 1, 2, ... per new value): keys stay exact at any time unit
    ranks = np.zeros(times.shape, dtype=np.float64)
    np.cumsum(times[:, 1:] != times[:, :-1], axis=1, out=ranks[:, 1:])
    keys = ranks + rng.random(times.shape) * 0.5  # the jitter reorders items of equal rank only
    return np.take_along_axis(seqs, np.argsort(keys, axis=1, kind="stable"), axis=1)


def trim_padding(seqs: np.ndarray) -> np.ndarray:
    """``seqs`` without the leading columns that are padding in every row (at least one column kept).

    Only for models whose outputs do not depend on the amount of left padding (masked attention
    with right-aligned positions): it saves their work on batches of short histories.
    """
    real = np.flatnonzero((seqs != 0).any(axis=0))
    first = int(real[0]) if len(real) else seqs.shape[1] - 1
    return seqs[:, first:]


def length_sorted_chunks(seqs: np.ndarray, size: int = 256) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """``(rows, trim_padding(seqs[rows]))`` for chunks of ``size`` rows of similar history length.

    For padding-invariant models at scoring time: short histories are then run without the padding
    that the longest history of a batch would otherwise impose on all of them.
    """
    order = np.argsort((seqs != 0).sum(axis=1), kind="stable")
    for start in range(0, len(order), size):
        rows = order[start : start + size]
        yield rows, trim_padding(seqs[rows])


def shuffled_batches(n_rows: int, batch_size: int, rng: np.random.Generator) -> Iterator[np.ndarray]:
    """Row indices ``0..n_rows-1`` in a random order, cut into batches of ``batch_size``."""
    order = rng.permutation(n_rows)
    for start in range(0, n_rows, batch_size):
        yield order[start : start + batch_size]


def length_grouped_batches(
    lengths: np.ndarray, batch_size: int, rng: np.random.Generator, jitter: float = 0.25
) -> Iterator[np.ndarray]:
    """Row indices cut into batches of rows of similar ``lengths``, the batches in a random order.

    Rows are sorted by their length times a random factor in ``[1 - jitter, 1 + jitter]`` (drawn
    anew each call, so batches mix differently every epoch), cut into batches of ``batch_size`` and
    shuffled. For padding-invariant models this saves most of the work on padding: a batch is only
    as wide as its own longest row, and attention costs grow with the square of that width.
    """
    keys = lengths * (1.0 + jitter * (2.0 * rng.random(len(lengths)) - 1.0))
    order = np.argsort(keys, kind="stable")
    starts = np.arange(0, len(order), batch_size)
    for start in starts[rng.permutation(len(starts))]:
        yield order[start : start + batch_size]


def negative_tokens(
    train: Interactions, users: np.ndarray, n_per_user: int, rng: np.random.Generator
) -> np.ndarray:
    """``int64[len(users), n_per_user]`` tokens of items each user has not interacted with in ``train``."""
    positives = memo(train, "positive_set", lambda: PositiveSet(train.binary_csr))
    return uniform_negatives(positives, users, n_per_user, rng) + 1


#: Samplers of the sampled softmax's negatives (``model.sampler``).
SAMPLERS = ("uniform", "popularity")

#: The popularity sampler draws item ``i`` with probability proportional to
#: ``(count_i + 1) ** POPULARITY_ALPHA``.
POPULARITY_ALPHA = 0.75


class RowNegatives:
    """The negatives of the sampled softmax: ``n_negatives`` items drawn for every row of a batch.

    A row's positions (the next items of one user's sequence, the masked items of a BERT4Rec row, the
    targets of a Caser window) share its draws, and each row has draws of its own: a batch of 16 rows
    pushes down 16 x ``n_negatives`` sampled items per step for the cost of scoring ``n_negatives`` per
    position (one batched matrix product). On ml-100k this trains SASRec to the full softmax's quality,
    which a single draw shared by the whole batch did not (see the README).

    ``uniform`` draws every item with the same probability; ``popularity`` in proportion to its training
    count (smoothed, see :data:`POPULARITY_ALPHA`), so the frequent items that a full softmax pushes
    down most are drawn more often. Draws are with replacement and cost ``O(n_negatives)`` per row (plus
    a binary search per draw for ``popularity``), whatever the catalogue size. For ``popularity``,
    :meth:`add_to` also gives the log-probabilities of the negatives and of the targets, which the loss
    subtracts from their logits (the log-q correction of sampled softmax); for ``uniform`` they are
    all equal and cancel, so none are given.
    """

    def __init__(self, train: Interactions, n_negatives: int, sampler: str) -> None:
        self.n_items, self.n_negatives = train.n_items, int(n_negatives)
        self.cdf: np.ndarray | None = None
        self.log_q: np.ndarray | None = None
        if sampler == "popularity":
            weights = (train.item_counts().astype(np.float64) + 1.0) ** POPULARITY_ALPHA
            probs = weights / weights.sum()
            self.cdf = np.cumsum(probs)
            self.log_q = np.log(probs).astype(np.float32)

    def draw(self, rng: np.random.Generator, rows: int) -> np.ndarray:
        """``int64[rows, n_negatives]`` item tokens (``1..n_items``)."""
        shape = (int(rows), self.n_negatives)
        if self.cdf is None:
            return rng.integers(1, self.n_items + 1, size=shape, dtype=np.int64)
        items = np.searchsorted(self.cdf, rng.random(shape) * self.cdf[-1], side="right")
        return np.minimum(items, self.n_items - 1).astype(np.int64) + 1

    def add_to(self, batch: dict[str, torch.Tensor], targets: np.ndarray, rng: np.random.Generator) -> None:
        """Put ``row_negatives`` ``[rows, n_negatives]`` for the rows of ``targets`` ``[rows, ...]`` into
        ``batch`` (and, for ``popularity``, ``negative_log_q`` shaped like them and ``target_log_q``
        shaped like ``targets``, ``0`` where there is no target)."""
        negatives = self.draw(rng, len(targets))
        batch["row_negatives"] = torch.from_numpy(negatives)
        if self.log_q is not None:
            batch["negative_log_q"] = torch.from_numpy(self.log_q[negatives - 1])
            batch["target_log_q"] = torch.from_numpy(np.where(targets > 0, self.log_q[targets - 1], 0.0))


def row_negatives(train: Interactions, n_negatives: int, sampler: str) -> RowNegatives:
    """The :class:`RowNegatives` of ``train`` (built once per training set and setting)."""
    return memo(
        train,
        ("row_negatives", int(n_negatives), sampler),
        lambda: RowNegatives(train, n_negatives, sampler),
    )


def next_item_batches(
    train: Interactions,
    max_len: int,
    batch_size: int,
    rng: np.random.Generator,
    *,
    crop: bool,
    negatives: bool,
    trim: bool = False,
    ties: bool = False,
    negatives_of_rows: RowNegatives | None = None,
) -> Iterator[dict[str, torch.Tensor]]:
    """One epoch of causal next-item training batches, one row per user (all positions at once).

    Each row is a window of ``max_len + 1`` tokens: ``seqs`` is its first ``max_len`` tokens and
    ``targets`` the same shifted by one (``0`` where the input is padding, so a user's first item is
    never a target). With ``negatives``, ``negatives`` holds one sampled unseen item per position.
    ``trim`` (for padding-invariant models only) groups users of similar history length into batches
    (see :func:`length_grouped_batches`) and drops the columns that are padding in every row of a
    batch (see :func:`trim_padding`). ``ties`` reorders the items of each user that share a
    timestamp at random each epoch (see :func:`shuffle_ties`; nothing changes without ties).
    ``negatives_of_rows`` adds the sampled softmax's negatives of every row (see :class:`RowNegatives`).
    Users with fewer than two training items are skipped.
    """
    seqs = full_sequences(train, max_len + 1)
    times = tie_times(train, max_len + 1) if ties else None
    rows = memo(train, ("rows", seqs.shape[1], 2), lambda: rows_with(seqs, 2))
    if trim:
        lengths = memo(train, ("row_lengths", seqs.shape[1]), lambda: (seqs[rows] != 0).sum(axis=1))
        lengths = np.minimum(lengths, max_len + 1)  # a window holds at most max_len + 1 items
        order: Iterator[np.ndarray] = length_grouped_batches(lengths, batch_size, rng)
    else:
        order = shuffled_batches(len(rows), batch_size, rng)
    for idx in order:
        batch = user_window_batch(seqs, times, rows[idx], max_len, rng, crop=crop, trim=trim)
        inputs = batch["seqs"].numpy()
        if negatives:
            batch["negatives"] = torch.from_numpy(negative_tokens(train, rows[idx], inputs.shape[1], rng))
        if negatives_of_rows is not None:
            negatives_of_rows.add_to(batch, batch["targets"].numpy(), rng)
        yield batch


def user_window_batch(
    seqs: np.ndarray,
    times: np.ndarray | None,
    users: np.ndarray,
    max_len: int,
    rng: np.random.Generator,
    *,
    crop: bool,
    trim: bool = False,
) -> dict[str, torch.Tensor]:
    """``seqs`` (inputs) and ``targets`` ``[len(users), max_len]`` of the ``users``' rows of ``seqs``
    (:func:`full_sequences` of width ``max_len + 1``), as :func:`next_item_batches` builds them: ties
    shuffled when ``times`` is given, one window per user, all-padding columns dropped with ``trim``."""
    full = seqs[users] if times is None else shuffle_ties(seqs[users], times[users], rng)
    win = windows(full, max_len + 1, rng, crop=crop)
    inputs, targets = win[:, :-1], win[:, 1:]
    if trim:
        first = inputs.shape[1] - trim_padding(inputs).shape[1]
        inputs, targets = inputs[:, first:], targets[:, first:]
    return {
        "seqs": torch.from_numpy(np.ascontiguousarray(inputs)),
        "targets": torch.from_numpy(np.where(inputs == 0, 0, targets)),
    }
