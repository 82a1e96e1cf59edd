"""Parquet interaction files, read with pyarrow: only the mapped columns are ever loaded.

:func:`read_parquet` returns the same canonical frame as :func:`recbench.data.readers.read_table`
(columns ``user``, ``item`` and, when mapped, ``rating`` and ``timestamp``; index = 1-based row number
named ``"line"``), so the filters and error messages downstream are shared. Arrow timestamp and date
columns become seconds since the epoch. :class:`ParquetSource` is the dataset (``dataset=parquet``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from recbench.data.cache import params_key
from recbench.data.filters import Preprocess, encode
from recbench.data.interactions import IdMaps, Interactions
from recbench.data.readers import check_file, column_spec, file_list, numeric_column
from recbench.errors import DataError

_UNIT_SECONDS = {"s": 1, "ms": 10**3, "us": 10**6, "ns": 10**9}


def parquet_columns(path: str | Path) -> list[str]:
    """Column names of a Parquet file (read from its footer only)."""
    p = check_file(path, "Parquet file")
    try:
        return list(pq.ParquetFile(p).schema_arrow.names)
    except (pa.ArrowException, OSError, ValueError) as err:
        raise DataError(
            f"{p} is not a readable Parquet file ({err}); check that it was written completely, or use "
            "dataset=csv for delimited text."
        ) from err


def _column_name(p: Path, role: str, col: str | int, names: list[str]) -> str:
    if isinstance(col, int):
        if not 0 <= col < len(names):
            raise DataError(f"columns.{role}={col} but {p} has only {len(names)} columns (positions 0..).")
        return names[col]
    if col not in names:
        raise DataError(f"{p} has no column {col!r} (for {role}); available columns: {names}.")
    return col


_BATCH = 1 << 20


def _numbers(column: pa.Array) -> np.ndarray:
    """A numeric, timestamp or date Arrow array as numpy (times as float seconds; nulls as 0)."""
    kind = column.type
    if pa.types.is_timestamp(kind):
        ticks = pc.cast(column, pa.int64()).fill_null(0).to_numpy(zero_copy_only=False)
        return ticks / _UNIT_SECONDS[kind.unit]
    if pa.types.is_date(kind):
        days = pc.cast(pc.cast(column, pa.date32()), pa.int32()).fill_null(0).to_numpy(zero_copy_only=False)
        return days.astype(np.float64) * 86_400
    if column.null_count:
        column = column.fill_null(pa.scalar(0, kind))
    return column.to_numpy(zero_copy_only=False)


def _numeric_dtype(kind: pa.DataType) -> np.dtype | None:
    """The numpy dtype a column of this Arrow type is read into, or None for other types (text)."""
    if pa.types.is_timestamp(kind) or pa.types.is_date(kind):
        return np.dtype(np.float64)
    if pa.types.is_integer(kind) or pa.types.is_floating(kind):
        return np.dtype(kind.to_pandas_dtype())
    return None


def _read_columns(p: Path, names: list[str]) -> dict[str, np.ndarray]:
    """The named columns, batch by batch: numbers go straight into preallocated arrays, so the
    peak is the result plus one batch; nulls become NaN (numbers) or None (text)."""
    pf = pq.ParquetFile(p)
    n = pf.metadata.num_rows
    if n == 0:
        raise DataError(f"{p} has no rows.")
    schema = pf.schema_arrow
    filled: dict[str, np.ndarray] = {}
    texts: dict[str, list[pa.Array]] = {}
    missing: dict[str, np.ndarray] = {}
    for name in names:
        kind = schema.field(name).type
        if pa.types.is_dictionary(kind):
            kind = kind.value_type
        dtype = _numeric_dtype(kind)
        if dtype is None:
            texts[name] = []
        else:
            filled[name] = np.empty(n, dtype=dtype)
    pos = 0
    for batch in pf.iter_batches(batch_size=_BATCH, columns=names):
        k = batch.num_rows
        if pos + k > n:
            raise DataError(f"{p} holds more rows than its footer says ({n}); the file is damaged.")
        for name in names:
            column = batch.column(name)
            if pa.types.is_dictionary(column.type):
                column = column.dictionary_decode()
            if name in texts:
                texts[name].append(column)
                continue
            if column.null_count:
                nulls = column.is_null().to_numpy(zero_copy_only=False)
                missing.setdefault(name, np.zeros(n, dtype=bool))[pos : pos + k] = nulls
            filled[name][pos : pos + k] = _numbers(column)
        pos += k
    if pos != n:
        raise DataError(f"{p} holds {pos} rows but its footer says {n}; the file is damaged.")
    out: dict[str, np.ndarray] = dict(filled)
    for name, mask in missing.items():
        values = filled[name].astype(np.float64)
        values[mask] = np.nan
        out[name] = values
    for name, parts in texts.items():
        out[name] = pa.chunked_array(parts, type=parts[0].type if parts else pa.null()).to_numpy(
            zero_copy_only=False
        )
    return out


def read_parquet(path: str | Path, *, columns: Mapping[str, object] | None = None) -> pd.DataFrame:
    """Parquet file -> frame with the canonical columns named in ``columns`` (names or 0-based
    positions; ``None``: the first two columns are user and item). Only those columns are read."""
    p = check_file(path, "Parquet file")
    spec = column_spec(columns)
    names = parquet_columns(p)
    resolved = {role: _column_name(p, role, col, names) for role, col in spec.items()}
    try:
        arrays = _read_columns(p, list(dict.fromkeys(resolved.values())))
    except (pa.ArrowException, OSError, ValueError) as err:
        raise DataError(f"{p}: the Parquet data could not be read ({err}); the file may be damaged.") from err
    index = pd.RangeIndex(1, len(arrays[resolved["user"]]) + 1, name="line")
    frame = pd.DataFrame({role: arrays[name] for role, name in resolved.items()}, index=index, copy=False)
    for role in ("rating", "timestamp"):
        if role in frame:
            frame[role] = numeric_column(p, frame[role], role, resolved[role], unit="row")
    return frame


class ParquetSource:
    """Interactions stored in Parquet file(s), e.g. an export of a data warehouse table.

    Parameters
    ----------
    path:
        A file, or a list of files with the same columns (concatenated in order).
    columns:
        Role -> column name (or 0-based position): ``{user: ..., item: ..., rating: null, timestamp:
        null}`` as for ``dataset=csv``. Only these columns are read. Timestamps may be numbers (seconds),
        Arrow timestamps or dates.
    preprocess:
        Filters applied after reading (see :class:`~recbench.data.filters.Preprocess`).
    """

    def __init__(
        self,
        *,
        path: str | Path | Sequence[str | Path],
        columns: Mapping[str, str | int | None] | None = None,
        preprocess: Preprocess | Mapping | None = None,
    ) -> None:
        self.path = path
        self.columns = columns
        self.preprocess = preprocess

    @property
    def name(self) -> str:
        """The (first) file's stem, e.g. ``ratings``."""
        return file_list(self.path)[0].stem or "parquet"

    def cache_key(self) -> dict:
        """Class, params and the size/mtime of every file."""
        return params_key(self, file_list(self.path))

    def load(self) -> tuple[Interactions, IdMaps]:
        """Read the mapped columns of every file, concatenate, preprocess and id-encode."""
        files = file_list(self.path)
        frames = [read_parquet(f, columns=self.columns) for f in files]
        frame = frames[0] if len(frames) == 1 else pd.concat(frames)
        del frames
        where = str(files[0]) if len(files) == 1 else f"{len(files)} files from {files[0]}"
        frame = Preprocess.coerce(self.preprocess)(frame, source=where)
        return encode(frame)
