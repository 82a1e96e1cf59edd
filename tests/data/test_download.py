"""Downloads with local fake archives (file:// URLs, a patched opener): checksums, safe unzip, commands."""

from __future__ import annotations

import hashlib
import io
import os
import zipfile
from pathlib import Path

import pytest

from recbench.data import catalog, download
from recbench.data.catalog import DATASETS, fetch, obtain
from recbench.data.commands import check, list_datasets
from recbench.data.download import fetch_archive, safe_extract
from recbench.data.sources import MovieLens
from recbench.errors import DataError

U_DATA = "1\t10\t5\t881250949\n1\t20\t3\t881250950\n2\t10\t4\t881250951\n"


def make_zip(path: Path, members: dict[str, str | bytes], symlink: str | None = None) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
        if symlink:
            info = zipfile.ZipInfo(symlink)
            info.external_attr = (0o120777 << 16) | 0
            zf.writestr(info, "/etc/passwd")
    return path


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".") and not p.name.endswith(".lock"))


def test_download_checks_md5_and_moves_atomically(tmp_path: Path) -> None:
    src = make_zip(tmp_path / "src.zip", {"a.txt": "hello"})
    dest = tmp_path / "out" / "a.zip"
    download.download(src.as_uri(), dest, md5=md5(src), progress=False)
    assert dest.read_bytes() == src.read_bytes() and leftovers(dest.parent) == []


def test_md5_mismatch_deletes_the_download(tmp_path: Path) -> None:
    src = make_zip(tmp_path / "src.zip", {"a.txt": "hello"})
    dest = tmp_path / "out" / "a.zip"
    with pytest.raises(DataError, match=r"MD5 .* not the published 0{32}.*deleted"):
        download.download(src.as_uri(), dest, md5="0" * 32, progress=False)
    assert not dest.exists() and leftovers(dest.parent) == []


def test_unreachable_url_is_a_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="could not download"):
        download.download((tmp_path / "missing.zip").as_uri(), tmp_path / "x.zip", progress=False)


def test_patched_opener_is_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    payload = b"payload"
    calls: list[str] = []

    class Response(io.BytesIO):
        headers = {"Content-Length": str(len(payload))}

    def opener(url: str, timeout: float) -> Response:
        calls.append(url)
        return Response(payload)

    monkeypatch.setattr(download, "urlopen", opener)
    out = download.download("https://example.invalid/x.zip", tmp_path / "x.zip", progress=False)
    assert calls == ["https://example.invalid/x.zip"] and out.read_bytes() == payload


@pytest.mark.parametrize("member", ["../evil.txt", "/tmp/evil.txt", "ok/../../evil.txt", "C:/evil.txt"])
def test_unsafe_member_path_is_refused(tmp_path: Path, member: str) -> None:
    archive = make_zip(tmp_path / "bad.zip", {"ok.txt": "x", member: "evil"})
    target = tmp_path / "target"
    target.mkdir()
    with pytest.raises(DataError, match="unsafe"):
        safe_extract(archive, target)
    assert not (tmp_path / "evil.txt").exists() and list(target.iterdir()) == []


def test_symlink_member_is_refused(tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "link.zip", {"ok.txt": "x"}, symlink="link")
    with pytest.raises(DataError, match="symbolic link"):
        safe_extract(archive, tmp_path)


def test_corrupt_zip_is_deleted(tmp_path: Path) -> None:
    archive = tmp_path / "broken.zip"
    archive.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(DataError, match="not a valid zip archive.*deleted"):
        safe_extract(archive, tmp_path / "t")
    assert not archive.exists()
    good = make_zip(tmp_path / "crc.zip", {"a.txt": "a" * 1000})
    raw = bytearray(good.read_bytes())
    raw[raw.index(b"a.txt") + 5 + 10] ^= 0xFF  # damage the compressed payload
    good.write_bytes(bytes(raw))
    with pytest.raises(DataError, match="not a valid zip archive"):
        safe_extract(good, tmp_path / "t2")
    assert not good.exists()


def test_fetch_archive_extracts_atomically(tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "ml-100k.zip", {"ml-100k/u.data": U_DATA, "ml-100k/u.item": "10|A||\n"})
    root = tmp_path / "data"
    folder = fetch_archive(
        archive.as_uri(), root / "ml-100k", files=["u.data"], md5=md5(archive), progress=False
    )
    assert folder == root / "ml-100k" and (folder / "u.data").read_text() == U_DATA
    assert leftovers(root) == [] and not (root / "ml-100k.zip").exists()
    # Already there: no download at all.
    assert fetch_archive("file:///nonexistent.zip", root / "ml-100k", files=["u.data"]) == folder


def test_movielens_downloads_on_first_use(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    archive = make_zip(tmp_path / "ml-100k.zip", {"ml-100k/u.data": U_DATA})
    spec = {**DATASETS["ml-100k"], "url": archive.as_uri(), "md5": md5(archive)}
    monkeypatch.setitem(DATASETS, "ml-100k", spec)
    monkeypatch.delenv("RECBENCH_OFFLINE", raising=False)
    data, _ = MovieLens(variant="ml-100k", data_dir=tmp_path / "data").load()
    assert (data.n_users, data.n_items, len(data)) == (2, 2, 3)
    assert (tmp_path / "data" / "ml-100k" / "u.data").is_file()


def test_fetch_verifies_rows_when_no_checksum_is_published(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    archive = make_zip(tmp_path / "small.zip", {"ml-latest-small/ratings.csv": "userId,movieId\n1,2\n"})
    spec = {**DATASETS["ml-latest-small"], "url": archive.as_uri()}
    monkeypatch.setitem(DATASETS, "ml-latest-small", spec)
    with pytest.raises(DataError, match=r"has 1 rows, not the 100,836"):
        fetch("ml-latest-small", tmp_path / "data", progress=False)
    assert not (tmp_path / "data" / "ml-latest-small").exists() and leftovers(tmp_path / "data") == []
    spec["rows"] = {"count": 1, "header": True}
    assert (fetch("ml-latest-small", tmp_path / "data", progress=False) / "ratings.csv").is_file()


def test_offline_and_local_only_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECBENCH_OFFLINE", "1")
    with pytest.raises(DataError, match=r"RECBENCH_OFFLINE is set.*ml-1m.zip.*RECBENCH_DATA_DIR"):
        fetch("ml-1m", tmp_path)
    with pytest.raises(DataError, match=r"cannot be downloaded automatically.*ICLRec"):
        obtain("amazon-beauty", data_dir=tmp_path)
    with pytest.raises(DataError, match="unknown dataset"):
        fetch("ml-2m", tmp_path)


def test_list_and_check_local_copies(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECBENCH_DATA_DIR", str(tmp_path))
    folder = tmp_path / "ml-100k"
    folder.mkdir()
    (folder / "u.data").write_text(U_DATA)
    listed = {d["name"]: d for d in list_datasets()}
    assert set(listed) == set(DATASETS)
    assert listed["ml-100k"]["local"] and not listed["ml-1m"]["local"] and listed["ml-1m"]["downloadable"]
    with pytest.raises(DataError, match=r"u.item is missing.*3 rows, expected 100,000"):
        check("ml-100k")
    monkeypatch.setitem(DATASETS, "ml-100k", {**DATASETS["ml-100k"], "rows": {"count": 3, "header": False}})
    (folder / "u.item").write_text("10|A||\n")
    assert "ok" in check("ml-100k")


def test_check_shared_copies() -> None:
    root = Path(
        os.environ.get("RECBENCH_DATA_DIR") or Path(catalog.__file__).parents[3] / "shared" / "datasets"
    )
    if not (root / "amazon" / "Beauty.txt").is_file() or not (root / "ml-100k" / "u.data").is_file():
        pytest.skip("shared datasets not found")
    assert "sha256 ok" in check("amazon-beauty", root)
    assert "100,000 rows" in check("ml-100k", root)
    assert "sha256 ok" in check("ml-latest-small", root)
