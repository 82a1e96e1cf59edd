"""Downloads that go wrong, seen through a dataset source: deleted, reported, never extracted.

No network: archives are local ``file://`` URLs, or the opener is replaced by a fake response.
"""

from __future__ import annotations

import hashlib
import http.client
import io
import urllib.error
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from recbench.data import download
from recbench.data.catalog import DATASETS
from recbench.data.sources import MovieLens
from recbench.errors import DataError

U_DATA = "1\t10\t5\t881250949\n1\t20\t3\t881250950\n2\t10\t4\t881250951\n"


def make_zip(path: Path, members: dict[str, str]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, text in members.items():
            zf.writestr(name, text)
    return path


def everything_under(folder: Path) -> list[str]:
    """Every file and folder below ``folder`` except the download locks."""
    if not folder.exists():
        return []
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if not p.name.endswith(".lock"))


@pytest.fixture
def use_archive(monkeypatch: pytest.MonkeyPatch) -> Callable[[str, str | None], None]:
    """Point the ml-100k entry at ``url`` with checksum ``md5`` and a 3-row u.data (network never used)."""
    monkeypatch.delenv("RECBENCH_OFFLINE", raising=False)

    def use(url: str, md5: str | None) -> None:
        spec = {**DATASETS["ml-100k"], "url": url, "md5": md5, "rows": {"count": 3, "header": False}}
        monkeypatch.setitem(DATASETS, "ml-100k", spec)

    return use


class FakeResponse(io.BytesIO):
    """A response that announces ``length`` bytes; ``fail`` raises instead of the end of the stream."""

    def __init__(self, payload: bytes, length: int, fail: BaseException | None = None) -> None:
        super().__init__(payload)
        self.headers = {"Content-Length": str(length)}
        self.fail = fail

    def read(self, size: int | None = -1) -> bytes:
        chunk = super().read(size)
        if not chunk and self.fail is not None:
            raise self.fail
        return chunk


@pytest.mark.parametrize(
    "fail",
    [
        None,
        http.client.IncompleteRead(b"partial", 5000),
        ConnectionResetError(104, "Connection reset by peer"),
    ],
    ids=["closed-early", "incomplete-read", "connection-reset"],
)
def test_download_cut_short_is_deleted_and_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, use_archive: Callable, fail: BaseException | None
) -> None:
    good = make_zip(tmp_path / "ml-100k.zip", {"ml-100k/u.data": U_DATA})
    payload = good.read_bytes()
    half = payload[: len(payload) // 2]
    use_archive("https://files.example.invalid/ml-100k.zip", None)  # no checksum: only the length can tell
    monkeypatch.setattr(download, "urlopen", lambda url, timeout: FakeResponse(half, len(payload), fail))
    data_dir = tmp_path / "data"
    with pytest.raises(DataError, match=r"ml-100k\.zip") as info:
        MovieLens(variant="ml-100k", data_dir=data_dir).load()
    assert "cut short" in str(info.value) or "could not download" in str(info.value)
    assert everything_under(data_dir) == []  # no archive, no partial file, no extracted folder

    # The next attempt (a whole file this time) succeeds: nothing stale is left in the way.
    monkeypatch.setattr(download, "urlopen", lambda url, timeout: FakeResponse(payload, len(payload)))
    data, _ = MovieLens(variant="ml-100k", data_dir=data_dir).load()
    assert len(data) == 3


def test_wrong_checksum_is_deleted_and_never_extracted(tmp_path: Path, use_archive: Callable) -> None:
    archive = make_zip(tmp_path / "ml-100k.zip", {"ml-100k/u.data": U_DATA})
    use_archive(archive.as_uri(), "0e33842e24a9c977be4e0107933c0723")  # the published sum, not this file's
    data_dir = tmp_path / "data"
    with pytest.raises(DataError, match=r"MD5 [0-9a-f]{32}, not the published 0e33842e.*deleted"):
        MovieLens(variant="ml-100k", data_dir=data_dir).load()
    assert everything_under(data_dir) == []


def test_unreachable_server_is_a_data_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, use_archive: Callable
) -> None:
    def refuse(url: str, timeout: float) -> None:
        raise urllib.error.URLError(ConnectionRefusedError(111, "Connection refused"))

    use_archive("https://files.example.invalid/ml-100k.zip", None)
    monkeypatch.setattr(download, "urlopen", refuse)
    with pytest.raises(DataError, match=r"could not download https://files\.example\.invalid/ml-100k\.zip"):
        MovieLens(variant="ml-100k", data_dir=tmp_path / "data").load()
    assert everything_under(tmp_path / "data") == []


@pytest.mark.parametrize("member", ["../../escaped.txt", "/tmp/recbench-escaped.txt", "ml-100k/../../up.txt"])
def test_zip_member_outside_the_target_is_refused(tmp_path: Path, use_archive: Callable, member: str) -> None:
    archive = make_zip(tmp_path / "ml-100k.zip", {"ml-100k/u.data": U_DATA, member: "owned"})
    use_archive(archive.as_uri(), hashlib.md5(archive.read_bytes()).hexdigest())  # checksum fine, content not
    data_dir = tmp_path / "a" / "b" / "data"
    with pytest.raises(DataError, match=rf"refusing to extract .*member {member!r} is unsafe"):
        MovieLens(variant="ml-100k", data_dir=data_dir).load()
    assert not (data_dir / "ml-100k").exists() and everything_under(data_dir) == []  # archive deleted too
    assert [p for p in tmp_path.rglob("*.txt")] == []  # nothing written anywhere, inside or outside
    assert not Path("/tmp/recbench-escaped.txt").exists()


def test_archive_failing_its_row_count_is_deleted_and_not_installed(
    tmp_path: Path, use_archive: Callable
) -> None:
    """Archives without a published checksum are checked by row count after extraction."""
    archive = make_zip(tmp_path / "ml-100k.zip", {"ml-100k/u.data": U_DATA + U_DATA})
    use_archive(archive.as_uri(), None)
    data_dir = tmp_path / "data"
    with pytest.raises(DataError, match=r"u\.data has 6 rows, not the 3 of ml-100k"):
        MovieLens(variant="ml-100k", data_dir=data_dir).load()
    assert everything_under(data_dir) == []
