"""Predefined splits read from files, mapped through the dataset's id maps."""

from __future__ import annotations

import inspect
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from recbench.data.filters import Preprocess
from recbench.data.predefined import PredefinedSplit
from recbench.data.sources import CsvSource, MovieLens
from recbench.data.splits import Split
from recbench.errors import DataError

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "split" / "files.yaml"

RATINGS = "user,item,rating,ts\n7,a,5,1\n7,b,2,2\n8,a,4,3\n8,c,3,4\n9,b,1,5\n9,c,5,6\n"


@pytest.fixture
def dataset(tmp_path: Path):
    path = tmp_path / "ratings.csv"
    path.write_text(RATINGS)
    cols = {"user": "user", "item": "item", "rating": "rating", "timestamp": "ts"}
    return CsvSource(path=path, columns=cols).load()


def write(path: Path, rows: str) -> Path:
    path.write_text(rows)
    return path


def pairs(part, ids) -> set[tuple[str, str]]:
    return {(str(ids.users[u]), str(ids.items[i])) for u, i in zip(part.users, part.items)}


def test_split_from_files_takes_values_from_the_dataset(tmp_path: Path, dataset) -> None:
    data, ids = dataset
    train = write(tmp_path / "train.tsv", "7\ta\n7\tb\n8\ta\n9\tb\n")
    val = write(tmp_path / "val.tsv", "9\tc\n")
    test = write(tmp_path / "test.tsv", "8\tc\n")
    split = PredefinedSplit(train=train, val=val, test=test)(data, seed=0, ids=ids)
    assert isinstance(split, Split)
    assert pairs(split.train, ids) == {("7", "a"), ("7", "b"), ("8", "a"), ("9", "b")}
    assert pairs(split.val, ids) == {("9", "c")} and pairs(split.test, ids) == {("8", "c")}
    assert split.test.ratings.tolist() == [3.0] and split.test.timestamps.tolist() == [4]
    assert (split.train.n_users, split.train.n_items) == (data.n_users, data.n_items)
    assert len(split.test_history) == 5


def test_unknown_ids_fail_with_counts_or_are_dropped(
    tmp_path: Path, dataset, caplog: pytest.LogCaptureFixture
) -> None:
    data, ids = dataset
    train = write(tmp_path / "train.tsv", "7\ta\n42\ta\n7\tzz\n8\ta\n")
    test = write(tmp_path / "test.tsv", "8\tc\n")
    with pytest.raises(
        DataError, match=r"train.tsv: 2 of 4 rows .* \(1 unknown users, 1 unknown items; first at line 2"
    ):
        PredefinedSplit(train=train, test=test)(data, seed=0, ids=ids)
    with caplog.at_level(logging.WARNING):
        split = PredefinedSplit(train=train, test=test, drop_unknown=True)(data, seed=0, ids=ids)
    assert len(split.train) == 2 and "dropping them" in caplog.text
    with pytest.raises(DataError, match="IdMaps"):
        PredefinedSplit(train=train, test=test)(data, seed=0)


def test_pairs_removed_by_preprocessing_are_left_out(tmp_path: Path) -> None:
    path = write(tmp_path / "r.csv", RATINGS)
    cols = {"user": "user", "item": "item", "rating": "rating", "timestamp": "ts"}
    data, ids = CsvSource(path=path, columns=cols, preprocess=Preprocess(min_rating=2, implicit=True)).load()
    train = write(tmp_path / "train.tsv", "7\ta\n9\tb\n8\ta\n")  # 9,b has rating 1: filtered out
    test = write(tmp_path / "test.tsv", "8\tc\n")
    split = PredefinedSplit(train=train, test=test)(data, seed=0, ids=ids)
    assert pairs(split.train, ids) == {("7", "a"), ("8", "a")} and split.train.ratings is None
    only_filtered = write(tmp_path / "bad.tsv", "9\tb\n")
    with pytest.raises(DataError, match="none of its 1 rows"):
        PredefinedSplit(train=train, test=only_filtered)(data, seed=0, ids=ids)


def test_file_errors_name_the_file(tmp_path: Path, dataset) -> None:
    data, ids = dataset
    test = write(tmp_path / "test.tsv", "8\tc\n")
    with pytest.raises(DataError, match="missing.tsv does not exist"):
        PredefinedSplit(train=tmp_path / "missing.tsv", test=test)(data, seed=0, ids=ids)
    with pytest.raises(DataError, match=r"bad.tsv: line 2 is malformed"):
        PredefinedSplit(train=write(tmp_path / "bad.tsv", "7\ta\n7\tb\textra\n"), test=test)(
            data, seed=0, ids=ids
        )


def test_ml100k_u1_style_files(tmp_path: Path, ml100k_dir: Path) -> None:
    data, ids = MovieLens(variant="ml-100k", path=ml100k_dir).load()
    raw = pd.read_csv(ml100k_dir / "u.data", sep="\t", header=None)
    test_rows = raw.sample(frac=0.2, random_state=0)
    train_rows = raw.drop(test_rows.index)
    train_rows.to_csv(tmp_path / "u1.base", sep="\t", header=False, index=False)
    test_rows.to_csv(tmp_path / "u1.test", sep="\t", header=False, index=False)
    split = PredefinedSplit(train=tmp_path / "u1.base", test=tmp_path / "u1.test")(data, seed=0, ids=ids)
    assert (len(split.train), len(split.test)) == (80_000, 20_000)
    np.testing.assert_array_equal(np.sort(split.test.ratings), np.sort(test_rows[2].to_numpy(np.float32)))


def test_files_config_keys_and_instantiation(tmp_path: Path, dataset) -> None:
    node = OmegaConf.load(CONFIG)
    params = [p for p in inspect.signature(PredefinedSplit.__init__).parameters if p != "self"]
    assert sorted(k for k in node if k != "_target_") == sorted(params)
    assert OmegaConf.is_missing(node, "train") and OmegaConf.is_missing(node, "test")
    node.train = str(write(tmp_path / "train.tsv", "7\ta\n8\ta\n"))
    node.test = str(write(tmp_path / "test.tsv", "8\tc\n"))
    data, ids = dataset
    split = instantiate(node)(data, seed=1, ids=ids)
    assert (len(split.train), split.val, len(split.test)) == (2, None, 1)
