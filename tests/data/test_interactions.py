"""Interactions: construction checks, selection, CSR view and the one padding convention."""

from __future__ import annotations

import numpy as np
import pytest

from recbench.data.interactions import IdMaps, Interactions


def make() -> Interactions:
    return Interactions(
        users=np.array([0, 0, 1, 1, 1, 0]),
        items=np.array([2, 1, 0, 1, 2, 2]),
        n_users=3,
        n_items=4,
        ratings=np.array([4, 3, 5, 1, 2, 5], dtype=np.float32),
        timestamps=np.array([5, 3, 1, 2, 2, 9]),
    )


def test_csr_keeps_last_duplicate_and_shape() -> None:
    x = make()
    dense = x.csr.toarray()
    assert dense.shape == (3, 4)
    # (0, 2) appears twice (ratings 4 then 5): the last row wins, nothing is summed
    assert dense[0, 2] == 5.0
    assert dense[1].tolist() == [5.0, 1.0, 2.0, 0.0]
    assert x.binary_csr.toarray()[0].tolist() == [0.0, 1.0, 1.0, 0.0]


def test_csr_without_duplicates_is_the_interactions_sorted_by_row_and_item() -> None:
    """The direct build (no pair repeats): canonical float32 CSR holding every rating once."""
    rng = np.random.default_rng(4)
    keys = rng.choice(50 * 40, size=300, replace=False)
    users, items = keys // 40, keys % 40
    ratings = rng.integers(1, 6, size=300).astype(np.float32)
    x = Interactions(users, items, 50, 40, ratings=ratings)
    csr = x.csr
    assert csr.dtype == np.float32 and csr.has_canonical_format and csr.nnz == 300
    dense = np.zeros((50, 40), dtype=np.float32)
    dense[users, items] = ratings
    assert np.array_equal(csr.toarray(), dense)


def test_select_and_concat_round_trip() -> None:
    x = make()
    mask = x.users == 0
    a, b = x.select(mask), x.select(~mask)
    both = a.concat(b)
    assert len(both) == len(x)
    assert sorted(zip(both.users, both.items, both.timestamps)) == sorted(zip(x.users, x.items, x.timestamps))


def test_sequences_are_time_ordered_left_padded_and_shifted() -> None:
    x = make()
    seq = x.sequences(3)
    # user 0: items by time 1 (t3), 2 (t5), 2 (t9) -> shifted +1
    assert seq[0].tolist() == [2, 3, 3]
    # user 1: 0 (t1), then ties at t2 keep input order: 1, 2
    assert seq[1].tolist() == [1, 2, 3]
    # user 2 has nothing: all padding
    assert seq[2].tolist() == [0, 0, 0]
    # truncation keeps the most recent
    assert x.sequences(1)[:, 0].tolist() == [3, 3, 0]


def test_sequence_timestamps_line_up_with_the_items() -> None:
    x = make()
    np.testing.assert_array_equal(x.sequences(3, timestamps=True), [[3, 5, 9], [1, 2, 2], [-1, -1, -1]])
    assert x.sequences(1, timestamps=True)[:, 0].tolist() == [9, 2, -1]
    no_times = Interactions(x.users, x.items, x.n_users, x.n_items)
    with pytest.raises(ValueError, match="no timestamps"):
        no_times.sequences(3, timestamps=True)


def test_out_of_range_ids_and_length_mismatch_are_rejected() -> None:
    with pytest.raises(ValueError, match="item ids"):
        Interactions(np.array([0]), np.array([5]), 1, 5)
    with pytest.raises(ValueError, match="entries"):
        Interactions(np.array([0, 0]), np.array([1]), 1, 5)


def test_counts() -> None:
    x = make()
    assert x.item_counts().tolist() == [1, 2, 3, 0]
    assert x.user_counts().tolist() == [3, 3, 0]


def test_idmaps_lookup() -> None:
    ids = IdMaps(users=np.array([10, 20]), items=np.array(["a", "b"]))
    assert ids.user_index("20") == 1
    assert ids.item_index("b") == 1
    with pytest.raises(KeyError):
        ids.item_index("zzz")
