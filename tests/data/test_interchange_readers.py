"""Readers of the field's formats: Parquet, RecBole atomic files, Amazon and Yelp review dumps.

Every fixture is a small file written here (never downloaded).
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from recbench.data.features import FeatureSpec
from recbench.data.filters import Preprocess
from recbench.data.interactions import IdMaps, Interactions
from recbench.data.sources import AmazonReviews, AtomicFiles, CsvSource, ParquetSource, YelpReviews
from recbench.errors import ConfigError, DataError

RAW = pd.DataFrame(
    {
        "uid": ["a", "b", "a", "c", "b", "c", "a"],
        "iid": [10, 10, 11, 12, 12, 10, 13],
        "stars": [5.0, 3.0, 4.0, 1.0, 2.5, 4.0, 2.0],
        "ts": [100, 200, 300, 400, 500, 600, 700],
    }
)
COLUMNS = {"user": "uid", "item": "iid", "rating": "stars", "timestamp": "ts"}


def same(a: tuple[Interactions, IdMaps], b: tuple[Interactions, IdMaps]) -> None:
    for name in ("users", "items", "ratings", "timestamps"):
        x, y = getattr(a[0], name), getattr(b[0], name)
        assert (x is None) == (y is None), name
        if x is not None:
            np.testing.assert_array_equal(x, y, err_msg=name)
    assert list(a[1].users.astype(str)) == list(b[1].users.astype(str))
    assert list(a[1].items.astype(str)) == list(b[1].items.astype(str))


# ---------------------------------------------------------------- Parquet


def test_parquet_loads_like_the_same_csv(tmp_path: Path) -> None:
    pq.write_table(
        pa.Table.from_pandas(RAW.assign(note="x" * 5), preserve_index=False), tmp_path / "r.parquet"
    )
    RAW.to_csv(tmp_path / "r.csv", index=False)
    from_parquet = ParquetSource(path=tmp_path / "r.parquet", columns=COLUMNS).load()
    same(from_parquet, CsvSource(path=tmp_path / "r.csv", columns=COLUMNS).load())
    by_position = ParquetSource(path=tmp_path / "r.parquet", columns={"user": 0, "item": 1}).load()
    assert by_position[0].ratings is None and len(by_position[0]) == len(RAW)


def test_parquet_reads_only_the_mapped_columns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "r.parquet"
    pq.write_table(pa.Table.from_pandas(RAW.assign(text=["long review"] * 7), preserve_index=False), path)
    asked: list[list[str]] = []
    real = pq.ParquetFile.iter_batches

    def spy(self: pq.ParquetFile, *args: object, columns: list[str] | None = None, **kw: object) -> object:
        asked.append(list(columns or []))
        return real(self, *args, columns=columns, **kw)

    monkeypatch.setattr(pq.ParquetFile, "iter_batches", spy)
    ParquetSource(path=path, columns={"user": "uid", "item": "iid"}).load()
    assert asked == [["uid", "iid"]]


def test_parquet_arrow_timestamps_become_seconds(tmp_path: Path) -> None:
    times = pd.to_datetime(["2020-01-01", "2020-01-02"]).as_unit("ms")
    table = pa.table({"u": ["x", "y"], "i": ["p", "q"], "t": pa.array(times, pa.timestamp("ms"))})
    pq.write_table(table, tmp_path / "t.parquet")
    data, _ = ParquetSource(
        path=tmp_path / "t.parquet", columns={"user": "u", "item": "i", "timestamp": "t"}
    ).load()
    assert sorted(data.timestamps.tolist()) == [1577836800, 1577923200]


def test_parquet_bad_input_names_file_and_column(tmp_path: Path) -> None:
    (tmp_path / "not.parquet").write_text("user,item\n1,2\n")
    with pytest.raises(DataError, match="not a readable Parquet file"):
        ParquetSource(path=tmp_path / "not.parquet").load()
    pq.write_table(pa.table({"u": ["a", "b"], "i": [1, 2], "r": ["5", "five"]}), tmp_path / "p.parquet")
    with pytest.raises(DataError, match="no column 'rating'.*available columns"):
        ParquetSource(
            path=tmp_path / "p.parquet", columns={"user": "u", "item": "i", "rating": "rating"}
        ).load()
    with pytest.raises(DataError, match=r"'r' \(rating\) must hold a number, but row 2 has 'five'"):
        ParquetSource(path=tmp_path / "p.parquet", columns={"user": "u", "item": "i", "rating": "r"}).load()
    with pytest.raises(ConfigError, match="columns.user is required"):
        ParquetSource(path=tmp_path / "p.parquet", columns={"item": "i"}).load()


# ---------------------------------------------------------------- RecBole atomic files


def write_atomic(folder: Path, name: str = "toy") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rows = [f"{u}\t{i}\t{r}\t{t}" for u, i, r, t in zip(RAW.uid, RAW.iid, RAW.stars, RAW.ts)]
    header = "user_id:token\titem_id:token\trating:float\ttimestamp:float"
    (folder / f"{name}.inter").write_text("\n".join([header, *rows]) + "\n")
    (folder / f"{name}.user").write_text(
        "user_id:token\tage:float\tgender:token\temb:float_seq\na\t23\tF\t0.1 0.2\nb\t41\tM\t0.3 0.1\n"
    )
    (folder / f"{name}.item").write_text(
        "item_id:token\tmovie_title:token_seq\tgenre:token_seq\n"
        "10\tThe Film\tDrama Comedy\n11\tOther\tDrama\n12\tThird\t\n"
    )
    return folder


def test_atomic_files_load_like_csv_and_give_side_features(tmp_path: Path) -> None:
    folder = write_atomic(tmp_path / "toy")
    RAW.to_csv(tmp_path / "r.csv", index=False)
    source = AtomicFiles(path=folder, title_field="movie_title")
    data, ids = source.load()
    same((data, ids), CsvSource(path=tmp_path / "r.csv", columns=COLUMNS).load())
    assert source.name == "toy" and ids.item_titles.tolist() == ["The Film", "Other", "Third", ""]
    same((data, ids), AtomicFiles(path=folder / "toy.inter", title_field="movie_title").load())
    users, items = FeatureSpec().for_source(source, ids)
    assert users.fields == ("age", "gender") and items.fields == ("genre",)
    gender = users.matrix[:, [users.columns.index("gender=F")]].toarray().ravel()
    assert gender.tolist() == [1.0, 0.0, 0.0]  # user c has no row: unknown
    drama = items.columns.index("genre=Drama")
    assert items.matrix[0, drama] == pytest.approx(0.5) and items.matrix[1, drama] == 1.0
    cached = FeatureSpec(item_fields=["genre"], user_fields=[], cache_dir=str(tmp_path / "c"))
    first = cached.for_source(source, ids)
    assert first[0] is None and list((tmp_path / "c").glob("features-toy-*.npz"))
    again = cached.for_source(source, ids)
    assert (again[1].matrix != first[1].matrix).nnz == 0
    by_folder = FeatureSpec(user_fields=[], item_fields=["genre"]).load(folder, ids)  # e.g. side info
    assert (by_folder[1].matrix != items.matrix).nnz == 0
    with pytest.raises(ConfigError, match="not available in toy"):
        FeatureSpec(item_fields=["year"]).for_source(source, ids)


def test_atomic_field_names_are_configurable_and_checked(tmp_path: Path) -> None:
    folder = tmp_path / "yelp"
    folder.mkdir()
    (folder / "yelp.inter").write_text(
        "review_id:token\tuser_id:token\tbusiness_id:token\tstars:float\tdate:float\n"
        "r1\tu1\tb1\t5\t10\nr2\tu2\tb1\t3\t20\nr3\tu1\tb2\t4\t30\n"
    )
    data, ids = AtomicFiles(
        path=folder, item_field="business_id", rating_field="stars", timestamp_field="date"
    ).load()
    assert len(data) == 3 and ids.items.tolist() == ["b1", "b2"] and data.ratings.tolist() == [5, 3, 4]
    with pytest.raises(DataError, match="no field 'item_id'.*business_id"):
        AtomicFiles(path=folder).load()
    with pytest.raises(DataError, match="no field 'rating'.*or null"):
        AtomicFiles(path=folder, item_field="business_id").load()
    (folder / "bad.inter").write_text("user_id\titem_id\n1\t2\n")
    assert AtomicFiles(path=folder).inter_file().name == "yelp.inter"  # named after its folder
    (folder / "yelp.inter").rename(folder / "other.inter")
    with pytest.raises(DataError, match="2 .inter files"):
        AtomicFiles(path=folder).inter_file()
    with pytest.raises(DataError, match="'user_id' is not 'name:type'"):
        AtomicFiles(path=folder / "bad.inter").load()
    (folder / "bad.inter").write_text("user_id:token\titem_id:token\trating:float\n1\t2\t4\n1\t3\tgood\n")
    with pytest.raises(
        DataError, match=r"bad.inter: column 'rating' \(rating\) must hold a number, but line 3"
    ):
        AtomicFiles(path=folder / "bad.inter", timestamp_field=None).load()


# ---------------------------------------------------------------- Amazon and Yelp review dumps


def write_lines(path: Path, records: list[object], *, gz: bool = False, literal: bool = False) -> Path:
    text = "\n".join(repr(r) if literal else json.dumps(r) for r in records) + "\n"
    path.write_bytes(gzip.compress(text.encode()) if gz else text.encode())
    return path


def amazon_2014(n_users: int = 7, n_items: int = 6) -> list[dict]:
    out = []
    for u in range(n_users):
        for i in range(n_items):
            if (u + i) % 7 != 6:  # a few holes: user 6 and item 5 fall below the 5-core
                rec = {"reviewerID": f"U{u}", "asin": f"{i:010d}", "overall": float(1 + (u * i) % 5)}
                out.append({**rec, "unixReviewTime": 1_400_000_000 + 86_400 * (u + i), "reviewText": "…"})
    return out


def test_amazon_2014_gzip_with_5core_preset_and_metadata(tmp_path: Path) -> None:
    reviews = write_lines(tmp_path / "reviews_Toy_5.json.gz", amazon_2014(), gz=True)
    meta = [
        {
            "asin": "0000000000",
            "title": "Lipstick",
            "price": 3.5,
            "categories": [["Beauty", "Makeup"]],
            "brand": "X",
        },
        {"asin": "0000000001", "title": "Soap", "categories": [["Beauty"]], "salesRank": {"Beauty": 3}},
    ]
    meta_path = write_lines(tmp_path / "meta_Toy.json.gz", meta, gz=True, literal=True)
    core = Preprocess(user_core=5, item_core=5)
    source = AmazonReviews(path=reviews, meta_path=meta_path, preprocess=core)
    data, ids = source.load()
    assert source.name == "reviews_Toy_5" and source.layout_of() == "2014"
    counts = np.bincount(data.users), np.bincount(data.items)
    assert counts[0].min() >= 5 and counts[1].min() >= 5
    assert ids.items[0] == "0000000000"  # ASINs keep their leading zeros
    assert ids.item_titles[:2].tolist() == ["Lipstick", "Soap"]
    assert data.timestamps.min() >= 1_400_000_000
    _, items = FeatureSpec().for_source(source, ids)
    assert items.fields == ("category", "brand", "price")
    assert items.matrix[0, items.columns.index("category=Makeup")] == pytest.approx(0.5)


def test_amazon_2023_layout_ms_timestamps_and_auto_detection(tmp_path: Path) -> None:
    rows = [
        {"user_id": "AG1", "parent_asin": "B01", "asin": "B01x", "rating": 5.0, "timestamp": 1588687728923},
        {"user_id": "AG2", "parent_asin": "B01", "asin": "B01y", "rating": 3.0, "timestamp": 1588687729000},
        {"user_id": "AG1", "parent_asin": "B02", "asin": "B02", "rating": 4.0, "timestamp": 1600000000000},
    ]
    path = write_lines(tmp_path / "All_Beauty.jsonl", rows)
    meta = [
        {"parent_asin": "B01", "title": "Cream", "main_category": "All Beauty", "price": None, "store": "S"}
    ]
    source = AmazonReviews(path=path, meta_path=write_lines(tmp_path / "meta.jsonl", meta))
    data, ids = source.load()
    assert source.layout_of() == "2023" and ids.items.tolist() == ["B01", "B02"]
    assert data.timestamps.tolist() == [1588687728, 1588687729, 1600000000]
    assert ids.item_titles.tolist() == ["Cream", ""]
    _, items = FeatureSpec(item_fields=["brand"]).for_source(source, ids)
    assert items.columns == ("brand=S", "brand=<unknown>")
    with pytest.raises(DataError, match="no record has the key 'reviewerID'"):
        AmazonReviews(path=path, layout="2014").load()
    with pytest.raises(ConfigError, match="layout='2099'"):
        AmazonReviews(path=path, layout="2099").load()


def test_review_dump_errors_name_file_and_line(tmp_path: Path) -> None:
    good = json.dumps({"reviewerID": "u", "asin": "i", "overall": 5, "unixReviewTime": 1})
    bad = tmp_path / "bad.json"
    bad.write_text(f"{good}\n\n{good}\n{{'reviewerID': broken\n")
    with pytest.raises(DataError, match=r"bad.json: line 4 is not a JSON object"):
        AmazonReviews(path=bad).load()
    bad.write_text(f"{good}\n[1, 2]\n")
    with pytest.raises(DataError, match="line 2 holds a list"):
        AmazonReviews(path=bad).load()
    bad.write_bytes(good.encode() + b"\n" + b'{"reviewerID": "\xff"}\n')
    with pytest.raises(DataError, match="line 2 is not valid UTF-8"):
        AmazonReviews(path=bad).load()
    bad.write_text(f"{good}\n" + json.dumps({"reviewerID": "u", "asin": "j", "overall": "five"}) + "\n")
    with pytest.raises(DataError, match=r"'overall' \(rating\) must hold a number, but line 2"):
        AmazonReviews(path=bad).load()
    whole = gzip.compress(((good + "\n") * 2000).encode())
    (tmp_path / "cut.json.gz").write_bytes(whole[: len(whole) // 2])
    with pytest.raises(DataError, match="truncated or damaged"):
        AmazonReviews(path=tmp_path / "cut.json.gz").load()
    (tmp_path / "other.json").write_text(json.dumps({"id": 1, "text": "x"}) + "\n")
    with pytest.raises(DataError, match="match none of the layouts"):
        AmazonReviews(path=tmp_path / "other.json").load()


def test_yelp_reviews_with_dates_and_business_features(tmp_path: Path) -> None:
    reviews = [
        {"review_id": "r1", "user_id": "u1", "business_id": "b1", "stars": 5, "date": "2016-03-09 00:00:00"},
        {"review_id": "r2", "user_id": "u2", "business_id": "b1", "stars": 2, "date": "2017-01-01 12:00:00"},
        {"review_id": "r3", "user_id": "u1", "business_id": "b2", "stars": 4, "date": "2018-05-05 08:30:00"},
    ]
    business = [
        {
            "business_id": "b1",
            "name": "Pizza Place",
            "city": "Tucson",
            "stars": 4.5,
            "categories": "Pizza, Food",
        },
        {"business_id": "b2", "name": "Doctor", "city": "Reno", "stars": 3.0, "categories": None},
    ]
    source = YelpReviews(
        path=write_lines(tmp_path / "review.json", reviews),
        meta_path=write_lines(tmp_path / "business.json", business),
    )
    data, ids = source.load()
    assert data.timestamps.tolist() == [1457481600, 1483272000, 1525509000]
    assert ids.item_titles.tolist() == ["Pizza Place", "Doctor"]
    _, items = FeatureSpec().for_source(source, ids)
    assert items.fields == ("category", "city", "stars")
    assert items.matrix[1, items.columns.index("category=<unknown>")] == 1.0
