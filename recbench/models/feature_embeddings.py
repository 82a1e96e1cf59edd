"""Side-feature embeddings shared by the feature-aware models (FM, Wide&Deep, DeepFM, NCF/MLP features).

Every (user, item) pair is the sparse row ``[user id | user features | item id | item features]``
(features from :attr:`Interactions.user_features` / ``item_features``, see
:mod:`recbench.data.features`). It is laid out per side as padded *slots* (column, weight), grouped
by *field*: the id is one field, each feature field another (multi-hot fields pool their columns
with weights ``1/len``). :class:`FeatureEmbeddings` holds one embedding and one linear weight per
column, shared by every part of a model.

Cold start: an entity without training interactions gets weight 0 on its id slot, so it is scored
from its features alone, never from an untrained id embedding. ``id_dropout`` zeroes the id slot
of a random share of the users and items of each training batch (in the spirit of DropoutNet,
Volkovs et al., NeurIPS 2017), so that the feature part learns to stand on its own.
``use_ids=False`` drops the id fields entirely.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import nn

from recbench.data.interactions import FeatureTable, Interactions
from recbench.training.sparse_rows import lookup


def _field_slots(mat: sp.csr_matrix, offset: int, pad: int) -> tuple[np.ndarray, np.ndarray]:
    """Padded ``(columns + offset, weights)`` of every row of one field's sub-matrix (>= 1 slot)."""
    mat = mat.tocsr()
    counts = np.diff(mat.indptr)
    width = max(int(counts.max(initial=0)), 1)
    rows = np.repeat(np.arange(mat.shape[0]), counts)
    pos = np.arange(mat.nnz) - mat.indptr[rows]
    cols = np.full((mat.shape[0], width), pad, dtype=np.int64)
    weights = np.zeros((mat.shape[0], width), dtype=np.float32)
    cols[rows, pos] = mat.indices + offset
    weights[rows, pos] = mat.data
    return cols, weights


def side_layout(
    n: int, table: FeatureTable | None, use_ids: bool, seen: np.ndarray, col_offset: int, pad: int
) -> dict[str, Any]:
    """Slots of one side: ``cols``/``weights`` ``[n, L]``, ``slot_field`` ``[L]`` (local field),
    ``local`` (feature column within the side's features, ``n_features`` for id/pad slots) and sizes.

    The id slot (slot 0, when ``use_ids``) has weight 1 for entities in ``seen`` and 0 otherwise.
    """
    cols, weights, fields = [], [], []
    feat_offset = col_offset + (n if use_ids else 0)
    if use_ids:
        cols.append(np.arange(n, dtype=np.int64)[:, None] + col_offset)
        weights.append(seen.astype(np.float32)[:, None])
        fields.append(0)
    n_feat = 0 if table is None else table.n_columns
    if table is not None:
        mat = table.matrix.tocsc()
        for f in range(len(table.fields)):
            idx = np.flatnonzero(table.column_field == f)
            c, w = _field_slots(mat[:, idx].tocsr(), 0, -1)
            c = np.where(c >= 0, idx[np.maximum(c, 0)] + feat_offset, pad)
            cols.append(c)
            weights.append(w)
            fields += [len(set(fields))] * c.shape[1]
    cols_arr = np.concatenate(cols, axis=1)
    is_feat = (cols_arr >= feat_offset) & (cols_arr != pad)
    return {
        "cols": cols_arr,
        "weights": np.concatenate(weights, axis=1),
        "slot_field": np.asarray(fields, dtype=np.int64),
        "local": np.where(is_feat, cols_arr - feat_offset, n_feat),
        "n_columns": (n if use_ids else 0) + n_feat,
        "n_features": n_feat,
        "n_fields": len(set(fields)),
        "has_id": use_ids,
    }


class FeatureEmbeddings(nn.Module):
    """Embeddings (``dim``) and linear weights of every column of both sides, plus the slot buffers.

    ``pooled(side, idx)`` gives the field embeddings ``[..., n_fields, dim]`` (sum of the weighted
    column embeddings of each field); ``bag(side, idx)`` the FM sums over all the side's columns.
    ``sparse``: both tables get sparse gradients over the columns a batch reads
    (:mod:`recbench.training.sparse_rows`).
    """

    def __init__(
        self,
        user: dict[str, Any],
        item: dict[str, Any],
        dim: int,
        id_dropout: float,
        init_std: float,
        sparse: bool = False,
    ) -> None:
        super().__init__()
        n_cols = user["n_columns"] + item["n_columns"]
        self.embed = nn.Embedding(n_cols + 1, dim, sparse=sparse)
        self.linear = nn.Embedding(n_cols + 1, 1, sparse=sparse)
        nn.init.normal_(self.embed.weight, std=init_std)
        nn.init.zeros_(self.linear.weight)
        self.id_dropout = id_dropout
        self.has_id = {}
        #: feature columns (ids excluded) per side
        self.n_features = {"user": int(user["n_features"]), "item": int(item["n_features"])}
        for side, lay in (("user", user), ("item", item)):
            self.register_buffer(f"{side}_cols", torch.from_numpy(lay["cols"]))
            self.register_buffer(f"{side}_weights", torch.from_numpy(lay["weights"]))
            self.register_buffer(f"{side}_local", torch.from_numpy(lay["local"]))
            onehot = F.one_hot(torch.from_numpy(lay["slot_field"]), lay["n_fields"]).float()
            self.register_buffer(f"{side}_pool", onehot)
            self.has_id[side] = bool(lay["has_id"])

    def slots(self, side: str, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(columns, weights)`` of the entities ``idx``; the id weight is dropped at random in training."""
        cols = getattr(self, f"{side}_cols")[idx]
        w = getattr(self, f"{side}_weights")[idx]
        if self.training and self.id_dropout > 0 and self.has_id[side]:
            keep = (torch.rand(w.shape[:-1], device=w.device) >= self.id_dropout).to(w.dtype)
            w = torch.cat([w[..., :1] * keep.unsqueeze(-1), w[..., 1:]], dim=-1)
        return cols, w

    def columns(self, side: str, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The weighted column embeddings ``[..., L, dim]`` of the entities ``idx`` and their first-order
        term ``[...]`` (the tables read through :func:`~recbench.training.sparse_rows.lookup`)."""
        cols, w = self.slots(side, idx)
        return weigh_columns(lookup(self.embed, cols), lookup(self.linear, cols), w)

    def pool(self, side: str, vec: torch.Tensor) -> torch.Tensor:
        """Field embeddings ``[..., F, dim]`` of weighted column embeddings ``vec`` ``[..., L, dim]``."""
        return torch.einsum("...lk,lf->...fk", vec, getattr(self, f"{side}_pool"))

    def pooled(self, side: str, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Field embeddings ``[..., F, dim]`` and the first-order term ``[...]``."""
        vec, lin = self.columns(side, idx)
        return self.pool(side, vec), lin

    def bag(self, side: str, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """FM terms of the side's own columns: ``(sum_j x_j v_j [..., dim], own [...])`` where ``own``
        is the linear term plus the pairwise interactions among the side's columns."""
        return bag_terms(*self.columns(side, idx))

    def dense_features(self, side: str, idx: torch.Tensor) -> torch.Tensor:
        """The side's feature columns as a dense ``[..., n_features]`` row per entity (ids excluded)."""
        local = getattr(self, f"{side}_local")[idx]  # id and padding slots -> the last column
        w = getattr(self, f"{side}_weights")[idx]
        x = torch.zeros(*idx.shape, self.n_features[side] + 1, dtype=w.dtype, device=w.device)
        return x.scatter_add_(-1, local, w)[..., :-1]


def weigh_columns(vec: torch.Tensor, lin: torch.Tensor, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Column embeddings ``vec`` ``[..., L, dim]`` and linear weights ``lin`` ``[..., L, 1]`` read for slots
    of weights ``w`` ``[..., L]``: the weighted embeddings and the first-order term ``sum_j w_j lin_j``."""
    return vec * w.unsqueeze(-1), (lin.squeeze(-1) * w).sum(-1)


def bag_terms(vec: torch.Tensor, lin: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """FM over weighted column embeddings ``vec`` ``[..., L, dim]``: their sum, and the first-order term
    ``lin`` plus the pairwise interactions among the columns (``0.5 (|sum|^2 - sum of squares)``)."""
    s = vec.sum(-2)
    return s, lin + 0.5 * (s.pow(2).sum(-1) - vec.pow(2).sum((-2, -1)))


def feature_embeddings(
    train: Interactions,
    seen_users: np.ndarray,
    seen_items: np.ndarray,
    *,
    use_ids: bool,
    dim: int,
    id_dropout: float,
    init_std: float,
    sparse: bool = False,
) -> tuple[FeatureEmbeddings, dict[str, int]]:
    """The :class:`FeatureEmbeddings` of the row ``[user id | user features | item id | item features]``
    of ``train`` (a side without a :class:`FeatureTable` has its id slot only), and the number of
    feature columns per side (``user_features`` / ``item_features``).

    ``seen_users`` / ``seen_items`` (``bool[n]``): entities whose id slot has weight 1; the others
    get weight 0, so they are described by their features alone. ``sparse``: sparse embedding
    gradients (see :class:`FeatureEmbeddings`).
    """
    uf, itf = train.user_features, train.item_features
    n_ucols = (train.n_users if use_ids else 0) + (uf.n_columns if uf is not None else 0)
    pad = n_ucols + (train.n_items if use_ids else 0) + (itf.n_columns if itf is not None else 0)
    user = side_layout(train.n_users, uf, use_ids, seen_users, 0, pad)
    item = side_layout(train.n_items, itf, use_ids, seen_items, n_ucols, pad)
    emb = FeatureEmbeddings(user, item, dim, id_dropout, init_std, sparse)
    return emb, {"user_features": user["n_features"], "item_features": item["n_features"]}
