"""Preprocessing filters on hand-made frames: missing values, duplicates, thresholds, k-core, encoding."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest

from recbench.data.filters import Preprocess, drop_duplicates, encode, k_core, normalise_ids, threshold
from recbench.errors import ConfigError, DataError


def frame(
    rows: list[tuple], columns: tuple[str, ...] = ("user", "item", "rating", "timestamp")
) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=list(columns))


def pairs(f: pd.DataFrame) -> set[tuple]:
    return set(zip(f["user"], f["item"]))


def test_dropna_drops_rows_with_missing_values_and_logs(caplog: pytest.LogCaptureFixture) -> None:
    f = frame([(1, 1, 5.0, 10), (2, 1, np.nan, 11), (3, np.nan, 4.0, 12)])
    with caplog.at_level(logging.WARNING):
        out = Preprocess()(f, source="t")
    assert pairs(out) == {(1, 1)}
    assert "2 rows with missing values" in caplog.text


def test_dropna_false_names_the_column_and_line() -> None:
    f = frame([(1, 1, 5.0, 10), (2, 1, 3.0, np.nan)])
    f.index = pd.Index([2, 3], name="line")
    with pytest.raises(DataError, match=r"no 'timestamp' value \(first at line 3\)"):
        Preprocess(dropna=False)(f, source="t.csv")


def test_dedupe_keeps_latest_by_timestamp() -> None:
    f = frame([(1, 1, 5.0, 30), (1, 1, 1.0, 10), (1, 2, 2.0, 5), (1, 1, 3.0, 20)])
    out = drop_duplicates(f)
    assert len(out) == 2
    assert out.loc[out["item"] == 1, "rating"].item() == 5.0


def test_dedupe_without_timestamps_keeps_last_row() -> None:
    f = frame([(1, 1, 5.0), (1, 2, 2.0), (1, 1, 3.0)], columns=("user", "item", "rating"))
    out = drop_duplicates(f)
    assert out.loc[out["item"] == 1, "rating"].item() == 3.0


def test_dedupe_ties_keep_last_row() -> None:
    f = frame([(1, 1, 5.0, 10), (1, 1, 2.0, 10)])
    assert drop_duplicates(f)["rating"].tolist() == [2.0]


def test_threshold_and_implicit() -> None:
    f = frame([(1, 1, 5.0, 1), (1, 2, 3.0, 2), (2, 1, 4.0, 3)])
    assert pairs(threshold(f, 4)) == {(1, 1), (2, 1)}
    out = Preprocess(min_rating=4, implicit=True)(f, source="t")
    assert "rating" not in out and pairs(out) == {(1, 1), (2, 1)}


def test_min_rating_without_ratings_is_a_config_error() -> None:
    f = frame([(1, 1)], columns=("user", "item"))
    with pytest.raises(ConfigError, match="min_rating"):
        Preprocess(min_rating=4)(f, source="t")


def test_k_core_iterates_until_stable() -> None:
    # d has one row -> removed; then item 3 has one row (c) -> removed; then c has one row -> removed.
    f = frame(
        [("a", 1), ("a", 2), ("b", 1), ("b", 2), ("c", 3), ("c", 1), ("d", 3)], columns=("user", "item")
    )
    out = k_core(f, user_core=2, item_core=2)
    assert pairs(out) == {("a", 1), ("a", 2), ("b", 1), ("b", 2)}
    # one pass of each filter alone would have kept c's rows
    ucount = f["user"].map(f["user"].value_counts())
    assert set(f.loc[ucount >= 2, "user"]) == {"a", "b", "c"}


def test_k_core_result_satisfies_both_cores_on_random_data() -> None:
    rng = np.random.default_rng(0)
    f = pd.DataFrame({"user": rng.integers(0, 60, 800), "item": rng.zipf(1.6, 800) % 90}).drop_duplicates()
    out = k_core(f, user_core=5, item_core=4)
    assert len(out) > 0
    assert out["user"].value_counts().min() >= 5
    assert out["item"].value_counts().min() >= 4


def test_rating_scale_divides() -> None:
    out = Preprocess(rating_scale=5)(frame([(1, 1, 4.0, 1)]), source="t")
    assert out["rating"].tolist() == [0.8]


def test_empty_result_names_the_options_to_relax() -> None:
    f = frame([(1, 1, 2.0, 1), (2, 2, 3.0, 2)])
    with pytest.raises(DataError, match=r"min_rating=4.*user_core=3"):
        Preprocess(min_rating=4, user_core=3)(f, source="t")


def test_invalid_options_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="user_core"):
        Preprocess(user_core=-1)
    with pytest.raises(ConfigError, match="rating_scale"):
        Preprocess(rating_scale=0)
    with pytest.raises(ConfigError, match="unknown preprocess option"):
        Preprocess.coerce({"min_ratings": 4})


def test_coerce_accepts_mappings_and_none() -> None:
    assert Preprocess.coerce(None) == Preprocess()
    assert Preprocess.coerce({"_target_": "x", "min_rating": 4}).min_rating == 4


def test_encode_dense_sorted_ids_and_titles() -> None:
    f = frame([(30, 7, 5.0, 3), (10, 9, 4.0, 1), (30, 9, 3.0, 2)])
    titles = pd.Series(["Seven", "Nine", "Other"], index=["7", "9", "11"])
    data, ids = encode(f, titles)
    assert (data.n_users, data.n_items) == (2, 2)
    assert ids.users.tolist() == [10, 30] and ids.items.tolist() == [7, 9]
    assert data.users.tolist() == [1, 0, 1] and data.items.tolist() == [0, 1, 1]
    assert ids.item_titles.tolist() == ["Seven", "Nine"]
    assert data.ratings.dtype == np.float32 and data.timestamps.dtype == np.int64


def test_normalise_ids_keeps_non_canonical_strings() -> None:
    assert normalise_ids(np.array([7.0, 8.0])).dtype == np.int64
    assert normalise_ids(np.array(["7", "8"], dtype=object)).tolist() == [7, 8]
    assert normalise_ids(np.array(["007", "8"], dtype=object)).tolist() == ["007", "8"]
    assert normalise_ids(np.array(["a", 3], dtype=object)).tolist() == ["a", "3"]
