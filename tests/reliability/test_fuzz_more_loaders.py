"""Property tests for the loaders tests/data/test_fuzz_loaders.py does not reach.

MovieLens layouts (``u.data`` tab-separated, ``ratings.dat`` with ``::``, ``ratings.csv`` with a header,
and their title files), Last.fm, predefined split files, and the files recbench writes itself and may
find damaged (checkpoint, model, per-user metrics, metrics.json, dataset cache). Whatever the bytes, the
only exceptions that may escape are recbench's own (DataError / ConfigError / RecbenchError); files
that only recbench reads back as a convenience (metrics.json, the cache) are skipped or rebuilt.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recbench.data.cache import cache_path, load_cached, params_key
from recbench.data.interactions import IdMaps, Interactions
from recbench.data.predefined import PredefinedSplit
from recbench.data.sources import LastFM, MovieLens
from recbench.errors import ConfigError, DataError, RecbenchError
from recbench.models.baselines import Popularity
from recbench.models.factorization import BPR
from recbench.models.persistence import NUMPY_FILE, TORCH_FILE, load_state
from recbench.reporting.records import METRICS_FILE, PER_USER_FILE, read_per_user, read_runs
from recbench.training import Trainer
from recbench.training.checkpoint import CHECKPOINT_FILE, load_checkpoint

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# (variant, ratings file, its separator, header line or "")
LAYOUTS = [
    ("ml-100k", "u.data", "\t", ""),
    ("ml-1m", "ratings.dat", "::", ""),
    ("ml-latest-small", "ratings.csv", ",", "userId,movieId,rating,timestamp\n"),
]
TITLES = {"ml-100k": "u.item", "ml-1m": "movies.dat", "ml-latest-small": "movies.csv"}

cell = st.one_of(
    st.integers(-3, 40).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(str),
    st.sampled_from(
        ["", "NaN", "x", '"', ":", "::", "\t", ",", "1e400", "2020-01-01", "-0", "007", "9" * 30]
    ),
    st.text(max_size=4),
)
rows = st.lists(st.lists(cell, min_size=1, max_size=6), max_size=10)


@pytest.fixture(scope="module")
def scratch() -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as tmp:
        yield Path(tmp)


def check_loaded(data: Interactions, ids: IdMaps) -> None:
    assert len(data) > 0 and len(ids.users) == data.n_users and len(ids.items) == data.n_items
    assert data.users.min() >= 0 and data.users.max() < data.n_users
    assert data.items.min() >= 0 and data.items.max() < data.n_items
    if data.ratings is not None:
        assert np.isfinite(data.ratings).all()
    if data.timestamps is not None:
        assert (data.timestamps >= 0).all()
    if ids.item_titles is not None:
        assert len(ids.item_titles) == data.n_items


def load_or_refuse(source: MovieLens | LastFM) -> None:
    try:
        data, ids = source.load()
    except (DataError, ConfigError) as err:
        assert str(err)
        return
    check_loaded(data, ids)


def folder_with(scratch: Path, name: str, files: dict[str, bytes]) -> Path:
    folder = scratch / name
    folder.mkdir(exist_ok=True)
    for old in folder.iterdir():
        old.unlink()
    for file, raw in files.items():
        (folder / file).write_bytes(raw)
    return folder


def encode(text: str) -> bytes:
    return text.encode("utf-8", errors="surrogatepass")


@FUZZ
@given(layout=st.sampled_from(LAYOUTS), raw=st.binary(max_size=300))
def test_movielens_ratings_random_bytes(scratch: Path, layout: tuple, raw: bytes) -> None:
    variant, ratings, _, _ = layout
    load_or_refuse(
        MovieLens(variant=variant, path=folder_with(scratch, variant, {ratings: raw}), download=False)
    )


@FUZZ
@given(layout=st.sampled_from(LAYOUTS), table=rows)
def test_movielens_ratings_random_rows(scratch: Path, layout: tuple, table: list[list[str]]) -> None:
    variant, ratings, sep, header = layout
    text = header + "\n".join(sep.join(r) for r in table)
    load_or_refuse(MovieLens(variant=variant, path=folder_with(scratch, variant, {ratings: encode(text)})))


@FUZZ
@given(layout=st.sampled_from(LAYOUTS), raw=st.binary(max_size=300))
def test_movielens_titles_random_bytes(scratch: Path, layout: tuple, raw: bytes) -> None:
    variant, ratings, sep, header = layout
    good = header + "\n".join(sep.join(map(str, (u, i, 4, 100 + u))) for u in (1, 2) for i in (10, 20))
    files = {ratings: good.encode(), TITLES[variant]: raw}
    load_or_refuse(MovieLens(variant=variant, path=folder_with(scratch, variant, files)))


@FUZZ
@given(table=rows, artists=st.binary(max_size=200))
def test_lastfm_random_rows(scratch: Path, table: list[list[str]], artists: bytes) -> None:
    text = "userID\tartistID\tweight\n" + "\n".join("\t".join(r) for r in table)
    files = {"user_artists.dat": encode(text), "artists.dat": artists}
    load_or_refuse(LastFM(path=folder_with(scratch, "lastfm", files), download=False))


DATA = Interactions(np.repeat(np.arange(4), 3), np.tile(np.arange(3), 4), 4, 3)
IDS = IdMaps(users=np.array([10, 20, 30, 40]), items=np.array(["a", "b", "c"]))
split_cell = st.one_of(st.sampled_from(["10", "20", "30", "40", "a", "b", "c", "50", "d", ""]), cell)
split_rows = st.lists(st.lists(split_cell, min_size=1, max_size=3), max_size=8)


@FUZZ
@given(train=split_rows, test=split_rows, header=st.booleans(), drop=st.booleans())
def test_predefined_split_random_rows(
    scratch: Path, train: list[list[str]], test: list[list[str]], header: bool, drop: bool
) -> None:
    files = {}
    for name, table in (("u.base", train), ("u.test", test)):
        files[name] = scratch / name
        files[name].write_bytes(
            encode(("user\titem\n" if header else "") + "\n".join("\t".join(r) for r in table))
        )
    columns = {"user": "user", "item": "item"} if header else None
    splitter = PredefinedSplit(
        train=files["u.base"], test=files["u.test"], header=header, columns=columns, drop_unknown=drop
    )
    try:
        split = splitter(DATA, seed=0, ids=IDS)
    except (DataError, ConfigError) as err:
        assert str(err)
        return
    train_pairs = set(zip(split.train.users.tolist(), split.train.items.tolist()))
    assert not train_pairs & set(zip(split.test.users.tolist(), split.test.items.tolist()))


@FUZZ
@given(raw=st.binary(max_size=400))
def test_predefined_split_random_bytes(scratch: Path, raw: bytes) -> None:
    (scratch / "bytes.base").write_bytes(raw)
    (scratch / "ok.test").write_text("10\ta\n")
    with contextlib.suppress(DataError, ConfigError):
        PredefinedSplit(train=scratch / "bytes.base", test=scratch / "ok.test")(DATA, seed=0, ids=IDS)


# -- files recbench wrote itself, found damaged -----------------------------------------------------------

damaged = st.one_of(
    st.binary(max_size=300),
    st.sampled_from([b"PK\x03\x04", b"PK\x05\x06" + b"\0" * 18, b"\x80\x02}q\x00.", b"{}", b"[1, 2"]),
)


class Source:
    name = "fuzz"

    def cache_key(self) -> dict:
        return params_key(self)

    def load(self) -> tuple[Interactions, IdMaps]:
        return DATA, IDS


@FUZZ
@given(raw=damaged)
def test_damaged_run_files(scratch: Path, raw: bytes) -> None:
    run = scratch / "run"
    run.mkdir(exist_ok=True)
    for name in (CHECKPOINT_FILE, PER_USER_FILE, METRICS_FILE, NUMPY_FILE):
        (run / name).write_bytes(raw)
    with pytest.raises(ConfigError, match="checkpoint"):
        load_checkpoint(run)
    with contextlib.suppress(RecbenchError):
        read_per_user(run)
    assert len(read_runs([run])) <= 1  # an unreadable metrics.json is skipped with a warning
    with contextlib.suppress(RecbenchError):  # (an empty zip is a valid, empty model.npz)
        load_state(Popularity(), run)
    (run / NUMPY_FILE).unlink()
    (run / TORCH_FILE).write_bytes(raw)
    with pytest.raises(RecbenchError, match="not a readable recbench model file"):
        load_state(BPR(factors=4, trainer=Trainer(device="cpu")), run, train=DATA)
    (run / TORCH_FILE).unlink()


@FUZZ
@given(raw=damaged)
def test_damaged_cache_file_is_rebuilt(scratch: Path, raw: bytes) -> None:
    path = cache_path(Source(), scratch / "cache")
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(raw)
    data, ids = load_cached(Source(), scratch / "cache")
    np.testing.assert_array_equal(data.users, DATA.users)
    assert ids.items.tolist() == ["a", "b", "c"]
