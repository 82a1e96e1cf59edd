"""Cold-start splitters: leak-free, seeded, partitioning; candidate-restricted scoring."""

from __future__ import annotations

import numpy as np
import pytest

from recbench.data.cold import ColdItems, ColdUsers, cold_items, cold_users
from recbench.data.interactions import Interactions
from recbench.data.splits import Split
from recbench.errors import ConfigError
from recbench.evaluation.candidates import CandidateScorer


def random_data(seed: int = 0, n_users: int = 60, n_items: int = 50, n: int = 1500) -> Interactions:
    rng = np.random.default_rng(seed)
    users = rng.integers(0, n_users, n)
    items = rng.integers(0, n_items - 3, n)  # the last 3 items have no interactions
    return Interactions(users, items, n_users, n_items, ratings=rng.integers(1, 6, n).astype(np.float32))


def rows(part: Interactions | None) -> set[tuple[int, int, float]]:
    if part is None:
        return set()
    assert part.ratings is not None
    return set(zip(part.users.tolist(), part.items.tolist(), part.ratings.tolist()))


def check_partition(data: Interactions, split: Split) -> None:
    n_val = 0 if split.val is None else len(split.val)
    assert len(split.train) + n_val + len(split.test) == len(data)
    assert rows(split.train) | rows(split.val) | rows(split.test) == rows(data)


@pytest.mark.parametrize("val_fraction", [0.0, 0.1])
def test_cold_items_are_leak_free_and_complete(val_fraction: float) -> None:
    data = random_data()
    split = ColdItems(fraction=0.2, val_fraction=val_fraction)(data, seed=3)
    check_partition(data, split)
    test_items = set(split.test.items.tolist())
    known = set(split.train.items.tolist()) | (set() if split.val is None else set(split.val.items.tolist()))
    assert not test_items & known
    # every interaction of a cold item is in test
    assert np.isin(data.items, list(test_items)).sum() == len(split.test)
    present = np.count_nonzero(data.item_counts())
    assert len(test_items) == int(np.floor(0.2 * present + 0.5))
    np.testing.assert_array_equal(cold_items(split), sorted(test_items))
    assert (split.val is None) == (val_fraction == 0)
    if split.val is not None:
        assert len(split.val) > 0
        # every user with warm data keeps at least one training interaction
        warm_users = np.unique(np.concatenate([split.train.users, split.val.users]))
        assert np.all(split.train.user_counts()[warm_users] > 0)


def test_cold_users_are_leak_free_and_complete() -> None:
    data = random_data(1)
    split = ColdUsers(fraction=0.25, val_fraction=0.1)(data, seed=0)
    check_partition(data, split)
    test_users = set(split.test.users.tolist())
    assert split.val is not None
    assert not test_users & (set(split.train.users.tolist()) | set(split.val.users.tolist()))
    assert np.isin(data.users, list(test_users)).sum() == len(split.test)
    np.testing.assert_array_equal(cold_users(split), sorted(test_users))
    assert len(test_users) == int(np.floor(0.25 * np.count_nonzero(data.user_counts()) + 0.5))


@pytest.mark.parametrize("splitter", [ColdItems(fraction=0.3, val_fraction=0.1), ColdUsers(fraction=0.3)])
def test_same_seed_same_split_other_seed_other_split(splitter) -> None:
    data = random_data(2)
    a, b, c = splitter(data, seed=5), splitter(data, seed=5), splitter(data, seed=6)
    assert rows(a.test) == rows(b.test) and rows(a.train) == rows(b.train) and rows(a.val) == rows(b.val)
    assert rows(a.test) != rows(c.test)


@pytest.mark.parametrize("bad", [0, 1, 1.5, -0.1, "0.2", True, float("nan")])
def test_bad_fractions_are_config_errors(bad) -> None:
    with pytest.raises(ConfigError, match="fraction"):
        ColdItems(fraction=bad)
    with pytest.raises(ConfigError, match="fraction"):
        ColdUsers(fraction=bad)


def test_val_fraction_may_be_zero_not_one() -> None:
    ColdItems(val_fraction=0.0)
    with pytest.raises(ConfigError, match="val_fraction"):
        ColdItems(val_fraction=1.0)


class _Fixed:
    def __init__(self, scores: np.ndarray) -> None:
        self.scores = scores

    def score(self, users: np.ndarray, history: Interactions) -> np.ndarray:
        return self.scores[users]


def test_candidate_scorer_ranks_only_candidates() -> None:
    data = random_data()
    base = np.random.default_rng(0).normal(size=(data.n_users, data.n_items)).astype(np.float32)
    wrapped = CandidateScorer(_Fixed(base), np.array([3, 7]))
    out = wrapped.score(np.arange(4), data)
    assert out.dtype == np.float32 and np.isfinite(out).all()
    np.testing.assert_array_equal(out[:, [3, 7]], base[:4][:, [3, 7]])
    others = np.delete(out, [3, 7], axis=1)
    assert others.max() < out[:, [3, 7]].min()
    np.testing.assert_array_equal(base, _Fixed(base).scores)  # the wrapped scores are not modified
