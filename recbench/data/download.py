"""Downloading and unpacking official dataset archives: checksum, temp file + atomic move, safe unzip.

Nothing here is called by the tests against the network: they pass ``file://`` URLs of hand-made
archives or monkeypatch :data:`urlopen`.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import sys
import tempfile
import urllib.error
import urllib.request
import zipfile
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path, PurePosixPath
from urllib.parse import urlparse

from filelock import FileLock
from tqdm.auto import tqdm

from recbench.errors import DataError

log = logging.getLogger(__name__)

#: Opener used for every download (tests replace it to stay offline).
urlopen: Callable[..., object] = urllib.request.urlopen

_CHUNK = 1 << 20
_LOCK_TIMEOUT_S = 6 * 3600


def offline() -> bool:
    """Whether ``RECBENCH_OFFLINE`` forbids network access."""
    return os.environ.get("RECBENCH_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def file_digest(path: str | Path, algorithm: str = "md5") -> str:
    """Hex digest of a file, read in chunks."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def download(url: str, dest: str | Path, *, md5: str | None = None, progress: bool = True) -> Path:
    """Stream ``url`` to ``dest`` through a temp file in the same folder, then ``os.replace`` it.

    With ``md5`` the digest is checked before the move; on a mismatch the temp file is deleted and a
    :class:`DataError` raised. A progress bar is shown when ``progress`` and stderr is a terminal.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    tmp = Path(tmp_name)
    h = hashlib.md5()
    received = 0
    try:
        with os.fdopen(fd, "wb") as out, urlopen(url, timeout=60) as resp:  # type: ignore[attr-defined]
            total = resp.headers.get("Content-Length") if getattr(resp, "headers", None) else None
            bar = tqdm(
                total=int(total) if total else None,
                unit="B",
                unit_scale=True,
                desc=dest.name,
                disable=not (progress and sys.stderr.isatty()),
            )
            with bar:
                while chunk := resp.read(_CHUNK):
                    out.write(chunk)
                    h.update(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
        if total is not None and str(total).strip().isdigit() and received != int(total):
            raise DataError(
                f"the download of {url} was cut short ({received} of {total} bytes), so it was deleted. "
                "Run again to retry."
            )
        if md5 is not None and h.hexdigest() != md5.lower():
            raise DataError(
                f"the download of {url} has MD5 {h.hexdigest()}, not the published {md5}: the file is "
                "corrupt or was changed upstream, so it was deleted. Run again to retry, or download it "
                "by hand and check it with `md5sum`."
            )
        os.replace(tmp, dest)
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as err:
        tmp.unlink(missing_ok=True)
        raise DataError(f"could not download {url}: {err}") from err
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return dest


def _member_problem(info: zipfile.ZipInfo, target: Path) -> str | None:
    name = info.filename.replace("\\", "/")
    parts = PurePosixPath(name).parts
    if name.startswith("/") or (parts and ":" in parts[0]) or ".." in parts:
        return "its path leaves the target folder"
    if (info.external_attr >> 16) & 0o170000 == 0o120000:
        return "it is a symbolic link"
    if not (target / name).resolve().is_relative_to(target):
        return "its path leaves the target folder"
    return None


def safe_extract(archive: str | Path, target: str | Path) -> None:
    """Extract a zip into ``target``, refusing any member whose path escapes it (or is a link).

    A corrupt archive is deleted and reported as a :class:`DataError`.
    """
    archive, target = Path(archive), Path(target).resolve()

    def corrupt(err: BaseException) -> DataError:
        archive.unlink(missing_ok=True)
        return DataError(
            f"{archive} is not a valid zip archive ({err}); it was deleted, run again to re-download."
        )

    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError, EOFError) as err:
        raise corrupt(err) from err
    with zf:
        for info in zf.infolist():
            problem = _member_problem(info, target)
            if problem:
                raise DataError(
                    f"refusing to extract {archive}: member {info.filename!r} is unsafe ({problem}). "
                    "Delete the archive and download it again from the official site."
                )
        try:
            bad = zf.testzip()
            if bad is not None:
                raise zipfile.BadZipFile(f"bad CRC for member {bad!r}")
            zf.extractall(target)
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as err:
            raise corrupt(err) from err


def _find_root(tmp: Path, main_file: str) -> Path | None:
    """The shallowest folder under ``tmp`` (tmp itself or a top-level folder) holding ``main_file``."""
    if (tmp / main_file).is_file():
        return tmp
    for sub in sorted(p for p in tmp.iterdir() if p.is_dir()):
        if (sub / main_file).is_file():
            return sub
    return None


def fetch_archive(
    url: str,
    folder: str | Path,
    *,
    files: Sequence[str],
    md5: str | None = None,
    verify: Callable[[Path], None] | None = None,
    progress: bool = True,
) -> Path:
    """Make sure ``folder`` holds the files of the zip at ``url``; download and unpack it if not.

    The archive is downloaded beside ``folder`` (MD5-checked when ``md5`` is given), extracted into a
    temp folder, checked with ``verify`` (e.g. row counts when no checksum is published) and moved into
    place with one ``os.replace``. A file lock makes concurrent callers download once.
    """
    folder = Path(folder).absolute()
    root = folder.parent
    try:
        root.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(root / f".{folder.name}.lock"), timeout=_LOCK_TIMEOUT_S)
        with lock:
            if (folder / files[0]).is_file():
                return folder
            if folder.exists():
                raise DataError(
                    f"{folder} exists but holds no {files[0]}; move it away (or complete it) and run again."
                )
            archive = root / (Path(urlparse(url).path).name or f"{folder.name}.zip")
            log.info("downloading %s to %s", url, archive)
            download(url, archive, md5=md5, progress=progress)
            try:
                with tempfile.TemporaryDirectory(dir=root, prefix=f".{folder.name}-extract-") as tmp_name:
                    safe_extract(archive, tmp_name)
                    src = _find_root(Path(tmp_name), files[0])
                    if src is None:
                        raise DataError(
                            f"{url} does not contain {files[0]}; it is not the expected dataset archive."
                        )
                    if verify is not None:
                        verify(src)
                    os.replace(src, folder)
            finally:
                archive.unlink(missing_ok=True)  # installed, or unusable: either way not needed again
    except OSError as err:
        raise DataError(
            f"could not store the dataset under {root}: {err}; choose a writable data_dir."
        ) from err
    return folder
