"""Friend recommendation on a user-user graph: neighbourhood heuristics, random walks and a taste hybrid.

The data is a symmetric graph stored as interactions whose items are users
(:class:`~recbench.data.graph.FriendGraph`); ``history`` at scoring time is the known part of the
graph (training friendships for validation, training + validation for test), so every score below
is computed from the graph the model may see. ``A`` is its 0/1 adjacency matrix, ``N(u)`` the friends
of ``u`` and ``d(u) = |N(u)|``. The classic link-prediction scores (Liben-Nowell & Kleinberg, "The
link-prediction problem for social networks", JASIST 2007):

* :class:`CommonNeighbors`: ``|N(u) ∩ N(v)|`` = ``(A A)[u, v]``.
* :class:`AdamicAdar`: ``sum over w in N(u) ∩ N(v) of 1 / log d(w)`` (Adamic & Adar, Social
  Networks 2003): a shared friend with few friends says more than a hub.
* :class:`Jaccard`: ``|N(u) ∩ N(v)| / |N(u) ∪ N(v)|``.
* :class:`PersonalizedPageRank`: the stationary distribution of a random walk over the graph that
  jumps back to ``u`` with probability ``restart`` at each step (power iteration, sparse).
* :class:`TasteHybrid`: Adamic-Adar (scaled to [0, 1] per user) mixed with the cosine similarity of
  the users' side features (Last.fm: the artists they listen to): people who listen alike.

All of them are computed in user blocks from sparse products, so the cost is the graph's size times
the block, never a dense ``n x n`` matrix of the whole graph.
"""

from __future__ import annotations

from abc import abstractmethod

import numpy as np
import scipy.sparse as sp

from recbench.data.interactions import Interactions
from recbench.errors import ConfigError
from recbench.models.base import Capabilities, Recommender


def _square(data: Interactions, model: str) -> None:
    if data.n_users != data.n_items:
        raise ConfigError(
            f"model={model} ranks friends on a user-user graph, but the data has {data.n_users} users and "
            f"{data.n_items} items. Use it with a graph dataset: dataset=lastfm-friends split=link."
        )


class _GraphHeuristic(Recommender):
    """Shared fit/score of the heuristics: scores come from the history graph at scoring time."""

    capabilities = Capabilities(needs_user_graph=True)

    def fit(self, train: Interactions, val: Interactions | None = None) -> _GraphHeuristic:
        """Check the data is a user-user graph; nothing is learned (the graph is read at scoring time)."""
        _square(train, self._name())
        self.n_items_ = train.n_items
        return self

    @classmethod
    def _name(cls) -> str:
        return cls.__name__

    def score(self, users: np.ndarray, history: Interactions) -> np.ndarray:
        """``float32[len(users), n_users]`` heuristic scores over the history graph."""
        users = np.asarray(users, dtype=np.int64)
        adjacency = history.binary_csr.astype(np.float64)
        return np.asarray(self._scores(users, adjacency), dtype=np.float32)

    @abstractmethod
    def _scores(self, users: np.ndarray, adjacency: sp.csr_matrix) -> np.ndarray:
        """``[len(users), n]`` scores of ``users`` against every node of ``adjacency``."""


class CommonNeighbors(_GraphHeuristic):
    """Number of shared friends, ``(A A)[u, v]``."""

    def __init__(self) -> None:
        pass

    def _scores(self, users: np.ndarray, adjacency: sp.csr_matrix) -> np.ndarray:
        return (adjacency[users] @ adjacency).toarray()


class AdamicAdar(_GraphHeuristic):
    """Shared friends weighted by ``1 / log d(w)`` (a shared friend has ``d(w) >= 2``)."""

    def __init__(self) -> None:
        pass

    def _scores(self, users: np.ndarray, adjacency: sp.csr_matrix) -> np.ndarray:
        return adamic_adar(users, adjacency)


def adamic_adar(users: np.ndarray, adjacency: sp.csr_matrix) -> np.ndarray:
    """``float64[len(users), n]`` Adamic-Adar scores of ``users`` against every node of the graph."""
    degree = np.asarray(adjacency.sum(axis=1)).ravel()
    weight = 1.0 / np.log(np.maximum(degree, 2.0))
    return (adjacency[users] @ sp.diags(weight) @ adjacency).toarray()


class Jaccard(_GraphHeuristic):
    """Shared friends over the union of both friend sets (0 when both have none)."""

    def __init__(self) -> None:
        pass

    def _scores(self, users: np.ndarray, adjacency: sp.csr_matrix) -> np.ndarray:
        common = (adjacency[users] @ adjacency).toarray()
        degree = np.asarray(adjacency.sum(axis=1)).ravel()
        union = degree[users][:, None] + degree[None, :] - common
        return np.divide(common, union, out=np.zeros_like(common), where=union > 0)


class PersonalizedPageRank(_GraphHeuristic):
    """Random walk with restart from the user (personalised PageRank).

    ``r_u = restart * e_u + (1 - restart) * r_u P`` with ``P = D^-1 A`` the walk's transition
    matrix, solved by ``iterations`` steps of power iteration for a block of users at once (one
    sparse product per step). A node without friends keeps its restart mass only.

    Parameters
    ----------
    restart:
        Probability of jumping back to the user at each step (0 < restart < 1).
    iterations:
        Power-iteration steps; the error after ``t`` steps is at most ``(1 - restart) ** t``.
    """

    def __init__(self, *, restart: float = 0.3, iterations: int = 30) -> None:
        self.restart = restart
        self.iterations = iterations

    def fit(self, train: Interactions, val: Interactions | None = None) -> PersonalizedPageRank:
        """Validate the settings and the graph."""
        if (
            isinstance(self.restart, bool)
            or not isinstance(self.restart, (int, float))
            or not (0.0 < self.restart < 1.0)
        ):
            raise ConfigError(f"model.restart={self.restart!r} must be a number strictly between 0 and 1.")
        if isinstance(self.iterations, bool) or not isinstance(self.iterations, int) or self.iterations < 1:
            raise ConfigError(f"model.iterations={self.iterations!r} must be an integer >= 1.")
        super().fit(train, val)
        return self

    def _scores(self, users: np.ndarray, adjacency: sp.csr_matrix) -> np.ndarray:
        degree = np.asarray(adjacency.sum(axis=1)).ravel()
        walk_t = (sp.diags(1.0 / np.maximum(degree, 1.0)) @ adjacency).T.tocsr()  # P^T
        start = np.zeros((adjacency.shape[0], len(users)))
        start[users, np.arange(len(users))] = self.restart
        ranks = start.copy()
        for _ in range(self.iterations):
            ranks = start + (1.0 - self.restart) * (walk_t @ ranks)
        return ranks.T


class TasteHybrid(_GraphHeuristic):
    """Graph proximity mixed with taste similarity from the users' side features.

    ``score(u, v) = (1 - taste_weight) * AA(u, v) / max_v' AA(u, v') + taste_weight * cos(x_u, x_v)``
    where ``AA`` is :class:`AdamicAdar` on the history graph and ``x`` the users' feature rows (for
    ``dataset=lastfm-friends``: the artists each user listens to, so "friends of friends" and "people
    who listen alike" both count). A user without friends in the graph is ranked by taste alone.

    Parameters
    ----------
    taste_weight:
        Share of the taste similarity in the score, in [0, 1].
    """

    capabilities = Capabilities(needs_user_graph=True, needs_features=True)

    def __init__(self, *, taste_weight: float = 0.3) -> None:
        self.taste_weight = taste_weight

    def fit(self, train: Interactions, val: Interactions | None = None) -> TasteHybrid:
        """Keep the row-normalised user feature matrix (the taste profiles)."""
        weight = self.taste_weight
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not 0.0 <= weight <= 1.0:
            raise ConfigError(f"model.taste_weight={weight!r} must be a number in [0, 1].")
        super().fit(train, val)
        if train.user_features is None:
            raise ConfigError(
                "model=taste_hybrid mixes graph proximity with the users' side features, but the dataset "
                "loaded none. Use `dataset=lastfm-friends` (its artists field), or give a CSV of user "
                "features (an 'id' column, then one column per field) with `features=default "
                "features.user_file=users.csv`."
            )
        profiles = sp.csr_matrix(train.user_features.matrix, dtype=np.float64)
        norms = np.sqrt(np.asarray(profiles.multiply(profiles).sum(axis=1)).ravel())
        self.profiles_ = (sp.diags(1.0 / np.maximum(norms, 1e-12)) @ profiles).tocsr()
        return self

    def _scores(self, users: np.ndarray, adjacency: sp.csr_matrix) -> np.ndarray:
        graph = adamic_adar(users, adjacency)
        top = graph.max(axis=1, keepdims=True)
        graph = np.divide(graph, top, out=np.zeros_like(graph), where=top > 0)
        taste = (self.profiles_[users] @ self.profiles_.T).toarray()
        return (1.0 - self.taste_weight) * graph + self.taste_weight * taste
