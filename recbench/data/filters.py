"""Preprocessing of raw interaction frames: pure, vectorised filters and the dense id encoding.

Every source parses its raw file(s) into a :class:`pandas.DataFrame` with the columns ``user`` and
``item`` (raw ids) and, when the source has them, ``rating`` and ``timestamp``. A :class:`Preprocess`
(given to every source) then cleans and filters that frame, and :func:`encode` turns what is left
into :class:`~recbench.data.interactions.Interactions` over dense ids plus the
:class:`~recbench.data.interactions.IdMaps` to get the raw ids back. Ids are encoded once, on the
filtered full data, so every split of it shares one id space.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, fields

import numpy as np
import pandas as pd

from recbench.data.interactions import IdMaps, Interactions
from recbench.errors import ConfigError, DataError

log = logging.getLogger(__name__)

KEY = ["user", "item"]


@dataclass(frozen=True)
class Preprocess:
    """Cleaning and filtering applied, in this order, to every source's raw interactions.

    Parameters
    ----------
    dropna:
        Drop rows with a missing value in any column used (otherwise such rows are an error).
    dedupe:
        Keep one row per (user, item): the latest by timestamp, else the last one in the file.
    min_rating:
        Keep only rows with ``rating >= min_rating`` (e.g. 4 to treat 4-5 stars as positives).
    implicit:
        Drop the ratings (after thresholding), so that models see implicit feedback.
    user_core, item_core:
        Iterative k-core: repeatedly drop users with fewer than ``user_core`` interactions and
        items with fewer than ``item_core`` until both hold (0 = off).
    rating_scale:
        Divide the ratings by this (e.g. 5 to map 1..5 stars into (0, 1]).
    """

    dropna: bool = True
    dedupe: bool = True
    min_rating: float | None = None
    implicit: bool = False
    user_core: int = 0
    item_core: int = 0
    rating_scale: float | None = None

    def __post_init__(self) -> None:
        for name in ("user_core", "item_core"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
                raise ConfigError(f"preprocess.{name} must be a non-negative integer, got {value!r}.")
        if self.rating_scale is not None and not self.rating_scale > 0:
            raise ConfigError(f"preprocess.rating_scale must be positive or null, got {self.rating_scale!r}.")

    @classmethod
    def coerce(cls, value: Preprocess | Mapping | None) -> Preprocess:
        """``value`` itself, a ``Preprocess`` built from a mapping of its fields, or the default."""
        if value is None:
            return cls()
        if isinstance(value, cls):
            return value
        if isinstance(value, Mapping):
            known = {f.name for f in fields(cls)}
            extra = sorted(str(k) for k in value if k not in known and k != "_target_")
            if extra:
                raise ConfigError(f"unknown preprocess option(s) {extra}; the options are {sorted(known)}.")
            return cls(**{k: v for k, v in value.items() if k in known})
        raise ConfigError(f"preprocess must be a Preprocess or a mapping of its options, got {value!r}.")

    def active(self) -> dict[str, object]:
        """The options that remove rows (for error messages)."""
        out: dict[str, object] = {}
        if self.min_rating is not None:
            out["min_rating"] = self.min_rating
        if self.user_core:
            out["user_core"] = self.user_core
        if self.item_core:
            out["item_core"] = self.item_core
        return out

    def __call__(self, frame: pd.DataFrame, *, source: str) -> pd.DataFrame:
        """Apply every step to ``frame`` (columns user, item[, rating][, timestamp]).

        ``source`` names the dataset in error messages. Raises :class:`DataError` when nothing is left.
        """
        n0 = len(frame)
        if n0 == 0:
            raise DataError(f"{source} holds no interactions: check that the file is the right one.")
        frame = drop_missing(frame, source=source) if self.dropna else require_complete(frame, source=source)
        if self.dedupe:
            frame = drop_duplicates(frame)
        if self.min_rating is not None:
            if "rating" not in frame:
                raise ConfigError(
                    f"preprocess.min_rating={self.min_rating} needs ratings, but {source} has none "
                    "(or they were already dropped); set min_rating: null."
                )
            frame = threshold(frame, self.min_rating)
        if self.implicit and "rating" in frame:
            frame = frame.drop(columns="rating")
        if self.user_core or self.item_core:
            frame = k_core(frame, user_core=self.user_core, item_core=self.item_core)
        if self.rating_scale is not None and "rating" in frame:
            frame = frame.assign(rating=frame["rating"].to_numpy(np.float64) / float(self.rating_scale))
        if len(frame) == 0:
            opts = ", ".join(f"{k}={v}" for k, v in self.active().items()) or "dropna/dedupe"
            raise DataError(
                f"preprocessing left no interactions of the {n0} rows in {source}; relax "
                f"{opts} (in the dataset's preprocess: block) and run again."
            )
        log.info("%s: %d of %d rows kept after preprocessing", source, len(frame), n0)
        return frame


def _where(frame: pd.DataFrame, mask: np.ndarray) -> str:
    """' (first at line N)' when the frame's index holds file line numbers, else ''."""
    if frame.index.name != "line" or not mask.any():
        return ""
    return f" (first at line {frame.index[np.flatnonzero(mask)[0]]})"


def drop_missing(frame: pd.DataFrame, *, source: str = "the data") -> pd.DataFrame:
    """Rows with no missing value in any column."""
    missing = frame.isna().to_numpy().any(axis=1)
    if missing.any():
        log.warning(
            "%s: dropping %d rows with missing values%s", source, missing.sum(), _where(frame, missing)
        )
        frame = frame.loc[~missing]
    return frame


def require_complete(frame: pd.DataFrame, *, source: str = "the data") -> pd.DataFrame:
    """``frame`` unchanged; :class:`DataError` naming the column and line when a value is missing."""
    for col in frame.columns:
        missing = frame[col].isna().to_numpy()
        if missing.any():
            raise DataError(
                f"{source}: {int(missing.sum())} rows have no {col!r} value{_where(frame, missing)}; fix "
                "the file or set preprocess.dropna: true to drop such rows."
            )
    return frame


def _pair_key(frame: pd.DataFrame) -> np.ndarray:
    """One int64 per row that is equal exactly for rows of the same (user, item) pair."""
    key = pd.factorize(frame["user"])[0].astype(np.int64, copy=False)
    items, item_uniques = pd.factorize(frame["item"])
    key *= max(len(item_uniques), 1)
    key += items
    return key


def drop_duplicates(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per (user, item): the latest by timestamp, ties and untimed data keep the last row.

    Works on one integer key per pair (sorted, not hashed: a few bytes per row), and returns
    ``frame`` itself (no copy) when no pair repeats.
    """
    key = _pair_key(frame)
    ordered = np.sort(key)
    if not (ordered[1:] == ordered[:-1]).any():
        return frame
    del ordered
    if "timestamp" in frame:  # by pair, then time, then row: the last row of a pair is the one kept
        order = np.lexsort((frame["timestamp"].to_numpy(), key))
    else:
        order = np.argsort(key, kind="stable")
    grouped = key[order]
    kept = np.sort(order[np.r_[grouped[1:] != grouped[:-1], True]])
    del key, order, grouped
    out = frame.iloc[kept]
    if len(out) < len(frame):
        log.info("dropped %d duplicate (user, item) rows", len(frame) - len(out))
    return out


def threshold(frame: pd.DataFrame, min_rating: float) -> pd.DataFrame:
    """Rows with ``rating >= min_rating``."""
    return frame.loc[frame["rating"].to_numpy() >= min_rating]


def k_core(frame: pd.DataFrame, *, user_core: int = 0, item_core: int = 0) -> pd.DataFrame:
    """Largest subset in which every user has ``>= user_core`` rows and every item ``>= item_core``.

    Iterates the two count filters until neither removes anything (each pass is vectorised).
    """
    users = pd.factorize(frame["user"])[0]
    items = pd.factorize(frame["item"])[0]
    keep = np.ones(len(frame), dtype=bool)
    while True:
        ucount = np.bincount(users[keep], minlength=users.max(initial=-1) + 1)
        icount = np.bincount(items[keep], minlength=items.max(initial=-1) + 1)
        new = keep & (ucount[users] >= user_core) & (icount[items] >= item_core)
        if new.sum() == keep.sum():
            break
        keep = new
    return frame.loc[keep]


def normalise_ids(values: pd.Series | np.ndarray) -> np.ndarray:
    """Raw ids as ``int64`` when they are all integers written canonically, else as ``str``.

    ``"007"`` stays a string; ``7.0`` (a float column after missing values were dropped) becomes 7.
    """
    arr = np.asarray(values)
    if arr.dtype.kind in "iub":
        return arr.astype(np.int64, copy=False)
    if arr.dtype.kind == "f" and np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)):
        return arr.astype(np.int64) if np.all(np.abs(arr) < 2**62) else arr.astype(str)
    strs = arr.astype(str)
    if arr.dtype.kind in "OUS" and len(strs):
        as_num = pd.to_numeric(pd.Series(strs), errors="coerce").to_numpy()
        if (
            np.all(np.isfinite(as_num))
            and np.all(np.abs(as_num) < 2**53)
            and np.all(as_num == np.round(as_num))
        ):
            ints = as_num.astype(np.int64)
            if np.array_equal(ints.astype(str), strs):
                return ints
    return strs


def encode(frame: pd.DataFrame, titles: pd.Series | None = None) -> tuple[Interactions, IdMaps]:
    """Dense ids (raw ids in sorted order) for a preprocessed frame.

    Parameters
    ----------
    frame:
        Columns user, item[, rating][, timestamp], without missing values.
    titles:
        Optional item titles indexed by raw item id (compared as strings); unknown items get "".
    """
    user_codes, user_raw = pd.factorize(normalise_ids(frame["user"]), sort=True)
    item_codes, item_raw = pd.factorize(normalise_ids(frame["item"]), sort=True)
    ratings = frame["rating"].to_numpy(np.float32) if "rating" in frame else None
    timestamps = None
    if "timestamp" in frame:
        times = frame["timestamp"].to_numpy()
        whole = times.dtype.kind in "iu"
        timestamps = times.astype(np.int64, copy=False) if whole else np.floor(times).astype(np.int64)
    data = Interactions(
        users=user_codes,
        items=item_codes,
        n_users=len(user_raw),
        n_items=len(item_raw),
        ratings=ratings,
        timestamps=timestamps,
    )
    item_titles = None
    if titles is not None:
        lookup = pd.Series(titles.to_numpy(), index=titles.index.astype(str))
        lookup = lookup[~lookup.index.duplicated(keep="first")]
        found = lookup.reindex(np.asarray(item_raw).astype(str))
        item_titles = found.fillna("").to_numpy().astype(str)
    ids = IdMaps(users=_raw_ids(user_raw), items=_raw_ids(item_raw), item_titles=item_titles)
    return data, ids


def _raw_ids(uniques: object) -> np.ndarray:
    arr = np.asarray(uniques)
    return arr.astype(np.int64) if arr.dtype.kind in "iu" else arr.astype(str)
