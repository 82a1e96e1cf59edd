"""Property tests: whatever bytes or rows the CSV and sequence-file loaders get, only DataError escapes."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recbench.data.filters import Preprocess
from recbench.data.interactions import Interactions
from recbench.data.sources import CsvSource, SequenceFile
from recbench.errors import DataError

FUZZ = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])

CSV_SOURCES = [
    {"sep": ",", "header": True, "columns": {"user": "u", "item": "i", "rating": "r", "timestamp": "t"}},
    {"sep": "\t", "header": False, "columns": {"user": 0, "item": 1, "rating": 2}},
    {"sep": ",", "header": False, "columns": None, "preprocess": Preprocess(dropna=False, user_core=2)},
    {"sep": "::", "header": False, "columns": {"user": 0, "item": 1, "timestamp": 2}},
]


@pytest.fixture(scope="module")
def scratch() -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as tmp:
        yield Path(tmp)


def check_loaded(data: Interactions) -> None:
    assert len(data) > 0
    assert data.users.max() < data.n_users and data.items.max() < data.n_items
    if data.ratings is not None:
        assert np.isfinite(data.ratings).all()
    if data.timestamps is not None:
        assert (data.timestamps >= 0).all()


def load_or_data_error(source: CsvSource | SequenceFile) -> None:
    try:
        data, ids = source.load()
    except DataError as err:
        assert str(err)
        return
    check_loaded(data)
    assert len(ids.users) == data.n_users and len(ids.items) == data.n_items


@FUZZ
@given(raw=st.binary(max_size=300), which=st.integers(0, len(CSV_SOURCES) - 1))
def test_csv_random_bytes(scratch: Path, raw: bytes, which: int) -> None:
    path = scratch / "fuzz.csv"
    path.write_bytes(raw)
    load_or_data_error(CsvSource(path=path, **CSV_SOURCES[which]))


cell = st.one_of(
    st.integers(-5, 50).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(str),
    st.sampled_from(["", "u", "i", "r", "t", "NaN", "x", '"', "2020-01-01", "1e400", " ", "-0", "007"]),
    st.text(max_size=4),
)


@FUZZ
@given(
    rows=st.lists(st.lists(cell, min_size=1, max_size=5), max_size=12),
    sep=st.sampled_from([",", "\t", "::"]),
    which=st.integers(0, len(CSV_SOURCES) - 1),
)
def test_csv_random_rows(scratch: Path, rows: list[list[str]], sep: str, which: int) -> None:
    path = scratch / "rows.csv"
    path.write_text("\n".join(sep.join(r) for r in rows), encoding="utf-8", errors="surrogatepass")
    load_or_data_error(CsvSource(path=path, **CSV_SOURCES[which]))


@FUZZ
@given(raw=st.binary(max_size=300))
def test_sequence_file_random_bytes(scratch: Path, raw: bytes) -> None:
    path = scratch / "fuzz.txt"
    path.write_bytes(raw)
    load_or_data_error(SequenceFile(path=path))


@FUZZ
@given(
    lines=st.lists(
        st.lists(st.one_of(st.integers(0, 30).map(str), st.text(min_size=1, max_size=3)), max_size=6),
        max_size=10,
    ),
    newline=st.sampled_from(["\n", "\r\n", "\r"]),
)
def test_sequence_file_random_lines(scratch: Path, lines: list[list[str]], newline: str) -> None:
    path = scratch / "lines.txt"
    path.write_text(
        newline.join(" ".join(tokens) for tokens in lines), encoding="utf-8", errors="surrogatepass"
    )
    load_or_data_error(SequenceFile(path=path))
