"""Sources: synthetic data, MovieLens / Last.fm / sequence files, CSV error messages, configs."""

from __future__ import annotations

import inspect
import json
import os
from pathlib import Path

import numpy as np
import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from recbench.data.filters import Preprocess
from recbench.data.sources import CsvSource, DatasetSource, LastFM, MovieLens, SequenceFile, Synthetic
from recbench.errors import ConfigError, DataError

REPO = Path(__file__).resolve().parents[2]
CONFIG_DIR = REPO / "configs"
DATASET_CONFIGS = sorted((CONFIG_DIR / "dataset").glob("*.yaml"))


def shared(*parts: str) -> Path:
    """A file or folder of the shared datasets ($RECBENCH_DATA_DIR or ../shared/datasets); skip if absent."""
    env = os.environ.get("RECBENCH_DATA_DIR")
    roots = [Path(env)] if env else []
    path = next(
        (
            r.joinpath(*parts)
            for r in [*roots, REPO.parent / "shared" / "datasets"]
            if r.joinpath(*parts).exists()
        ),
        None,
    )
    if path is None:
        pytest.skip(f"shared dataset file {'/'.join(parts)} not found")
    return path


def write(path: Path, text: str | bytes) -> Path:
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


# ---------------------------------------------------------------- synthetic


def test_synthetic_is_seeded_and_seeds_differ() -> None:
    a, _ = Synthetic(n_users=80, n_items=60, n_interactions=2000, seed=3).load()
    b, _ = Synthetic(n_users=80, n_items=60, n_interactions=2000, seed=3).load()
    c, _ = Synthetic(n_users=80, n_items=60, n_interactions=2000, seed=4).load()
    for name in ("users", "items", "ratings", "timestamps"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert not np.array_equal(a.items, c.items) or not np.array_equal(a.users, c.users)


def test_tiny_config_shape() -> None:
    data, _ = instantiate(OmegaConf.load(CONFIG_DIR / "dataset" / "tiny.yaml")).load()
    assert (data.n_users, data.n_items) == (60, 40)
    assert 1300 <= len(data) <= 1700
    assert data.user_counts().min() >= 5
    assert set(np.unique(data.ratings)) <= {1.0, 2.0, 3.0, 4.0, 5.0}
    assert len(np.unique(data.users * data.n_items + data.items)) == len(data)


def test_synthetic_has_popularity_clusters_and_sequential_signal() -> None:
    data, _ = Synthetic(n_users=1000, n_items=800, n_interactions=60_000, seed=0).load()
    assert 55_000 <= len(data) <= 60_000
    counts = np.sort(data.item_counts())[::-1]
    assert counts[0] > 8 * np.median(counts)  # heavy head
    # Next-item prediction from the last item (bigram counts on half the users) beats popularity.
    order = data.chronological_order()
    users, items = data.users[order], data.items[order]
    same = users[1:] == users[:-1]
    prev, nxt, who = items[:-1][same], items[1:][same], users[1:][same]
    fit = who % 2 == 0
    bigram = np.zeros((data.n_items, data.n_items))
    np.add.at(bigram, (prev[fit], nxt[fit]), 1)
    guess = bigram.argmax(axis=1)[prev[~fit]]
    pop = np.argmax(np.bincount(nxt[fit], minlength=data.n_items))
    bigram_hit = np.mean(guess == nxt[~fit])
    pop_hit = np.mean(nxt[~fit] == pop)
    assert bigram_hit > 3 * pop_hit and bigram_hit > 0.05
    # Ratings carry taste: higher on items of the user's own cluster.
    frame, own = Synthetic(n_users=1000, n_items=800, n_interactions=60_000, seed=0).generate_with_clusters()
    assert 3.0 < frame["rating"].mean() < 4.0
    assert frame["rating"][own].mean() - frame["rating"][~own].mean() > 0.8


def test_synthetic_rejects_impossible_sizes() -> None:
    with pytest.raises(ConfigError, match="n_interactions"):
        Synthetic(n_users=100, n_items=50, n_interactions=10).load()


# ---------------------------------------------------------------- real datasets (shared copies)


def test_movielens_100k_from_shared_copy(ml100k_dir: Path) -> None:
    src = MovieLens(variant="ml-100k", path=ml100k_dir)
    assert isinstance(src, DatasetSource)
    data, ids = src.load()
    assert (data.n_users, data.n_items, len(data)) == (943, 1682, 100_000)
    assert set(np.unique(data.ratings)) == {1.0, 2.0, 3.0, 4.0, 5.0}
    assert ids.item_titles[ids.item_index(1)] == "Toy Story (1995)"
    # The same copy found through data_dir.
    via_dir, _ = MovieLens(variant="ml-100k", data_dir=ml100k_dir.parent, download=False).load()
    np.testing.assert_array_equal(via_dir.items, data.items)


def test_movielens_100k_implicit_core(ml100k_dir: Path) -> None:
    pre = Preprocess(min_rating=4, implicit=True, user_core=10, item_core=10)
    data, _ = MovieLens(variant="ml-100k", path=ml100k_dir, preprocess=pre).load()
    assert data.ratings is None
    assert data.user_counts().min() >= 10 and data.item_counts().min() >= 10
    assert len(data) < 55_375  # ratings >= 4 in ml-100k


def test_movielens_latest_small() -> None:
    data, ids = MovieLens(variant="ml-latest-small", path=shared("ml-latest-small")).load()
    assert (data.n_users, len(data)) == (610, 100_836)
    assert data.n_items == 9724 and data.ratings.min() == 0.5
    assert ids.item_titles[ids.item_index(1)] == "Toy Story (1995)"


def test_amazon_beauty_loads() -> None:
    data, _ = SequenceFile(path=shared("amazon", "Beauty.txt")).load()
    assert (data.n_users, data.n_items, len(data)) == (22_363, 12_101, 198_502)
    seqs = data.sequences(3)
    assert (seqs[:, -1] > 0).all()


def test_lastfm_loads_play_counts() -> None:
    data, ids = LastFM(path=shared("lastfm-2k")).load()
    assert (data.n_users, data.n_items, len(data)) == (1892, 17_632, 92_834)
    assert data.ratings.max() == 352_698 and data.timestamps is None
    assert ids.item_titles[ids.item_index(1)] == "MALICE MIZER"


def test_movielens_dat_layout_and_latin1_titles(tmp_path: Path) -> None:
    folder = tmp_path / "ml-1m"
    folder.mkdir()
    write(folder / "ratings.dat", "1::10::5::978300760\n1::20::3::978302109\n2::10::4::978301968\n")
    write(
        folder / "movies.dat",
        "10::Caf\xe9 (1999)::Drama\n20::Heat: Part 2 (1995)::Action\n".encode("latin-1"),
    )
    data, ids = MovieLens(variant="ml-1m", path=folder).load()
    assert (data.n_users, data.n_items, len(data)) == (2, 2, 3)
    assert ids.item_titles.tolist() == ["Café (1999)", "Heat: Part 2 (1995)"]
    assert data.timestamps.tolist() == [978300760, 978302109, 978301968]


def test_movielens_csv_layout(tmp_path: Path) -> None:
    folder = tmp_path / "ml-25m"
    folder.mkdir()
    write(folder / "ratings.csv", "userId,movieId,rating,timestamp\r\n1,1,4.5,100\r\n2,1,0.5,200\r\n")
    write(folder / "movies.csv", 'movieId,title,genres\n1,"Toy Story, the (1995)",Animation\n')
    data, ids = MovieLens(variant="ml-25m", path=folder).load()
    assert data.ratings.tolist() == [4.5, 0.5]
    assert ids.item_titles.tolist() == ["Toy Story, the (1995)"]


def test_movielens_missing_offline_says_where_to_put_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(DataError) as err:
        MovieLens(variant="ml-1m", data_dir=tmp_path, download=False).load()
    msg = str(err.value)
    assert (
        str(tmp_path / "ml-1m" / "ratings.dat") in msg and "ml-1m.zip" in msg and "download is false" in msg
    )
    monkeypatch.setenv("RECBENCH_OFFLINE", "1")
    with pytest.raises(DataError, match="RECBENCH_OFFLINE"):
        MovieLens(variant="ml-1m", data_dir=tmp_path).load()
    with pytest.raises(DataError, match="does not hold ratings.dat"):
        MovieLens(variant="ml-1m", path=tmp_path).load()
    with pytest.raises(ConfigError, match="unknown MovieLens variant"):
        MovieLens(variant="ml-2m", data_dir=tmp_path).load()


# ---------------------------------------------------------------- CSV files


COLS = {"user": "u", "item": "i", "rating": "r", "timestamp": "t"}


def csv(tmp_path: Path, text: str | bytes, name: str = "data.csv", **kw: object) -> CsvSource:
    return CsvSource(path=write(tmp_path / name, text), **{"columns": COLS, **kw})


def test_csv_loads_and_concatenates(tmp_path: Path) -> None:
    a = write(tmp_path / "a.csv", "u,i,r,t\nx,1,5,10\ny,2,3,20\n")
    b = write(tmp_path / "b.csv", "u,i,r,t\nx,2,4,30\n")
    data, ids = CsvSource(path=[a, b], columns=COLS).load()
    assert len(data) == 3 and ids.users.tolist() == ["x", "y"] and ids.items.tolist() == [1, 2]


def test_csv_positions_without_header_and_iso_dates(tmp_path: Path) -> None:
    src = csv(
        tmp_path,
        "1\t5\t2020-01-01T00:00:00Z\n2\t6\t2020-01-02\n",
        header=False,
        sep="\t",
        columns={"user": 0, "item": 1, "timestamp": 2},
    )
    data, _ = src.load()
    assert data.ratings is None and data.timestamps.tolist() == [1577836800, 1577923200]


@pytest.mark.parametrize(
    ("text", "kw", "pattern"),
    [
        ("", {}, "is empty"),
        ("u;i;r;t\n1;2;3;4\n", {}, r"only one column was parsed with sep=','.*sep: ';'"),
        (
            "u,i,score,t\n1,2,3,4\n",
            {},
            r"no column 'r' \(for rating\); available columns: \['u', 'i', 'score', 't'\]",
        ),
        (
            "u,i,r,t\n1,2,3,4\n1,2,good,5\n",
            {},
            r"column 'r' \(rating\) must hold a number.*line 3 has 'good'",
        ),
        ("u,i,r,t\n1,2,3,4\n1,3,4,-5\n", {}, r"negative, infinite or huge value at line 3"),
        (
            "u,i,r,t\n1,2,3,4\n1,3,4,\n",
            {"preprocess": {"dropna": False}},
            r"no 'timestamp' value \(first at line 3",
        ),
        ("u,i,r,t\n1,2,3,4\n1,3,4,5,6\n", {}, r"line 3 is malformed"),
        ("u,i,r,t\n1,2,1e39,4\n", {}, r"infinite or out-of-range value at line 2"),
        ("1,2,3,4\n5,6,7,8\n", {}, r"seems to have no header row"),
        (
            "u,i,r,t\n1,2,3,4\n",
            {"header": False, "columns": {"user": 0, "item": 1, "rating": 2}},
            r"line 1 of .* looks like a header",
        ),
        ("u,i,r,t\n", {}, "no data rows"),
        (b"u,i,r,t\n1,2,\xff\xfe,4\n", {}, "is not valid utf-8 text"),
        ("1,2,3,4\n", {"header": False}, r"columns.user='u' names a column, but header is false"),
        ("u,i,r,t\n1,2,3,4\n", {"header": False}, r"line 1 of .* looks like a header"),
        ("u,i,r,t\n1,2,5,4\n", {"preprocess": {"min_rating": 6}}, r"relax min_rating=6"),
    ],
)
def test_csv_errors_name_the_problem(tmp_path: Path, text: str | bytes, kw: dict, pattern: str) -> None:
    src = csv(tmp_path, text, **kw)
    with pytest.raises(DataError, match=pattern) as err:
        src.load()
    assert "data.csv" in str(err.value) or "relax" in pattern


def test_csv_missing_file_and_bad_columns(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"nope.csv does not exist"):
        CsvSource(path=tmp_path / "nope.csv").load()
    with pytest.raises(ConfigError, match="unknown key"):
        csv(tmp_path, "u,i\n1,2\n", columns={"user": "u", "item": "i", "score": "s"}).load()
    with pytest.raises(ConfigError, match="columns.item is required"):
        csv(tmp_path, "u,i\n1,2\n", columns={"user": "u"}).load()


# ---------------------------------------------------------------- sequence files


def test_sequence_file_positions_are_timestamps(tmp_path: Path) -> None:
    path = write(tmp_path / "seq.txt", "1 10 11 12\r\n2 11 10\n\n1 13\n")
    data, ids = SequenceFile(path=path).load()
    assert ids.users.tolist() == [1, 2] and ids.items.tolist() == [10, 11, 12, 13]
    assert data.timestamps.tolist() == [1, 2, 3, 1, 2, 4]
    assert data.sequences(4)[0].tolist() == [1, 2, 3, 4]


def test_sequence_file_string_ids_and_errors(tmp_path: Path) -> None:
    data, ids = SequenceFile(path=write(tmp_path / "s.txt", "ann x y\nbob y\n")).load()
    assert ids.users.tolist() == ["ann", "bob"] and len(data) == 3
    with pytest.raises(DataError, match="only a user id"):
        SequenceFile(path=write(tmp_path / "u.txt", "1\n2\n")).load()
    with pytest.raises(DataError, match="only whitespace"):
        SequenceFile(path=write(tmp_path / "w.txt", " \n\t\n")).load()


# ---------------------------------------------------------------- configs and cache keys


@pytest.mark.parametrize("config", DATASET_CONFIGS, ids=lambda p: p.stem)
def test_dataset_config_keys_equal_constructor_params(config: Path, tmp_path: Path) -> None:
    node = OmegaConf.load(config)
    cls = instantiate({"_target_": "hydra.utils.get_class", "path": node._target_})
    params = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    assert sorted(k for k in node if k != "_target_") == sorted(params)
    if "preprocess" in params:  # every rating/interaction source; a friendship graph has its own filter
        keys = sorted(k for k in node.preprocess if k != "_target_")
        assert keys == sorted(Preprocess.__dataclass_fields__)
    for line in config.read_text().splitlines():
        if ":" in line and not line.lstrip().startswith("#") and not line.strip().endswith(":"):
            assert "# (" in line or "_target_" in line, f"{config.name}: uncommented key {line!r}"
    cfg = OmegaConf.create({"paths": {"data_dir": str(tmp_path)}, "dataset": node})
    if OmegaConf.is_missing(cfg.dataset, "path"):
        cfg.dataset.path = str(tmp_path / "x.txt")
    source = instantiate(cfg.dataset)
    assert isinstance(source, DatasetSource)
    json.dumps(source.cache_key())


def test_cache_key_tracks_file_edits(tmp_path: Path) -> None:
    path = write(tmp_path / "s.txt", "1 2 3\n")
    src = SequenceFile(path=path)
    before = src.cache_key()
    write(path, "1 2 3 4\n")
    assert src.cache_key() != before
    assert before["params"]["preprocess"] is None and before["files"][0]["size"] == 6
