"""Writing a split's parts for other libraries: RecBole benchmark files, CSV or Parquet, plus a JSON sidecar.

:func:`export_split` writes the train / valid / test parts of one split (or of every fold of a k-fold
split, in ``fold0/``, ``fold1/``, ...) with raw ids, in the parts' own row order, so that reading the
files back through ``split=files`` gives the very same arrays (and so the same metrics). Layouts:

* ``recbole``: ``<out>/<name>.train.inter``, ``.valid.inter``, ``.test.inter`` with RecBole's typed
  header (``user_id:token  item_id:token  rating:float  timestamp:float``), ``<name>`` being the output
  folder's name (``fold<j>`` for folds), so RecBole reads them with ``data_path: <parent of out>``,
  ``dataset: <name>`` and ``benchmark_filename: [train, valid, test]``;
* ``csv``: ``train.csv``, ``valid.csv``, ``test.csv`` with a ``user,item[,rating][,timestamp]`` header;
* ``parquet``: ``train.parquet``, ``valid.parquet``, ``test.parquet`` with the same columns.

The sidecar ``export.json`` records the recbench version, the dataset's checksum (a sha256 over its
encoded arrays and raw ids), the dataset and split parameters, the seed, the row count and sha256 of
every file, and the ``split=files`` overrides that read the export back.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import pandas as pd

from recbench.data.cache import jsonable
from recbench.data.download import file_digest
from recbench.data.interactions import IdMaps, Interactions
from recbench.data.splits import Split
from recbench.errors import ConfigError, DataError
from recbench.files import atomic_write

log = logging.getLogger(__name__)

FORMATS = ("recbole", "csv", "parquet")
SIDECAR = "export.json"
_PARTS = (("train", "train"), ("val", "valid"), ("test", "test"))


def data_checksum(data: Interactions, ids: IdMaps) -> str:
    """sha256 over the encoded arrays and raw ids: equal for equal datasets, whatever their source."""
    h = hashlib.sha256()
    for arr in (data.users, data.items, data.ratings, data.timestamps):
        h.update(b"-" if arr is None else np.ascontiguousarray(arr).tobytes())
    for raw in (ids.users, ids.items):
        h.update("\n".join(np.asarray(raw).astype(str)).encode())
        h.update(b"\0")
    return h.hexdigest()


def part_frame(part: Interactions, ids: IdMaps) -> pd.DataFrame:
    """A split part with raw ids (``user``, ``item``[, ``rating``][, ``timestamp``]), rows in order."""
    out = {"user": np.asarray(ids.users)[part.users], "item": np.asarray(ids.items)[part.items]}
    if part.ratings is not None:
        out["rating"] = part.ratings
    if part.timestamps is not None:
        out["timestamp"] = part.timestamps
    return pd.DataFrame(out)


def _refuse_unsafe_tokens(frame: pd.DataFrame, what: str) -> None:
    for col in ("user", "item"):
        if frame[col].dtype.kind in "iu":
            continue
        text = frame[col].astype(str)
        bad = text.str.contains(r"[\t\r\n]", regex=True) | (text == "")
        if bad.any():
            raise DataError(
                f"cannot write {what}: {col} id {text[bad].iloc[0]!r} is empty or holds a tab or line break, "
                "which RecBole's tab-separated atomic files cannot carry; use --format csv or parquet."
            )


def _recbole_writer(frame: pd.DataFrame) -> Callable[[BinaryIO], None]:
    kinds = {"user": "user_id:token", "item": "item_id:token", "rating": "rating:float"}
    kinds["timestamp"] = "timestamp:float"
    header = "\t".join(kinds[c] for c in frame.columns) + "\n"

    def write(fh: BinaryIO) -> None:
        fh.write(header.encode())
        frame.to_csv(fh, sep="\t", header=False, index=False, lineterminator="\n", float_format="%.9g")

    return write


def _csv_writer(frame: pd.DataFrame) -> Callable[[BinaryIO], None]:
    def write(fh: BinaryIO) -> None:
        frame.to_csv(fh, index=False, lineterminator="\n", float_format="%.9g")

    return write


def _parquet_writer(frame: pd.DataFrame) -> Callable[[BinaryIO], None]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(frame, preserve_index=False)

    def write(fh: BinaryIO) -> None:
        pq.write_table(table, fh)

    return write


def _file_name(fmt: str, name: str, part: str) -> str:
    return f"{name}.{part}.inter" if fmt == "recbole" else f"{part}.{fmt}"


def reimport_overrides(fmt: str, files: Mapping[str, str]) -> list[str]:
    """The ``recbench train`` overrides that read exported parts back as a predefined split."""
    out = ["split=files", *(f"split.{part}={path}" for part, path in files.items())]
    if fmt == "csv":
        out += ["split.sep=','", "split.header=true"]
    elif fmt == "recbole":
        out += ["split.header=true"]
    if "val" not in files:
        out.append("split.val=null")
    return out


def export_split(
    folds: Sequence[Split],
    ids: IdMaps,
    data: Interactions,
    out: str | Path,
    *,
    fmt: str,
    info: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Write every part of ``folds`` under ``out`` in format ``fmt`` and the sidecar; return the sidecar.

    ``info`` (dataset and split parameters, seed, version, ...) is stored in the sidecar as given.
    """
    if fmt not in FORMATS:
        raise ConfigError(f"--format {fmt!r} is not one of {list(FORMATS)}.")
    if not folds:
        raise DataError("the split produced no folds; nothing to export.")
    root = Path(out).expanduser().absolute()
    if _has_duplicate_pairs(data):
        log.warning(
            "the dataset holds repeated (user, item) pairs (dedupe is off); split=files maps a pair to one "
            "row, so re-importing the export gives the parts without those repeats"
        )
    writers = {"recbole": _recbole_writer, "csv": _csv_writer, "parquet": _parquet_writer}
    entries: list[dict[str, Any]] = []
    for j, split in enumerate(folds):
        folder = root if len(folds) == 1 else root / f"fold{j}"
        files: dict[str, str] = {}
        parts: dict[str, Any] = {}
        for attr, label in _PARTS:
            part = getattr(split, attr)
            if part is None:
                continue
            frame = part_frame(part, ids)
            path = folder / _file_name(fmt, folder.name, label)
            if fmt == "recbole":
                _refuse_unsafe_tokens(frame, str(path))
            folder.mkdir(parents=True, exist_ok=True)
            atomic_write(path, writers[fmt](frame))
            files[attr] = str(path)
            parts[label] = {"file": path.name, "rows": len(frame), "sha256": file_digest(path, "sha256")}
        entry: dict[str, Any] = {
            "folder": str(folder),
            "parts": parts,
            "reimport": reimport_overrides(fmt, files),
        }
        if fmt == "recbole":
            entry["recbole"] = {
                "data_path": str(folder.parent),
                "dataset": folder.name,
                "benchmark_filename": [label for _, label in _PARTS if label in parts],
            }
        entries.append(entry)
    sidecar = {
        **jsonable(dict(info or {})),
        "format": fmt,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "dataset_checksum": data_checksum(data, ids),
        "n_users": data.n_users,
        "n_items": data.n_items,
        "n_interactions": len(data),
        "folds": entries,
    }
    root.mkdir(parents=True, exist_ok=True)
    atomic_write(root / SIDECAR, lambda fh: fh.write(json.dumps(sidecar, indent=2).encode() + b"\n"))
    return sidecar


def _has_duplicate_pairs(data: Interactions) -> bool:
    if len(data) == 0:
        return False
    key = data.users.astype(np.int64) * max(data.n_items, 1) + data.items
    return len(np.unique(key)) < len(key)
