"""Predefined splits: train / validation / test rows read from files (e.g. MovieLens ``u1.base``).

The rows are mapped onto the loaded dataset's dense ids through its :class:`IdMaps` (raw ids compared
as strings), and each (user, item) pair takes its rating and timestamp from the dataset itself, so the
dataset's preprocessing (``implicit``, ``rating_scale``, ...) applies to the split as well. Pairs the
dataset's filters removed (e.g. below ``min_rating``) are left out with a log message.

Example::

    recbench train dataset=ml-100k split=files \\
        split.train=/data/ml-100k/u1.base split.test=/data/ml-100k/u1.test
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from recbench.data.filters import drop_missing, normalise_ids
from recbench.data.interactions import IdMaps, Interactions
from recbench.data.parquet import read_parquet
from recbench.data.readers import read_table
from recbench.data.splits import Split, Splitter
from recbench.errors import DataError

log = logging.getLogger(__name__)


class PredefinedSplit(Splitter):
    """A split given as files of (user, item, ...) rows in the dataset's raw ids.

    Parameters
    ----------
    train, test:
        Files of the training and test rows.
    val:
        Optional file of validation rows.
    sep, header, columns, encoding:
        Layout of the files (as for :class:`~recbench.data.sources.CsvSource`); only user and item
        are used: ratings and timestamps come from the dataset. ``columns=None``: user and item are
        the first two columns. Files ending in ``.parquet`` are read as Parquet (``columns`` apply;
        sep, header and encoding do not).
    drop_unknown:
        Drop rows whose user or item the dataset does not know (with a warning) instead of failing.
    """

    def __init__(
        self,
        *,
        train: str | Path,
        test: str | Path,
        val: str | Path | None = None,
        sep: str = "\t",
        header: bool = False,
        columns: Mapping[str, str | int | None] | None = None,
        encoding: str = "utf-8",
        drop_unknown: bool = False,
    ) -> None:
        self.train = train
        self.test = test
        self.val = val
        self.sep = sep
        self.header = header
        self.columns = columns
        self.encoding = encoding
        self.drop_unknown = drop_unknown

    def __call__(self, data: Interactions, *, seed: int, ids: IdMaps | None = None) -> Split:
        """Split ``data`` as the files say (``seed`` is unused: the split is fixed)."""
        if ids is None:
            raise DataError(
                "split=files maps the files' raw ids through the dataset's id maps, but none were given; "
                "call it as split(data, seed=..., ids=ids) with the IdMaps returned by the source."
            )
        parts = {
            name: self._part(Path(file).expanduser(), data, ids)
            for name, file in (("train", self.train), ("val", self.val), ("test", self.test))
            if file is not None
        }
        _refuse_shared_pairs(parts, {"train": self.train, "val": self.val, "test": self.test}, ids)
        return Split(train=parts["train"], val=parts.get("val"), test=parts["test"])

    def _part(self, path: Path, data: Interactions, ids: IdMaps) -> Interactions:
        columns = None
        if self.columns is not None:
            columns = {role: self.columns.get(role) for role in ("user", "item")}
        if path.suffix == ".parquet":
            frame = read_parquet(path, columns=columns)
        else:
            frame = read_table(
                path, sep=self.sep, header=self.header, columns=columns, encoding=self.encoding
            )
        frame = drop_missing(frame, source=str(path))
        users = _dense(ids.users, frame["user"])
        items = _dense(ids.items, frame["item"])
        unknown = (users < 0) | (items < 0)
        if unknown.any():
            msg = (
                f"{path}: {int(unknown.sum())} of {len(frame)} rows name a user or item the dataset does "
                f"not know ({int((users < 0).sum())} unknown users, {int((items < 0).sum())} unknown "
                f"items; first at line {frame.index[np.flatnonzero(unknown)[0]]})"
            )
            if not self.drop_unknown:
                raise DataError(
                    msg + ". Check that the files belong to this dataset and its filters (k-core, "
                    "min_rating) keep those ids, or set split.drop_unknown: true to drop such rows."
                )
            log.warning("%s; dropping them (drop_unknown is true)", msg)
            users, items = users[~unknown], items[~unknown]
        rows = _rows_of_pairs(data, users, items)
        missing = rows < 0
        if missing.any():
            log.info(
                "%s: %d rows are not in the dataset after its preprocessing; left out", path, missing.sum()
            )
        if missing.all():
            raise DataError(f"{path}: none of its {len(frame)} rows is in the (preprocessed) dataset.")
        return data.select(rows[~missing])


def _refuse_shared_pairs(parts: dict[str, Interactions], files: dict[str, object], ids: IdMaps) -> None:
    """DataError when two parts hold one (user, item) pair: a held-out answer would leak into training."""
    names = list(parts)
    for j, first in enumerate(names):
        for second in names[j + 1 :]:
            a, b = parts[first], parts[second]
            shared = np.intersect1d(a.users * a.n_items + a.items, b.users * b.n_items + b.items)
            if len(shared):
                user, item = divmod(int(shared[0]), a.n_items)
                raise DataError(
                    f"split files {files[first]} ({first}) and {files[second]} ({second}) share "
                    f"{len(shared)} (user, item) pairs, e.g. user {ids.users[user]} and item "
                    f"{ids.items[item]}: the {second} part would be seen in {first}. Remove those rows "
                    "from one of the files."
                )


def _dense(raw_ids: np.ndarray, values: pd.Series) -> np.ndarray:
    """Dense id of each value, -1 where unknown: the text as written (``0000000000``) or, failing
    that, its canonical form (``007`` and ``7.0`` match a dataset that read them as the number 7)."""
    index = pd.Index(np.asarray(raw_ids).astype(str))
    text = values.to_numpy().astype(str)
    found = index.get_indexer(text)
    miss = found < 0
    if miss.any():
        numbers = pd.to_numeric(pd.Series(text[miss]), errors="coerce").to_numpy()
        whole = np.isfinite(numbers) & (numbers == np.round(numbers)) & (np.abs(numbers) < 2**53)
        canonical = np.where(whole, np.char.mod("%d", np.where(whole, numbers, 0)), text[miss])
        found[miss] = index.get_indexer(normalise_ids(canonical).astype(str))
    return found


def _rows_of_pairs(data: Interactions, users: np.ndarray, items: np.ndarray) -> np.ndarray:
    """Row of ``data`` holding each (user, item) pair (its last occurrence), -1 where absent."""
    want = users.astype(np.int64) * data.n_items + items
    if len(data) == 0:
        return np.full(len(want), -1, dtype=np.int64)
    key = data.users * data.n_items + data.items
    order = np.argsort(key, kind="stable")
    sorted_key = key[order]
    pos = np.clip(np.searchsorted(sorted_key, want, side="right") - 1, 0, len(key) - 1)
    return np.where(sorted_key[pos] == want, order[pos], -1)
