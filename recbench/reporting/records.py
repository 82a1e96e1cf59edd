"""Run records: what one training run leaves on disk, and how reports read it back.

``metrics.json`` (a serialized :class:`RunRecord`) is the source of truth of a run. ``results.csv`` is the
same record flattened into one row, ``history.csv`` holds one row per epoch, and ``per_user.npz`` the
per-user metric values that paired significance tests need. Every file is written to a temporary file in
the run folder and then ``os.replace``'d, so a killed process never leaves a half-written file behind.

Columns of :func:`read_runs` (and of ``results.csv``), in this order:

- ``run_dir`` (the folder that holds ``metrics.json`` now, which survives moving a sweep), ``status``,
  ``error``, ``seed``;
- one column per Hydra choice (``model``, ``dataset``, ``split``, ``trainer``, ``eval``, ...), named as the
  choice; a choice whose name clashes with a fixed column is prefixed with ``choice.``;
- ``started_at``, the timings (``load_s``, ``fit_s``, ...), then the metrics as-is (``test/ndcg@10``);
- ``param.<key>`` for every flattened config value (``param.trainer.lr``): the prefix keeps parameters
  apart from choices and fixed columns (a config key ``seed`` would otherwise collide);
- ``extra.<key>`` for scalar extras, ``version.<name>``, ``git_rev``, ``tags`` (comma-joined), ``schema``.
"""

from __future__ import annotations

import json
import logging
import math
import re
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from recbench.errors import RecbenchError
from recbench.files import atomic_write
from recbench.serialization import jsonable, read_npz, write_npz

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
METRICS_FILE = "metrics.json"
RESULTS_FILE = "results.csv"
HISTORY_FILE = "history.csv"
PER_USER_FILE = "per_user.npz"

FIXED_COLUMNS: tuple[str, ...] = ("run_dir", "status", "error", "seed")


@dataclass(frozen=True)
class RunRecord:
    """Everything a report needs to know about one run.

    Parameters
    ----------
    schema : int
        Format version (:data:`SCHEMA_VERSION` when written); bumped on breaking changes.
    run_dir : str
        Output folder of the run.
    started_at : str
        Start time, ISO 8601.
    choices : dict[str, str]
        Hydra runtime choices (``model``, ``dataset``, ``split``, ``trainer``, ``eval``, ``experiment``).
    params : dict[str, Any]
        Flattened resolved config, e.g. ``{"model.factors": 64, "trainer.lr": 0.001}``.
    metrics : dict[str, float]
        ``"val/ndcg@10"``, ``"test/ndcg@10"``, ``"test/rmse"``; k-fold runs add ``"fold0/test/rmse"``.
    timings : dict[str, float]
        Seconds per stage: ``load_s``, ``split_s``, ``fit_s``, ``eval_s``, ``total_s``.
    seed : int
        The run's seed.
    status : {"ok", "failed"}
        Whether the run finished.
    error : str or None
        Error text of a failed run.
    versions : dict[str, str]
        Versions of python, recbench, torch, numpy, ...
    git_rev : str or None
        Commit of the recbench checkout, when known.
    tags : list[str]
        Free-form labels from the config.
    extra : dict[str, Any]
        Anything else worth keeping: dataset statistics, number of skipped users, device.
    """

    schema: int
    run_dir: str
    started_at: str
    choices: dict[str, str]
    params: dict[str, Any]
    metrics: dict[str, float]
    timings: dict[str, float]
    seed: int
    status: Literal["ok", "failed"]
    error: str | None = None
    versions: dict[str, str] = field(default_factory=dict)
    git_rev: str | None = None
    tags: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (numpy scalars and arrays converted, NaN/inf metrics as ``null``)."""
        return jsonable(asdict(self))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunRecord:
        """Build a record from a parsed ``metrics.json``, tolerating missing and unknown keys.

        Unknown keys (from a newer schema) are dropped; missing ones get empty defaults, so that records
        of older and newer schemas can be reported side by side.
        """
        known = {f.name for f in fields(cls)}
        d = {k: v for k, v in data.items() if k in known}
        metrics = {str(k): (math.nan if v is None else v) for k, v in (d.get("metrics") or {}).items()}
        return cls(
            schema=int(d.get("schema") or 0),
            run_dir=str(d.get("run_dir") or ""),
            started_at=str(d.get("started_at") or ""),
            choices=dict(d.get("choices") or {}),
            params=dict(d.get("params") or {}),
            metrics=metrics,
            timings=dict(d.get("timings") or {}),
            seed=int(d["seed"]) if d.get("seed") is not None else -1,  # -1: unknown
            status="failed" if d.get("status") == "failed" else "ok",
            error=d.get("error"),
            versions=dict(d.get("versions") or {}),
            git_rev=d.get("git_rev"),
            tags=list(d.get("tags") or []),
            extra=dict(d.get("extra") or {}),
        )


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically: readers see the old file or the whole new one."""
    data = text.encode("utf-8")
    atomic_write(Path(path), lambda fh: fh.write(data))


def flatten_record(record: RunRecord, run_dir: str | None = None) -> dict[str, Any]:
    """One flat row for a record, in the column order documented in this module."""
    row: dict[str, Any] = {
        "run_dir": run_dir if run_dir is not None else record.run_dir,
        "status": record.status,
        "error": record.error,
        "seed": record.seed,
    }
    for key, value in record.choices.items():
        row[f"choice.{key}" if key in row else key] = value
    row["started_at"] = record.started_at
    row.update({k: v for k, v in record.timings.items() if k not in row})
    row.update({k: (math.nan if v is None else v) for k, v in record.metrics.items() if k not in row})
    row.update({f"param.{k}": _cell(v) for k, v in record.params.items()})
    row.update({f"extra.{k}": v for k, v in record.extra.items() if _is_scalar(v)})
    row.update({f"version.{k}": v for k, v in record.versions.items()})
    row["git_rev"] = record.git_rev
    row["tags"] = ",".join(map(str, record.tags))
    row["schema"] = record.schema
    return row


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, (str, int, float, bool, np.generic))


def _cell(value: Any) -> Any:
    """A parameter as a table cell: scalars as-is, lists and dicts as compact JSON."""
    return value if _is_scalar(value) else json.dumps(jsonable(value), sort_keys=True)


def write_run(
    record: RunRecord,
    run_dir: str | Path,
    *,
    history: list[dict[str, Any]] | None = None,
    per_user: Mapping[str, Mapping[str, np.ndarray]] | None = None,
) -> None:
    """Write a run's files into ``run_dir``, each one atomically.

    Parameters
    ----------
    record : RunRecord
        Written to ``metrics.json`` (last, so that its presence means the other files are complete) and,
        flattened, to ``results.csv``.
    run_dir : str or Path
        Output folder (created if missing).
    history : list of dict, optional
        One dict per epoch (``epoch``, ``loss``, ``val/ndcg@10``, ``seconds``...) -> ``history.csv``.
    per_user : mapping of prefix to mapping of name to array, optional
        E.g. ``{"test": {"users": int64[n], "ndcg@10": float64[n]}}`` -> ``per_user.npz`` with keys
        ``"test/users"``, ``"test/ndcg@10"``. Arrays of one prefix are aligned with its ``users``.
    """
    out = Path(run_dir)
    if per_user:
        arrays = {f"{pre}/{name}": a for pre, d in per_user.items() for name, a in d.items()}
        write_npz(out / PER_USER_FILE, arrays, compressed=True)
    if history:
        atomic_write_text(out / HISTORY_FILE, pd.DataFrame(history).to_csv(index=False))
    atomic_write_text(out / RESULTS_FILE, pd.DataFrame([flatten_record(record)]).to_csv(index=False))
    text = json.dumps(record.to_dict(), indent=2, allow_nan=False)
    atomic_write_text(out / METRICS_FILE, text + "\n")


def _natural_key(path: Path) -> list[Any]:
    """Sort key under which sweep job folders 2 < 10."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(path))]


def find_metrics_files(paths: Iterable[str | Path]) -> list[Path]:
    """Every ``metrics.json`` at or below the given paths (files or folders), de-duplicated, naturally sorted.

    Only files named exactly ``metrics.json`` match, so temporary ``metrics.json.*.tmp`` leftovers of a
    killed writer are never read.
    """
    found: dict[Path, Path] = {}
    for p in map(Path, paths):
        if p.is_file():
            candidates: Iterable[Path] = [p] if p.name == METRICS_FILE else []
        elif p.is_dir():
            candidates = p.rglob(METRICS_FILE)
        else:
            log.warning("%s does not exist; no runs read from it", p)
            continue
        for c in candidates:
            if c.is_file():
                found.setdefault(c.resolve(), c)
    return sorted(found.values(), key=_natural_key)


def read_record(path: str | Path) -> RunRecord:
    """Parse one ``metrics.json``; raises ``ValueError`` (or ``OSError``) when it is unreadable."""
    with open(path, encoding="utf-8") as fh:
        data = json.load(fh)
    if not isinstance(data, dict):
        raise ValueError("top level is not a JSON object")
    schema = data.get("schema")
    if isinstance(schema, int) and schema > SCHEMA_VERSION:
        log.debug("%s has schema %s (newer than %s); reading known keys", path, schema, SCHEMA_VERSION)
    return RunRecord.from_dict(data)


def read_runs(paths: Iterable[str | Path]) -> pd.DataFrame:
    """One row per run found at or below ``paths``, with the columns documented in this module.

    Unreadable or partial ``metrics.json`` files are skipped with a logged warning. An empty frame (with
    the fixed columns only) is returned when nothing is found.
    """
    rows = []
    for path in find_metrics_files(paths):
        try:
            record = read_record(path)
        except (OSError, ValueError, TypeError) as exc:
            log.warning("skipping unreadable run record %s: %s", path, exc)
            continue
        rows.append(flatten_record(record, run_dir=str(path.parent)))
    if not rows:
        return pd.DataFrame(columns=list(FIXED_COLUMNS))
    return pd.DataFrame(rows).reset_index(drop=True)


def read_per_user(run_dir: str | Path) -> dict[str, np.ndarray]:
    """The per-user arrays of a run (keys like ``"test/users"``, ``"test/ndcg@10"``).

    Raises
    ------
    RecbenchError
        When ``per_user.npz`` is missing or unreadable.
    """
    path = Path(run_dir)
    path = path if path.name == PER_USER_FILE else path / PER_USER_FILE
    if not path.is_file():
        raise RecbenchError(
            f"No per-user metrics at {path}: paired significance tests need the per-user values that a run "
            f"writes to {PER_USER_FILE}. Check that the path is a run folder, and rerun the run if it was "
            "made by a recbench version that did not keep them."
        )
    try:
        return read_npz(path)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise RecbenchError(
            f"Cannot read per-user metrics {path} ({exc}); rerun the run to rewrite it."
        ) from exc
