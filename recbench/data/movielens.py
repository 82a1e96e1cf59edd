"""MovieLens (GroupLens) ratings: ml-100k, ml-1m, ml-10m, ml-20m, ml-25m and ml-latest-small.

References
----------
F. Maxwell Harper and Joseph A. Konstan. 2015. The MovieLens Datasets: History and Context.
ACM Transactions on Interactive Intelligent Systems 5(4), 19:1-19:19.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from recbench.data.cache import params_key
from recbench.data.catalog import DATASETS, data_root, local_copy, obtain
from recbench.data.filters import Preprocess, encode
from recbench.data.interactions import IdMaps, Interactions
from recbench.data.readers import read_table, read_titles
from recbench.errors import ConfigError


@dataclass(frozen=True)
class _Layout:
    ratings: str
    titles: str
    sep: str  # "::" files are read with ":" and every other field (fast C parser)
    header: bool
    title_encodings: tuple[str, ...]


_DAT = _Layout("ratings.dat", "movies.dat", "::", False, ("utf-8", "latin-1"))
_CSV = _Layout("ratings.csv", "movies.csv", ",", True, ("utf-8",))
LAYOUTS: dict[str, _Layout] = {
    "ml-100k": _Layout("u.data", "u.item", "\t", False, ("latin-1",)),
    "ml-1m": _Layout("ratings.dat", "movies.dat", "::", False, ("latin-1",)),
    "ml-10m": _DAT,
    "ml-20m": _CSV,
    "ml-25m": _CSV,
    "ml-latest-small": _CSV,
}


class MovieLens:
    """A MovieLens release: explicit ratings with timestamps, movie titles in the id maps.

    Parameters
    ----------
    variant:
        One of ``ml-100k``, ``ml-1m``, ``ml-10m``, ``ml-20m``, ``ml-25m``, ``ml-latest-small``.
    path:
        An extracted copy (the folder holding ``u.data`` / ``ratings.dat`` / ``ratings.csv``), read in
        place without checksum. ``None``: look for ``<data_dir>/<variant>/``, else download.
    data_dir:
        Where datasets are looked up and downloaded to (``None``: ``$RECBENCH_DATA_DIR`` or ``./data``).
    download:
        Allow downloading the official archive (MD5-checked) when no local copy exists. Setting the
        environment variable ``RECBENCH_OFFLINE=1`` forbids it too.
    preprocess:
        Filters applied after parsing (see :class:`~recbench.data.filters.Preprocess`).
    """

    def __init__(
        self,
        *,
        variant: str = "ml-100k",
        path: str | Path | None = None,
        data_dir: str | Path | None = None,
        download: bool = True,
        preprocess: Preprocess | Mapping | None = None,
    ) -> None:
        self.variant = variant
        self.path = path
        self.data_dir = data_dir
        self.download = download
        self.preprocess = preprocess

    @property
    def name(self) -> str:
        """The variant, e.g. ``ml-100k``."""
        return str(self.variant)

    def _layout(self) -> _Layout:
        if self.variant not in LAYOUTS:
            raise ConfigError(f"unknown MovieLens variant {self.variant!r}; choose one of {sorted(LAYOUTS)}.")
        return LAYOUTS[self.variant]

    def cache_key(self) -> dict:
        """Class, params and the fingerprints of the local files (or the archive checksum if none yet)."""
        layout = self._layout()
        folder = local_copy(self.variant, self.data_dir, self.path)
        if folder is None:
            key = params_key(self)
            spec = DATASETS[self.variant]
            key["archive"] = {"url": spec["url"], "md5": spec.get("md5"), "to": str(data_root(self.data_dir))}
            return key
        return params_key(self, [folder / layout.ratings, folder / layout.titles])

    def load(self) -> tuple[Interactions, IdMaps]:
        """Parse the ratings (and titles, when present), preprocess and id-encode them."""
        layout = self._layout()
        folder = obtain(self.variant, path=self.path, data_dir=self.data_dir, download=self.download)
        ratings_file = folder / layout.ratings
        if layout.sep == "::":
            frame = read_table(
                ratings_file,
                sep=":",
                header=False,
                columns={"user": 0, "item": 2, "rating": 4, "timestamp": 6},
            )
        else:
            frame = read_table(
                ratings_file,
                sep=layout.sep,
                header=layout.header,
                columns={"user": 0, "item": 1, "rating": 2, "timestamp": 3},
            )
        titles = self._titles(folder / layout.titles, layout)
        frame = Preprocess.coerce(self.preprocess)(frame, source=f"MovieLens {self.variant} ({ratings_file})")
        return encode(frame, titles)

    @staticmethod
    def _titles(path: Path, layout: _Layout) -> pd.Series | None:
        if not path.is_file():
            return None
        sep = "|" if layout.sep == "\t" else layout.sep
        return read_titles(
            path, sep=sep, header=layout.header, encodings=layout.title_encodings, quoted=layout.header
        )
