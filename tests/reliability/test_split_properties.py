"""Leak-freedom of the protocols tests/data/test_splits.py does not cover, plus "who has training data".

tests/data/test_splits.py shows random, loo, temporal and kfold never put a row in two parts. Here:
predefined split files (``split=files``) and the cold-start splits, and for every protocol whether a
user (or item) that is tested has training data: guaranteed for ``random``, ``loo`` and ``temporal``
with ``drop_cold`` (the default); ``kfold`` and the cold splits may test users or items without
training data, which the pipeline logs (see test_bad_data.py).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from recbench.data.cold import ColdItems, ColdUsers, cold_items, cold_users
from recbench.data.interactions import IdMaps, Interactions
from recbench.data.predefined import PredefinedSplit
from recbench.data.splits import LeaveOneOut, RandomHoldout, Split, TemporalHoldout


@st.composite
def datasets(draw: st.DrawFn) -> Interactions:
    """Unique (user, item) pairs with tied timestamps; ``ratings`` holds the row number."""
    n_users, n_items = draw(st.integers(1, 9)), draw(st.integers(1, 9))
    pairs = draw(
        st.lists(
            st.tuples(st.integers(0, n_users - 1), st.integers(0, n_items - 1)), max_size=70, unique=True
        )
    )
    arr = np.array(pairs, dtype=np.int64).reshape(-1, 2)
    ts = np.array(draw(st.lists(st.integers(0, 5), min_size=len(arr), max_size=len(arr))), dtype=np.int64)
    return Interactions(arr[:, 0], arr[:, 1], n_users, n_items, ratings=np.arange(len(arr)), timestamps=ts)


def rows(part: Interactions | None) -> set[int]:
    return set() if part is None else set(part.ratings.astype(int).tolist())


def pairs(part: Interactions | None) -> set[tuple[int, int]]:
    return set() if part is None else set(zip(part.users.tolist(), part.items.tolist()))


def assert_disjoint(split: Split) -> None:
    parts = [split.train, split.val, split.test]
    for j, a in enumerate(parts):
        for b in parts[j + 1 :]:
            assert not rows(a) & rows(b)
            assert not pairs(a) & pairs(b)


@settings(max_examples=80, deadline=None)
@given(data=datasets(), assign=st.lists(st.integers(0, 3), min_size=70, max_size=70), with_val=st.booleans())
def test_predefined_split_files_are_followed_exactly(
    tmp_path_factory, data: Interactions, assign: list[int], with_val: bool
) -> None:
    """Each file's rows land in their part and nowhere else (3 = a row in no file)."""
    folder = tmp_path_factory.mktemp("files")
    ids = IdMaps(
        users=np.arange(data.n_users) * 10 + 7, items=np.array([f"i{j}" for j in range(data.n_items)])
    )
    part = np.array(assign[: len(data)], dtype=np.int64)
    if not with_val:
        part[part == 1] = 3
    files: dict[str, Path] = {}
    for name, code in (("train", 0), ("val", 1), ("test", 2)):
        sel = np.flatnonzero(part == code)
        files[name] = folder / f"{name}.tsv"
        files[name].write_text(
            "".join(f"{ids.users[data.users[r]]}\t{ids.items[data.items[r]]}\n" for r in sel)
        )
    splitter = PredefinedSplit(
        train=files["train"], test=files["test"], val=files["val"] if with_val else None
    )
    if not (part == 0).any() or not (part == 2).any() or (with_val and not (part == 1).any()):
        return  # an empty file is refused (tests/data covers that message)
    split = splitter(data, seed=0, ids=ids)
    assert rows(split.train) == set(np.flatnonzero(part == 0).tolist())
    assert rows(split.test) == set(np.flatnonzero(part == 2).tolist())
    assert rows(split.val) == (set(np.flatnonzero(part == 1).tolist()) if with_val else set())
    assert_disjoint(split)


@settings(max_examples=120, deadline=None)
@given(
    data=datasets(),
    which=st.sampled_from([ColdItems, ColdUsers]),
    fraction=st.sampled_from([0.1, 0.3, 0.5, 0.9]),
    val_fraction=st.sampled_from([0.0, 0.2, 0.5]),
    seed=st.integers(0, 2**31 - 1),
)
def test_cold_splits_hold_cold_ids_out_of_training(
    data: Interactions, which: type, fraction: float, val_fraction: float, seed: int
) -> None:
    split = which(fraction=fraction, val_fraction=val_fraction)(data, seed=seed)
    assert_disjoint(split)
    assert rows(split.train) | rows(split.val) | rows(split.test) == set(range(len(data)))  # a partition
    known = split.test_history
    if which is ColdItems:
        cold = cold_items(split)
        assert set(cold.tolist()) == set(split.test.items.tolist())  # the test part is only cold items
        assert not set(cold.tolist()) & set(known.items.tolist())
        assert set(np.flatnonzero(np.isin(data.items, cold)).tolist()) == rows(split.test)  # all of them
    else:
        cold = cold_users(split)
        assert set(cold.tolist()) == set(split.test.users.tolist())
        assert not set(cold.tolist()) & set(known.users.tolist())
        assert set(np.flatnonzero(np.isin(data.users, cold)).tolist()) == rows(split.test)
    again = which(fraction=fraction, val_fraction=val_fraction)(data, seed=seed)
    assert rows(again.test) == rows(split.test) and rows(again.val) == rows(split.val)


@settings(max_examples=150, deadline=None)
@given(
    data=datasets(),
    splitter=st.sampled_from(
        [
            RandomHoldout(),
            RandomHoldout(ratios=(0.5, 0.5)),
            RandomHoldout(ratios=(0.34, 0.33, 0.33)),
            LeaveOneOut(),
            LeaveOneOut(validation=False),
            TemporalHoldout(),
            TemporalHoldout(ratios=(0.5, 0.5)),
        ]
    ),
    seed=st.integers(0, 2**31 - 1),
)
def test_every_tested_user_has_training_data(data: Interactions, splitter, seed: int) -> None:
    split = splitter(data, seed=seed)
    trained_users = set(split.train.users.tolist())
    for later in (split.val, split.test):
        if later is not None:
            assert set(later.users.tolist()) <= trained_users
            if isinstance(splitter, TemporalHoldout):  # drop_cold also drops items never trained on
                assert set(later.items.tolist()) <= set(split.train.items.tolist())
