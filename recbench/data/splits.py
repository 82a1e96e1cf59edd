"""Split protocols: how interactions are divided into train, validation and test.

Every splitter is a small callable with keyword-only parameters stored verbatim (they come from
``configs/split/*.yaml``)::

    split = RandomHoldout(ratios=(0.8, 0.1, 0.1))(data, seed=42)
    split.train, split.val, split.test, split.test_history

All parts share the id space of ``data``. Everything is vectorised (no loop over users), and the
same ``seed`` always gives the same split.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from recbench.data.interactions import IdMaps, Interactions
from recbench.errors import ConfigError


@dataclass(frozen=True)
class Split:
    """Train, optional validation, and test parts of one dataset over one id space."""

    train: Interactions
    val: Interactions | None
    test: Interactions

    @cached_property
    def test_history(self) -> Interactions:
        """Train ∪ validation: what a model may know when it is scored on test (cached)."""
        return self.train if self.val is None else self.train.concat(self.val)


def check_ratios(ratios: Sequence[float], key: str = "split.ratios") -> tuple[float, ...]:
    """``ratios`` as floats: 2 (train, test) or 3 (train, val, test) positive values summing to 1."""
    try:
        values = tuple(float(r) for r in ratios)
    except (TypeError, ValueError):
        raise ConfigError(
            f"{key}={ratios!r} must be a list of 2 or 3 numbers, e.g. [0.8, 0.1, 0.1]."
        ) from None
    if isinstance(ratios, str) or len(values) not in (2, 3):
        raise ConfigError(
            f"{key}={list(values) if not isinstance(ratios, str) else ratios!r} must have 2 entries "
            "(train, test) or 3 entries (train, validation, test), e.g. [0.8, 0.1, 0.1]."
        )
    if any(not np.isfinite(v) or v <= 0 for v in values):
        raise ConfigError(f"{key}={list(values)}: every ratio must be a positive number.")
    if abs(sum(values) - 1.0) > 1e-6:
        raise ConfigError(f"{key}={list(values)} must sum to 1 (they sum to {sum(values):g}).")
    return values


def _int_param(value: object, key: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ConfigError(f"{key}={value!r} must be an integer >= {minimum}.")
    return int(value)


def _require_timestamps(data: Interactions, name: str) -> None:
    if data.timestamps is None:
        raise ConfigError(
            f"split={name} orders interactions by time, but this dataset has no timestamps. "
            "Choose split=random (or split=kfold), or a dataset with a timestamp column."
        )


def _parts(data: Interactions, part: np.ndarray, with_val: bool) -> Split:
    """Split from a per-row part label: 0 = train, 1 = validation, 2 = test, -1 = dropped."""
    return Split(
        train=data.select(part == 0),
        val=data.select(part == 1) if with_val else None,
        test=data.select(part == 2),
    )


class Splitter(ABC):
    """Common base: a splitter is ``splitter(data, *, seed, ids=None) -> Split``.

    ``folds`` returns every split the protocol defines; for all but :class:`KFold` that is the one
    split ``__call__`` returns.
    """

    @abstractmethod
    def __call__(self, data: Interactions, *, seed: int, ids: IdMaps | None = None) -> Split:
        """Split ``data``; ``seed`` drives any randomness, ``ids`` (raw ids) is unused by these protocols."""

    def folds(self, data: Interactions, *, seed: int, ids: IdMaps | None = None) -> list[Split]:
        """All splits of the protocol (one here; k for :class:`KFold`)."""
        return [self(data, seed=seed, ids=ids)]

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({args})"


def _position_in_user(users: np.ndarray, order: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For rows taken in ``order`` (grouped by user): 0-based position within the user and user size."""
    sorted_users = users[order]
    counts = np.bincount(sorted_users)
    starts = np.cumsum(counts) - counts
    pos = np.arange(len(order)) - starts[sorted_users]
    return pos, counts[sorted_users]


class RandomHoldout(Splitter):
    """Per-user random holdout: each user's interactions are shuffled and cut by ``ratios``.

    Rounding, for a user with ``n`` interactions: ``n_test = floor(r_test * n + 0.5)`` and
    ``n_val = floor(r_val * n + 0.5)`` (round half up), capped so that at least one interaction stays
    in train (test is served before validation); train takes the rest. So a user with one
    interaction only trains, and with ``(0.8, 0.1, 0.1)`` users need 5 interactions to get a test
    item. Two ratios mean train/test without validation (``val`` is ``None``).

    Parameters
    ----------
    ratios: ``(train, val, test)`` or ``(train, test)``, positive, summing to 1.
    """

    def __init__(self, *, ratios: Sequence[float] = (0.8, 0.1, 0.1)) -> None:
        self.ratios = ratios
        check_ratios(ratios)

    def __call__(self, data: Interactions, *, seed: int, ids: IdMaps | None = None) -> Split:
        ratios = check_ratios(self.ratios)
        rng = np.random.default_rng(seed)
        shuffled = rng.permutation(len(data))
        order = shuffled[np.argsort(data.users[shuffled], kind="stable")]
        pos, n = _position_in_user(data.users, order)
        n_test = np.minimum(np.floor(ratios[-1] * n + 0.5).astype(np.int64), n - 1)
        n_val = np.zeros_like(n)
        if len(ratios) == 3:
            n_val = np.minimum(np.floor(ratios[1] * n + 0.5).astype(np.int64), n - 1 - n_test)
        part = np.zeros(len(data), dtype=np.int8)
        part[order] = np.where(pos >= n - n_test, 2, np.where(pos >= n - n_test - n_val, 1, 0))
        return _parts(data, part, with_val=len(ratios) == 3)


class LeaveOneOut(Splitter):
    """Per user in time order: the last interaction is the test item, the one before it validation.

    Rows are ordered by timestamp with ties kept in input order (stable). A user needs 2
    interactions to get a test item and 3 (with ``validation``) to also get a validation item;
    users with fewer keep all of theirs in train. ``seed`` is accepted and unused (deterministic).

    Parameters
    ----------
    validation: hold out the second-to-last interaction as validation (``val`` is ``None`` otherwise).
    """

    def __init__(self, *, validation: bool = True) -> None:
        self.validation = validation
        if not isinstance(validation, (bool, np.bool_)):
            raise ConfigError(f"split.validation={validation!r} must be true or false.")

    def __call__(self, data: Interactions, *, seed: int, ids: IdMaps | None = None) -> Split:
        _require_timestamps(data, "loo")
        order = data.chronological_order()
        pos, n = _position_in_user(data.users, order)
        from_end = n - 1 - pos
        part = np.zeros(len(data), dtype=np.int8)
        test = (from_end == 0) & (n >= 2)
        val = (from_end == 1) & (n >= 3) & bool(self.validation)
        part[order] = np.where(test, 2, np.where(val, 1, 0))
        return _parts(data, part, with_val=bool(self.validation))


class TemporalHoldout(Splitter):
    """One global time cut: the oldest interactions train, the newest test.

    With the ``n`` rows sorted by time, the cuts fall after ``round(r_train * n)`` and
    ``round((r_train + r_val) * n)`` rows (half up); a cut that lands inside a run of equal
    timestamps moves to the nearer edge of the run, so equal timestamps always share a part and the
    parts are close to, not exactly, the ratios. With cut times ``c1 <= c2``, train holds
    ``ts < c1``, validation ``c1 <= ts < c2`` and test ``ts >= c2``. Nothing after a user's test time
    can be in train, by construction: the cut is global, so every train row is older than every
    validation and test row, for every user alike.

    Parameters
    ----------
    ratios: ``(train, val, test)`` or ``(train, test)`` shares of the rows, positive, summing to 1.
    drop_cold: remove validation/test rows whose user or item has no training interaction. Models
        can't score ids they never saw in training, so keeping those rows measures the cold-start
        fallback rather than the model; with ``False`` the parts partition the data exactly.
    """

    def __init__(self, *, ratios: Sequence[float] = (0.8, 0.1, 0.1), drop_cold: bool = True) -> None:
        self.ratios = ratios
        self.drop_cold = drop_cold
        check_ratios(ratios)
        if not isinstance(drop_cold, (bool, np.bool_)):
            raise ConfigError(f"split.drop_cold={drop_cold!r} must be true or false.")

    def __call__(self, data: Interactions, *, seed: int, ids: IdMaps | None = None) -> Split:
        _require_timestamps(data, "temporal")
        ratios = check_ratios(self.ratios)
        ts = data.timestamps
        assert ts is not None
        part = np.zeros(len(data), dtype=np.int8)
        if len(data):
            order = np.argsort(ts, kind="stable")
            sorted_ts = ts[order]
            # rows before each cut; a cut inside a run of equal timestamps moves to the nearer edge
            target = np.floor(np.cumsum(ratios)[:-1] * len(data) + 0.5).astype(np.int64)
            at = sorted_ts[np.minimum(target, len(data) - 1)]
            lo = np.searchsorted(sorted_ts, at, side="left")
            hi = np.searchsorted(sorted_ts, at, side="right")
            bounds = np.where(target - lo <= hi - target, lo, hi)
            part[order] = np.searchsorted(bounds, np.arange(len(data)), side="right")
            if len(ratios) == 2:
                part[part == 1] = 2
        if self.drop_cold:
            train = part == 0
            known_users = np.bincount(data.users[train], minlength=data.n_users) > 0
            known_items = np.bincount(data.items[train], minlength=data.n_items) > 0
            cold = ~(known_users[data.users] & known_items[data.items])
            part[~train & cold] = -1
        return _parts(data, part, with_val=len(ratios) == 3)


class KFold(Splitter):
    """k-fold cross-validation over interactions: a seeded shuffle dealt into ``folds`` equal folds.

    Split ``j`` tests on fold ``j`` and trains on the rest (no validation part). ``__call__`` returns
    split ``fold``; :meth:`folds` returns all of them.

    Parameters
    ----------
    folds: number of folds, >= 2 (kept as the attribute ``n_folds``: ``folds`` is the method).
    fold: which fold ``__call__`` tests on, ``0 <= fold < folds``.
    """

    def __init__(self, *, folds: int = 5, fold: int = 0) -> None:
        # stored as n_folds: an attribute named ``folds`` would hide the folds() method
        self.n_folds = folds
        self.fold = fold
        _int_param(folds, "split.folds", 2)
        if _int_param(fold, "split.fold", 0) >= folds:
            raise ConfigError(f"split.fold={fold} must be smaller than split.folds={folds}.")

    def __repr__(self) -> str:
        return f"KFold(folds={self.n_folds!r}, fold={self.fold!r})"

    def _assignment(self, data: Interactions, seed: int) -> np.ndarray:
        rng = np.random.default_rng(seed)
        fold_of = np.empty(len(data), dtype=np.int64)
        fold_of[rng.permutation(len(data))] = np.arange(len(data)) % self.n_folds
        return fold_of

    def __call__(self, data: Interactions, *, seed: int, ids: IdMaps | None = None) -> Split:
        fold_of = self._assignment(data, seed)
        return _parts(data, np.where(fold_of == self.fold, 2, 0), with_val=False)

    def folds(self, data: Interactions, *, seed: int, ids: IdMaps | None = None) -> list[Split]:
        """The ``folds`` splits, fold ``j`` as the test part of split ``j``."""
        fold_of = self._assignment(data, seed)
        return [_parts(data, np.where(fold_of == j, 2, 0), with_val=False) for j in range(self.n_folds)]
