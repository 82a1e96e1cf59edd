"""On-disk cache of loaded datasets, shared safely by parallel jobs.

:func:`load_cached` keys a ``.npz`` file by a hash of ``source.cache_key()`` (class, parameters and the
size/mtime of local files) plus :data:`DATA_FORMAT_VERSION`. The file is built under a
:class:`filelock.FileLock`, written to a temp file and moved into place with ``os.replace``, so
concurrent jobs build it once and never read half a file. A corrupt cache file is rebuilt. There is
deliberately no in-memory memo: worker processes are reused across sweep jobs.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from filelock import FileLock

from recbench.data.interactions import IdMaps, Interactions
from recbench.data.readers import fingerprint
from recbench.errors import DataError
from recbench.serialization import jsonable, read_npz, write_npz

log = logging.getLogger(__name__)

#: Bump when the parsing, filtering or encoding of any source changes its output.
DATA_FORMAT_VERSION = 1
_LOCK_TIMEOUT_S = 6 * 3600


class _Source(Protocol):
    name: str

    def load(self) -> tuple[Interactions, IdMaps]: ...

    def cache_key(self) -> dict: ...


def params_key(obj: object, files: Iterable[str | Path] = ()) -> dict[str, Any]:
    """Cache key of a source: its class, its keyword-only constructor params and its files' fingerprints."""
    names = [
        p.name
        for p in inspect.signature(type(obj).__init__).parameters.values()
        if p.kind is inspect.Parameter.KEYWORD_ONLY
    ]
    return {
        "class": f"{type(obj).__module__}.{type(obj).__qualname__}",
        "params": jsonable({n: getattr(obj, n) for n in names}),
        "files": fingerprint(files),
    }


def cache_path(source: _Source, cache_dir: str | Path) -> Path:
    """Where ``source``'s cache file lives (name plus a hash of its key and the format version)."""
    key = json.dumps({"version": DATA_FORMAT_VERSION, "source": source.cache_key()}, sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:20]
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in str(source.name))[:60]
    return Path(cache_dir).expanduser() / f"{safe}-{digest}.npz"


def _save(path: Path, data: Interactions, ids: IdMaps) -> None:
    arrays: dict[str, np.ndarray] = {
        "users": data.users,
        "items": data.items,
        "shape": np.array([data.n_users, data.n_items], dtype=np.int64),
        "id_users": ids.users,
        "id_items": ids.items,
    }
    for name, arr in (
        ("ratings", data.ratings),
        ("timestamps", data.timestamps),
        ("titles", ids.item_titles),
    ):
        if arr is not None:
            arrays[name] = arr
    write_npz(path, arrays)


def _load(path: Path) -> tuple[Interactions, IdMaps]:
    z = read_npz(path)
    n_users, n_items = (int(v) for v in z["shape"])
    data = Interactions(
        users=z["users"],
        items=z["items"],
        n_users=n_users,
        n_items=n_items,
        ratings=z.get("ratings"),
        timestamps=z.get("timestamps"),
    )
    ids = IdMaps(users=z["id_users"], items=z["id_items"], item_titles=z.get("titles"))
    if len(ids.users) != n_users or len(ids.items) != n_items:
        raise ValueError("id maps do not match the id space")
    return data, ids


def _try_load(path: Path) -> tuple[Interactions, IdMaps] | None:
    if not path.is_file():
        return None
    try:
        return _load(path)
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:
        log.warning("cache file %s is unreadable (%s); rebuilding it", path, err)
        return None


def load_cached(source: _Source, cache_dir: str | Path | None) -> tuple[Interactions, IdMaps]:
    """``source.load()``, read from or written to ``cache_dir`` (``None`` disables caching)."""
    if cache_dir is None:
        return source.load()
    path = cache_path(source, cache_dir)
    hit = _try_load(path)
    if hit is not None:
        log.info("dataset %s read from cache %s", source.name, path)
        return hit
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(path) + ".lock", timeout=_LOCK_TIMEOUT_S)
        lock.acquire()
    except OSError as err:
        raise _unwritable(cache_dir, err) from err
    try:
        # The key may change once the source's files exist (first download), so look again.
        for cand in dict.fromkeys([path, cache_path(source, cache_dir)]):
            hit = _try_load(cand)
            if hit is not None:
                return hit
        data, ids = source.load()
        final = cache_path(source, cache_dir)
        try:
            _save(final, data, ids)
        except OSError as err:
            raise _unwritable(cache_dir, err) from err
        log.info("dataset %s cached at %s", source.name, final)
    finally:
        lock.release()
    return data, ids


def _unwritable(cache_dir: str | Path, err: OSError) -> DataError:
    return DataError(
        f"cannot write the dataset cache in {cache_dir}: {err}; set paths.cache_dir to a writable "
        "folder, or to null to disable caching."
    )
