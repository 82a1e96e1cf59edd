"""Feature encoders on hand-made frames, dataset loaders on hand-made and shared folders, caching."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recbench.data.features import (
    UNKNOWN,
    FeatureSpec,
    Field,
    bucketize,
    encode_frame,
    load_features,
    load_features_cached,
    multi_hot,
    one_hot,
)
from recbench.data.interactions import IdMaps
from recbench.errors import ConfigError, DataError


def dense(mat) -> np.ndarray:
    return np.asarray(mat.todense())


def test_one_hot_sorted_values_and_unknown_column() -> None:
    mat, cols = one_hot(["b", "a", None, "a", " "], "g")
    assert cols == ["g=a", "g=b", f"g={UNKNOWN}"]
    expected = [[0, 1, 0], [1, 0, 0], [0, 0, 1], [1, 0, 0], [0, 0, 1]]
    np.testing.assert_array_equal(dense(mat), expected)
    assert mat.dtype == np.float32


def test_multi_hot_weights_sum_to_one_per_entity() -> None:
    mat, cols = multi_hot(["x|y", "y", None, ["z", "z"], "x|y|z"], "t")
    assert cols == ["t=x", "t=y", "t=z", f"t={UNKNOWN}"]
    d = dense(mat)
    np.testing.assert_allclose(d[0], [0.5, 0.5, 0, 0])
    np.testing.assert_allclose(d[1], [0, 1, 0, 0])
    np.testing.assert_allclose(d[2], [0, 0, 0, 1])  # missing -> unknown
    np.testing.assert_allclose(d[3], [0, 0, 1, 0])  # duplicates count once
    np.testing.assert_allclose(d[4], [1 / 3, 1 / 3, 1 / 3, 0], rtol=1e-6)
    np.testing.assert_allclose(d.sum(1), 1.0, rtol=1e-6)


def test_multi_hot_max_values_keeps_the_most_frequent() -> None:
    mat, cols = multi_hot(["a|b", "a|c", "a|b", "c"], "t", max_values=2)
    assert cols == ["t=a", "t=b", f"t={UNKNOWN}"]  # a: 3, b: 2, c: 2 -> tie broken by name
    np.testing.assert_allclose(dense(mat)[3], [0, 0, 1])  # only "c": nothing kept -> unknown
    np.testing.assert_allclose(dense(mat)[1], [1, 0, 0])


def test_bucketize_quantile_bins_and_unknown() -> None:
    values = [1, 2, 3, 4, 5, 6, 7, 8, None, "n/a"]
    mat, cols = bucketize(values, "age", bins=2)
    assert cols == ["age<4.5", "age>=4.5", f"age={UNKNOWN}"]
    codes = dense(mat).argmax(1)
    np.testing.assert_array_equal(codes, [0, 0, 0, 0, 1, 1, 1, 1, 2, 2])
    mat4, cols4 = bucketize(values, "age", bins=4)
    assert len(cols4) == 5 and cols4[1].startswith("age=[")
    assert np.all(dense(mat4).sum(1) == 1)
    _, const = bucketize([3, 3, 3], "x", bins=5)  # equal edges merge into one bucket
    assert const == ["x=all", f"x={UNKNOWN}"]
    with pytest.raises(ConfigError):
        bucketize(values, "age", bins=0)


def test_encode_frame_aligns_with_raw_ids_as_strings() -> None:
    frame = pd.DataFrame({"id": ["10", "7", "7", "3"], "g": ["a", "b", "c", "a"], "n": ["1", "2", "3", "4"]})
    ids = np.array([3, 7, 10, 99])  # 99 has no row; the first row of the duplicated 7 wins
    table = encode_frame(frame, ids, ["g", "n:numeric"], numeric_bins=2)
    assert table.fields == ("g", "n")
    assert table.matrix.shape == (4, table.n_columns)
    g = dense(table.matrix)[:, table.column_field == 0]
    assert list(np.asarray(table.columns)[table.column_field == 0]) == ["g=a", "g=b", f"g={UNKNOWN}"]
    np.testing.assert_array_equal(g.argmax(1), [0, 1, 0, 2])
    assert np.all(dense(table.matrix).sum(1) == 2)  # one active column per field
    with pytest.raises(DataError, match="missing_col"):
        encode_frame(frame, ids, ["missing_col"])


def test_field_parse() -> None:
    assert Field.parse("genre:multi") == Field("genre", "multi")
    assert Field.parse("age:num").kind == "numeric"
    assert Field.parse("occupation").kind == "categorical"
    with pytest.raises(ConfigError):
        Field.parse("x:weird")


def _write_ml100k(folder: Path) -> IdMaps:
    folder.mkdir()
    (folder / "u.data").write_text("1\t1\t5\t1\n2\t2\t3\t2\n")
    (folder / "u.user").write_text("1|24|M|technician|85711\n2|53|F|other|T8H1N\n")
    flags = ["0"] * 19
    action = flags.copy()
    action[1] = action[16] = "1"  # Action, Thriller
    (folder / "u.item").write_text(
        "1|Toy Story (1995)|01-Jan-1995|||" + "|".join(flags) + "\n"
        "2|GoldenEye (1995)||||" + "|".join(action) + "\n",
        encoding="latin-1",
    )
    return IdMaps(users=np.array([1, 2, 3]), items=np.array([1, 2]))


def test_ml100k_layout_on_hand_made_files(tmp_path: Path) -> None:
    ids = _write_ml100k(tmp_path / "ml")
    users, items = load_features(tmp_path / "ml", ids, numeric_bins=2)
    assert users is not None and items is not None
    assert users.fields == ("age", "gender", "occupation", "zip")
    assert "zip=8" in users.columns and "zip=T" in users.columns
    u = dense(users.matrix)
    assert u[2, [c.endswith(UNKNOWN) for c in users.columns]].sum() == 4  # user 3 has no row
    genre = dense(items.matrix)[:, items.column_field == 0]
    names = np.asarray(items.columns)[items.column_field == 0]
    np.testing.assert_allclose(genre[1][genre[1] > 0], [0.5, 0.5])
    assert set(names[genre[1] > 0]) == {"genre=Action", "genre=Thriller"}
    assert genre[0, list(names).index(f"genre={UNKNOWN}")] == 1  # no flag set
    only_items = load_features(tmp_path / "ml", ids, fields=["genre"])
    assert only_items[0] is None and only_items[1].fields == ("genre",)
    with pytest.raises(ConfigError, match="tag"):
        load_features(tmp_path / "ml", ids, fields=["tag"])


def test_latest_layout_with_tags_and_year(tmp_path: Path) -> None:
    folder = tmp_path / "latest"
    folder.mkdir()
    (folder / "ratings.csv").write_text("userId,movieId,rating,timestamp\n1,1,4.0,1\n")
    (folder / "movies.csv").write_text(
        'movieId,title,genres\n1,"Heat, The (1995)",Action|Crime\n2,Untitled,(no genres listed)\n'
        "3,Show (2006\u20132007),Drama\n"
    )
    (folder / "tags.csv").write_text("userId,movieId,tag,timestamp\n1,1,Funny,1\n2,1,funny ,2\n1,3,dark,3\n")
    ids = IdMaps(users=np.array([1]), items=np.array([1, 2, 3]))
    users, items = load_features(folder, ids, fields=["genre", "year", "tag"])
    assert users is None and items is not None
    tag = dense(items.matrix)[:, items.column_field == 2]
    assert list(np.asarray(items.columns)[items.column_field == 2]) == [
        "tag=dark",
        "tag=funny",
        f"tag={UNKNOWN}",
    ]
    np.testing.assert_array_equal(tag.argmax(1), [1, 2, 0])
    year = np.asarray(items.columns)[items.column_field == 1][
        dense(items.matrix)[:, items.column_field == 1].argmax(1)
    ]
    assert year[1] == f"year={UNKNOWN}" and year[0] != year[1]
    default = load_features(folder, ids)[1]
    assert default is not None and default.fields == ("genre", "year")  # tags are opt-in


def test_ml1m_dat_layout(tmp_path: Path) -> None:
    folder = tmp_path / "ml-1m"
    folder.mkdir()
    (folder / "ratings.dat").write_text("1::1::5::1\n")
    (folder / "users.dat").write_text("1::F::1::10::48067\n2::M::56::16::70072\n")
    (folder / "movies.dat").write_text(
        "1::Toy Story (1995)::Animation|Children's|Comedy\n", encoding="latin-1"
    )
    users, items = load_features(folder, IdMaps(users=np.array([1, 2]), items=np.array([1])))
    assert users is not None and users.fields == ("age", "gender", "occupation", "zip")
    assert "age=56" in users.columns  # ml-1m ages are bracket codes: categorical
    assert items is not None and dense(items.matrix)[0, items.column_field == 0].sum() == pytest.approx(1.0)


def test_unknown_folder_and_name(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="known side features"):
        load_features(tmp_path, IdMaps(users=np.array([1]), items=np.array([1])))
    with pytest.raises(DataError):
        load_features("no-such-dataset-name", IdMaps(users=np.array([1]), items=np.array([1])))


def test_cache_round_trip(tmp_path: Path) -> None:
    ids = _write_ml100k(tmp_path / "ml")
    first = load_features_cached(tmp_path / "ml", ids, cache_dir=tmp_path / "cache")
    files = list((tmp_path / "cache").glob("features-ml-*.npz"))
    assert len(files) == 1 and not list((tmp_path / "cache").glob("*.tmp"))
    again = load_features_cached(tmp_path / "ml", ids, cache_dir=tmp_path / "cache")
    for a, b in zip(first, again):
        assert a is not None and b is not None
        assert a.fields == b.fields and a.columns == b.columns
        np.testing.assert_array_equal(a.column_field, b.column_field)
        np.testing.assert_array_equal(dense(a.matrix), dense(b.matrix))
    load_features_cached(tmp_path / "ml", ids, ["genre"], cache_dir=tmp_path / "cache")
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 2  # other fields, other key
    files[0].write_bytes(b"corrupt")
    rebuilt = load_features_cached(tmp_path / "ml", ids, cache_dir=tmp_path / "cache")
    assert rebuilt[0] is not None and rebuilt[0].columns == first[0].columns


def test_feature_spec_with_own_files_and_dataset(tmp_path: Path) -> None:
    ids = _write_ml100k(tmp_path / "ml")
    user_file = tmp_path / "users.csv"
    user_file.write_text("uid,segment,score,likes\n1,gold,3.5,a|b\n2,silver,1.0,b\n")
    spec = FeatureSpec(
        user_file=str(user_file),
        id_column="uid",
        user_fields=("segment", "score:numeric", "likes:multi"),
        item_fields=("genre",),
        numeric_bins=2,
    )
    users, items = spec.load(tmp_path / "ml", ids)
    assert users is not None and users.fields == ("segment", "score", "likes")
    assert users.matrix.shape[0] == 3
    assert items is not None and items.fields == ("genre",)
    cached = FeatureSpec(item_fields=(), cache_dir=str(tmp_path / "c")).load(tmp_path / "ml", ids)
    assert cached[1] is None and cached[0] is not None and cached[0].fields[0] == "age"
    with pytest.raises(ConfigError):
        FeatureSpec().load(None, ids)


def test_ml100k_shared_copy(ml100k_dir: Path) -> None:
    from recbench.data.sources import MovieLens

    _, ids = MovieLens(variant="ml-100k", path=ml100k_dir, download=False).load()
    users, items = load_features(ml100k_dir, ids)
    assert users is not None and items is not None
    assert users.matrix.shape[0] == 943 and items.matrix.shape[0] == 1682
    genre_cols = [c for c in items.columns if c.startswith("genre=") and c != f"genre={UNKNOWN}"]
    assert len(genre_cols) == 19
    np.testing.assert_allclose(np.asarray(items.matrix.sum(1)).ravel(), 2.0, rtol=1e-5)  # genre + year
    assert np.all(np.diff(users.matrix.indptr) == 4)  # age, gender, occupation, zip


def test_source_folder(tmp_path: Path) -> None:
    from recbench.data.features import source_folder
    from recbench.data.sources import MovieLens

    ids = _write_ml100k(tmp_path / "ml-100k")
    assert source_folder(MovieLens(variant="ml-100k", path=tmp_path / "ml-100k")) == tmp_path / "ml-100k"
    assert source_folder(MovieLens(variant="ml-100k", data_dir=tmp_path)) == tmp_path / "ml-100k"
    assert source_folder(MovieLens(variant="ml-1m", data_dir=tmp_path)) is None
    assert source_folder(object()) is None
    users, _ = FeatureSpec().load(source_folder(MovieLens(path=tmp_path / "ml-100k")), ids)
    assert users is not None
