"""Dataset cache: round trip, keys, invalidation, corrupt files, and one build for concurrent processes."""

from __future__ import annotations

import logging
import multiprocessing
import time
from pathlib import Path

import numpy as np
import pytest

from recbench.data.cache import DATA_FORMAT_VERSION, cache_path, load_cached, params_key
from recbench.data.filters import Preprocess
from recbench.data.interactions import IdMaps, Interactions
from recbench.data.sources import CsvSource, MovieLens, Synthetic


class Counting:
    """A source that records each build in a log file (visible across processes)."""

    name = "counting"

    def __init__(self, *, log: str, n: int = 5, delay: float = 0.0) -> None:
        self.log = log
        self.n = n
        self.delay = delay

    def cache_key(self) -> dict:
        return params_key(self)

    def load(self) -> tuple[Interactions, IdMaps]:
        with open(self.log, "a") as fh:
            fh.write("built\n")
        time.sleep(self.delay)
        users = np.arange(self.n)
        data = Interactions(users, users[::-1].copy(), self.n, self.n, ratings=np.ones(self.n))
        ids = IdMaps(users=users + 100, items=np.array([f"i{k}" for k in users]), item_titles=None)
        return data, ids


def builds(log: Path) -> int:
    return len(log.read_text().splitlines()) if log.exists() else 0


def assert_same(a: tuple[Interactions, IdMaps], b: tuple[Interactions, IdMaps]) -> None:
    for name in ("users", "items", "ratings", "timestamps"):
        x, y = getattr(a[0], name), getattr(b[0], name)
        assert (x is None) == (y is None)
        if x is not None:
            np.testing.assert_array_equal(x, y)
            assert x.dtype == y.dtype
    assert (a[0].n_users, a[0].n_items) == (b[0].n_users, b[0].n_items)
    for name in ("users", "items", "item_titles"):
        x, y = getattr(a[1], name), getattr(b[1], name)
        assert (x is None) == (y is None)
        if x is not None:
            np.testing.assert_array_equal(x, y)


def test_round_trip_and_hit(tmp_path: Path) -> None:
    src = Synthetic(n_users=50, n_items=30, n_interactions=600, seed=1)
    first = load_cached(src, tmp_path / "cache")
    assert cache_path(src, tmp_path / "cache").is_file()
    assert_same(first, src.load())
    assert_same(load_cached(src, tmp_path / "cache"), first)


def test_round_trip_with_titles(tmp_path: Path, ml100k_dir: Path) -> None:
    src = MovieLens(variant="ml-100k", path=ml100k_dir)
    assert_same(load_cached(src, tmp_path), src.load())


def test_round_trip_with_string_ids(tmp_path: Path) -> None:
    csv = tmp_path / "r.csv"
    csv.write_text("user,item\nann,x\nbob,y\n")
    src2 = CsvSource(path=csv)
    assert_same(load_cached(src2, tmp_path), src2.load())


def test_second_load_does_not_rebuild_and_none_disables(tmp_path: Path) -> None:
    log = tmp_path / "log"
    src = Counting(log=str(log))
    load_cached(src, tmp_path / "c")
    load_cached(src, tmp_path / "c")
    assert builds(log) == 1
    load_cached(src, None)
    load_cached(src, None)
    assert builds(log) == 3 and len(list((tmp_path / "c").glob("*.npz"))) == 1


def test_key_depends_on_params_version_and_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    a = cache_path(Synthetic(seed=0), tmp_path)
    assert a == cache_path(Synthetic(seed=0), tmp_path)
    assert a != cache_path(Synthetic(seed=1), tmp_path)
    assert a != cache_path(Synthetic(seed=0, preprocess=Preprocess(user_core=2)), tmp_path)
    assert a.name.startswith("synthetic-")
    monkeypatch.setattr("recbench.data.cache.DATA_FORMAT_VERSION", DATA_FORMAT_VERSION + 1)
    assert a != cache_path(Synthetic(seed=0), tmp_path)


def test_edited_file_invalidates(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    path.write_text("user,item\n1,2\n")
    src = CsvSource(path=path)
    assert len(load_cached(src, tmp_path / "c")[0]) == 1
    path.write_text("user,item\n1,2\n3,4\n")
    assert len(load_cached(src, tmp_path / "c")[0]) == 2


def test_corrupt_cache_file_is_rebuilt(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    log = tmp_path / "log"
    src = Counting(log=str(log))
    load_cached(src, tmp_path)
    path = cache_path(src, tmp_path)
    path.write_bytes(path.read_bytes()[:50])
    with caplog.at_level(logging.WARNING):
        again = load_cached(src, tmp_path)
    assert builds(log) == 2 and "rebuilding" in caplog.text
    assert_same(again, load_cached(src, tmp_path))
    assert builds(log) == 2


def test_key_change_after_load_is_found_again(tmp_path: Path) -> None:
    """A source whose key changes once its files exist (first download) is not built twice."""

    class Downloading(Counting):
        def cache_key(self) -> dict:
            return {**params_key(self), "downloaded": Path(self.log).exists()}

    src = Downloading(log=str(tmp_path / "log"))
    load_cached(src, tmp_path / "c")
    load_cached(src, tmp_path / "c")
    assert builds(tmp_path / "log") == 1


def _worker(log: str, cache_dir: str) -> None:
    load_cached(Counting(log=log, delay=1.0), cache_dir)


def test_concurrent_processes_build_once(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    log = tmp_path / "log"
    procs = [ctx.Process(target=_worker, args=(str(log), str(tmp_path / "c"))) for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0, 0]
    assert builds(log) == 1
    assert sorted(f.suffix for f in (tmp_path / "c").iterdir()) == [".lock", ".npz"]
