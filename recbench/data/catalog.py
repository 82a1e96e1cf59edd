"""The catalogue of real datasets: where each comes from and where its local copy lives.

:data:`DATASETS` is the single record of where each dataset comes from (official URL and checksum),
which folder under the data directory holds it, and how to recognise a good copy (file names, row
counts, sha256 of the files that are distributed as-is). Sources locate their files through
:func:`obtain`; nothing here imports a source or a command. The ``recbench data`` commands
(:mod:`recbench.data.commands`) read this catalogue.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from recbench.data.download import fetch_archive, offline
from recbench.data.readers import count_rows
from recbench.errors import DataError

_GROUPLENS = "https://files.grouplens.org/datasets"
_S3REC = "the S3-Rec / ICLRec benchmark files (github.com/salesforce/ICLRec, data/{file})"

#: name -> description, url, md5 (published archive sum or None), folder (under data_dir), files (the
#: first one is the main file; its presence marks a local copy), rows (main-file row count and whether
#: it has a header line), sha256 (files that are distributed as they are), origin (where to get it).
DATASETS: dict[str, dict[str, Any]] = {
    "ml-100k": {
        "description": "MovieLens 100K: 100,000 ratings (1-5) by 943 users on 1,682 movies",
        "url": f"{_GROUPLENS}/movielens/ml-100k.zip",
        "md5": "0e33842e24a9c977be4e0107933c0723",
        "folder": "ml-100k",
        "files": ["u.data", "u.item"],
        "rows": {"count": 100_000, "header": False},
    },
    "ml-1m": {
        "description": "MovieLens 1M: 1,000,209 ratings (1-5) by 6,040 users on 3,706 movies",
        "url": f"{_GROUPLENS}/movielens/ml-1m.zip",
        "md5": "c4d9eecfca2ab87c1945afe126590906",
        "folder": "ml-1m",
        "files": ["ratings.dat", "movies.dat"],
        "rows": {"count": 1_000_209, "header": False},
    },
    "ml-10m": {
        "description": "MovieLens 10M: 10,000,054 ratings (0.5-5) by 69,878 users on 10,677 movies",
        "url": f"{_GROUPLENS}/movielens/ml-10m.zip",
        "md5": "ce571fd55effeba0271552578f2648bd",
        "folder": "ml-10m",
        "files": ["ratings.dat", "movies.dat"],
        "rows": {"count": 10_000_054, "header": False},
    },
    "ml-20m": {
        "description": "MovieLens 20M: 20,000,263 ratings (0.5-5) by 138,493 users on 26,744 movies",
        "url": f"{_GROUPLENS}/movielens/ml-20m.zip",
        "md5": "cd245b17a1ae2cc31bb14903e1204af3",
        "folder": "ml-20m",
        "files": ["ratings.csv", "movies.csv"],
        "rows": {"count": 20_000_263, "header": True},
    },
    "ml-25m": {
        "description": "MovieLens 25M: 25,000,095 ratings (0.5-5) by 162,541 users on 59,047 movies",
        "url": f"{_GROUPLENS}/movielens/ml-25m.zip",
        "md5": "6b51fb2759a8657d3bfcbfc42b592ada",
        "folder": "ml-25m",
        "files": ["ratings.csv", "movies.csv"],
        "rows": {"count": 25_000_095, "header": True},
    },
    "ml-latest-small": {
        "description": "MovieLens latest-small (2018): 100,836 ratings (0.5-5) by 610 users on 9,724 movies",
        "url": f"{_GROUPLENS}/movielens/ml-latest-small.zip",
        "md5": None,
        "folder": "ml-latest-small",
        "files": ["ratings.csv", "movies.csv"],
        "rows": {"count": 100_836, "header": True},
        "sha256": {"ratings.csv": "aa289ca83157595d0df6aea1be6a4ded676ddc4385472e8313a8ed9805352646"},
    },
    "lastfm-2k": {
        "description": "HetRec 2011 Last.fm: 92,834 play counts of 1,892 users on 17,632 artists",
        "url": f"{_GROUPLENS}/hetrec2011/hetrec2011-lastfm-2k.zip",
        "md5": None,
        "folder": "lastfm-2k",
        "files": ["user_artists.dat", "artists.dat"],
        "rows": {"count": 92_834, "header": True},
        "sha256": {"user_artists.dat": "001400dc3c7d2667fca6e4ea6dc6acc31a9dd28ad5cd0f74cea988c019934d3b"},
    },
    "amazon-beauty": {
        "description": "Amazon Beauty 5-core sequences: 198,502 interactions of 22,363 users on 12,101 items",
        "url": None,
        "folder": "amazon",
        "files": ["Beauty.txt"],
        "rows": {"count": 22_363, "header": False},
        "sha256": {"Beauty.txt": "226cce9c3105299ca0db9615d7d3fb32b3175e90da43100ae352599f0f0107b8"},
        "origin": _S3REC.format(file="Beauty.txt"),
    },
    "amazon-sports": {
        "description": "Amazon Sports_and_Outdoors 5-core sequences: 296,337 interactions of 35,598 users",
        "url": None,
        "folder": "amazon",
        "files": ["Sports_and_Outdoors.txt"],
        "rows": {"count": 35_598, "header": False},
        "sha256": {
            "Sports_and_Outdoors.txt": "2a095e0648872beb9982408958290f5d655db5be2911c3756b5446de9f0b8de2"
        },
        "origin": _S3REC.format(file="Sports_and_Outdoors.txt"),
    },
    "amazon-toys": {
        "description": "Amazon Toys_and_Games 5-core sequences: 167,597 interactions of 19,412 users",
        "url": None,
        "folder": "amazon",
        "files": ["Toys_and_Games.txt"],
        "rows": {"count": 19_412, "header": False},
        "sha256": {"Toys_and_Games.txt": "176c680c688d497598c4a89a03b402c0fe78d795e5db335c2e78dd5f2d778a3f"},
        "origin": _S3REC.format(file="Toys_and_Games.txt"),
    },
    "yelp": {
        "description": "Yelp 5-core sequences: 316,354 interactions of 30,431 users on 20,033 businesses",
        "url": None,
        "folder": "amazon",
        "files": ["Yelp.txt"],
        "rows": {"count": 30_431, "header": False},
        "sha256": {"Yelp.txt": "724b219106b81dd2349027da997334ddb6da9fe2f152ad6e0d97a93170f7caed"},
        "origin": _S3REC.format(file="Yelp.txt"),
    },
}


def spec_of(name: str) -> dict[str, Any]:
    """The catalogue entry of ``name``; a :class:`DataError` listing the known names otherwise."""
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; the known datasets are {sorted(DATASETS)}.")
    return DATASETS[name]


def data_root(data_dir: str | Path | None = None) -> Path:
    """``data_dir``, else ``$RECBENCH_DATA_DIR``, else ``./data``."""
    return Path(
        data_dir if data_dir is not None else os.environ.get("RECBENCH_DATA_DIR") or "data"
    ).expanduser()


def local_copy(name: str, data_dir: str | Path | None = None, path: str | Path | None = None) -> Path | None:
    """The folder holding ``name``'s main file (``path`` when given, else under the data dir), or None."""
    spec = spec_of(name)
    folder = Path(path).expanduser() if path is not None else data_root(data_dir) / spec["folder"]
    return folder if (folder / spec["files"][0]).is_file() else None


def _verify_rows(name: str) -> Any:
    spec = spec_of(name)

    def verify(folder: Path) -> None:
        rows, main = spec["rows"], folder / spec["files"][0]
        found = count_rows(main, rows["header"])
        if found != rows["count"]:
            raise DataError(
                f"{main} has {found:,} rows, not the {rows['count']:,} of {name}: the archive is not the "
                "expected release, so it was not installed."
            )

    return verify


def _missing_message(name: str, folder: Path, reason: str) -> str:
    spec = spec_of(name)
    main = folder / spec["files"][0]
    if spec.get("url"):
        get = f"download {spec['url']} and extract it so that {main} exists"
        auto = "; or allow downloads (unset RECBENCH_OFFLINE, keep download: true)"
    else:
        get = f"copy {spec['files'][0]} from {spec['origin']} to {main}"
        auto = ""
    return (
        f"dataset {name} is not available: {main} does not exist and {reason}. To fix it, {get}; or point "
        f"the dataset's path at a folder that already holds {spec['files'][0]}; or set RECBENCH_DATA_DIR "
        f"(paths.data_dir) to a folder holding {spec['folder']}/{auto}."
    )


def obtain(
    name: str,
    *,
    path: str | Path | None = None,
    data_dir: str | Path | None = None,
    download: bool = True,
    progress: bool = True,
) -> Path:
    """Folder holding dataset ``name``: ``path`` as given, a copy under the data dir, or a fresh download.

    Local copies are read in place without checksum. Downloads happen only when ``download`` is true
    and ``RECBENCH_OFFLINE`` is not set; otherwise a :class:`DataError` says where to put the files.
    """
    spec = spec_of(name)
    if path is not None:
        folder = Path(path).expanduser()
        if local_copy(name, path=folder) is None:
            raise DataError(
                f"{folder} does not hold {spec['files'][0]}; the dataset's path must be an extracted copy of "
                f"{name} "
                f"(the folder that contains {', '.join(spec['files'])})."
            )
        return folder
    folder = data_root(data_dir) / spec["folder"]
    if local_copy(name, data_dir) is not None:
        return folder
    if not spec.get("url"):
        raise DataError(_missing_message(name, folder, "it cannot be downloaded automatically"))
    if offline() or not download:
        reason = "RECBENCH_OFFLINE is set" if offline() else "download is false"
        raise DataError(_missing_message(name, folder, reason))
    return fetch(name, data_dir, progress=progress)


def fetch(name: str, data_dir: str | Path | None = None, *, progress: bool = True) -> Path:
    """Download (with checksum) and unpack dataset ``name`` into the data dir unless already there."""
    spec = spec_of(name)
    folder = data_root(data_dir) / spec["folder"]
    if local_copy(name, data_dir) is not None:
        return folder
    if not spec.get("url"):
        raise DataError(_missing_message(name, folder, "it cannot be downloaded automatically"))
    if offline():
        raise DataError(_missing_message(name, folder, "RECBENCH_OFFLINE is set"))
    return fetch_archive(
        spec["url"],
        folder,
        files=spec["files"],
        md5=spec.get("md5"),
        verify=None if spec.get("md5") else _verify_rows(name),
        progress=progress,
    )
