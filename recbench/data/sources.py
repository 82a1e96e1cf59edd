"""Dataset sources: each turns raw files (or a seed) into ``(Interactions, IdMaps)``.

A source is a plain class whose keyword-only constructor arguments are stored verbatim (so a dataset
YAML's keys are exactly its parameters). It has a ``name``, a ``load()`` that parses, cleans, filters
(:class:`~recbench.data.filters.Preprocess`) and id-encodes the data, and a ``cache_key()`` used by
:func:`recbench.data.cache.load_cached`. Sources defined in their own modules are re-exported here,
so that configs can say ``_target_: recbench.data.sources.<Name>``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import pandas as pd

from recbench.data.atomic import AtomicFiles
from recbench.data.cache import params_key
from recbench.data.catalog import data_root, local_copy, obtain
from recbench.data.filters import Preprocess, encode
from recbench.data.interactions import IdMaps, Interactions
from recbench.data.movielens import MovieLens
from recbench.data.parquet import ParquetSource
from recbench.data.readers import file_list, read_sequences, read_table, read_titles
from recbench.data.reviews import AmazonReviews, YelpReviews
from recbench.data.synthetic import Synthetic

__all__ = [
    "AmazonReviews",
    "AtomicFiles",
    "CsvSource",
    "DatasetSource",
    "LastFM",
    "MovieLens",
    "ParquetSource",
    "SequenceFile",
    "Synthetic",
    "YelpReviews",
]


@runtime_checkable
class DatasetSource(Protocol):
    """What the pipeline needs from a dataset: a name, ``load()`` and a JSON-able ``cache_key()``."""

    name: str

    def load(self) -> tuple[Interactions, IdMaps]: ...

    def cache_key(self) -> dict: ...


class CsvSource:
    """A user's own delimited file(s) of interactions.

    Parameters
    ----------
    path:
        A file, or a list of files with the same layout (concatenated in order).
    sep:
        Field separator (``","``, ``"\\t"``, ``";"``, ...; longer ones such as ``"::"`` also work).
    header:
        Whether the first line holds column names.
    columns:
        Role -> column: ``{user: ..., item: ..., rating: null, timestamp: null}``; a column is given by
        name (with a header) or 0-based position. ``None``: user and item are the first two columns.
        Ratings must be numeric; timestamps numeric seconds or ISO dates.
    encoding:
        Text encoding of the files.
    preprocess:
        Filters applied after parsing (see :class:`~recbench.data.filters.Preprocess`).
    """

    name = "csv"

    def __init__(
        self,
        *,
        path: str | Path | Sequence[str | Path],
        sep: str = ",",
        header: bool = True,
        columns: Mapping[str, str | int | None] | None = None,
        encoding: str = "utf-8",
        preprocess: Preprocess | Mapping | None = None,
    ) -> None:
        self.path = path
        self.sep = sep
        self.header = header
        self.columns = columns
        self.encoding = encoding
        self.preprocess = preprocess

    def cache_key(self) -> dict:
        """Class, params and the size/mtime of every file."""
        return params_key(self, file_list(self.path))

    def load(self) -> tuple[Interactions, IdMaps]:
        """Parse every file, concatenate, preprocess and id-encode."""
        paths = file_list(self.path)
        frames = [
            read_table(p, sep=self.sep, header=self.header, columns=self.columns, encoding=self.encoding)
            for p in paths
        ]
        frame = frames[0] if len(frames) == 1 else pd.concat(frames)
        where = str(paths[0]) if len(paths) == 1 else f"{len(paths)} files from {paths[0]}"
        frame = Preprocess.coerce(self.preprocess)(frame, source=where)
        return encode(frame)


class SequenceFile:
    """One user per line, ``user item1 item2 ...``, items already in chronological order.

    The benchmark files of S3-Rec / ICLRec (Amazon Beauty, Sports, Toys; Yelp) use this layout. They
    carry no times, so the position of an item in its user's sequence (1, 2, ...) is its timestamp:
    chronological order is kept for leave-one-out and sequential models.

    Parameters
    ----------
    path:
        The file.
    preprocess:
        Filters applied after parsing (see :class:`~recbench.data.filters.Preprocess`).
    """

    def __init__(self, *, path: str | Path, preprocess: Preprocess | Mapping | None = None) -> None:
        self.path = path
        self.preprocess = preprocess

    @property
    def name(self) -> str:
        """The file's stem, lower-cased (e.g. ``beauty``)."""
        return Path(str(self.path)).stem.lower() or "seqfile"

    def cache_key(self) -> dict:
        """Class, params and the file's size/mtime."""
        return params_key(self, [Path(self.path).expanduser()])

    def load(self) -> tuple[Interactions, IdMaps]:
        """Parse, preprocess and id-encode."""
        frame = read_sequences(Path(self.path).expanduser())
        frame = Preprocess.coerce(self.preprocess)(frame, source=str(self.path))
        return encode(frame)


class LastFM:
    """HetRec 2011 Last.fm (``lastfm-2k``): user-artist play counts, artist names as titles.

    The ``rating`` of a (user, artist) pair is its **play count** (1 .. 352,698, heavy-tailed), not a
    star rating: use ``preprocess.implicit: true`` for implicit feedback, ``min_rating`` to keep pairs
    played at least that often, or ``rating_scale`` to shrink the counts. There are no timestamps.

    Parameters
    ----------
    path:
        An extracted copy (the folder holding ``user_artists.dat``). ``None``: look for
        ``<data_dir>/lastfm-2k/``, else download the official archive (row-count checked).
    data_dir:
        Where datasets are looked up and downloaded to (``None``: ``$RECBENCH_DATA_DIR`` or ``./data``).
    download:
        Allow downloading when no local copy exists (``RECBENCH_OFFLINE=1`` forbids it too).
    preprocess:
        Filters applied after parsing (see :class:`~recbench.data.filters.Preprocess`).

    References
    ----------
    Iván Cantador, Peter Brusilovsky and Tsvi Kuflik. 2011. 2nd Workshop on Information Heterogeneity
    and Fusion in Recommender Systems (HetRec 2011). RecSys 2011.
    """

    name = "lastfm-2k"

    def __init__(
        self,
        *,
        path: str | Path | None = None,
        data_dir: str | Path | None = None,
        download: bool = True,
        preprocess: Preprocess | Mapping | None = None,
    ) -> None:
        self.path = path
        self.data_dir = data_dir
        self.download = download
        self.preprocess = preprocess

    def cache_key(self) -> dict:
        """Class, params and the local files' fingerprints (if a copy exists yet)."""
        folder = local_copy(self.name, self.data_dir, self.path)
        if folder is None:
            return {**params_key(self), "archive": str(data_root(self.data_dir))}
        return params_key(self, [folder / "user_artists.dat", folder / "artists.dat"])

    def load(self) -> tuple[Interactions, IdMaps]:
        """Parse play counts (and artist names), preprocess and id-encode."""
        folder = obtain(self.name, path=self.path, data_dir=self.data_dir, download=self.download)
        main = folder / "user_artists.dat"
        frame = read_table(
            main, sep="\t", header=True, columns={"user": "userID", "item": "artistID", "rating": "weight"}
        )
        titles = None
        if (folder / "artists.dat").is_file():
            titles = read_titles(folder / "artists.dat", sep="\t", header=True, quoted=False)
        frame = Preprocess.coerce(self.preprocess)(frame, source=f"Last.fm ({main})")
        return encode(frame, titles)
