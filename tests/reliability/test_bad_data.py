"""Bad data files: each case ends in one DataError that names the file and the line, column or option.

Raw ids are labels, not numbers: a non-numeric user or item id is a valid id (Amazon ASINs, user
names), so it loads as a string id; what must be numeric is a rating or a timestamp.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from recbench.data.interactions import IdMaps, Interactions
from recbench.data.predefined import PredefinedSplit
from recbench.data.sources import CsvSource, MovieLens, SequenceFile
from recbench.errors import DataError
from recbench.pipeline import RunContext, run

ALL = {"user": "user", "item": "item", "rating": "rating", "timestamp": "ts"}


def csv(tmp_path: Path, text: str, name: str = "ratings.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def load(path: Path, **kw: object) -> tuple[Interactions, IdMaps]:
    return CsvSource(path=path, **kw).load()  # type: ignore[arg-type]


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=rf"{tmp_path}/nope\.csv does not exist"):
        load(tmp_path / "nope.csv")
    with pytest.raises(DataError, match=rf"{tmp_path}/nope\.txt does not exist"):
        SequenceFile(path=tmp_path / "nope.txt").load()


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=rf"{tmp_path}/ml-100k does not hold u\.data"):
        MovieLens(variant="ml-100k", path=tmp_path / "ml-100k", download=False).load()
    with pytest.raises(DataError, match=rf"{tmp_path} is not a file"):
        load(tmp_path)  # a folder where a file is expected


def test_empty_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"empty\.csv is empty \(0 bytes\)"):
        load(csv(tmp_path, "", "empty.csv"))
    with pytest.raises(DataError, match=r"blank\.csv has no data"):
        load(csv(tmp_path, "\n\n", "blank.csv"))
    with pytest.raises(DataError, match=r"head\.csv has a header but no data rows"):
        load(csv(tmp_path, "user,item\n", "head.csv"))


def test_wrong_delimiter(tmp_path: Path) -> None:
    path = csv(tmp_path, "user\titem\trating\n1\t2\t5\n3\t4\t1\n")
    with pytest.raises(DataError, match=r"ratings\.csv: only one column was parsed with sep=','.*sep: '\\t'"):
        load(path, columns={"user": "user", "item": "item"})


def test_missing_required_column(tmp_path: Path) -> None:
    path = csv(tmp_path, "user,movie,rating\n1,2,5\n")
    with pytest.raises(DataError, match=r"ratings\.csv has no column 'item' \(for item\).*'movie'"):
        load(path, columns={"user": "user", "item": "item"})
    plain = csv(tmp_path, "1,2\n3,4\n", "plain.csv")
    with pytest.raises(DataError, match=r"columns\.rating=7 but .*plain\.csv has only 2 fields"):
        load(plain, header=False, columns={"user": 0, "item": 1, "rating": 7})


def test_non_numeric_rating(tmp_path: Path) -> None:
    path = csv(tmp_path, "user,item,rating,ts\n1,2,5,10\n1,3,five,11\n")
    with pytest.raises(DataError, match=r"ratings\.csv: column 'rating' \(rating\) .* line 3 has 'five'"):
        load(path, columns=ALL)


def test_non_numeric_ids_are_string_labels(tmp_path: Path) -> None:
    data, ids = load(csv(tmp_path, "user,item\nalice,B00X1\nbob,B00X1\nalice,7\n"))
    assert ids.users.tolist() == ["alice", "bob"] and ids.items.tolist() == ["7", "B00X1"]
    assert len(data) == 3


def test_negative_or_non_numeric_timestamps(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"column 'ts' \(timestamp\) has a negative.* value at line 3"):
        load(csv(tmp_path, "user,item,rating,ts\n1,2,5,10\n1,3,4,-5\n"), columns=ALL)
    with pytest.raises(
        DataError, match=r"column 'ts' \(timestamp\) must hold a number or an ISO date.*line 2"
    ):
        load(csv(tmp_path, "user,item,rating,ts\n1,2,5,yesterday\n", "word.csv"), columns=ALL)


def test_missing_timestamp_is_dropped_with_a_warning_or_refused(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = csv(tmp_path, "user,item,rating,ts\n1,2,5,10\n1,3,4,NaN\n1,4,3,\n")
    with caplog.at_level(logging.WARNING):
        data, _ = load(path, columns=ALL)  # default preprocess.dropna: true
    assert len(data) == 1 and "dropping 2 rows with missing values (first at line 3)" in caplog.text
    with pytest.raises(
        DataError, match=r"ratings\.csv: 2 rows have no 'timestamp' value \(first at line 3\)"
    ):
        load(path, columns=ALL, preprocess={"dropna": False})


def test_header_where_none_is_expected(tmp_path: Path) -> None:
    path = csv(tmp_path, "user\titem\trating\n1\t2\t5\n1\t3\t4\n", "u.data")
    with pytest.raises(DataError, match=r"line 1 of .*u\.data looks like a header .*header is false"):
        load(path, sep="\t", header=False, columns={"user": 0, "item": 1, "rating": 2})
    (tmp_path / "ml").mkdir()
    (tmp_path / "ml" / "u.data").write_text(path.read_text())
    with pytest.raises(DataError, match=r"line 1 of .*ml/u\.data looks like a header"):
        MovieLens(variant="ml-100k", path=tmp_path / "ml").load()


def test_no_header_where_one_is_expected(tmp_path: Path) -> None:
    path = csv(tmp_path, "1,2,5\n1,3,4\n")
    with pytest.raises(DataError, match=r"ratings\.csv seems to have no header row .*\['1', '2', '5'\]"):
        load(path)  # header: true, columns by position: the first row would silently become names
    with pytest.raises(DataError, match=r"ratings\.csv seems to have no header row"):
        load(path, columns={"user": "user", "item": "item"})


@pytest.mark.parametrize(
    ("preprocess", "named"),
    [
        ({"min_rating": 6}, "min_rating=6"),
        ({"user_core": 4}, "user_core=4"),
        ({"item_core": 9}, "item_core=9"),
    ],
)
def test_filters_that_leave_nothing(tmp_path: Path, preprocess: dict, named: str) -> None:
    path = csv(tmp_path, "user,item,rating,ts\n1,2,5,1\n1,3,4,2\n2,3,3,3\n")
    with pytest.raises(
        DataError, match=rf"preprocessing left no interactions of the 3 rows in .*ratings\.csv.*{named}"
    ):
        load(path, columns=ALL, preprocess=preprocess)


def csv_run_cfg(make_cfg: Callable, path: Path, *overrides: str) -> object:
    return make_cfg(
        "dataset=csv",
        f"dataset.path={path}",
        "dataset.columns.rating=null",
        "model=pop",
        *overrides,
    )


def test_split_that_leaves_no_test_data_fails_the_run(tmp_path: Path, make_cfg: Callable) -> None:
    rows = "".join(f"{u},{i}\n" for u in range(30) for i in (u % 7, u % 7 + 1))  # two items per user
    path = csv(tmp_path, "user,item\n" + rows)
    with pytest.raises(
        DataError, match=r"split RandomHoldout left the test part empty .*too few interactions"
    ):
        run(csv_run_cfg(make_cfg, path), RunContext(tmp_path / "r"))
    assert '"status": "failed"' in (tmp_path / "r" / "metrics.json").read_text()


def test_test_users_without_training_data_are_counted_in_the_log(
    tmp_path: Path, make_cfg: Callable, caplog: pytest.LogCaptureFixture
) -> None:
    """Documented handling: such users are kept and evaluated; the log says how many there are."""
    rows = "".join(f"{u},{i}\n" for u in range(20) for i in range(u % 5, u % 5 + 6))
    path = csv(tmp_path, "user,item\n" + rows + "99,3\n")  # user 99 has one interaction
    with caplog.at_level(logging.INFO, logger="recbench.validation"):
        record = run(
            csv_run_cfg(make_cfg, path, "split=kfold", "split.folds=2", "save_model=false"),
            RunContext(tmp_path / "r"),
        )
    assert record.status == "ok"
    assert "1 of 21 test users have no training interaction" in caplog.text


def test_split_files_sharing_a_pair_are_refused(tmp_path: Path) -> None:
    data = Interactions(np.array([0, 0, 1, 1]), np.array([0, 1, 0, 1]), 2, 2)
    ids = IdMaps(users=np.array([10, 20]), items=np.array([5, 6]))
    train = csv(tmp_path, "10\t5\n10\t6\n20\t5\n", "u1.base")
    test = csv(tmp_path, "20\t6\n10\t6\n", "u1.test")
    with pytest.raises(
        DataError, match=r"u1\.base \(train\) and .*u1\.test \(test\) share 1 .*user 10 and item 6"
    ):
        PredefinedSplit(train=train, test=test)(data, seed=0, ids=ids)
