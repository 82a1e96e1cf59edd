"""A plain MLP classifier on (user, item) embeddings, and the MLP blocks the neural models share.

Blocks: :class:`MLPTower` (ReLU layers with dropout), :class:`MLPBranch` (user and item
embeddings, concatenated, through a tower) and :class:`PairNet` (branches fused by one linear
predict layer into a logit per pair). Helpers: pointwise negative-sampled batches and chunked
full-catalogue scoring (every (user, item) pair goes through the MLP, so users are processed in
chunks of at most ``max_pairs`` pairs).

The MLP's first layer on ``concat(p_u, q_i)`` equals ``W_u p_u + W_i q_i + b``; both halves are
computed once per user and per item and broadcast, which makes full ranking cheap.

With side features, :class:`FeatureMLPBranch` feeds the tower
``[user id emb, pooled user feature embs, item id emb, pooled item feature embs]``, built from the
:class:`~recbench.models.feature_models.FeatureEmbeddings` of the feature-aware models (the same
layout, field pooling and cold-id handling): an id without training interactions gets a zero
embedding, so an unseen item (or user) is scored from its features alone.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from recbench.data.interactions import Interactions
from recbench.errors import ConfigError, DataError
from recbench.models.base import TorchRecommender, sigmoid_probabilities
from recbench.models.feature_models import FeatureEmbeddings, feature_embeddings
from recbench.training.losses import bce_loss
from recbench.training.samplers import PositiveSet, popularity_negatives, uniform_negatives
from recbench.training.trainer import Trainer

#: Most (user, item) pairs pushed through a network in one scoring forward: bounds memory, and
#: chunks this small stay cache-friendly (faster on CPU than one big forward).
MAX_SCORE_PAIRS = 2**16
#: The same bound on an accelerator, where memory is plentiful and every forward costs a launch.
GPU_SCORE_PAIRS = 2**22


class MLPTower(nn.Module):
    """ReLU layers ``in_dim -> widths[0] -> ... -> widths[-1]``, each followed by dropout."""

    def __init__(self, in_dim: int, widths: Sequence[int], dropout: float = 0.0) -> None:
        super().__init__()
        dims = [int(in_dim), *(int(w) for w in widths)]
        self.linears = nn.ModuleList(nn.Linear(a, b) for a, b in itertools.pairwise(dims))
        self.dropout = nn.Dropout(float(dropout))
        self.out_dim = dims[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The tower applied to ``x[..., in_dim]``."""
        return self.from_first(self.linears[0](x))

    def from_first(self, pre: torch.Tensor) -> torch.Tensor:
        """The tower given the first layer's pre-activation ``pre`` (lets callers factor that layer)."""
        x = self.dropout(F.relu(pre))
        for lin in self.linears[1:]:
            x = self.dropout(F.relu(lin(x)))
        return x


def lookup(table: nn.Embedding, index: torch.Tensor) -> torch.Tensor:
    """``table(index)`` via ``index_select``, whose backward (an index-add) is about twice as fast on CPU."""
    return table.weight.index_select(0, index.reshape(-1)).reshape(*index.shape, table.embedding_dim)


class MLPBranch(nn.Module):
    """User and item embeddings, concatenated, through an :class:`MLPTower`."""

    def __init__(
        self, n_users: int, n_items: int, dim: int, widths: Sequence[int], dropout: float = 0.0
    ) -> None:
        super().__init__()
        self.user = nn.Embedding(n_users, int(dim))
        self.item = nn.Embedding(n_items, int(dim))
        self.tower = MLPTower(2 * int(dim), widths, dropout)
        self.out_dim = self.tower.out_dim

    def forward(self, users: torch.Tensor, items: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """``users[B]`` with ``items[B, m]`` (or ``items[m]`` shared by all) -> ``[B, m]``.

        The tower's output goes through ``weight`` (this branch's slice of the predict layer).
        """
        first, d = self.tower.linears[0], self.user.embedding_dim
        u = F.linear(lookup(self.user, users), first.weight[:, :d], first.bias).unsqueeze(1)
        if items.numel() > self.item.num_embeddings:  # cheaper: project the whole table, then gather
            table = F.linear(self.item.weight, first.weight[:, d:])
            v = table.index_select(0, items.reshape(-1)).reshape(*items.shape, -1)
        else:
            v = F.linear(lookup(self.item, items), first.weight[:, d:])
        return self.tower.from_first(u + v) @ weight

    def l2(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Sum of the squared user and item embeddings used by a batch (the MLP classifier's penalty)."""
        return lookup(self.user, users).pow(2).sum() + lookup(self.item, items).pow(2).sum()


class FeatureMLPBranch(nn.Module):
    """An :class:`MLPTower` on ``[user id emb, user feature embs, item id emb, item feature embs]``.

    ``emb`` (:class:`~recbench.models.feature_models.FeatureEmbeddings`, built with ids) gives each
    side's field embeddings: the id (weight 0, i.e. a zero vector, for ids without training
    interactions) and one pooled embedding per feature field (multi-hot fields average their
    columns). The tower's input has ``dim * (n_user_fields + n_item_fields)`` columns, ids
    included. As in :class:`MLPBranch`, the first layer is split into a user and an item
    projection, each computed once per distinct entity of a batch (or of the catalogue when
    ranking) and broadcast. ``keep`` (boolean masks shaped like ``users`` / ``items``, from
    :class:`PairNet`'s id dropout) zeroes the id embedding of the other occurrences.
    """

    def __init__(self, emb: FeatureEmbeddings, widths: Sequence[int], dropout: float = 0.0) -> None:
        super().__init__()
        self.emb = emb
        self.dim = emb.embed.embedding_dim
        self.user_width = int(emb.user_pool.shape[1]) * self.dim
        self.item_width = int(emb.item_pool.shape[1]) * self.dim
        self.tower = MLPTower(self.user_width + self.item_width, widths, dropout)
        self.out_dim = self.tower.out_dim

    def _project(
        self, side: str, idx: torch.Tensor, weight: torch.Tensor, keep: torch.Tensor | None
    ) -> torch.Tensor:
        """``fields(idx) @ weight.T`` for ids of any shape, each distinct id computed once; the id
        field's share is taken out where ``keep`` is false."""
        ids, inverse = torch.unique(idx, return_inverse=True)
        inverse = inverse.reshape(-1)
        fields, _ = self.emb.pooled(side, ids)
        out = F.linear(fields.flatten(-2), weight).index_select(0, inverse)
        if keep is not None:  # field 0 is the id (FeatureEmbeddings built with ids)
            id_part = F.linear(fields[:, 0], weight[:, : self.dim]).index_select(0, inverse)
            out = out - id_part * (~keep).reshape(-1, 1).to(out.dtype)
        return out.reshape(*idx.shape, -1)

    def forward(
        self,
        users: torch.Tensor,
        items: torch.Tensor,
        weight: torch.Tensor,
        keep: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """``users[B]`` with ``items[B, m]`` (or ``items[m]`` shared by all) -> ``[B, m]``."""
        first = self.tower.linears[0]
        keep_u, keep_i = (None, None) if keep is None else keep
        u = self._project("user", users, first.weight[:, : self.user_width], keep_u) + first.bias
        v = self._project("item", items, first.weight[:, self.user_width :], keep_i)
        return self.tower.from_first(u.unsqueeze(1) + v) @ weight

    def l2(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Sum of the squared weighted embedding rows (ids and feature columns) a batch uses."""
        total = torch.zeros((), device=users.device)
        for side, idx in (("user", users), ("item", items)):
            ids, counts = torch.unique(idx, return_counts=True)  # each distinct id once, times its count
            cols = getattr(self.emb, f"{side}_cols")[ids]  # the stored weights: no id dropout here
            w = getattr(self.emb, f"{side}_weights")[ids]
            squares = (self.emb.embed(cols) * w.unsqueeze(-1)).pow(2).sum((-2, -1))
            total = total + (squares * counts).sum()
        return total


def feature_branch(
    model: Any, train: Interactions, dim: int, widths: Sequence[int], dropout: float
) -> FeatureMLPBranch:
    """The :class:`FeatureMLPBranch` of a model with ``use_features`` and ``id_dropout`` options.

    Sets ``model.seen_users_`` / ``model.seen_items_`` (ids with training interactions; the others
    get zero id embeddings). Raises :class:`DataError` when ``train`` carries no side features and
    :class:`ConfigError` for an ``id_dropout`` outside ``[0, 1)``.
    """
    if train.user_features is None and train.item_features is None:
        raise DataError(
            f"model.use_features=true concatenates side-feature embeddings with the id embeddings of "
            f"{type(model).__name__}, but the training data carries no user or item features. Add "
            "features=default to the command line (or a features: node to the dataset config), use a "
            "dataset with side features (e.g. ml-100k), or set model.use_features=false."
        )
    if isinstance(model.id_dropout, bool) or not 0.0 <= float(model.id_dropout) < 1.0:
        raise ConfigError(f"model.id_dropout={model.id_dropout!r} must lie in [0, 1).")
    model.seen_users_ = train.user_counts() > 0
    model.seen_items_ = train.item_counts() > 0
    emb, _ = feature_embeddings(
        train,
        model.seen_users_,
        model.seen_items_,
        use_ids=True,
        dim=int(dim),
        id_dropout=0.0,  # PairNet drops ids, jointly for all branches
        init_std=0.01,  # replaced by the model's own embedding initialisation
    )
    return FeatureMLPBranch(emb, widths, dropout)


def negative_pool(model: Any) -> np.ndarray | None:
    """Items that negatives are drawn from: with ``use_features``, only those with training
    interactions (unseen items stay neutral, as in the feature-aware models); else ``None`` (all)."""
    if getattr(model, "use_features", False):
        return np.flatnonzero(model.seen_items_)
    return None


class PairNet(nn.Module):
    """One logit per (user, item) from branches fused by one linear predict layer.

    The predict layer acts on the concatenation of the branches' outputs (NeuMF's fusion); it is
    computed as a sum, each branch applying its own slice of the weights: a branch is called as
    ``branch(users[B], items[B, m] or items[m], weight[out_dim]) -> [B, m]``.

    ``id_dropout > 0`` (feature-aware branches only): in training, each occurrence of a user or
    item in a batch loses its id embedding with that probability, in every branch at once (the
    branches get ``keep=(keep_users, keep_items)`` boolean masks), so that the features have to
    carry the score on their own, as they must for cold ids (in the spirit of DropoutNet, Volkovs
    et al., NeurIPS 2017).
    """

    def __init__(self, branches: Mapping[str, nn.Module], id_dropout: float = 0.0) -> None:
        super().__init__()
        self.branches = nn.ModuleDict(branches)
        self.predict = nn.Linear(sum(b.out_dim for b in self.branches.values()), 1)
        self.id_dropout = float(id_dropout)

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, m]``."""
        weight, logits, start = self.predict.weight[0], self.predict.bias, 0
        extra: dict[str, Any] = {}
        if self.training and self.id_dropout > 0:
            p = self.id_dropout
            extra["keep"] = tuple(torch.rand(x.shape, device=x.device) >= p for x in (users, items))
        for branch in self.branches.values():
            logits = logits + branch(users, items, weight[start : start + branch.out_dim], **extra)
            start += branch.out_dim
        return logits


def init_embeddings(net: nn.Module, init: Callable[[torch.Tensor], Any]) -> nn.Module:
    """Apply ``init`` to the weight of every ``nn.Embedding`` in ``net``; returns ``net``."""
    for module in net.modules():
        if isinstance(module, nn.Embedding):
            init(module.weight)
    return net


def pointwise_batches(
    train: Interactions,
    batch_size: int,
    rng: np.random.Generator,
    num_negatives: int,
    sampling: str,
    pool: np.ndarray | None = None,
) -> Iterator[dict[str, torch.Tensor]]:
    """Shuffled ``users[B]`` and ``items[B, 1 + num_negatives]`` batches (column 0 the positive).

    ``batch_size`` counts positives. Negatives are drawn once per epoch, excluding each user's
    training items, uniformly or by popularity (``(count + 1) ** 0.75``), among the items ``pool``
    (``None``: the whole catalogue).
    """
    order = rng.permutation(len(train))
    users, items = train.users[order], train.items[order][:, None]
    if num_negatives > 0:
        csr, counts = train.binary_csr, train.item_counts()
        if pool is not None:
            csr, counts = csr[:, pool], counts[pool]
        positives = PositiveSet(csr)
        if sampling == "popularity":
            neg = popularity_negatives(positives, counts, users, num_negatives, rng)
        else:
            neg = uniform_negatives(positives, users, num_negatives, rng)
        items = np.concatenate([items, neg if pool is None else pool[neg]], axis=1)
    for start in range(0, len(users), batch_size):
        yield {
            "users": torch.from_numpy(users[start : start + batch_size]),
            "items": torch.from_numpy(items[start : start + batch_size]),
        }


def pointwise_loss(net: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Binary cross-entropy (on logits) of each positive (column 0) against its sampled negatives."""
    logits = net(batch["users"], batch["items"])
    return bce_loss(logits[:, 0], logits[:, 1:])


def score_in_chunks(
    fn: Callable[[torch.Tensor], torch.Tensor], users: torch.Tensor, n_items: int, max_pairs: int
) -> torch.Tensor:
    """``fn(chunk) -> [len(chunk), n_items]`` over chunks of ``users`` of at most ``max_pairs`` pairs.

    On an accelerator the chunks may grow to :data:`GPU_SCORE_PAIRS` pairs (fewer kernel launches).
    """
    if len(users) == 0:
        return torch.zeros((0, n_items), device=users.device)
    if users.device.type != "cpu":
        max_pairs = max(int(max_pairs), GPU_SCORE_PAIRS)
    step = max(1, int(max_pairs) // max(n_items, 1))
    return torch.cat([fn(users[i : i + step]) for i in range(0, len(users), step)])


def score_all_items(net: nn.Module, users: torch.Tensor, n_items: int, max_pairs: int) -> torch.Tensor:
    """``net(users, every item)`` -> ``[len(users), n_items]``, in chunks of users."""
    all_items = torch.arange(n_items, device=users.device)
    return score_in_chunks(lambda chunk: net(chunk, all_items), users, n_items, max_pairs)


def check_choice(key: str, value: Any, allowed: Sequence[str]) -> None:
    """:class:`ConfigError` naming ``model.<key>`` unless ``value`` is one of ``allowed``."""
    if value not in allowed:
        raise ConfigError(f"model.{key}={value!r} must be one of {', '.join(map(repr, allowed))}.")


class MLPClassifier(TorchRecommender):
    """A plain MLP classifier on ``concat(user embedding, item embedding)`` with a sigmoid output.

    The basic multi-layer perceptron recommender that neural collaborative filtering builds on (cf.
    the MLP of He et al., WWW 2017, §3.3): He-normal embeddings (``kaiming_normal_``, std
    ``sqrt(2 / embedding_dim)``) with a small L2 penalty, ReLU layers of ``hidden_layers`` widths
    (128 and 64 by default), one sigmoid output, binary cross-entropy, Adam (the Trainer's default).

    Parameters
    ----------
    embedding_dim: size of the user and item embeddings.
    hidden_layers: widths of the ReLU layers.
    reg: L2 penalty on the embeddings used in a batch (per example).
    mode: ``implicit`` (every interaction a positive, ``num_negatives`` sampled negatives each;
        ranking) or ``rating`` (labels ``rating / max_rating`` as soft targets; :meth:`predict`
        returns ratings on the original scale).
    num_negatives, negative_sampling: negatives per positive in implicit mode, ``uniform`` or
        ``popularity``.
    use_features: concatenate the pooled side-feature embeddings (one per user and item feature
        field, same ``embedding_dim``) with the id embeddings at the tower's input
        (:class:`FeatureMLPBranch`). Ids without training interactions then get a zero embedding, so
        cold items (users) are scored from their features; negatives are drawn among the items with
        training interactions only; ``reg`` covers the feature embeddings used too. Needs side
        features (the pipeline loads the dataset's defaults when the ``features`` group is unset).
    id_dropout: with ``use_features``, the probability of zeroing a training example's user and
        item id embeddings (so that the tower learns to score from features alone; ignored otherwise).
    trainer, seed: the shared Trainer (``None`` = defaults) and the seed.
    """

    training_defaults: ClassVar[dict[str, Any]] = {
        "epochs": 20,
        "batch_size": 1024,
        "lr": 3e-3,
        "patience": 5,
    }
    max_score_pairs: ClassVar[int] = MAX_SCORE_PAIRS

    def __init__(
        self,
        *,
        embedding_dim: int = 32,
        hidden_layers: Sequence[int] = (128, 64),
        reg: float = 0.05,
        mode: str = "implicit",
        num_negatives: int = 4,
        negative_sampling: str = "uniform",
        use_features: bool = False,
        id_dropout: float = 0.1,
        trainer: Trainer | None = None,
        seed: int = 0,
    ) -> None:
        self.embedding_dim = embedding_dim
        self.hidden_layers = hidden_layers
        self.reg = reg
        self.mode = mode
        self.num_negatives = num_negatives
        self.negative_sampling = negative_sampling
        self.use_features = use_features
        self.id_dropout = id_dropout
        self.trainer = trainer
        self.seed = seed

    @property
    def requires_features(self) -> bool:  # type: ignore[override]
        """Whether the pipeline must load side features (``use_features``)."""
        return bool(self.use_features)

    def build_network(self, train: Interactions) -> nn.Module:
        """Embeddings, the ReLU tower and a one-logit output layer; records ``max_rating_``."""
        check_choice("mode", self.mode, ("implicit", "rating"))
        check_choice("negative_sampling", self.negative_sampling, ("uniform", "popularity"))
        if int(self.embedding_dim) < 1 or not self.hidden_layers or min(map(int, self.hidden_layers)) < 1:
            raise ConfigError(
                f"model.embedding_dim={self.embedding_dim!r} and model.hidden_layers={self.hidden_layers!r} "
                "must be positive (hidden_layers a non-empty list)."
            )
        if self.mode == "rating":
            if train.ratings is None or len(train) == 0:
                raise DataError(
                    "model=mlp with model.mode=rating needs explicit ratings, but the training data has "
                    "none. Use a dataset with ratings or model.mode=implicit."
                )
            self.max_rating_ = float(train.ratings.max())
        elif int(self.num_negatives) < 1:
            raise ConfigError(f"model.num_negatives={self.num_negatives!r} must be >= 1 in implicit mode.")
        if self.use_features:
            branch = feature_branch(self, train, int(self.embedding_dim), self.hidden_layers, 0.0)
            net = PairNet({"mlp": branch}, id_dropout=float(self.id_dropout))
        else:
            branch = MLPBranch(train.n_users, train.n_items, int(self.embedding_dim), self.hidden_layers)
            net = PairNet({"mlp": branch})
        return init_embeddings(net, nn.init.kaiming_normal_)

    def batches(
        self, train: Interactions, batch_size: int, rng: np.random.Generator
    ) -> Iterator[dict[str, torch.Tensor]]:
        """Implicit: :func:`pointwise_batches`; rating: shuffled pairs with ``rating / max`` targets."""
        if self.mode == "implicit":
            yield from pointwise_batches(
                train, batch_size, rng, int(self.num_negatives), self.negative_sampling, negative_pool(self)
            )
            return
        assert train.ratings is not None
        order = rng.permutation(len(train))
        users, items = train.users[order], train.items[order][:, None]
        target = train.ratings[order] / np.float32(self.max_rating_)
        for start in range(0, len(order), batch_size):
            part = slice(start, start + batch_size)
            yield {
                "users": torch.from_numpy(users[part]),
                "items": torch.from_numpy(items[part]),
                "target": torch.from_numpy(target[part]),
            }

    def loss(self, net: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Binary cross-entropy (hard labels, or soft ``rating / max`` labels) plus the L2 penalty."""
        users, items = batch["users"], batch["items"]
        if "target" in batch:
            logits = net(users, items)[:, 0]
            loss = F.binary_cross_entropy_with_logits(logits, batch["target"])
        else:
            loss = pointwise_loss(net, batch)
        if self.reg:
            loss = loss + float(self.reg) * net.branches["mlp"].l2(users, items) / len(users)
        return loss

    def score_users(self, net: nn.Module, users: torch.Tensor, history: Interactions) -> torch.Tensor:
        """Logits of every item (monotone in the predicted probability or rating)."""
        return score_all_items(net, users, self.n_items_, self.max_score_pairs)

    def predict_proba(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """``float32[n]`` ``sigmoid(logit)`` of the pairs: the probability that the BCE loss trained.

        In implicit mode, the probability of an interaction (positives against sampled negatives).
        In rating mode, the soft label ``rating / max_rating`` the model regressed, i.e.
        ``predict(users, items) / max_rating_``: a probability-like value in ``[0, 1]`` that the
        evaluator treats as a click probability too (trained on observed ratings only, it says
        nothing calibrated about unobserved items, so expect a poor log-loss against sampled
        negatives; ``eval.ctr_threshold`` labels are the natural match).
        """
        return sigmoid_probabilities(self, users, items)

    def predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """``float32[n]`` predicted ratings ``sigmoid(logit) * max_rating_`` (rating mode only)."""
        if self.mode != "rating":
            raise ConfigError("MLPClassifier.predict needs model.mode=rating (implicit mode only ranks).")
        return sigmoid_probabilities(self, users, items) * np.float32(self.max_rating_)
