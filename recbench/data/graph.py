"""Friend recommendation: a social graph as user-user interactions, and its edge holdout.

A friendship graph becomes :class:`~recbench.data.interactions.Interactions` whose "items" are users
too: one id space (``n_items == n_users``, ``IdMaps.items`` equal to ``IdMaps.users``), each
undirected friendship stored in both directions. Every ranking model of recbench then ranks candidate
friends, and the evaluator masks a user's existing friends (their history) and, for sources marked
``user_graph``, the user themself.

:class:`FriendGraph` reads Last.fm 2K's ``user_friends.dat`` (or any two-column edge list), and
gives each user's listened artists (``user_artists.dat``) as a side-feature field ``artists`` for
hybrid models. :class:`EdgeHoldout` splits the friendships so that both directions of an edge always
land in the same part.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from recbench.data.cache import params_key
from recbench.data.catalog import local_copy, obtain
from recbench.data.features import Field, Sides
from recbench.data.filters import normalise_ids
from recbench.data.interactions import IdMaps, Interactions
from recbench.data.readers import check_file, read_table
from recbench.data.splits import Split, Splitter, check_ratios
from recbench.errors import DataError


class FriendGraph:
    """An undirected friendship graph as user-user interactions (``user_graph = True``).

    Parameters
    ----------
    path:
        An edge-list file (two columns: user, friend), or a Last.fm 2K folder (its
        ``user_friends.dat``). ``None``: ``<data_dir>/lastfm-2k/``, else the official download.
    data_dir:
        Where datasets are looked up and downloaded to.
    download:
        Allow downloading when no local copy exists.
    sep, header, columns:
        Layout of the edge list (Last.fm's: tab-separated, header ``userID friendID``).
    min_degree:
        Keep only users with at least this many friendships (iteratively, like a k-core), so that a
        holdout leaves every kept user something to learn from and something to find.
    """

    name = "lastfm-2k"
    #: The evaluator also masks the user themself (an item id equal to the user id).
    user_graph = True

    def __init__(
        self,
        *,
        path: str | Path | None = None,
        data_dir: str | Path | None = None,
        download: bool = True,
        sep: str = "\t",
        header: bool = True,
        columns: Sequence[str | int] = ("userID", "friendID"),
        min_degree: int = 1,
    ) -> None:
        self.path = path
        self.data_dir = data_dir
        self.download = download
        self.sep = sep
        self.header = header
        self.columns = columns
        self.min_degree = min_degree

    def _edge_file(self) -> Path:
        if self.path is not None and Path(self.path).expanduser().is_file():
            return Path(self.path).expanduser()
        folder = obtain(self.name, path=self.path, data_dir=self.data_dir, download=self.download)
        return check_file(folder / "user_friends.dat", "friendship file")

    def cache_key(self) -> dict:
        """Class, params and the edge file's fingerprint (if a local copy exists yet)."""
        if self.path is not None and Path(self.path).expanduser().is_file():
            return params_key(self, [self.path])
        folder = local_copy(self.name, self.data_dir, self.path)
        return params_key(self, [] if folder is None else [folder / "user_friends.dat"])

    def load(self) -> tuple[Interactions, IdMaps]:
        """Read, symmetrise (both directions), drop self-loops and duplicates, apply ``min_degree``."""
        file = self._edge_file()
        cols = list(self.columns)
        if len(cols) != 2:
            raise DataError(f"dataset.columns={cols} must name two columns: the user and the friend.")
        frame = read_table(
            file, sep=self.sep, header=self.header, columns={"user": cols[0], "item": cols[1]}, as_text=True
        )
        a = normalise_ids(frame["user"].to_numpy())
        b = normalise_ids(frame["item"].to_numpy())
        raw, codes = np.unique(np.concatenate([a, b]).astype(str), return_inverse=True)
        src, dst = codes[: len(a)], codes[len(a) :]
        keep = src != dst
        lo, hi = np.minimum(src[keep], dst[keep]), np.maximum(src[keep], dst[keep])
        edges = np.unique(np.stack([lo, hi], axis=1), axis=0)
        edges = _min_degree(edges, len(raw), int(self.min_degree))
        if len(edges) == 0:
            raise DataError(
                f"{file}: no friendship is left (self-loops removed, dataset.min_degree={self.min_degree}); "
                "check the columns (dataset.columns) or lower dataset.min_degree."
            )
        used, dense = np.unique(edges, return_inverse=True)
        dense = dense.reshape(edges.shape)
        n = len(used)
        users = np.concatenate([dense[:, 0], dense[:, 1]])
        friends = np.concatenate([dense[:, 1], dense[:, 0]])
        names = raw[used].astype(object)
        data = Interactions(users=users, items=friends, n_users=n, n_items=n)
        return data, IdMaps(users=names, items=names.copy())

    def side_features(self) -> Sides:
        """Each user's listened artists (``user_artists.dat`` beside the edge list) as the multi-valued
        field ``artists``, on both sides (the "items" are users too)."""
        file = self._edge_file().parent / "user_artists.dat"
        if not file.is_file():
            raise DataError(
                f"{file} is missing: the listening-taste feature of the friend graph is read from it. Put "
                "Last.fm 2K's user_artists.dat beside the friendship file, or use a graph-only model."
            )
        plays = pd.read_csv(file, sep="\t", dtype=str, usecols=[0, 1])
        plays.columns = ["id", "artist"]
        per_user = plays.groupby("id")["artist"].agg(list)
        frame = pd.DataFrame({"id": per_user.index, "artists": per_user.to_numpy()})
        fields = [Field("artists", "multi")]
        return {"user": (frame, fields), "item": (frame.copy(), fields)}


def _min_degree(edges: np.ndarray, n: int, k: int) -> np.ndarray:
    """Undirected ``edges`` (rows ``lo, hi``) restricted iteratively to nodes of degree >= ``k``."""
    while k > 1 and len(edges):
        degree = np.bincount(edges.ravel(), minlength=n)
        ok = (degree[edges[:, 0]] >= k) & (degree[edges[:, 1]] >= k)
        if ok.all():
            break
        edges = edges[ok]
    return edges


class EdgeHoldout(Splitter):
    """Random holdout of friendships, both directions of an edge in the same part.

    Each undirected edge is drawn (seeded) into train / validation / test with ``ratios``. A user
    left without a training friendship gets one of their held-out edges back into training (so
    every evaluated user has a graph to start from). Nothing leaks: if ``(a, b)`` is held out, so is
    ``(b, a)``.

    Parameters
    ----------
    ratios:
        Train / validation / test shares of the friendships (two values: no validation).
    """

    def __init__(self, *, ratios: Sequence[float] = (0.8, 0.1, 0.1)) -> None:
        self.ratios = ratios

    def __call__(self, data: Interactions, *, seed: int, ids: IdMaps | None = None) -> Split:
        """Split the undirected edges of a symmetric user-user ``data``."""
        ratios = check_ratios(self.ratios)
        if data.n_users != data.n_items:
            raise DataError(
                f"split=link holds out friendships of a user-user graph, but the data has {data.n_users} "
                f"users and {data.n_items} items. Use it with a graph dataset (dataset=lastfm-friends)."
            )
        upper = data.users < data.items
        lo, hi = data.users[upper], data.items[upper]
        rng = np.random.default_rng(seed)
        cuts = np.cumsum(ratios)[:-1]
        part = np.searchsorted(cuts, rng.random(len(lo)), side="right").astype(np.int64)
        if len(ratios) == 2:
            part[part == 1] = 2
        order = rng.permutation(len(lo))  # which held-out edge a user gets back: seeded, not by id
        for _ in range(len(lo)):
            train_deg = np.bincount(np.concatenate([lo[part == 0], hi[part == 0]]), minlength=data.n_users)
            lonely = np.zeros(data.n_users, dtype=bool)
            lonely[np.concatenate([lo, hi])] = True
            lonely &= train_deg == 0
            if not lonely.any():
                break
            held = order[part[order] != 0]
            touches = lonely[lo[held]] | lonely[hi[held]]
            # one edge back per lonely user, the first in the seeded order
            first_lo = pd.Series(held[touches]).groupby(lo[held[touches]]).first()
            first_hi = pd.Series(held[touches]).groupby(hi[held[touches]]).first()
            back = np.union1d(
                first_lo[lonely[first_lo.index.to_numpy()]].to_numpy(),
                first_hi[lonely[first_hi.index.to_numpy()]].to_numpy(),
            )
            part[back] = 0
        both_part = np.concatenate([part, part])
        users = np.concatenate([lo, hi])
        items = np.concatenate([hi, lo])
        whole = Interactions(users=users, items=items, n_users=data.n_users, n_items=data.n_items)
        whole = whole.with_features(data.user_features, data.item_features)
        return Split(
            train=whole.select(both_part == 0),
            val=whole.select(both_part == 1) if len(ratios) == 3 else None,
            test=whole.select(both_part == 2),
        )
