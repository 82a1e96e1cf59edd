"""Friend graphs: the edge-list source, the friendship holdout (no leak in either direction)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from recbench.data.graph import EdgeHoldout, FriendGraph
from recbench.data.interactions import Interactions
from recbench.errors import DataError
from tests.conftest import shared_datasets_dir


def _edges(tmp_path: Path, rows: list[tuple[str, str]]) -> Path:
    path = tmp_path / "user_friends.dat"
    path.write_text("userID\tfriendID\n" + "".join(f"{a}\t{b}\n" for a, b in rows))
    return path


def test_source_symmetrises_and_drops_self_loops_and_duplicates(tmp_path: Path) -> None:
    path = _edges(tmp_path, [("a", "b"), ("b", "a"), ("a", "c"), ("c", "c"), ("a", "b"), ("d", "b")])
    data, ids = FriendGraph(path=str(path)).load()
    assert data.n_users == data.n_items == 4
    np.testing.assert_array_equal(ids.users, ids.items)
    pairs = {(str(ids.users[u]), str(ids.items[i])) for u, i in zip(data.users, data.items)}
    undirected = {("a", "b"), ("a", "c"), ("b", "d")}
    assert pairs == undirected | {(b, a) for a, b in undirected}
    assert len(data) == 6 and not np.any(data.users == data.items)


def test_min_degree_is_iterative(tmp_path: Path) -> None:
    # a triangle a-b-c plus a tail c-d-e: with min_degree 2 the tail goes, then nothing else
    rows = [("a", "b"), ("b", "c"), ("a", "c"), ("c", "d"), ("d", "e")]
    data, ids = FriendGraph(path=str(_edges(tmp_path, rows)), min_degree=2).load()
    assert sorted(map(str, ids.users)) == ["a", "b", "c"] and len(data) == 6


def test_bad_edge_lists_are_data_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError):
        FriendGraph(path=str(_edges(tmp_path, [("a", "a")]))).load()  # only a self-loop
    with pytest.raises(DataError, match="column"):
        FriendGraph(path=str(_edges(tmp_path, [("a", "b")])), columns=["userID", "nope"]).load()


def _random_graph(n: int = 60, m: int = 300, seed: int = 0) -> Interactions:
    rng = np.random.default_rng(seed)
    a, b = rng.integers(0, n, m), rng.integers(0, n, m)
    keep = a != b
    edges = np.unique(np.sort(np.stack([a[keep], b[keep]], axis=1), axis=1), axis=0)
    users = np.concatenate([edges[:, 0], edges[:, 1]])
    items = np.concatenate([edges[:, 1], edges[:, 0]])
    return Interactions(users=users, items=items, n_users=n, n_items=n)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_holdout_keeps_both_directions_together_and_every_tested_user_trains(seed: int) -> None:
    graph = _random_graph(seed=seed)
    split = EdgeHoldout(ratios=(0.6, 0.2, 0.2))(graph, seed=seed)
    parts = {"train": split.train, "val": split.val, "test": split.test}
    keys = {name: set(zip(p.users.tolist(), p.items.tolist())) for name, p in parts.items()}
    for name, pairs in keys.items():
        assert pairs == {(i, u) for u, i in pairs}, f"{name} is not symmetric"
    assert not keys["test"] & keys["train"] and not keys["val"] & keys["train"]
    assert not keys["test"] & keys["val"]
    assert sum(len(p) for p in parts.values()) == len(graph)  # every friendship in exactly one part
    trained = set(split.train.users.tolist())
    assert set(split.test.users.tolist()) <= trained and set(split.val.users.tolist()) <= trained
    again = EdgeHoldout(ratios=(0.6, 0.2, 0.2))(graph, seed=seed)
    np.testing.assert_array_equal(again.test.users, split.test.users)


def test_holdout_refuses_a_user_item_matrix() -> None:
    data = Interactions(np.array([0, 1]), np.array([0, 2]), n_users=2, n_items=3)
    with pytest.raises(DataError, match="user-user graph"):
        EdgeHoldout()(data, seed=0)


def test_lastfm_friendships_split_without_leaks() -> None:
    root = shared_datasets_dir()
    if root is None or not (root / "lastfm-2k" / "user_friends.dat").is_file():
        pytest.skip("shared lastfm-2k not found")
    data, _ = FriendGraph(path=str(root / "lastfm-2k")).load()
    assert data.n_users == 1892 and len(data) == 2 * 12717
    split = EdgeHoldout()(data, seed=0)
    n = data.n_users
    train = set((split.train.users * n + split.train.items).tolist())
    test_keys = split.test.users * n + split.test.items
    test_reverse = split.test.items * n + split.test.users
    assert not train & set(test_keys.tolist()) and not train & set(test_reverse.tolist())
    assert set(split.test.users.tolist()) <= set(split.train.users.tolist())
