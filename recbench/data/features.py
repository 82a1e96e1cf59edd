"""Side features of users and items: encoders into :class:`FeatureTable` and per-dataset loaders.

Three encoders turn one column of values (aligned with the dense ids) into sparse feature columns:

* :func:`one_hot` (categorical), :func:`multi_hot` (multi-valued, weights ``1/len`` per entity) and
  :func:`bucketize` (numeric, into quantile bins).

Every field also gets an explicit ``<name>=<unknown>`` column that holds the missing values, so each
entity has at least one active column per field. :func:`encode_frame` aligns a frame keyed by raw id
with an :class:`~recbench.data.interactions.IdMaps` (raw ids compared as strings) and stacks the fields.

:func:`load_features` reads the side information shipped with MovieLens (100K, 1M, 10M, 20M, 25M,
latest-small) and Last.fm 2K; :class:`FeatureSpec` is what a dataset config's ``features:`` node
builds, and it also reads a user's own CSV files. :func:`load_features_cached` keeps the encoded
tables in an ``.npz`` file keyed by the folder, its files, the fields and the ids.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recbench.data.cache import jsonable
from recbench.data.filters import normalise_ids
from recbench.data.interactions import FeatureTable, IdMaps
from recbench.data.readers import fingerprint
from recbench.errors import ConfigError, DataError
from recbench.serialization import pack_sparse, read_npz, unpack_sparse, write_npz

UNKNOWN = "<unknown>"
KINDS = ("categorical", "multi", "numeric")
#: Bump when an encoder or a loader changes its output (invalidates cached tables).
FEATURES_VERSION = 1
_YEAR = re.compile(r"\((\d{4})(?:\s*[-\u2013]\s*\d{4})?\)\s*$")
ML100K_GENRES = (  # noqa: SIM905 (one readable line instead of 19)
    "unknown Action Adventure Animation Children's Comedy Crime Documentary Drama Fantasy Film-Noir "
    "Horror Musical Mystery Romance Sci-Fi Thriller War Western"
).split()

Encoded = tuple[sp.csr_matrix, list[str]]


def _missing(values: pd.Series) -> np.ndarray:
    return (values.isna() | (values.astype(str).str.strip() == "")).to_numpy()


def _csr(rows: np.ndarray, cols: np.ndarray, vals: np.ndarray, n: int, m: int) -> sp.csr_matrix:
    mat = sp.csr_matrix((vals.astype(np.float32), (rows, cols)), shape=(n, m), dtype=np.float32)
    mat.sort_indices()
    return mat


def one_hot(values: Sequence | pd.Series, name: str) -> Encoded:
    """One column per distinct value (sorted, as strings) plus ``name=<unknown>`` for missing values."""
    s = pd.Series(values, dtype=object).reset_index(drop=True)
    miss = _missing(s)
    text = np.asarray(s.where(~miss, "").astype(str).str.strip().to_numpy(), dtype=str)
    cats = np.unique(text[~miss])
    codes = np.where(miss, len(cats), np.searchsorted(cats, text))
    cols = [f"{name}={c}" for c in cats] + [f"{name}={UNKNOWN}"]
    return _csr(np.arange(len(s)), codes, np.ones(len(s)), len(s), len(cols)), cols


def _tokens(value: object, sep: str) -> list:
    if isinstance(value, (list, tuple, set, np.ndarray)):
        return list(value)
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return []
    return str(value).split(sep)


def multi_hot(
    values: Sequence | pd.Series, name: str, *, sep: str = "|", max_values: int | None = None
) -> Encoded:
    """Multi-hot columns: each entity's distinct values weigh ``1/len`` (they sum to 1).

    ``values`` holds lists or ``sep``-joined strings. With ``max_values``, only the values held by
    the most entities are kept (ties by name); an entity left with none is ``<unknown>`` (weight 1).
    """
    s = pd.Series(values, dtype=object).reset_index(drop=True)
    lists = s.map(lambda v: _tokens(v, sep))
    tokens = lists.explode().dropna().astype(str).str.strip()
    tokens = tokens[tokens != ""]
    pairs = pd.DataFrame({"row": tokens.index.to_numpy(np.int64), "tok": tokens.to_numpy()}).drop_duplicates()
    counts = pairs["tok"].value_counts()
    kept = (
        sorted(counts.index, key=lambda t: (-counts[t], t))[:max_values] if max_values else list(counts.index)
    )
    cats = np.sort(np.asarray(kept, dtype=str))
    pairs = pairs[pairs["tok"].isin(set(cats))]
    n_per = np.bincount(pairs["row"].to_numpy(), minlength=len(s))
    empty = np.flatnonzero(n_per == 0)
    rows = np.concatenate([pairs["row"].to_numpy(np.int64), empty])
    codes = np.concatenate(
        [np.searchsorted(cats, pairs["tok"].to_numpy(str)), np.full(len(empty), len(cats))]
    )
    weights = 1.0 / np.maximum(n_per, 1)[rows]
    cols = [f"{name}={c}" for c in cats] + [f"{name}={UNKNOWN}"]
    return _csr(rows, codes, weights, len(s), len(cols)), cols


def bucketize(values: Sequence | pd.Series, name: str, *, bins: int = 5) -> Encoded:
    """Quantile buckets of a numeric field (at most ``bins``; equal edges merge) plus ``<unknown>``.

    Non-numeric or missing values are unknown. Columns read ``age<25``, ``age=[25,35)``, ``age>=50``.
    """
    if bins < 1:
        raise ConfigError(f"numeric_bins={bins} must be >= 1.")
    x = pd.to_numeric(pd.Series(values, dtype=object).reset_index(drop=True), errors="coerce").to_numpy(float)
    known = np.isfinite(x)
    edges = np.zeros(0)
    if known.any():  # inner quantiles; equal edges merge and an edge at the minimum would be empty
        edges = np.unique(np.quantile(x[known], np.linspace(0, 1, bins + 1)[1:-1]))
        edges = edges[edges > x[known].min()]
    codes = np.where(known, np.searchsorted(edges, np.where(known, x, 0.0), side="right"), len(edges) + 1)
    if len(edges) == 0:
        names = [f"{name}=all"]
    else:
        inner = [f"{name}=[{a:g},{b:g})" for a, b in itertools.pairwise(edges)]
        names = [f"{name}<{edges[0]:g}", *inner, f"{name}>={edges[-1]:g}"]
    cols = [*names, f"{name}={UNKNOWN}"]
    return _csr(np.arange(len(x)), codes, np.ones(len(x)), len(x), len(cols)), cols


@dataclass(frozen=True)
class Field:
    """One feature field of a frame: ``name`` (also the frame column), ``kind`` and encoder options."""

    name: str
    kind: str = "categorical"
    sep: str = "|"
    max_values: int | None = None

    @classmethod
    def parse(cls, spec: str | Field) -> Field:
        """``"occupation"``, ``"genre:multi"`` or ``"age:numeric"`` (``cat``/``num`` also accepted)."""
        if isinstance(spec, Field):
            return spec
        name, _, kind = str(spec).partition(":")
        kind = {"cat": "categorical", "num": "numeric", "": "categorical"}.get(kind.strip(), kind.strip())
        if kind not in KINDS or not name.strip():
            raise ConfigError(
                f"feature field {spec!r} must look like 'name' or 'name:kind', kind in {KINDS}."
            )
        return cls(name.strip(), kind)

    def encode(self, values: pd.Series, numeric_bins: int) -> Encoded:
        """Encode ``values`` (aligned with the entities) with the encoder of :attr:`kind`."""
        if self.kind == "multi":
            return multi_hot(values, self.name, sep=self.sep, max_values=self.max_values)
        if self.kind == "numeric":
            return bucketize(values, self.name, bins=numeric_bins)
        return one_hot(values, self.name)


def _as_str_ids(raw: np.ndarray | pd.Series) -> np.ndarray:
    return np.asarray(normalise_ids(np.asarray(raw))).astype(str)


def encode_frame(
    frame: pd.DataFrame,
    raw_ids: np.ndarray,
    fields: Sequence[Field | str],
    *,
    id_column: str = "id",
    numeric_bins: int = 5,
    source: str = "feature frame",
) -> FeatureTable:
    """A :class:`FeatureTable` with one row per entry of ``raw_ids`` (entities absent from ``frame``
    are unknown in every field; the first row of a duplicated id wins)."""
    fields = [Field.parse(f) for f in fields]
    missing = [c for c in [id_column, *(f.name for f in fields)] if c not in frame.columns]
    if missing:
        raise DataError(f"{source} has no column(s) {missing}; its columns are {list(frame.columns)}.")
    keyed = frame.assign(_key=_as_str_ids(frame[id_column].astype(str).str.strip()))
    keyed = keyed.drop_duplicates("_key").set_index("_key")
    aligned = keyed.reindex(_as_str_ids(raw_ids))
    blocks, columns, column_field = [], [], []
    for j, f in enumerate(fields):
        mat, cols = f.encode(aligned[f.name].reset_index(drop=True), numeric_bins)
        blocks.append(mat)
        columns += cols
        column_field += [j] * len(cols)
    matrix = sp.hstack(blocks, format="csr", dtype=np.float32) if blocks else sp.csr_matrix((len(raw_ids), 0))
    return FeatureTable(
        matrix=matrix.astype(np.float32),
        column_field=np.asarray(column_field, dtype=np.int64),
        fields=tuple(f.name for f in fields),
        columns=tuple(columns),
    )


# ---------------------------------------------------------------- dataset loaders
# Each returns {"user" | "item": (frame with an "id" column, fields)} for the sides it has.
Sides = dict[str, tuple[pd.DataFrame, list[Field]]]


def _year(titles: pd.Series) -> pd.Series:
    return titles.astype(str).str.extract(_YEAR, expand=False)


def _read(path: Path, names: list[str], sep: str, encoding: str = "latin-1") -> pd.DataFrame:
    return pd.read_csv(
        path,
        sep=sep,
        header=None,
        names=names,
        dtype=str,
        encoding=encoding,
        engine="python" if len(sep) > 1 else "c",
        keep_default_na=False,
    )


def _movielens_users(frame: pd.DataFrame, age: str) -> tuple[pd.DataFrame, list[Field]]:
    frame = frame.assign(zip=frame["zip"].str.strip().str[:1])
    return frame, [Field("age", age), Field("gender"), Field("occupation"), Field("zip")]


def _ml100k(folder: Path, top_tags: int) -> Sides:
    out: Sides = {}
    if (folder / "u.user").is_file():
        users = _read(folder / "u.user", ["id", "age", "gender", "occupation", "zip"], "|")
        out["user"] = _movielens_users(users, "numeric")
    if (folder / "u.item").is_file():
        items = _read(folder / "u.item", ["id", "title", "date", "video", "url", *ML100K_GENRES], "|")
        flags = items[ML100K_GENRES].to_numpy() == "1"
        genre = [list(np.asarray(ML100K_GENRES)[row]) for row in flags]
        year = items["date"].str.extract(r"(\d{4})\s*$", expand=False).fillna(_year(items["title"]))
        items = items.assign(genre=genre, year=year)
        out["item"] = (items, [Field("genre", "multi"), Field("year", "numeric")])
    return out


def _movies(folder: Path, top_tags: int) -> Sides:
    """ml-1m / ml-10m (``.dat``, ``::``) and ml-20m / ml-25m / ml-latest(-small) (``.csv``)."""
    out: Sides = {}
    if (folder / "users.dat").is_file():
        users = _read(folder / "users.dat", ["id", "gender", "age", "occupation", "zip"], "::")
        out["user"] = _movielens_users(users, "categorical")  # ml-1m ages are already bracket codes
    csv = (folder / "movies.csv").is_file()
    if csv:
        movies = pd.read_csv(folder / "movies.csv", dtype=str, keep_default_na=False)
        movies.columns = ["id", "title", "genres"]
    elif (folder / "movies.dat").is_file():
        movies = _read(folder / "movies.dat", ["id", "title", "genres"], "::")
    else:
        return out
    movies = movies.assign(
        genre=movies["genres"].replace("(no genres listed)", ""), year=_year(movies["title"])
    )
    fields = [Field("genre", "multi"), Field("year", "numeric")]
    tags_file = folder / ("tags.csv" if csv else "tags.dat")
    if tags_file.is_file():
        if csv:
            tags = pd.read_csv(tags_file, dtype=str, keep_default_na=False).iloc[:, [1, 2]]
        else:
            tags = _read(tags_file, ["user", "item", "tag", "ts"], "::", "utf-8")[["item", "tag"]]
        tags.columns = ["id", "tag"]
        per_item = tags.assign(tag=tags["tag"].str.strip().str.lower()).groupby("id")["tag"].agg(list)
        movies = movies.assign(tag=movies["id"].map(per_item))
        fields.append(Field("tag", "multi", max_values=top_tags))
    out["item"] = (movies, fields)
    return out


def _lastfm(folder: Path, top_tags: int) -> Sides:
    """Friends per user (``user_friends.dat``); artist tags when ``user_taggedartists.dat`` exists."""
    out: Sides = {}
    if (folder / "user_friends.dat").is_file():
        friends = pd.read_csv(folder / "user_friends.dat", sep="\t", dtype=str)
        counts = friends.iloc[:, 0].str.strip().value_counts()
        out["user"] = (
            pd.DataFrame({"id": counts.index, "friends": counts.to_numpy()}),
            [Field("friends", "numeric")],
        )
    tagged = folder / "user_taggedartists.dat"
    if tagged.is_file():
        rows = pd.read_csv(tagged, sep="\t", dtype=str, encoding="latin-1").iloc[:, [1, 2]]
        rows.columns = ["id", "tag"]
        if (folder / "tags.dat").is_file():
            names = pd.read_csv(folder / "tags.dat", sep="\t", dtype=str, encoding="latin-1")
            rows["tag"] = rows["tag"].map(dict(zip(names.iloc[:, 0], names.iloc[:, 1]))).fillna(rows["tag"])
        per_artist = rows.groupby("id")["tag"].agg(list)
        out["item"] = (
            pd.DataFrame({"id": per_artist.index, "tag": per_artist.to_numpy()}),
            [Field("tag", "multi", max_values=top_tags)],
        )
    return out


_LOADERS: dict[str, Callable[[Path, int], Sides]] = {
    "user_artists.dat": _lastfm,
    "u.data": _ml100k,
    "ratings.dat": _movies,
    "ratings.csv": _movies,
}
#: Fields left out when no field list is given (they are opt-in).
OPTIONAL_FIELDS = frozenset({"tag"})


def resolve_folder(name_or_folder: str | Path, data_dir: str | Path | None = None) -> Path:
    """A dataset folder given directly, or the local copy of a known dataset name under the data dir."""
    path = Path(name_or_folder).expanduser()
    if path.is_dir():
        return path
    from recbench.data.catalog import local_copy

    folder = local_copy(str(name_or_folder), data_dir)
    if folder is None:
        raise DataError(
            f"no local copy of dataset {str(name_or_folder)!r} to read side features from; fetch it with "
            f"`recbench data fetch {name_or_folder}` or give the folder holding its files."
        )
    return folder


def source_folder(source: object) -> Path | None:
    """The folder of a dataset source's raw files: its ``path`` (a file's parent), else the local copy
    of its ``name`` under its ``data_dir``; ``None`` when there is none (e.g. synthetic data)."""
    path = getattr(source, "path", None)
    if isinstance(path, (str, Path)):
        p = Path(path).expanduser()
        return p.parent if p.is_file() else p
    from recbench.data.catalog import DATASETS, local_copy

    name = str(getattr(source, "name", ""))
    return local_copy(name, getattr(source, "data_dir", None)) if name in DATASETS else None


Wanted = Sequence[str] | None


def has_side_features(source: object) -> bool:
    """Whether a dataset source ships side features recbench can read (its own ``side_features()``,
    or a folder of MovieLens, Last.fm 2K or RecBole atomic files)."""
    if callable(getattr(source, "side_features", None)):
        return True
    folder = source_folder(source)
    if folder is None:
        return False
    return any((folder / m).is_file() for m in _LOADERS) or any(folder.glob("*.inter"))


def _folder_sides(folder: Path, top_tags: int) -> Sides:
    """The side features shipped in a dataset folder (MovieLens, Last.fm 2K, RecBole atomic files)."""
    marker = next((m for m in _LOADERS if (folder / m).is_file()), None)
    if marker is None and any(folder.glob("*.inter")):
        from recbench.data.atomic import AtomicFiles  # RecBole atomic files (default field names)

        return AtomicFiles(path=folder).side_features()
    if marker is None:
        raise DataError(
            f"{folder} holds no dataset with known side features (MovieLens or Last.fm 2K); give your "
            "own feature files with features.user_file / features.item_file instead."
        )
    return _LOADERS[marker](folder, top_tags)


def _encode_sides(
    sides: Sides, ids: IdMaps, wanted: tuple[Wanted, Wanted], bins: int, where: str, mixed: Wanted = None
) -> tuple[FeatureTable | None, FeatureTable | None]:
    """Encode the chosen fields of each side (``wanted`` per side, or ``mixed`` names of either)."""
    avail = {side: {f.name: f for f in sides[side][1]} if side in sides else {} for side in ("user", "item")}
    if mixed is not None:
        unknown = [w for w in mixed if w not in avail["user"] and w not in avail["item"]]
        wanted = ([w for w in mixed if w in avail["user"]], [w for w in mixed if w in avail["item"]])
    else:
        unknown = [w for want, side in zip(wanted, avail) for w in want or () if w not in avail[side]]
    if unknown:
        raise ConfigError(
            f"feature field(s) {unknown} are not available in {where}; its user fields are "
            f"{sorted(avail['user'])} and its item fields {sorted(avail['item'])}."
        )
    out: list[FeatureTable | None] = []
    for (side, names), want, raw in zip(avail.items(), wanted, (ids.users, ids.items)):
        chosen = (
            [f for n, f in names.items() if n not in OPTIONAL_FIELDS]
            if want is None
            else [names[w] for w in want]
        )
        table = encode_frame(sides[side][0], raw, chosen, numeric_bins=bins, source=where) if chosen else None
        out.append(table)
    return out[0], out[1]


def _tables(
    folder: Path, ids: IdMaps, wanted: tuple[Wanted, Wanted], bins: int, top_tags: int, mixed: Wanted = None
) -> tuple[FeatureTable | None, FeatureTable | None]:
    """Encode the chosen fields of a dataset folder's side features."""
    return _encode_sides(_folder_sides(folder, top_tags), ids, wanted, bins, str(folder), mixed)


def load_features(
    name_or_folder: str | Path,
    ids: IdMaps,
    fields: Sequence[str] | None = None,
    *,
    numeric_bins: int = 5,
    top_tags: int = 50,
    data_dir: str | Path | None = None,
) -> tuple[FeatureTable | None, FeatureTable | None]:
    """``(user_features, item_features)`` of a dataset, aligned with ``ids`` (``None`` for a side
    without fields). ``fields`` names fields of either side; ``None`` takes every field except the
    opt-in :data:`OPTIONAL_FIELDS`. MovieLens 100K: age, gender, occupation, zip | genre, year;
    MovieLens 1M: age, gender, occupation, zip | genre, year; other MovieLens: genre, year, tag;
    Last.fm 2K: friends | tag (only with ``user_taggedartists.dat``)."""
    folder = resolve_folder(name_or_folder, data_dir)
    return _tables(folder, ids, (None, None), numeric_bins, top_tags, mixed=fields)


def _ids_digest(ids: IdMaps) -> str:
    h = hashlib.sha256()
    for arr in (ids.users, ids.items):
        h.update("\n".join(np.asarray(arr).astype(str)).encode())
        h.update(b"\0")
    return h.hexdigest()


def _save(path: Path, tables: tuple[FeatureTable | None, FeatureTable | None]) -> None:
    arrays: dict[str, np.ndarray] = {}
    for side, t in zip(("user", "item"), tables):
        if t is None:
            continue
        arrays.update(pack_sparse(f"{side}_", t.matrix))
        arrays.update(
            {
                f"{side}_column_field": t.column_field,
                f"{side}_fields": np.asarray(t.fields, dtype=str),
                f"{side}_columns": np.asarray(t.columns, dtype=str),
            }
        )
    write_npz(path, arrays)


def _load(path: Path) -> tuple[FeatureTable | None, FeatureTable | None]:
    z = read_npz(path)
    out: list[FeatureTable | None] = []
    for side in ("user", "item"):
        if f"{side}_data" not in z:
            out.append(None)
            continue
        out.append(
            FeatureTable(
                unpack_sparse(z, f"{side}_"),
                z[f"{side}_column_field"],
                tuple(z[f"{side}_fields"].tolist()),
                tuple(z[f"{side}_columns"].tolist()),
            )
        )
    return out[0], out[1]


def load_features_cached(
    name_or_folder: str | Path,
    ids: IdMaps,
    fields: Sequence[str] | None = None,
    *,
    cache_dir: str | Path,
    numeric_bins: int = 5,
    top_tags: int = 50,
    data_dir: str | Path | None = None,
) -> tuple[FeatureTable | None, FeatureTable | None]:
    """:func:`load_features` through an ``.npz`` cache keyed by the folder (and its files' size and
    mtime), the fields, the options and the ids; written to a temp file and moved into place."""
    folder = resolve_folder(name_or_folder, data_dir)
    return _cached(folder, ids, (None, None), Path(cache_dir), numeric_bins, top_tags, fields)


def _cached(
    folder: Path,
    ids: IdMaps,
    wanted: tuple[Wanted, Wanted],
    cache_dir: Path,
    bins: int,
    top_tags: int,
    mixed: Wanted = None,
) -> tuple[FeatureTable | None, FeatureTable | None]:
    key = {
        "folder": str(folder.absolute()),
        "files": fingerprint(sorted(p for p in folder.iterdir() if p.is_file())),
        "fields": [None if w is None else list(w) for w in (*wanted, mixed)],
        "bins": bins,
        "tags": top_tags,
    }
    return _cached_tables(
        cache_dir, folder.name, key, ids, lambda: _tables(folder, ids, wanted, bins, top_tags, mixed)
    )


Tables = tuple[FeatureTable | None, FeatureTable | None]


def _cached_tables(cache_dir: Path, label: str, key: dict, ids: IdMaps, make: Callable[[], Tables]) -> Tables:
    """``make()`` through an ``.npz`` file named by ``label`` and a hash of ``key`` and the ids."""
    full = {"version": FEATURES_VERSION, **key, "ids": _ids_digest(ids)}
    digest = hashlib.sha256(json.dumps(full, sort_keys=True, default=str).encode()).hexdigest()[:16]
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in label)[:60]
    path = cache_dir.expanduser() / f"features-{safe}-{digest}.npz"
    if path.is_file():
        try:
            return _load(path)
        except (OSError, ValueError, KeyError):
            path.unlink(missing_ok=True)  # a corrupt cache file is rebuilt
    tables = make()
    path.parent.mkdir(parents=True, exist_ok=True)
    _save(path, tables)
    return tables


def load_feature_file(
    path: str | Path,
    raw_ids: np.ndarray,
    fields: Sequence[str | Field] | None,
    *,
    id_column: str = "id",
    sep: str = ",",
    numeric_bins: int = 5,
) -> FeatureTable:
    """A user's own delimited feature file: one row per entity, ``id_column`` holding the raw id.

    ``fields`` are ``"name"`` (categorical), ``"name:multi"`` (``|``-separated) or ``"name:numeric"``;
    ``None`` encodes every other column as categorical.
    """
    p = Path(path).expanduser()
    if not p.is_file():
        raise DataError(f"feature file {p} does not exist; check features.user_file / features.item_file.")
    frame = pd.read_csv(p, sep=sep, dtype=str, keep_default_na=False)
    if fields is None:
        fields = [c for c in frame.columns if c != id_column]
    return encode_frame(frame, raw_ids, fields, id_column=id_column, numeric_bins=numeric_bins, source=str(p))


@dataclass(frozen=True)
class FeatureSpec:
    """What a dataset config's ``features:`` node asks for (see the module docstring).

    ``user_fields`` / ``item_fields``: field names (``None``: the dataset's default fields; ``[]``:
    none). A side with a ``*_file`` reads that CSV instead (fields as in :func:`load_feature_file`);
    for a dataset without a folder of side files (synthetic data), the files given are all there is
    (one of them is enough).
    ``cache_dir``: cache the dataset's encoded tables there (:func:`load_features_cached`).
    """

    user_fields: Sequence[str] | None = None
    item_fields: Sequence[str] | None = None
    user_file: str | None = None
    item_file: str | None = None
    id_column: str = "id"
    sep: str = ","
    numeric_bins: int = 5
    top_tags: int = 50
    cache_dir: str | None = None

    def _own_files(self, ids: IdMaps) -> Tables:
        def from_file(file: str, raw: np.ndarray, fields: Sequence[str] | None) -> FeatureTable:
            return load_feature_file(
                file, raw, fields, id_column=self.id_column, sep=self.sep, numeric_bins=self.numeric_bins
            )

        user = from_file(self.user_file, ids.users, self.user_fields) if self.user_file else None
        item = from_file(self.item_file, ids.items, self.item_fields) if self.item_file else None
        return user, item

    def _merge(self, own: Tables, dataset: Tables) -> Tables:
        return (own[0] if self.user_file else dataset[0]), (own[1] if self.item_file else dataset[1])

    def _wanted(self) -> tuple[Wanted, Wanted]:
        return ([] if self.user_file else self.user_fields, [] if self.item_file else self.item_fields)

    def load(self, dataset_folder: Path | None, ids: IdMaps) -> Tables:
        """``(user_features, item_features)`` aligned with ``ids``, from the dataset folder's files."""
        own = self._own_files(ids)
        if (self.user_file and self.item_file) or (
            dataset_folder is None and (self.user_file or self.item_file)
        ):
            return own  # without a dataset folder, the files given are all the features there are
        if dataset_folder is None:
            raise ConfigError(
                "features: the dataset has no folder of side-information files (e.g. synthetic data), so "
                "there are no features to read. Give your own CSV files (an 'id' column holding the raw "
                "ids, then one column per field): `features=default features.item_file=items.csv "
                "features.user_file=users.csv` (one of the two is enough for a model that reads one "
                "side), or use a dataset with side files such as `dataset=ml-100k`."
            )
        folder = resolve_folder(dataset_folder)
        wanted = self._wanted()
        if self.cache_dir is None:
            tables = _tables(folder, ids, wanted, self.numeric_bins, self.top_tags)
        else:
            tables = _cached(folder, ids, wanted, Path(self.cache_dir), self.numeric_bins, self.top_tags)
        return self._merge(own, tables)

    def for_source(self, source: object, ids: IdMaps) -> Tables:
        """``(user_features, item_features)`` of a dataset source: from its own ``side_features()``
        where it has that method (RecBole ``.user``/``.item`` files, review metadata), else from the
        files in its folder (:meth:`load`, :func:`source_folder`)."""
        provider = getattr(source, "side_features", None)
        if not callable(provider):
            return self.load(source_folder(source), ids)
        own = self._own_files(ids)
        if self.user_file and self.item_file:
            return own
        wanted, where = self._wanted(), str(getattr(source, "name", "the dataset"))

        def make() -> Tables:
            return _encode_sides(provider(), ids, wanted, self.numeric_bins, where)

        if self.cache_dir is None:
            return self._merge(own, make())
        key_fn = getattr(source, "cache_key", None)
        key = {
            "source": jsonable(key_fn()) if callable(key_fn) else repr(source),
            "fields": [None if w is None else list(w) for w in wanted],
            "bins": self.numeric_bins,
        }
        return self._merge(own, _cached_tables(Path(self.cache_dir), where, key, ids, make))
