"""Parsing of raw interaction files into frames, with errors that name the file, column and line.

Every reader returns a :class:`pandas.DataFrame` with the canonical columns ``user``, ``item`` and,
when present, ``rating`` and ``timestamp``, indexed by the 1-based line number of each row in its file
(index name ``"line"``), so that later checks can point at the offending line.
"""

from __future__ import annotations

import csv
import re
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from recbench.errors import ConfigError, DataError

ROLES = ("user", "item", "rating", "timestamp")
_SEPARATORS = ("\t", ",", ";", "|", "::", " ")
_LINE = re.compile(r"line (\d+)")
_INT = r"(?:0|[1-9][0-9]{0,17})"
_INTS = re.compile(rf"[ \t\r\n]*(?:{_INT}(?:[ \t\r\n]+{_INT})*)?[ \t\r\n]*")


def check_file(path: str | Path, what: str = "data file") -> Path:
    """``path`` as a :class:`Path`; :class:`DataError` when it is missing, not a file or empty."""
    p = Path(path).expanduser()
    if not p.exists():
        raise DataError(f"{what} {p} does not exist; check the path (relative paths start at {Path.cwd()}).")
    if not p.is_file():
        raise DataError(f"{what} {p} is not a file.")
    if p.stat().st_size == 0:
        raise DataError(f"{what} {p} is empty (0 bytes); the download or copy may have failed.")
    return p


def file_list(path: str | Path | Sequence[str | Path]) -> list[Path]:
    """``path`` (a file, or a non-empty list of files) as a list of paths; ConfigError otherwise."""
    if isinstance(path, (str, Path)):
        return [Path(path).expanduser()]
    if isinstance(path, Sequence) and len(path) > 0:
        return [Path(p).expanduser() for p in path]
    raise ConfigError(f"path must be a file or a non-empty list of files, got {path!r}.")


def fingerprint(paths: Iterable[str | Path]) -> list[dict[str, object]]:
    """Absolute path, size and mtime of each file: part of a cache key, so that edits invalidate it."""
    out: list[dict[str, object]] = []
    for path in paths:
        p = Path(path).expanduser().absolute()
        try:
            st = p.stat()
        except OSError:
            out.append({"path": str(p), "missing": True})
            continue
        out.append({"path": str(p), "size": st.st_size, "mtime_ns": st.st_mtime_ns})
    return out


def count_rows(path: str | Path, header: bool = False) -> int:
    """Number of lines in ``path`` (a last line without newline counts), minus one with a header."""
    n, last = 0, b"\n"
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 22):
            n += chunk.count(b"\n")
            last = chunk[-1:]
    n += last != b"\n"
    return max(n - int(header), 0)


def column_spec(columns: Mapping[str, object] | None) -> dict[str, str | int]:
    """Role -> column (name or 0-based position) for the roles given; user and item are required."""
    if columns is None:
        return {"user": 0, "item": 1}
    unknown = sorted(str(k) for k in columns if k not in ROLES)
    if unknown:
        raise ConfigError(f"columns has unknown key(s) {unknown}; the keys are {list(ROLES)}.")
    spec = {role: columns[role] for role in ROLES if columns.get(role) is not None}
    for role in ("user", "item"):
        if role not in spec:
            raise ConfigError(
                f"columns.{role} is required: name the column (or 0-based position) holding it."
            )
    for role, col in spec.items():
        if isinstance(col, bool) or not isinstance(col, (str, int)):
            raise ConfigError(f"columns.{role} must be a column name or a 0-based position, got {col!r}.")
    return spec


def _first_line(path: Path, encoding: str) -> str:
    with open(path, encoding=encoding, errors="replace", newline="") as fh:
        for line in fh:
            if line.strip():
                return line.rstrip("\r\n")
    return ""


def _is_number(value: object) -> bool:
    try:
        float(str(value))
    except ValueError:
        return False
    return True


def parse_delimited(p: Path, *, sep: str, encoding: str = "utf-8", **kwargs: object) -> pd.DataFrame:
    """``pandas.read_csv`` of ``p`` with every parse failure turned into a :class:`DataError` that names
    the file and, where pandas reports it, the line. ``kwargs`` go to ``read_csv`` as they are (with
    ``chunksize`` the result is a reader; :func:`read_table` maps the errors of its chunks too)."""
    try:
        with warnings.catch_warnings():  # columns typed chunk by chunk are reconciled downstream
            warnings.simplefilter("ignore", pd.errors.DtypeWarning)
            return pd.read_csv(
                p, sep=sep, encoding=encoding, engine="python" if len(sep) > 1 else "c", **kwargs
            )
    except Exception as err:
        mapped = _parse_error(p, sep, err, encoding)
        if mapped is err:
            raise
        raise mapped from err


def _parse_error(p: Path, sep: str, err: Exception, encoding: str = "utf-8") -> Exception:
    """The :class:`DataError` for a ``read_csv`` failure (the error itself when it is not a parse one)."""
    if isinstance(err, UnicodeDecodeError):
        return DataError(
            f"{p} is not valid {encoding} text ({err.reason} at byte {err.start}); re-save it as UTF-8 "
            "or set the source's encoding."
        )
    if isinstance(err, pd.errors.EmptyDataError):
        return DataError(f"{p} has no data (only blank lines); check the file.")
    if isinstance(err, pd.errors.ParserError):
        m = _LINE.search(str(err))
        where = f"line {m.group(1)}" if m else "a row"
        return DataError(
            f"{p}: {where} is malformed ({err}); every row needs the same number of {sep!r}-separated "
            "fields as the first one. Fix or remove that line."
        )
    if isinstance(err, (ValueError, csv.Error, OverflowError, MemoryError)):
        return DataError(f"{p} could not be parsed as {sep!r}-separated text: {err}")
    return err


def read_table(
    path: str | Path,
    *,
    sep: str = ",",
    header: bool = True,
    columns: Mapping[str, object] | None = None,
    encoding: str = "utf-8",
    as_text: bool = False,
) -> pd.DataFrame:
    """Delimited file -> frame with the canonical columns named in ``columns``.

    ``as_text`` reads every field as written (ids such as ``0000000000`` keep their zeros); ratings
    and timestamps are converted either way.

    ``columns`` maps roles (user, item, rating, timestamp) to column names (with a header) or
    0-based positions; rating and timestamp must be numeric (timestamps may also be ISO dates).
    Every problem raises a :class:`DataError` naming the file and, where it applies, the column and line.
    """
    p = check_file(path)
    spec = column_spec(columns)
    first = 2 if header else 1
    chunks = parse_delimited(
        p,
        sep=sep,
        header=0 if header else None,
        encoding=encoding,
        skip_blank_lines=False,
        dtype=str if as_text else None,
        chunksize=_CHUNK_ROWS,
    )
    resolved: dict[str, object] = {}
    columns_out: dict[str, _Column] = {}
    dropped: list[np.ndarray] = []
    rows = 0
    capacity = count_rows(p, header)
    for raw in _iterate(p, sep, encoding, chunks):
        raw.index = pd.RangeIndex(first + rows, first + rows + len(raw), name="line")
        rows += len(raw)
        if raw.shape[1] < 2:
            line = _first_line(p, encoding)
            guess = [s for s in _SEPARATORS if s != sep and s in line]
            hint = f"the first line {line[:80]!r} suggests sep: {guess[0]!r}" if guess else "check sep"
            raise DataError(f"{p}: only one column was parsed with sep={sep!r} ({hint}).")
        blank = raw.isna().to_numpy().all(axis=1)
        if blank.any():
            dropped.append(raw.index.to_numpy()[blank])
            raw = raw.loc[~blank]
        if not resolved:
            names = list(raw.columns)
            if not header:
                _reject_header_row(p, raw)
            elif all(_is_number(n) for n in names):
                raise DataError(
                    f"{p} seems to have no header row (its first line {[str(n) for n in names][:8]} looks "
                    "like data and would be lost as column names); set header: false and give columns as "
                    "0-based positions."
                )
            resolved = {role: _resolve(p, role, col, names, header) for role, col in spec.items()}
            columns_out = {role: _Column(capacity) for role in resolved}
        for role, col in resolved.items():
            columns_out[role].append(raw[col].to_numpy())
    kept = sum(c.size for c in list(columns_out.values())[:1])
    if not resolved or kept == 0:
        raise DataError(f"{p} has a header but no data rows." if header else f"{p} has no data rows.")
    if dropped:
        index = pd.Index(
            np.delete(np.arange(first, first + rows), np.concatenate(dropped) - first), name="line"
        )
    else:
        index = pd.RangeIndex(first, first + rows, name="line")
    out = pd.DataFrame({role: c.values() for role, c in columns_out.items()}, index=index, copy=False)
    for role in ("rating", "timestamp"):
        if role in out:
            out[role] = numeric_column(p, out[role], role, str(resolved[role]))
    return out


_CHUNK_ROWS = 1 << 20


class _Column:
    """One column gathered chunk by chunk into one preallocated array (grown if ever too small);
    a chunk of another type upcasts it (int -> float -> object), as parsing it whole would."""

    def __init__(self, capacity: int) -> None:
        self.capacity = max(capacity, 1)
        self.array: np.ndarray | None = None
        self.size = 0

    def append(self, values: np.ndarray) -> None:
        if values.dtype.kind not in "iuf":
            values = values.astype(object)
        if self.array is None:
            self.array = np.empty(max(self.capacity, len(values)), dtype=values.dtype)
        kind = np.result_type(self.array.dtype, values.dtype) if values.dtype != object else np.dtype(object)
        if kind != self.array.dtype:
            self.array = self.array.astype(kind)
        end = self.size + len(values)
        if end > len(self.array):
            grown = np.empty(max(end, 2 * len(self.array)), dtype=self.array.dtype)
            grown[: self.size] = self.array[: self.size]
            self.array = grown
        self.array[self.size : end] = values
        self.size = end

    def values(self) -> np.ndarray:
        assert self.array is not None
        return self.array[: self.size]


def _iterate(p: Path, sep: str, encoding: str, chunks: object) -> Iterator[pd.DataFrame]:
    """The chunks of a ``read_csv`` reader, with parse failures turned into :class:`DataError`."""
    iterator = iter(chunks)  # type: ignore[call-overload]
    while True:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", pd.errors.DtypeWarning)
                chunk = next(iterator)
        except StopIteration:
            return
        except Exception as err:
            mapped = _parse_error(p, sep, err, encoding)
            if mapped is err:
                raise
            raise mapped from err
        yield chunk


def _resolve(p: Path, role: str, col: str | int, names: list, header: bool) -> object:
    if isinstance(col, int) or (isinstance(col, str) and col.isdigit() and not header):
        pos = int(col)
        if not 0 <= pos < len(names):
            raise DataError(
                f"columns.{role}={col} but {p} has only {len(names)} fields per line (positions 0..)."
            )
        return names[pos]
    if not header:
        raise DataError(
            f"columns.{role}={col!r} names a column, but header is false so {p}'s columns are numbered "
            f"0..{len(names) - 1}; give positions, or set header: true if the first line holds names."
        )
    if col not in names:
        if all(_is_number(n) for n in names):
            raise DataError(
                f"{p} seems to have no header row (its first line {[str(n) for n in names][:8]} looks like "
                "data); set header: false and give columns as 0-based positions."
            )
        raise DataError(
            f"{p} has no column {col!r} (for {role}); available columns: {[str(n) for n in names]}."
        )
    return col


def _reject_header_row(p: Path, raw: pd.DataFrame) -> None:
    """DataError when line 1 is text over columns that are numeric everywhere else (a header)."""
    head = raw.iloc[:1000]
    if len(head) < 2 or head.index[0] != 1:
        return
    for j in range(head.shape[1]):
        col = head.iloc[:, j]
        if col.dtype.kind in "iuf":
            continue
        rest = col.iloc[1:].dropna()
        numeric_rest = len(rest) > 0 and pd.to_numeric(rest, errors="coerce").notna().all()
        if numeric_rest and pd.notna(col.iloc[0]) and not _is_number(col.iloc[0]):
            values = [str(v) for v in head.iloc[0].tolist()][:8]
            raise DataError(
                f"line 1 of {p} looks like a header ({values}) but header is false; set header: true "
                "(and name the columns), or delete that line."
            )


def numeric_column(p: Path, col: pd.Series, role: str, name: str, unit: str = "line") -> pd.Series:
    """``col`` as numbers (timestamps: seconds, ISO dates accepted); DataError naming the first bad
    ``unit`` (the index of ``col`` holds line or row numbers). Float columns, and integer timestamps,
    are kept as they are (no copy; integer times stay exact); other values become float64."""
    if col.dtype.kind == "f" or (col.dtype.kind in "iu" and role == "timestamp"):
        values = col
    elif col.dtype.kind in "iu":
        values = col.astype(np.float64)
    else:
        values = pd.to_numeric(col, errors="coerce")
        bad = col.notna() & values.isna()
        if role == "timestamp" and bad.any():
            values = _dates(col)
            bad = col.notna() & values.isna()
        if bad.any():
            line, value = bad.idxmax(), col[bad].iloc[0]
            kind = "a number or an ISO date" if role == "timestamp" else "a number"
            raise DataError(
                f"{p}: column {name!r} ({role}) must hold {kind}, but {unit} {line} has {str(value)[:40]!r}; "
                "fix that line or point columns at the right column."
            )
    arr = values.to_numpy()
    limit = 2.0**62 if role == "timestamp" else float(np.finfo(np.float32).max)
    lowest = 0 if role == "timestamp" else -limit
    with warnings.catch_warnings(), np.errstate(invalid="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN column has no min/max
        in_range = len(arr) == 0 or (np.nanmin(arr) >= lowest and np.nanmax(arr) <= limit)
    if not in_range:  # find the first bad row (infinite values fail the range test too)
        with np.errstate(invalid="ignore"):
            bad = np.isinf(arr) | (np.abs(arr) > limit) | ((arr < 0) if role == "timestamp" else False)
        if bad.any():
            line = values.index[np.flatnonzero(bad)[0]]
            what = "negative, infinite or huge" if role == "timestamp" else "infinite or out-of-range"
            raise DataError(f"{p}: column {name!r} ({role}) has a {what} value at {unit} {line}; fix it.")
    return values


def _dates(col: pd.Series) -> pd.Series:
    """ISO date strings -> float seconds since the epoch (NaN where unparsable)."""
    try:
        dt = pd.to_datetime(col, errors="coerce", utc=True, format="ISO8601")
        secs = (dt - pd.Timestamp(0, tz="UTC")) / pd.Timedelta(seconds=1)
    except (ValueError, OverflowError, TypeError):  # e.g. numbers mixed with text: out-of-bounds dates
        return pd.Series(np.nan, index=col.index, dtype=np.float64)
    return secs.astype(np.float64)


def read_sequences(path: str | Path, encoding: str = "utf-8") -> pd.DataFrame:
    """``user item1 item2 ...`` lines -> frame (user, item, timestamp = position in the user's sequence).

    Items are taken to be in chronological order, so the position (1, 2, ...) serves as timestamp; a
    user on several lines continues the same sequence in file order.
    """
    p = check_file(path)
    try:
        text = p.read_text(encoding=encoding)
    except UnicodeDecodeError as err:
        raise DataError(
            f"{p} is not valid {encoding} text ({err.reason} at byte {err.start}); a sequence file holds "
            "whitespace-separated ids, one user per line."
        ) from err
    if not text.strip():
        raise DataError(f"{p} holds no ids (only whitespace).")
    marked = text.replace("\n", " -1 ")
    tokens = np.fromstring(marked, dtype=np.int64, sep=" ") if _INTS.fullmatch(text) else None
    if tokens is not None and len(tokens) == len(marked.split()):
        # Canonical integers only (the usual case): parsed numerically, -1 marks the line ends.
        newline = tokens == -1
    else:
        tokens = np.array(re.findall(r"[^\s]+|\n", text))
        newline = tokens == "\n"
    line = 1 + np.cumsum(newline) - newline
    tokens, line = tokens[~newline], line[~newline]
    if len(tokens) == 0:
        raise DataError(f"{p} holds no ids (only whitespace).")
    first = np.r_[True, line[1:] != line[:-1]]
    start = np.maximum.accumulate(np.where(first, np.arange(len(tokens)), 0))
    users = tokens[start][~first]
    items = tokens[~first]
    if len(items) == 0:
        raise DataError(
            f"{p} has no items: every line holds only a user id (expected 'user item1 item2 ...')."
        )
    position = pd.Series(users).groupby(users, sort=False).cumcount() + 1
    return pd.DataFrame(
        {"user": users, "item": items, "timestamp": position.to_numpy(np.int64)},
        index=pd.Index(line[~first], name="line"),
    )


def read_titles(
    path: str | Path,
    *,
    sep: str,
    header: bool,
    columns: Sequence[int] = (0, 1),
    encodings: Sequence[str] = ("utf-8",),
    quoted: bool = True,
) -> pd.Series:
    """Item titles indexed by raw item id (both read as strings) from a small metadata file."""
    p = check_file(path, "titles file")
    last: Exception | None = None
    for enc in encodings:
        try:
            frame = pd.read_csv(
                p,
                sep=sep,
                header=0 if header else None,
                usecols=list(columns),
                dtype=str,
                encoding=enc,
                engine="python" if len(sep) > 1 else "c",
                quoting=csv.QUOTE_MINIMAL if quoted else csv.QUOTE_NONE,
                keep_default_na=False,
            )
        except UnicodeDecodeError as err:
            last = err
            continue
        except (ValueError, csv.Error) as err:
            raise DataError(f"titles file {p} could not be parsed: {err}") from err
        ids, titles = frame.iloc[:, 0].str.strip(), frame.iloc[:, 1]
        return pd.Series(titles.to_numpy(), index=ids.to_numpy())
    raise DataError(f"titles file {p} is not valid text in any of {list(encodings)}: {last}")
