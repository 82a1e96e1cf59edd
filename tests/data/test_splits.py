"""Split protocols: leak-freedom and coverage properties (hypothesis), hand cases, validation, configs."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import numpy as np
import pytest
from hydra.utils import instantiate
from hypothesis import given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf

from recbench.data.interactions import Interactions
from recbench.data.splits import KFold, LeaveOneOut, RandomHoldout, Split, TemporalHoldout
from recbench.errors import ConfigError

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs" / "split"


@st.composite
def datasets(draw: st.DrawFn) -> Interactions:
    """Random data with unique (user, item, ts) rows, many timestamp ties and repeated pairs.

    ``ratings`` holds the row number, so every row can be traced through a split.
    """
    n_users = draw(st.integers(1, 8))
    n_items = draw(st.integers(1, 8))
    rows = draw(
        st.lists(
            st.tuples(st.integers(0, n_users - 1), st.integers(0, n_items - 1), st.integers(0, 6)),
            max_size=80,
            unique=True,
        )
    )
    arr = np.array(rows, dtype=np.int64).reshape(-1, 3)
    return Interactions(
        arr[:, 0], arr[:, 1], n_users, n_items, ratings=np.arange(len(arr)), timestamps=arr[:, 2]
    )


def splitters() -> st.SearchStrategy:
    ratios = st.sampled_from([(0.8, 0.1, 0.1), (0.5, 0.25, 0.25), (0.7, 0.3), (0.34, 0.33, 0.33)])
    return st.one_of(
        st.builds(lambda r: RandomHoldout(ratios=r), ratios),
        st.builds(lambda v: LeaveOneOut(validation=v), st.booleans()),
        st.builds(lambda r, d: TemporalHoldout(ratios=r, drop_cold=d), ratios, st.booleans()),
        st.builds(lambda k, f: KFold(folds=k, fold=min(f, k - 1)), st.integers(2, 6), st.integers(0, 5)),
    )


def row_ids(part: Interactions | None) -> np.ndarray:
    return np.zeros(0, dtype=np.int64) if part is None else part.ratings.astype(np.int64)


def triples(part: Interactions | None) -> set[tuple[int, int, int]]:
    if part is None:
        return set()
    return set(zip(part.users.tolist(), part.items.tolist(), part.timestamps.tolist()))


def assert_identical(a: Split, b: Split) -> None:
    for name in ("train", "val", "test"):
        np.testing.assert_array_equal(row_ids(getattr(a, name)), row_ids(getattr(b, name)))


@settings(max_examples=150, deadline=None)
@given(data=datasets(), splitter=splitters(), seed=st.integers(0, 2**31 - 1))
def test_leak_free_partition(data: Interactions, splitter, seed: int) -> None:
    split = splitter(data, seed=seed)
    parts = [split.train, split.val, split.test]
    for part in parts:
        if part is not None:
            assert (part.n_users, part.n_items) == (data.n_users, data.n_items)
    ids = np.concatenate([row_ids(p) for p in parts])
    assert len(np.unique(ids)) == len(ids)  # no row in two parts
    if not getattr(splitter, "drop_cold", False):
        np.testing.assert_array_equal(np.sort(ids), np.arange(len(data)))  # every row exactly once
    assert not triples(split.test) & (triples(split.train) | triples(split.val))
    assert not triples(split.val) & triples(split.train)
    # what a model may know on test is exactly train + val
    np.testing.assert_array_equal(
        np.sort(row_ids(split.test_history)),
        np.sort(np.concatenate([row_ids(split.train), row_ids(split.val)])),
    )
    if isinstance(splitter, (LeaveOneOut, TemporalHoldout)):
        for later in (split.val, split.test):
            if later is None:
                continue
            for u in np.unique(later.users):
                train_ts = split.train.timestamps[split.train.users == u]
                if len(train_ts):
                    assert train_ts.max() <= later.timestamps[later.users == u].min()
    assert_identical(split, splitter(data, seed=seed))  # same seed, same split


@settings(max_examples=100, deadline=None)
@given(data=datasets(), seed=st.integers(0, 1000))
def test_random_holdout_rounding(data: Interactions, seed: int) -> None:
    split = RandomHoldout(ratios=(0.6, 0.2, 0.2))(data, seed=seed)
    n = data.user_counts()
    n_test = np.minimum(np.floor(0.2 * n + 0.5), n - 1).clip(min=0)
    n_val = np.minimum(np.floor(0.2 * n + 0.5), n - 1 - n_test).clip(min=0)
    np.testing.assert_array_equal(split.test.user_counts(), n_test)
    np.testing.assert_array_equal(split.val.user_counts(), n_val)
    assert (split.train.user_counts()[n > 0] >= 1).all()


@settings(max_examples=60, deadline=None)
@given(data=datasets(), seed=st.integers(0, 1000), k=st.integers(2, 5))
def test_kfold_folds_partition_the_data(data: Interactions, seed: int, k: int) -> None:
    folds = KFold(folds=k)(data, seed=seed), *KFold(folds=k).folds(data, seed=seed)
    assert len(folds) == k + 1
    assert_identical(folds[0], folds[1])  # __call__ with fold=0 is folds()[0]
    tests = np.concatenate([row_ids(s.test) for s in folds[1:]])
    np.testing.assert_array_equal(np.sort(tests), np.arange(len(data)))
    sizes = [len(s.test) for s in folds[1:]]
    assert max(sizes) - min(sizes) <= 1
    assert all(s.val is None for s in folds)
    last = KFold(folds=k, fold=k - 1)(data, seed=seed)
    assert_identical(last, folds[-1])


@pytest.mark.parametrize(
    "splitter", [RandomHoldout(), RandomHoldout(ratios=(0.5, 0.5)), KFold(folds=3, fold=1)]
)
def test_seed_changes_the_split(blocks: Interactions, splitter) -> None:
    a, b = splitter(blocks, seed=0), splitter(blocks, seed=1)
    assert not np.array_equal(
        a.test.users * blocks.n_items + a.test.items, b.test.users * blocks.n_items + b.test.items
    )
    assert_identical(a, splitter(blocks, seed=0))


def test_folds_of_single_split_protocols(blocks: Interactions) -> None:
    for splitter in (RandomHoldout(), LeaveOneOut(), TemporalHoldout()):
        folds = splitter.folds(blocks, seed=3)
        assert len(folds) == 1
        assert_identical(folds[0], splitter(blocks, seed=3))


def loo_case() -> Interactions:
    # user 0: ts 1, 3, 3, 2 (tie at 3: the later input row is "last"); user 1: one row; user 2: two rows
    users = [0, 0, 0, 0, 1, 2, 2]
    items = [0, 1, 2, 3, 0, 4, 5]
    ts = [1, 3, 3, 2, 9, 5, 4]
    return Interactions(users, items, 3, 6, timestamps=ts)


def test_leave_one_out_by_hand() -> None:
    split = LeaveOneOut()(loo_case(), seed=0)
    assert sorted(zip(split.test.users.tolist(), split.test.items.tolist())) == [(0, 2), (2, 4)]
    assert list(zip(split.val.users.tolist(), split.val.items.tolist())) == [(0, 1)]
    assert sorted(zip(split.train.users.tolist(), split.train.items.tolist())) == [
        (0, 0),
        (0, 3),
        (1, 0),
        (2, 5),
    ]
    no_val = LeaveOneOut(validation=False)(loo_case(), seed=0)
    assert no_val.val is None and len(no_val.train) == 5
    assert no_val.test_history is no_val.train


def test_temporal_cut_by_hand() -> None:
    # 10 rows at times 0..9; (0.6, 0.2, 0.2) -> cuts at the times of rows 6 and 8
    data = Interactions(np.zeros(10), np.arange(10) % 2, 1, 3, timestamps=np.arange(10)[::-1])
    split = TemporalHoldout(ratios=(0.6, 0.2, 0.2))(data, seed=0)
    assert sorted(split.train.timestamps) == [0, 1, 2, 3, 4, 5]
    assert sorted(split.val.timestamps) == [6, 7]
    assert sorted(split.test.timestamps) == [8, 9]
    # item 2 appears only after the cut: dropped from test with drop_cold, kept without it
    cold = Interactions([0, 0, 0, 0, 0], [0, 1, 0, 1, 2], 1, 3, timestamps=[0, 1, 2, 3, 4])
    assert len(TemporalHoldout(ratios=(0.8, 0.2))(cold, seed=0).test) == 0
    assert len(TemporalHoldout(ratios=(0.8, 0.2), drop_cold=False)(cold, seed=0).test) == 1


def test_equal_timestamps_stay_on_one_side() -> None:
    data = Interactions(np.arange(6) % 2, np.arange(6) % 3, 2, 3, timestamps=[1, 1, 1, 1, 2, 2])
    split = TemporalHoldout(ratios=(0.5, 0.5), drop_cold=False)(data, seed=0)
    assert set(split.train.timestamps) == {1} and set(split.test.timestamps) == {2}


@pytest.mark.parametrize(
    ("make", "pattern"),
    [
        (lambda: RandomHoldout(ratios=[0.7, 0.2]), r"split.ratios=\[0.7, 0.2\] must sum to 1"),
        (lambda: RandomHoldout(ratios=[1.0]), r"split.ratios=.* 2 entries"),
        (lambda: RandomHoldout(ratios=[0.5, 0.6, -0.1]), r"split.ratios=.*positive"),
        (lambda: TemporalHoldout(ratios="0.8,0.2"), r"split.ratios="),
        (lambda: TemporalHoldout(drop_cold="yes"), r"split.drop_cold"),
        (lambda: LeaveOneOut(validation=1), r"split.validation"),
        (lambda: KFold(folds=1), r"split.folds=1"),
        (lambda: KFold(folds=3, fold=3), r"split.fold=3 must be smaller"),
        (lambda: KFold(folds=2.5), r"split.folds"),
    ],
)
def test_bad_parameters_name_the_key(make, pattern: str) -> None:
    with pytest.raises(ConfigError, match=pattern):
        make()


def test_time_protocols_need_timestamps() -> None:
    data = Interactions([0, 0], [0, 1], 1, 2)
    for splitter, name in ((LeaveOneOut(), "loo"), (TemporalHoldout(), "temporal")):
        with pytest.raises(ConfigError, match=f"split={name}.*no timestamps"):
            splitter(data, seed=0)
    assert len(RandomHoldout()(data, seed=0).train) >= 1  # the others don't need them


MINE = ("random", "loo", "temporal", "kfold")  # other split options belong to their own tests


@pytest.mark.parametrize("path", [CONFIG_DIR / f"{name}.yaml" for name in MINE], ids=lambda p: p.stem)
def test_split_configs(path: Path, blocks: Interactions) -> None:
    text = path.read_text()
    for line in text.splitlines():
        if re.match(r"^\w+:", line) and not line.startswith("_target_"):
            assert re.search(r"# \(\w[\w\[\], |]*\) \S", line), (
                f"{path.name}: key without '# (type) meaning': {line}"
            )
    cfg = OmegaConf.load(path)
    splitter = instantiate(cfg)
    split = splitter(blocks, seed=0)
    assert len(split.train) and len(split.test)
    keys = set(cfg) - {"_target_"}
    assert keys == set(inspect.signature(type(splitter).__init__).parameters) - {"self"}
