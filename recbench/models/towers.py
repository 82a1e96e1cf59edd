"""Network blocks of the pointwise neural models (MLP classifier, NCF family, DMF).

:class:`MLPTower` (ReLU layers with dropout), :class:`GMFBranch` (``p_u * q_i``),
:class:`MLPBranch` (user and item embeddings, concatenated, through a tower),
:class:`FeatureMLPBranch` (the same with side-feature embeddings) and :class:`PairNet` (branches
fused by one linear predict layer into a logit per pair).

The first layer of a tower on ``concat(p_u, q_i)`` equals ``W_u p_u + W_i q_i + b``; both halves
are computed once per user and per item and broadcast, which makes full ranking cheap.

With side features, :class:`FeatureMLPBranch` feeds the tower
``[user id emb, pooled user feature embs, item id emb, pooled item feature embs]``, built from the
:class:`~recbench.models.feature_embeddings.FeatureEmbeddings` of the feature-aware models (the
same layout, field pooling and cold-id handling): an id without training interactions gets a zero
embedding, so an unseen item (or user) is scored from its features alone.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from recbench.data.interactions import Interactions
from recbench.errors import ConfigError, DataError
from recbench.models.feature_embeddings import FeatureEmbeddings, feature_embeddings
from recbench.training.sparse_rows import has_sparse_embeddings, lookup


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


class MLPBranch(nn.Module):
    """User and item embeddings, concatenated, through an :class:`MLPTower`.

    ``sparse``: the embeddings get sparse gradients over the rows a batch reads
    (:mod:`recbench.training.sparse_rows`).
    """

    def __init__(
        self,
        n_users: int,
        n_items: int,
        dim: int,
        widths: Sequence[int],
        dropout: float = 0.0,
        sparse: bool = False,
    ) -> None:
        super().__init__()
        self.user = nn.Embedding(n_users, int(dim), sparse=sparse)
        self.item = nn.Embedding(n_items, int(dim), sparse=sparse)
        self.tower = MLPTower(2 * int(dim), widths, dropout)
        self.out_dim = self.tower.out_dim

    def forward(self, users: torch.Tensor, items: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """``users[B]`` with ``items[B, m]`` (or ``items[m]`` shared by all) -> ``[B, m]``.

        The tower's output goes through ``weight`` (this branch's slice of the predict layer).
        """
        first, d = self.tower.linears[0], self.user.embedding_dim
        u = F.linear(lookup(self.user, users), first.weight[:, :d], first.bias).unsqueeze(1)
        if items.numel() > self.item.num_embeddings and not self.item.sparse:  # project the table, gather
            table = F.linear(self.item.weight, first.weight[:, d:])
            v = table.index_select(0, items.reshape(-1)).reshape(*items.shape, -1)
        else:  # project each distinct item of the batch once (its rows only: a sparse gradient)
            ids, inverse = torch.unique(items, return_inverse=True)
            v = F.linear(lookup(self.item, ids), first.weight[:, d:])[inverse]
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
            squares = (lookup(self.emb.embed, cols) * w.unsqueeze(-1)).pow(2).sum((-2, -1))
            total = total + (squares * counts).sum()
        return total


def feature_branch(
    model: Any, train: Interactions, dim: int, widths: Sequence[int], dropout: float, sparse: bool = False
) -> FeatureMLPBranch:
    """The :class:`FeatureMLPBranch` of a model with ``use_features`` and ``id_dropout`` options.

    Sets ``model.seen_users_`` / ``model.seen_items_`` (ids with training interactions; the others
    get zero id embeddings); ``sparse``: sparse embedding gradients. Raises :class:`DataError` when
    ``train`` carries no side features and :class:`ConfigError` for an ``id_dropout`` outside ``[0, 1)``.
    """
    if train.user_features is None and train.item_features is None:
        raise DataError(
            f"model.use_features=true concatenates side-feature embeddings with the id embeddings of "
            f"{type(model).__name__}, but the training data carries no user or item features. Set "
            "`model.use_features=false`, use a dataset with side files (`dataset=ml-100k`), or give "
            "your own CSV files with `features=default features.item_file=items.csv "
            "features.user_file=users.csv`."
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
        sparse=sparse,
    )
    return FeatureMLPBranch(emb, widths, dropout)


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
        #: embeddings built with ``sparse=True``: the Trainer then uses a sparse-aware optimiser
        self.sparse_gradients = has_sparse_embeddings(self)

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


class GMFBranch(nn.Module):
    """Generalised matrix factorisation: the element-wise product ``p_u * q_i``.

    With ``known`` (``bool`` masks of the users and items that have training interactions), the
    other ids get zero embeddings, so the branch adds nothing for them (the masks are rebuilt from
    the training data, not saved with the weights). ``sparse``: sparse embedding gradients over the
    rows a batch reads (:mod:`recbench.training.sparse_rows`).
    """

    def __init__(
        self,
        n_users: int,
        n_items: int,
        dim: int,
        known: tuple[np.ndarray, np.ndarray] | None = None,
        sparse: bool = False,
    ) -> None:
        super().__init__()
        self.user = nn.Embedding(n_users, int(dim), sparse=sparse)
        self.item = nn.Embedding(n_items, int(dim), sparse=sparse)
        self.out_dim = int(dim)
        self.masked = known is not None
        if known is not None:
            for side, mask in zip(("user", "item"), known):
                tensor = torch.as_tensor(np.asarray(mask), dtype=torch.float32).unsqueeze(-1)
                self.register_buffer(f"{side}_known", tensor, persistent=False)

    def forward(
        self,
        users: torch.Tensor,
        items: torch.Tensor,
        weight: torch.Tensor,
        keep: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """``h^T (p_u * q_i)`` -> ``[B, m]`` for ``users[B]`` and ``items[B, m]`` (or ``items[m]``).

        Computed as ``q_i . (h * p_u)``, without the ``[B, m, dim]`` product. ``keep`` (boolean
        masks shaped like ``users`` / ``items``): id dropout, zeroing the other embeddings.
        """
        user = lookup(self.user, users) * weight
        item = lookup(self.item, items)
        if self.masked:
            user = user * self.user_known.index_select(0, users)
            item = item * self.item_known.index_select(0, items.reshape(-1)).reshape(*items.shape, 1)
        if keep is not None:
            user = user * keep[0].unsqueeze(-1).to(user.dtype)
            item = item * keep[1].unsqueeze(-1).to(item.dtype)
        if items.dim() == 1:
            return user @ item.T
        return (item * user.unsqueeze(1)).sum(-1)
