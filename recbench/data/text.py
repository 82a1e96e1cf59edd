"""Item text as features: titles, tags and genres turned into TF-IDF vectors fitted on training items only.

Content carries items that nobody has interacted with yet (the cold-start protocols), so the text of
an item becomes one more item-feature field, ``text``, that the feature-aware models (fm, widedeep,
deepfm, ncf/mlp with features) and :class:`~recbench.models.content.ContentKNN` read like any other
multi-valued field.

Corpus statistics are training data: the vocabulary and the inverse document frequencies are fitted
on the text of the items that have a training interaction in the split at hand (:meth:`TextFeatures.apply`
runs per split, after splitting), then every item, cold ones included, is transformed with them. A
term that only cold (test) items use is therefore not in the vocabulary, and the test items' text
never moves an IDF weight.

Text sources, per dataset folder (the same files :mod:`recbench.data.features` reads):

* MovieLens latest-small / 20M / 25M (``movies.csv``): ``title`` (year removed), ``genres``, and
  ``tags`` (the free-text tags of ``tags.csv``);
* MovieLens 100K (``u.item``): ``title``, ``genres``; MovieLens 1M / 10M (``movies.dat``): the same;
* Last.fm 2K (``artists.dat``): ``title`` (the artist name), ``tags`` where
  ``user_taggedartists.dat`` exists;
* any dataset: ``text_file``, a CSV with an item id column and a text column.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recbench.data.features import ML100K_GENRES
from recbench.data.interactions import FeatureTable, IdMaps
from recbench.data.splits import Split
from recbench.errors import ConfigError, DataError

SOURCES = ("title", "genres", "tags")
_YEAR = re.compile(r"\(\d{4}\)\s*$")


def _ids(values: pd.Series) -> pd.Series:
    return values.astype(str).str.strip()


def _join(frame: pd.DataFrame, column: str) -> pd.Series:
    """Per item id, the ``column`` values joined with spaces."""
    return frame.groupby("id")[column].agg(lambda v: " ".join(map(str, v)))


def _movielens_csv(folder: Path, wanted: Sequence[str]) -> dict[str, pd.Series]:
    movies = pd.read_csv(folder / "movies.csv", dtype=str)
    movies["id"] = _ids(movies["movieId"])
    out = {}
    if "title" in wanted:
        out["title"] = movies.set_index("id")["title"].str.replace(_YEAR, "", regex=True)
    if "genres" in wanted:
        out["genres"] = movies.set_index("id")["genres"].str.replace("|", " ", regex=False)
    tags = folder / "tags.csv"
    if "tags" in wanted and tags.is_file():
        frame = pd.read_csv(tags, dtype=str, usecols=["movieId", "tag"]).dropna()
        frame["id"] = _ids(frame["movieId"])
        out["tags"] = _join(frame, "tag")
    return out


def _movielens_100k(folder: Path, wanted: Sequence[str]) -> dict[str, pd.Series]:
    frame = pd.read_csv(folder / "u.item", sep="|", header=None, encoding="latin-1", dtype=str)
    frame["id"] = _ids(frame[0])
    out = {}
    if "title" in wanted:
        out["title"] = frame.set_index("id")[1].str.replace(_YEAR, "", regex=True)
    if "genres" in wanted:
        flags = frame.iloc[:, 5:24].astype(int).to_numpy()
        names = np.array([g.replace("'", "") for g in ML100K_GENRES])
        out["genres"] = pd.Series([" ".join(names[row == 1]) for row in flags], index=frame["id"])
    return out


def _movielens_dat(folder: Path, wanted: Sequence[str]) -> dict[str, pd.Series]:
    lines = (folder / "movies.dat").read_text(encoding="latin-1").splitlines()
    parts = [line.split("::") for line in lines if line.strip()]
    frame = pd.DataFrame({"id": [p[0].strip() for p in parts], "title": [p[1] for p in parts]})
    frame["genres"] = [p[2].replace("|", " ") if len(p) > 2 else "" for p in parts]
    frame["title"] = frame["title"].str.replace(_YEAR, "", regex=True)
    return {name: frame.set_index("id")[name] for name in ("title", "genres") if name in wanted}


def _lastfm(folder: Path, wanted: Sequence[str]) -> dict[str, pd.Series]:
    artists = pd.read_csv(folder / "artists.dat", sep="\t", dtype=str, usecols=[0, 1])
    artists.columns = ["id", "name"]
    artists["id"] = _ids(artists["id"])
    out = {}
    if "title" in wanted:
        out["title"] = artists.set_index("id")["name"]
    tagged = folder / "user_taggedartists.dat"
    if "tags" in wanted and tagged.is_file():
        rows = pd.read_csv(tagged, sep="\t", dtype=str, encoding="latin-1").iloc[:, [1, 2]]
        rows.columns = ["id", "tag"]
        names = pd.read_csv(folder / "tags.dat", sep="\t", dtype=str, encoding="latin-1")
        rows["tag"] = rows["tag"].map(dict(zip(names.iloc[:, 0], names.iloc[:, 1]))).fillna("")
        rows["id"] = _ids(rows["id"])
        out["tags"] = _join(rows, "tag")
    return out


_READERS = {
    "movies.csv": _movielens_csv,
    "u.item": _movielens_100k,
    "movies.dat": _movielens_dat,
    "artists.dat": _lastfm,
}


class TextFeatures:
    """TF-IDF of item text, fitted per split on the training items (see the module docstring).

    Parameters
    ----------
    sources:
        Which texts to join per item: any of ``title``, ``genres``, ``tags`` (those the dataset has).
    text_file:
        A CSV of your own (``id_column``, ``text_column``) used instead of the dataset's files.
    id_column, text_column, sep:
        Layout of ``text_file``.
    max_features:
        Vocabulary size (most frequent terms over the training items' text).
    min_df:
        A term must occur in at least this many training items.
    max_terms:
        Each item keeps its ``max_terms`` highest-weighted terms (bounds the model's slots per item).
    """

    def __init__(
        self,
        *,
        sources: Sequence[str] = SOURCES,
        text_file: str | None = None,
        id_column: str = "id",
        text_column: str = "text",
        sep: str = ",",
        max_features: int = 5000,
        min_df: int = 2,
        max_terms: int = 20,
    ) -> None:
        self.sources = sources
        self.text_file = text_file
        self.id_column = id_column
        self.text_column = text_column
        self.sep = sep
        self.max_features = max_features
        self.min_df = min_df
        self.max_terms = max_terms

    def _check(self) -> None:
        unknown = [s for s in self.sources if s not in SOURCES]
        if unknown or not list(self.sources):
            raise ConfigError(
                f"text.sources={list(self.sources)} must be a non-empty subset of {list(SOURCES)}."
            )
        for key in ("max_features", "min_df", "max_terms"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"text.{key}={value!r} must be an integer >= 1.")

    def item_texts(self, folder: Path | None, ids: IdMaps) -> np.ndarray:
        """``object[n_items]``: each item's joined text ("" where it has none), aligned with ``ids``."""
        self._check()
        if self.text_file is not None:
            path = Path(self.text_file).expanduser()
            if not path.is_file():
                raise DataError(f"text.text_file={self.text_file!r}: no such file.")
            frame = pd.read_csv(path, sep=self.sep, dtype=str)
            missing = [c for c in (self.id_column, self.text_column) if c not in frame.columns]
            if missing:
                raise DataError(
                    f"{path} has no column(s) {missing}; its columns are {list(frame.columns)}. Set "
                    "text.id_column / text.text_column."
                )
            frame["id"] = _ids(frame[self.id_column])
            series = [_join(frame.dropna(subset=[self.text_column]), self.text_column)]
        else:
            reader = None if folder is None else next((m for m in _READERS if (folder / m).is_file()), None)
            if reader is None:
                raise ConfigError(
                    f"text features: {folder} holds no item text recbench knows (MovieLens movies or "
                    "Last.fm artists). Give your own with text.text_file=items.csv (columns id,text), or "
                    "drop text=tfidf."
                )
            found = _READERS[reader](folder, list(self.sources))
            series = [found[s] for s in self.sources if s in found]
        raw = pd.Series(ids.items).astype(str).str.strip()
        text = pd.Series("", index=raw.index, dtype=object)
        for s in series:
            s = s[~s.index.duplicated()]
            text = text + " " + raw.map(s).fillna("").astype(str)
        return text.str.strip().to_numpy(dtype=object)

    def table(self, texts: np.ndarray, fit_items: np.ndarray) -> FeatureTable:
        """Field ``text``: TF-IDF fitted on ``texts[fit_items]``, every item transformed with it, each
        row cut to its ``max_terms`` best terms and scaled to sum 1 (like the other multi-valued fields)."""
        try:
            from sklearn.feature_extraction.text import TfidfVectorizer
        except ImportError as exc:
            raise ConfigError(
                "text features need scikit-learn; install it with pip install 'recbench[text]'."
            ) from exc
        self._check()
        corpus = [str(t) for t in np.asarray(texts, dtype=object)[fit_items]]
        vectorizer = TfidfVectorizer(
            max_features=self.max_features, min_df=self.min_df, sublinear_tf=True, stop_words="english"
        )
        try:
            vectorizer.fit(corpus)
        except ValueError as exc:  # an empty vocabulary
            raise DataError(
                f"text features: the training items' text gives no term ({exc}); lower text.min_df or "
                "check the text sources."
            ) from exc
        matrix = vectorizer.transform([str(t) for t in texts]).tocsr().astype(np.float32)
        matrix = _keep_top(matrix, self.max_terms)
        sums = np.asarray(matrix.sum(axis=1)).ravel()
        matrix = (sp.diags(1.0 / np.where(sums > 0, sums, 1.0)) @ matrix).tocsr().astype(np.float32)
        terms = vectorizer.get_feature_names_out()
        return FeatureTable(
            matrix=matrix,
            column_field=np.zeros(len(terms), dtype=np.int64),
            fields=("text",),
            columns=tuple(f"text={t}" for t in terms),
        )

    def apply(self, split: Split, texts: np.ndarray) -> Split:
        """``split`` with the ``text`` field added to its item features, fitted on its training items."""
        train = split.train
        fit_items = np.unique(train.items)
        text = self.table(texts, fit_items)
        items = combine(train.item_features, text)
        parts = {
            "train": train.with_features(train.user_features, items),
            "val": None if split.val is None else split.val.with_features(split.val.user_features, items),
            "test": split.test.with_features(split.test.user_features, items),
        }
        return replace(split, **parts)


def _keep_top(matrix: sp.csr_matrix, k: int) -> sp.csr_matrix:
    """Each row's ``k`` largest entries (ties to the lower column)."""
    counts = np.diff(matrix.indptr)
    if counts.max(initial=0) <= k:
        return matrix
    rows = np.repeat(np.arange(matrix.shape[0]), counts)
    order = np.lexsort((matrix.indices, -matrix.data, rows))
    rank = np.arange(matrix.nnz) - matrix.indptr[rows[order]]
    keep = order[rank < k]
    out = sp.csr_matrix(
        (matrix.data[keep], (rows[keep], matrix.indices[keep])), shape=matrix.shape, dtype=matrix.dtype
    )
    out.sort_indices()
    return out


def combine(base: FeatureTable | None, extra: FeatureTable) -> FeatureTable:
    """``base`` with the fields of ``extra`` appended (columns side by side, field indices shifted)."""
    if base is None:
        return extra
    return FeatureTable(
        matrix=sp.hstack([base.matrix, extra.matrix], format="csr", dtype=np.float32),
        column_field=np.concatenate([base.column_field, extra.column_field + len(base.fields)]),
        fields=base.fields + extra.fields,
        columns=base.columns + extra.columns,
    )
