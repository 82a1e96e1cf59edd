"""Cold-start protocols: a seeded share of items (or users) is held out entirely for testing.

``ColdItems(fraction=0.2)(data, seed=0)`` puts every interaction of 20% of the items in ``test``
and everything else in ``train`` (optionally minus a per-user random validation holdout of the warm
data). No cold item (user) appears in train or validation, so a model can only score it from side
features; an id-only model is left with its untrained (or absent) id parameters.

The test part contains only cold items, but the evaluator ranks every item, so a ranking over the
whole catalogue mostly measures how far a model pushes unseen items down. The usual cold-start
measure ranks the cold items among themselves: wrap the model in
:class:`~recbench.evaluation.candidates.CandidateScorer` with :func:`cold_items` of the split
(``evaluate(CandidateScorer(model, cold), split.test, ...)``).
"""

from __future__ import annotations

from numbers import Real

import numpy as np

from recbench.data.interactions import IdMaps, Interactions
from recbench.data.splits import RandomHoldout, Split, Splitter
from recbench.errors import ConfigError


def _fraction(value: object, key: str, *, allow_zero: bool) -> float:
    ok = isinstance(value, Real) and not isinstance(value, bool) and np.isfinite(float(value))
    low_ok = ok and (float(value) >= 0 if allow_zero else float(value) > 0)
    if not (ok and low_ok and float(value) < 1):
        bound = "0 <= x < 1" if allow_zero else "0 < x < 1"
        raise ConfigError(f"{key}={value!r} must be a number with {bound}, e.g. 0.2.")
    return float(value)


def _pick(present: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """A seeded ``round(fraction * len(present))`` subset (at least one, never all) of ``present``."""
    n = int(np.floor(fraction * len(present) + 0.5))
    n = min(max(n, 1), len(present) - 1) if len(present) > 1 else 0
    return np.sort(rng.permutation(present)[:n])


def _warm_split(data: Interactions, cold_rows: np.ndarray, val_fraction: float, seed: int) -> Split:
    warm = data.select(~cold_rows)
    test = data.select(cold_rows)
    if val_fraction <= 0:
        return Split(train=warm, val=None, test=test)
    inner = RandomHoldout(ratios=(1.0 - val_fraction, val_fraction))(warm, seed=seed)
    return Split(train=inner.train, val=inner.test, test=test)


class ColdItems(Splitter):
    """Item cold start: ``fraction`` of the items (those with interactions) appear only in test.

    Parameters
    ----------
    fraction: share of the items that become cold, ``0 < fraction < 1`` (rounded half up, at least one).
    val_fraction: share of each user's warm interactions held out as validation (random, seeded;
        every user keeps at least one training interaction); ``0`` means no validation part.
    """

    def __init__(self, *, fraction: float = 0.2, val_fraction: float = 0.0) -> None:
        self.fraction = fraction
        self.val_fraction = val_fraction
        _fraction(fraction, "split.fraction", allow_zero=False)
        _fraction(val_fraction, "split.val_fraction", allow_zero=True)

    def cold_candidates(self, split: Split) -> np.ndarray:
        """Items to rank in the cold-start evaluation: the test items unseen in training."""
        return cold_items(split)

    def __call__(self, data: Interactions, *, seed: int, ids: IdMaps | None = None) -> Split:
        rng = np.random.default_rng(seed)
        cold = _pick(np.flatnonzero(data.item_counts() > 0), float(self.fraction), rng)
        is_cold = np.zeros(data.n_items, dtype=bool)
        is_cold[cold] = True
        return _warm_split(data, is_cold[data.items], float(self.val_fraction), seed + 1)


class ColdUsers(Splitter):
    """User cold start: ``fraction`` of the users (those with interactions) appear only in test.

    Parameters
    ----------
    fraction: share of the users that become cold, ``0 < fraction < 1`` (rounded half up, at least one).
    val_fraction: share of each warm user's interactions held out as validation (``0``: none).
    """

    def __init__(self, *, fraction: float = 0.2, val_fraction: float = 0.0) -> None:
        self.fraction = fraction
        self.val_fraction = val_fraction
        _fraction(fraction, "split.fraction", allow_zero=False)
        _fraction(val_fraction, "split.val_fraction", allow_zero=True)

    def __call__(self, data: Interactions, *, seed: int, ids: IdMaps | None = None) -> Split:
        rng = np.random.default_rng(seed)
        cold = _pick(np.flatnonzero(data.user_counts() > 0), float(self.fraction), rng)
        is_cold = np.zeros(data.n_users, dtype=bool)
        is_cold[cold] = True
        return _warm_split(data, is_cold[data.users], float(self.val_fraction), seed + 1)


def cold_items(split: Split) -> np.ndarray:
    """``int64`` ids of the test items that have no train or validation interaction (sorted)."""
    known = np.bincount(split.test_history.items, minlength=split.test.n_items) > 0
    return np.setdiff1d(split.test.items, np.flatnonzero(known)).astype(np.int64)


def cold_users(split: Split) -> np.ndarray:
    """``int64`` ids of the test users that have no train or validation interaction (sorted)."""
    known = np.bincount(split.test_history.users, minlength=split.test.n_users) > 0
    return np.setdiff1d(split.test.users, np.flatnonzero(known)).astype(np.int64)
