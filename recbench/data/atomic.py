"""RecBole's atomic files: ``<name>.inter`` interactions, with ``<name>.user`` / ``<name>.item`` side files.

Each file is tab-separated text whose first line is a typed header, ``field:type`` per column, with
type one of ``token`` (an id or a category), ``token_seq`` (space-separated tokens), ``float`` and
``float_seq``; e.g. ``user_id:token	item_id:token	rating:float	timestamp:float``. Values are read as
written (no quoting). :class:`AtomicFiles` (``dataset=atomic``) reads the interactions and, through
:meth:`AtomicFiles.side_features`, the side files: token fields become categorical features,
token_seq fields multi-valued ones and float fields numeric ones (float_seq fields are left out).

The same layout is what ``recbench data export --format recbole`` writes (see
:mod:`recbench.data.export`).
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from recbench.data.cache import params_key
from recbench.data.features import Field, Sides
from recbench.data.filters import Preprocess, encode
from recbench.data.interactions import IdMaps, Interactions
from recbench.data.readers import check_file, numeric_column, parse_delimited
from recbench.errors import ConfigError, DataError

log = logging.getLogger(__name__)

TYPES = ("token", "token_seq", "float", "float_seq")
_FEATURE_KIND = {"token": "categorical", "token_seq": "multi", "float": "numeric"}


def read_atomic(path: str | Path, encoding: str = "utf-8") -> tuple[pd.DataFrame, dict[str, str]]:
    """An atomic file as a frame of strings (columns = field names without types, index = line
    numbers) and the type of each field. :class:`DataError` for a header that is not typed."""
    p = check_file(path, "atomic file")
    frame = parse_delimited(
        p,
        sep="\t",
        encoding=encoding,
        header=None,
        dtype=str,
        quoting=csv.QUOTE_NONE,
        keep_default_na=False,
        na_values=[""],
        skip_blank_lines=False,
    )
    frame.index = pd.RangeIndex(1, len(frame) + 1, name="line")
    frame = frame.loc[~frame.isna().to_numpy().all(axis=1)]
    if len(frame) == 0:
        raise DataError(f"{p} holds only blank lines.")
    header = frame.iloc[0]
    frame = frame.iloc[1:]
    types: dict[str, str] = {}
    for column in header:
        name, _, kind = str(column).rpartition(":")
        if not name or kind not in TYPES or column != column:
            raise DataError(
                f"{p}: header field {str(column)[:60]!r} is not 'name:type' with type in {list(TYPES)}; an "
                "atomic file starts with a typed, tab-separated header such as "
                "'user_id:token\\titem_id:token\\trating:float'."
            )
        if name in types:
            raise DataError(f"{p}: header field {name!r} appears twice.")
        types[name] = kind
    if len(frame) == 0:
        raise DataError(f"{p} has a header but no data rows.")
    frame.columns = list(types)
    return frame, types


def _require(p: Path, types: dict[str, str], field: str, key: str, kind: tuple[str, ...]) -> None:
    if field not in types:
        raise DataError(
            f"{p} has no field {field!r} (dataset.{key}); its fields are {list(types)}. Set "
            f"dataset.{key} to one of them" + ("." if key in ("user_field", "item_field") else ", or null.")
        )
    if types[field] not in kind:
        expected = " or ".join(kind)
        raise DataError(f"{p}: field {field!r} (dataset.{key}) is {types[field]}, expected {expected}.")


class AtomicFiles:
    """A dataset in RecBole's atomic-file layout (``<name>.inter`` plus optional ``.user``/``.item``).

    Parameters
    ----------
    path:
        The ``.inter`` file, or the folder holding it (``<folder>/<folder name>.inter``, or the only
        ``.inter`` file there). Side files are ``<stem>.user`` and ``<stem>.item`` beside it.
    user_field, item_field:
        Token fields holding the user and item ids (RecBole's defaults ``user_id``, ``item_id``; Yelp's
        atomic files use ``business_id``).
    rating_field, timestamp_field:
        Float fields of the rating and the time (seconds); ``null`` = not used (implicit / untimed).
    title_field:
        A field of the ``.item`` file used as item titles (e.g. ``movie_title``), or ``null``; it is
        not used as a feature.
    encoding:
        Text encoding of the files.
    preprocess:
        Filters applied after parsing (see :class:`~recbench.data.filters.Preprocess`).
    """

    def __init__(
        self,
        *,
        path: str | Path,
        user_field: str = "user_id",
        item_field: str = "item_id",
        rating_field: str | None = "rating",
        timestamp_field: str | None = "timestamp",
        title_field: str | None = None,
        encoding: str = "utf-8",
        preprocess: Preprocess | Mapping | None = None,
    ) -> None:
        self.path = path
        self.user_field = user_field
        self.item_field = item_field
        self.rating_field = rating_field
        self.timestamp_field = timestamp_field
        self.title_field = title_field
        self.encoding = encoding
        self.preprocess = preprocess

    @property
    def name(self) -> str:
        """The dataset name: the ``.inter`` file's stem (e.g. ``ml-100k``)."""
        return Path(str(self.path)).expanduser().name.removesuffix(".inter") or "atomic"

    def inter_file(self) -> Path:
        """The ``.inter`` file that :attr:`path` designates."""
        p = Path(self.path).expanduser()
        if not p.is_dir():
            return p
        named = p / f"{p.name}.inter"
        if named.is_file():
            return named
        found = sorted(p.glob("*.inter"))
        if len(found) == 1:
            return found[0]
        raise DataError(
            f"{p} holds {len(found)} .inter files ({[f.name for f in found][:5]}), so which one is meant is "
            "unclear; set dataset.path to the .inter file itself."
            if found
            else f"{p} holds no .inter file; set dataset.path to a RecBole atomic .inter file or its folder."
        )

    def side_file(self, kind: str) -> Path:
        """``<stem>.user`` or ``<stem>.item`` beside the ``.inter`` file (it may not exist)."""
        inter = self.inter_file()
        return inter.with_name(f"{inter.stem}.{kind}")

    def cache_key(self) -> dict:
        """Class, params and the fingerprints of the ``.inter`` and side files."""
        inter = self.inter_file()
        return params_key(self, [inter, self.side_file("user"), self.side_file("item")])

    def load(self) -> tuple[Interactions, IdMaps]:
        """Parse the ``.inter`` file, preprocess and id-encode (titles from ``title_field``)."""
        p = self.inter_file()
        raw, types = read_atomic(p, self.encoding)
        roles = {"user": (self.user_field, "user_field"), "item": (self.item_field, "item_field")}
        if self.rating_field is not None:
            roles["rating"] = (self.rating_field, "rating_field")
        if self.timestamp_field is not None:
            roles["timestamp"] = (self.timestamp_field, "timestamp_field")
        for role, (field, key) in roles.items():
            if not isinstance(field, str):
                raise ConfigError(f"dataset.{key} must be a field name, got {field!r}.")
            _require(p, types, field, key, ("token",) if role in ("user", "item") else ("float",))
        frame = pd.DataFrame({role: raw[field] for role, (field, _) in roles.items()}, index=raw.index)
        for role in ("rating", "timestamp"):
            if role in frame:
                frame[role] = numeric_column(p, frame[role], role, roles[role][0])
        frame = Preprocess.coerce(self.preprocess)(frame, source=str(p))
        return encode(frame, self._titles())

    def _titles(self) -> pd.Series | None:
        if self.title_field is None:
            return None
        item_file = self.side_file("item")
        if not item_file.is_file():
            raise DataError(f"dataset.title_field={self.title_field!r} needs {item_file}, which is missing.")
        frame, types = read_atomic(item_file, self.encoding)
        _require(item_file, types, self.item_field, "item_field", ("token",))
        _require(item_file, types, self.title_field, "title_field", ("token", "token_seq"))
        titles = frame[self.title_field].fillna("").to_numpy()
        return pd.Series(titles, index=frame[self.item_field].to_numpy())

    def side_features(self) -> Sides:
        """User and item features of the ``.user`` / ``.item`` files (the sides that exist), each as a
        frame with an ``id`` column and its fields (see the module docstring for the kinds)."""
        out: Sides = {}
        sides = (("user", self.user_field, "user_field"), ("item", self.item_field, "item_field"))
        for side, id_field, key in sides:
            file = self.side_file(side)
            if not file.is_file():
                continue
            frame, types = read_atomic(file, self.encoding)
            _require(file, types, id_field, key, ("token",))
            skip = {id_field, self.title_field if side == "item" else None}
            fields = [
                Field(name, _FEATURE_KIND[kind], sep=" ")
                for name, kind in types.items()
                if name not in skip and kind in _FEATURE_KIND
            ]
            left_out = [name for name, kind in types.items() if kind == "float_seq"]
            if left_out:
                log.info("%s: float_seq field(s) %s are not used as features", file, left_out)
            out[side] = (frame.rename(columns={id_field: "id"}), fields)
        return out
