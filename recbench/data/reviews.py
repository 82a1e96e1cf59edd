"""Public review dumps as JSON lines: Amazon reviews (2014/2018 and 2023 layouts) and Yelp's review.json.

The files are streamed line by line (plain or gzip, recognised by its magic bytes), one JSON object per
line, and only the fields that matter are kept, so a dump of millions of reviews (with their review
texts) never sits in memory as a whole. Chunks of rows become the canonical frame (``user``, ``item``,
``rating``, ``timestamp``; index = line number), so preprocessing and error messages are shared with
every other source. Layouts:

========== ============== ================ ========= ================================
layout     user           item             rating    time
========== ============== ================ ========= ================================
2014/2018  ``reviewerID`` ``asin``         ``overall`` ``unixReviewTime`` (seconds)
2023       ``user_id``    ``parent_asin``  ``rating``  ``timestamp`` (milliseconds)
yelp       ``user_id``    ``business_id``  ``stars``   ``date`` (``YYYY-MM-DD HH:MM:SS``)
========== ============== ================ ========= ================================

Metadata files (Amazon ``meta_*.json(.gz)``, Yelp ``business.json``) become item features through
``side_features()``: categories (multi-valued), brand or store / city (categorical) and price / stars
(numeric), plus titles. The 2014 Amazon metadata is written as Python literals rather than JSON; such
lines are read with :func:`ast.literal_eval` (literals only: nothing is executed).
"""

from __future__ import annotations

import ast
import gzip
import json
import re
import zlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pandas as pd

from recbench.data.cache import params_key
from recbench.data.features import Field, Sides
from recbench.data.filters import Preprocess, encode
from recbench.data.interactions import IdMaps, Interactions
from recbench.data.readers import check_file, numeric_column
from recbench.errors import ConfigError, DataError

#: layout -> (user key, item key, rating key, time key, seconds per time unit; 0 = date strings)
LAYOUTS: dict[str, tuple[str, str, str, str, float]] = {
    "2014": ("reviewerID", "asin", "overall", "unixReviewTime", 1.0),
    "2018": ("reviewerID", "asin", "overall", "unixReviewTime", 1.0),
    "2023": ("user_id", "parent_asin", "rating", "timestamp", 1e-3),
    "yelp": ("user_id", "business_id", "stars", "date", 0.0),
}
_CHUNK = 200_000
_PRICE = re.compile(r"[-+]?\d[\d,]*(?:\.\d+)?")


def _open(p: Path) -> BinaryIO:
    with open(p, "rb") as fh:
        magic = fh.read(2)
    return gzip.open(p, "rb") if magic == b"\x1f\x8b" else open(p, "rb")


def iter_records(path: str | Path, *, literals: bool = False) -> Iterator[tuple[int, dict]]:
    """``(line number, object)`` for every non-blank line of a JSON-lines file (plain or gzip).

    With ``literals``, a line that is not JSON may be a Python dict literal (2014 Amazon metadata).
    Every problem raises a :class:`DataError` naming the file and line.
    """
    p = check_file(path)
    line_no = 0
    try:
        with _open(p) as fh:
            for line_no, raw in enumerate(fh, start=1):
                try:
                    text = raw.decode("utf-8").strip()
                except UnicodeDecodeError as err:
                    raise DataError(
                        f"{p}: line {line_no} is not valid UTF-8 ({err.reason} at byte {err.start}); the "
                        "file is damaged or not a review dump."
                    ) from err
                if text:
                    yield line_no, _parse(p, line_no, text, literals)
    except (OSError, EOFError, gzip.BadGzipFile, zlib.error) as err:
        raise DataError(
            f"{p}: reading stopped after line {line_no} ({err}); the (gzip) file is truncated or damaged. "
            "Download it again."
        ) from err


def _parse(p: Path, line_no: int, text: str, literals: bool) -> dict:
    try:
        record = json.loads(text)
    except (ValueError, RecursionError) as err:
        record = None
        if literals and text.startswith("{"):
            try:
                record = ast.literal_eval(text)
            except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
                record = None
        if record is None:
            raise DataError(
                f"{p}: line {line_no} is not a JSON object ({err}); every line of a review dump holds one "
                "object. Fix or remove that line, or check that this is the right file."
            ) from err
    if not isinstance(record, dict):
        raise DataError(f"{p}: line {line_no} holds a {type(record).__name__}, not a JSON object.")
    return record


def detect_layout(path: str | Path, candidates: tuple[str, ...] = ("2014", "2023")) -> str:
    """The first layout in ``candidates`` whose user and item keys the first record has."""
    for _, record in iter_records(path):
        for name in candidates:
            user, item = LAYOUTS[name][:2]
            if user in record and item in record:
                return name
        raise DataError(
            f"{path}: the first record has keys {sorted(record)[:12]}, which match none of the layouts "
            f"{[f'{n} ({LAYOUTS[n][0]}, {LAYOUTS[n][1]})' for n in candidates]}; set dataset.layout."
        )
    raise DataError(f"{path} holds no records (only blank lines).")


def _scalar(value: object) -> object:
    """A JSON value fit for an id / number column (containers become NaN: not an id)."""
    return np.nan if isinstance(value, (dict, list)) or value is None else value


def read_reviews(path: str | Path, layout: str) -> pd.DataFrame:
    """Stream a review dump into the canonical frame (times in seconds; index = line numbers)."""
    p = check_file(path)
    if layout not in LAYOUTS:
        raise ConfigError(f"layout={layout!r} is not one of {sorted(LAYOUTS)} (or auto).")
    user_key, item_key, rating_key, time_key, unit = LAYOUTS[layout]
    keys = {"user": user_key, "item": item_key, "rating": rating_key, "timestamp": time_key}
    chunks: list[pd.DataFrame] = []
    rows: dict[str, list] = {role: [] for role in [*keys, "line"]}

    def flush() -> None:
        if rows["line"]:
            index = pd.Index(np.asarray(rows["line"], dtype=np.int64), name="line")
            chunks.append(pd.DataFrame({r: rows[r] for r in keys}, index=index))
            for values in rows.values():
                values.clear()

    for line_no, record in iter_records(p):
        rows["line"].append(line_no)
        for role, key in keys.items():
            rows[role].append(_scalar(record.get(key)))
        if len(rows["line"]) >= _CHUNK:
            flush()
    flush()
    if not chunks:
        raise DataError(f"{p} holds no reviews (only blank lines).")
    frame = pd.concat(chunks) if len(chunks) > 1 else chunks[0]
    found = [role for role in keys if frame[role].notna().any()]
    for role in ("user", "item"):
        if role not in found:
            raise DataError(
                f"{p}: no record has the key {keys[role]!r} ({role}) of the {layout} layout; check "
                "dataset.layout (the 2014/2018 and 2023 Amazon layouts differ) and the file."
            )
    for role in ("user", "item"):
        frame[role] = frame[role].astype(object).map(_id_text)
    for role in ("rating", "timestamp"):
        if role not in found:
            frame = frame.drop(columns=role)
            continue
        frame[role] = numeric_column(p, frame[role], role, keys[role])
        if role == "timestamp" and unit not in (0.0, 1.0):
            frame[role] = np.floor(frame[role].to_numpy(np.float64) * unit)
    return frame


def _id_text(value: object) -> object:
    if isinstance(value, float):
        return value if np.isnan(value) or not value.is_integer() else str(int(value))
    return value if isinstance(value, str) else str(value)


def _flat(value: object) -> list[str]:
    """Category lists of any nesting (2014: list of lists) as one flat list of strings."""
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in _flat(v)]
    if value is None or isinstance(value, dict):
        return []
    text = str(value).strip()
    return [text] if text else []


def _price(value: object) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    m = _PRICE.search(str(value)) if isinstance(value, str) else None
    return float(m.group(0).replace(",", "")) if m else np.nan


_META_FIELDS = {
    "amazon": [Field("category", "multi"), Field("brand"), Field("price", "numeric")],
    "yelp": [Field("category", "multi"), Field("city"), Field("stars", "numeric")],
}


def read_metadata(path: str | Path, layout: str) -> tuple[pd.DataFrame, list[Field]]:
    """Item metadata -> (frame with ``id``, ``title`` and the feature columns, the feature fields).

    Amazon 2014/2018: ``asin``, ``categories``/``category``, ``brand``, ``price`` (``"$12.99"`` parsed);
    2023: ``parent_asin``, ``main_category`` + ``categories``, ``store`` (else ``details.Brand``),
    ``price``. Yelp ``business.json``: ``business_id``, ``name``, ``categories`` (comma-separated),
    ``city``, ``stars``.
    """
    p = check_file(path, "metadata file")
    id_key = {"2014": "asin", "2018": "asin", "2023": "parent_asin", "yelp": "business_id"}[layout]
    ids, titles, cats, names, numbers = [], [], [], [], []
    for _, r in iter_records(p, literals=True):
        ident = _scalar(r.get(id_key))
        if not isinstance(ident, (str, int, float)) or ident != ident:
            continue
        ids.append(_id_text(ident))
        titles.append(str(r.get("name" if layout == "yelp" else "title") or ""))
        if layout == "yelp":
            cats.append([c.strip() for c in str(r.get("categories") or "").split(",") if c.strip()])
            names.append(r.get("city"))
            numbers.append(_price(r.get("stars")))
            continue
        if layout == "2023":
            cats.append(_flat(r.get("main_category")) + _flat(r.get("categories")))
            details = r.get("details") if isinstance(r.get("details"), dict) else {}
            names.append(r.get("store") or details.get("Brand"))
        else:
            cats.append(_flat(r.get("categories")) + _flat(r.get("category")))
            names.append(r.get("brand"))
        numbers.append(_price(r.get("price")))
    if not ids:
        raise DataError(f"{p} holds no item with the key {id_key!r}; is it the metadata of this layout?")
    fields = _META_FIELDS["yelp" if layout == "yelp" else "amazon"]
    name_col, number_col = fields[1].name, fields[2].name
    clean = [n.strip() if isinstance(n, str) and n.strip() else None for n in names]
    frame = pd.DataFrame({"id": ids, "title": titles, "category": cats, name_col: clean, number_col: numbers})
    return frame, list(fields)


class _ReviewDump:
    """Shared loading of the review sources (a dump plus optional metadata)."""

    path: str | Path
    meta_path: str | Path | None
    preprocess: Preprocess | Mapping | None
    _layouts: tuple[str, ...] = ()

    def layout_of(self) -> str:
        """The layout in use (``auto`` resolved from the first record)."""
        layout = str(getattr(self, "layout", self._layouts[0]))
        if layout == "auto":
            return detect_layout(Path(self.path).expanduser(), self._layouts)
        if layout not in self._layouts:
            raise ConfigError(f"dataset.layout={layout!r} must be one of {['auto', *self._layouts]}.")
        return layout

    def cache_key(self) -> dict:
        """Class, params and the size/mtime of the dump and the metadata file."""
        files = [self.path] + ([self.meta_path] if self.meta_path else [])
        return params_key(self, files)

    def load(self) -> tuple[Interactions, IdMaps]:
        """Stream the dump, preprocess and id-encode (titles from the metadata, when given)."""
        p = Path(self.path).expanduser()
        layout = self.layout_of()
        frame = read_reviews(p, layout)
        frame = Preprocess.coerce(self.preprocess)(frame, source=str(p))
        titles = None
        if self.meta_path:
            meta, _ = read_metadata(Path(self.meta_path).expanduser(), layout)
            titles = pd.Series(meta["title"].to_numpy(), index=meta["id"].to_numpy())
        return encode(frame, titles)

    def side_features(self) -> Sides:
        """Item features from the metadata file (none without ``meta_path``)."""
        if not self.meta_path:
            return {}
        return {"item": read_metadata(Path(self.meta_path).expanduser(), self.layout_of())}


class AmazonReviews(_ReviewDump):
    """An Amazon review dump: the 2014 / 2018 releases (McAuley et al.; Ni et al.) or Amazon Reviews'23
    (Hou et al.), as ``.json``/``.jsonl``, plain or gzip.

    Parameters
    ----------
    path:
        The review file, e.g. ``reviews_Beauty_5.json.gz``, ``Beauty.json.gz`` or ``All_Beauty.jsonl.gz``.
    layout:
        ``2014`` / ``2018`` (``reviewerID, asin, overall, unixReviewTime``), ``2023`` (``user_id,
        parent_asin, rating, timestamp`` in ms) or ``auto`` (from the first record's keys).
    meta_path:
        Optional metadata file of the same release (``meta_Beauty.json.gz``, ``meta_All_Beauty.jsonl.gz``):
        titles, and item features category / brand / price for ``features=default``.
    preprocess:
        Filters after parsing; ``dataset=amazon-reviews`` presets the usual 5-core (``user_core: 5``,
        ``item_core: 5``).

    References
    ----------
    Julian McAuley et al. 2015. Image-based recommendations on styles and substitutes. SIGIR.
    Jianmo Ni, Jiacheng Li and Julian McAuley. 2019. Justifying recommendations using distantly-labeled
    reviews and fine-grained aspects. EMNLP.
    Yupeng Hou et al. 2024. Bridging language and items for retrieval and recommendation. arXiv:2403.03952.
    """

    _layouts = ("2014", "2018", "2023")

    def __init__(
        self,
        *,
        path: str | Path,
        layout: str = "auto",
        meta_path: str | Path | None = None,
        preprocess: Preprocess | Mapping | None = None,
    ) -> None:
        self.path = path
        self.layout = layout
        self.meta_path = meta_path
        self.preprocess = preprocess

    @property
    def name(self) -> str:
        """The file name without ``.json``/``.jsonl``/``.gz``, e.g. ``reviews_Beauty_5``."""
        return re.sub(r"(\.jsonl?)?(\.gz)?$", "", Path(str(self.path)).name) or "amazon-reviews"

    def layout_of(self) -> str:
        """The layout in use (``auto``: 2014/2018 or 2023, from the first record)."""
        if str(self.layout) == "auto":
            return detect_layout(Path(self.path).expanduser(), ("2014", "2023"))
        return super().layout_of()


class YelpReviews(_ReviewDump):
    """Yelp Open Dataset reviews (``yelp_academic_dataset_review.json``): user_id, business_id, stars, date.

    Parameters
    ----------
    path:
        The review file (plain or gzip).
    meta_path:
        Optional ``yelp_academic_dataset_business.json``: names as titles, and item features category
        (multi-valued), city and stars (the business' mean stars, bucketised).
    preprocess:
        Filters after parsing; ``dataset=yelp-reviews`` presets the 5-core (``user_core: 5``,
        ``item_core: 5``).
    """

    _layouts = ("yelp",)
    name = "yelp-reviews"

    def __init__(
        self,
        *,
        path: str | Path,
        meta_path: str | Path | None = None,
        preprocess: Preprocess | Mapping | None = None,
    ) -> None:
        self.path = path
        self.meta_path = meta_path
        self.preprocess = preprocess
