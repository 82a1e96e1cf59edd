"""The ``recbench data list | check NAME`` commands over the dataset catalogue (:mod:`recbench.data.catalog`).

``recbench data fetch NAME`` is :func:`recbench.data.catalog.fetch` itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from recbench.data.catalog import DATASETS, data_root, local_copy, spec_of
from recbench.data.download import file_digest
from recbench.data.readers import count_rows
from recbench.errors import DataError


def list_datasets(data_dir: str | Path | None = None) -> list[dict[str, Any]]:
    """One dict per known dataset: name, description, local (copy present?), path, downloadable."""
    out = []
    for name, spec in DATASETS.items():
        folder = data_root(data_dir) / spec["folder"]
        out.append(
            {
                "name": name,
                "description": spec["description"],
                "local": local_copy(name, data_dir) is not None,
                "path": str((folder / spec["files"][0]) if not spec.get("url") else folder),
                "downloadable": bool(spec.get("url")),
            }
        )
    return out


def check(name: str, data_dir: str | Path | None = None) -> str:
    """Validate the local copy of ``name``: files present, main-file row count, sha256 where known.

    Returns a one-line summary; raises :class:`DataError` listing every problem found.
    """
    spec = spec_of(name)
    folder = data_root(data_dir) / spec["folder"]
    problems, notes = [], []
    for file in spec["files"]:
        if not (folder / file).is_file():
            problems.append(f"{folder / file} is missing")
    main = folder / spec["files"][0]
    if main.is_file():
        rows = count_rows(main, spec["rows"]["header"])
        if rows != spec["rows"]["count"]:
            problems.append(f"{main.name} has {rows:,} rows, expected {spec['rows']['count']:,}")
        else:
            notes.append(f"{main.name} {rows:,} rows")
    for file, digest in spec.get("sha256", {}).items():
        if (folder / file).is_file():
            if file_digest(folder / file, "sha256") != digest:
                problems.append(f"{file} sha256 differs from the known release")
            else:
                notes.append(f"{file} sha256 ok")
    if problems:
        raise DataError(f"{name} at {folder} failed its check: " + "; ".join(problems) + ".")
    return f"{name}: {folder} ok ({', '.join(notes)})"
