"""Property tests: whatever the Parquet, atomic-file and review-dump readers get, only DataError escapes.

A file either loads into valid Interactions (ids in range, finite ratings, non-negative timestamps)
or fails with DataError / ConfigError naming it; side features load or fail the same way.
"""

from __future__ import annotations

import gzip
import json
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recbench.data.features import FeatureSpec
from recbench.data.sources import AmazonReviews, AtomicFiles, ParquetSource, YelpReviews
from recbench.errors import ConfigError, DataError
from tests.data.test_fuzz_loaders import check_loaded

FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def scratch() -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as tmp:
        yield Path(tmp)


def load_or_error(source: object, features: bool = False) -> None:
    try:
        data, ids = source.load()  # type: ignore[attr-defined]
        if features:
            FeatureSpec().for_source(source, ids)
    except (DataError, ConfigError) as err:
        assert str(err)
        return
    check_loaded(data)
    assert len(ids.users) == data.n_users and len(ids.items) == data.n_items


@FUZZ
@given(raw=st.binary(max_size=300), which=st.sampled_from(["inter", "parquet", "json", "json.gz"]))
def test_random_bytes(scratch: Path, raw: bytes, which: int) -> None:
    path = scratch / f"fuzz.{which}"
    path.write_bytes(raw)
    source = {
        "inter": lambda: AtomicFiles(path=path),
        "parquet": lambda: ParquetSource(path=path),
        "json": lambda: AmazonReviews(path=path),
        "json.gz": lambda: YelpReviews(path=path),
    }[which]()
    load_or_error(source)


cell = st.one_of(
    st.integers(-5, 50).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(str),
    st.sampled_from(["", "a", "NaN", "2020-01-01", "1e400", " ", "-0", "007", '"', "x y"]),
    st.text(max_size=4),
)
header_field = st.sampled_from(
    ["user_id:token", "item_id:token", "rating:float", "timestamp:float", "tag:token_seq", "user_id", "x:int"]
)


@FUZZ
@given(
    header=st.lists(header_field, min_size=1, max_size=5),
    rows=st.lists(st.lists(cell, min_size=1, max_size=5), max_size=10),
    side=st.lists(st.lists(cell, min_size=1, max_size=3), max_size=5),
)
def test_atomic_random_rows(
    scratch: Path, header: list[str], rows: list[list[str]], side: list[list[str]]
) -> None:
    folder = scratch / "atomic"
    folder.mkdir(exist_ok=True)

    def text(lines: list[list[str]]) -> str:
        return "\n".join("\t".join(r) for r in lines)

    (folder / "atomic.inter").write_text(
        "\t".join(header) + "\n" + text(rows), encoding="utf-8", errors="surrogatepass"
    )
    (folder / "atomic.item").write_text(
        "item_id:token\tgenre:token_seq\tyear:float\n" + text(side), encoding="utf-8", errors="surrogatepass"
    )
    load_or_error(AtomicFiles(path=folder), features=True)


value = st.one_of(
    st.none(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=5),
    st.sampled_from(["2016-03-09 00:00:00", "$3.99", "", "B000X"]),
    st.lists(st.text(max_size=3), max_size=2),
    st.just({"a": 1}),
)
amazon_key = st.sampled_from(
    ["reviewerID", "asin", "overall", "unixReviewTime", "user_id", "parent_asin", "rating", "timestamp"]
)


@FUZZ
@given(
    records=st.lists(st.dictionaries(amazon_key, value, max_size=6), max_size=8),
    junk=st.sampled_from(["", "\n", "not json\n", "[1]\n", "{'asin': 'B1', 'price': 2}\n"]),
    gz=st.booleans(),
)
def test_review_dumps_random_records(scratch: Path, records: list[dict], junk: str, gz: bool) -> None:
    text = "".join(json.dumps(r) + "\n" for r in records) + junk
    data = gzip.compress(text.encode()) if gz else text.encode()
    reviews, meta = scratch / "reviews.json", scratch / "meta.json"
    reviews.write_bytes(data)
    meta.write_bytes(data)
    load_or_error(AmazonReviews(path=reviews, meta_path=meta), features=True)
    business = "".join(
        json.dumps({"business_id": r.get("asin"), "categories": r.get("user_id"), "stars": r.get("rating")})
        + "\n"
        for r in records
    )
    meta.write_text(business)
    yelp = "".join(
        json.dumps({"user_id": r.get("reviewerID"), "business_id": r.get("asin"), "date": r.get("timestamp")})
        + "\n"
        for r in records
    )
    reviews.write_text(yelp + junk)
    load_or_error(YelpReviews(path=reviews, meta_path=meta), features=True)


@FUZZ
@given(
    users=st.lists(st.one_of(st.none(), st.text(max_size=3), st.integers(-3, 3)), min_size=1, max_size=6),
    numbers=st.lists(
        st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True)), min_size=1, max_size=6
    ),
)
def test_parquet_random_columns(scratch: Path, users: list[object], numbers: list[float | None]) -> None:
    n = min(len(users), len(numbers))
    as_text = [None if u is None else str(u) for u in users[:n]]
    table = pa.table({"u": as_text, "i": as_text[::-1], "r": numbers[:n], "t": numbers[:n]})
    path = scratch / "cols.parquet"
    pq.write_table(table, path)
    load_or_error(
        ParquetSource(path=path, columns={"user": "u", "item": "i", "rating": "r", "timestamp": "t"})
    )
