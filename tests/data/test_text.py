"""Item text features: TF-IDF fitted on training items only (no leak of cold items' text), sources, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from recbench.data.interactions import FeatureTable, IdMaps, Interactions
from recbench.data.splits import Split
from recbench.data.text import TextFeatures, combine
from recbench.errors import ConfigError, DataError

TEXTS = np.array(
    [
        "space robots war",  # items 0-3 are trained on
        "space opera war",
        "robots love story",
        "love story war",
        "wizards dragons magic",  # items 4-5 are cold (test only)
        "dragons magic space",
    ],
    dtype=object,
)


def _split() -> Split:
    train = Interactions(np.array([0, 0, 1, 1]), np.array([0, 1, 2, 3]), n_users=2, n_items=6)
    test = Interactions(np.array([0, 1]), np.array([4, 5]), n_users=2, n_items=6)
    return Split(train=train, val=None, test=test)


def test_vocabulary_and_idf_come_from_training_items_only() -> None:
    text = TextFeatures(min_df=1)
    table = text.table(TEXTS, np.arange(4))
    vocab = {c.split("=", 1)[1] for c in table.columns}
    assert "space" in vocab and "war" in vocab
    assert not vocab & {"wizards", "dragons", "magic"}  # only cold items use them
    changed = TEXTS.copy()
    changed[4] = "space space space war war opera"  # the cold items' text must not move any weight
    changed[5] = "robots"
    again = text.table(changed, np.arange(4))
    assert again.columns == table.columns
    np.testing.assert_allclose(again.matrix[:4].toarray(), table.matrix[:4].toarray())
    # a cold item is still described by the training vocabulary it shares
    assert table.matrix[5].nnz == 1 and table.columns[table.matrix[5].indices[0]] == "text=space"


def test_rows_keep_their_best_terms_and_sum_to_one() -> None:
    table = TextFeatures(min_df=1, max_terms=2).table(TEXTS, np.arange(6))
    counts = np.diff(table.matrix.indptr)
    assert counts.max() <= 2
    np.testing.assert_allclose(np.asarray(table.matrix.sum(axis=1)).ravel(), 1.0, rtol=1e-6)


def test_apply_adds_the_text_field_to_every_part_beside_existing_features() -> None:
    base = FeatureTable(
        sp.csr_matrix(np.eye(6, 2, dtype=np.float32)), np.zeros(2, dtype=np.int64), ("genre",), ("g=a", "g=b")
    )
    split = _split()
    split = Split(
        train=split.train.with_features(None, base), val=None, test=split.test.with_features(None, base)
    )
    out = TextFeatures(min_df=1).apply(split, TEXTS)
    items = out.train.item_features
    assert items is out.test.item_features and items.fields == ("genre", "text")
    assert items.columns[:2] == ("g=a", "g=b") and set(items.column_field[2:]) == {1}
    np.testing.assert_array_equal(items.matrix[:, :2].toarray(), base.matrix.toarray())
    assert combine(None, items) is items


def test_movielens_100k_titles_and_genres(ml100k_dir: Path) -> None:
    ids = IdMaps(users=np.array(["1"], dtype=object), items=np.array(["1", "50", "99999"], dtype=object))
    texts = TextFeatures(sources=["title", "genres"]).item_texts(ml100k_dir, ids)
    assert texts[0].startswith("Toy Story") and "Animation" in texts[0] and "1995" not in texts[0]
    assert texts[1].startswith("Star Wars") and texts[2] == ""


def test_own_text_file_and_its_errors(tmp_path: Path) -> None:
    path = tmp_path / "items.csv"
    path.write_text("iid,blurb\na,red apple\nb,green pear\n")
    ids = IdMaps(users=np.array(["u"], dtype=object), items=np.array(["b", "a", "c"], dtype=object))
    spec = TextFeatures(text_file=str(path), id_column="iid", text_column="blurb")
    np.testing.assert_array_equal(spec.item_texts(None, ids), ["green pear", "red apple", ""])
    with pytest.raises(DataError, match="blurb"):
        TextFeatures(text_file=str(path), id_column="iid").item_texts(None, ids)
    with pytest.raises(ConfigError, match="text_file"):
        TextFeatures().item_texts(tmp_path, ids)  # a folder without known item text
    with pytest.raises(ConfigError, match="text.sources"):
        TextFeatures(sources=["plot"]).item_texts(None, ids)
    with pytest.raises(DataError, match="min_df"):
        TextFeatures(min_df=5).table(np.array(["a b", "c d"], dtype=object), np.arange(2))
