"""Per-example losses of the networks, computed with standard layers (for DP-SGD).

The networks of the pointwise and factorisation models are written for speed: they read their tables
with ``index_select``, split linear layers into halves, or run compiled kernels. Differentially private
training (:mod:`recbench.training.privacy`) needs the opposite: every parameter used through a layer
that Opacus knows (``nn.Embedding``, ``nn.Linear``) called as a module, and one loss per example. The
modules here are such *views*: they share the parameters of a trained network (the same tensors, or
tensors viewing the same memory), so training the view trains the network that scores afterwards.

Each example is built from its own training row only (:func:`pointwise_example_batch`): the negatives
of a pointwise example are drawn uniformly from the catalogue, excluding only the example's own item.
Excluding the user's other positives, or drawing by item popularity, would make one example's batch
depend on other examples, which the per-example clipping does not bound.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from recbench.data.interactions import Interactions
from recbench.errors import ConfigError
from recbench.models.towers import GMFBranch, MLPBranch
from recbench.training.norm_samplers import GatherEmbedding


def shared_embedding(table: torch.Tensor) -> GatherEmbedding:
    """An embedding layer over the rows of ``table`` (``[n, d]``, or ``[n]`` / ``[]`` read as ``[n, 1]``),
    read with ``index_select`` (:class:`~recbench.training.norm_samplers.GatherEmbedding`).

    A 2-D parameter is used as it is (the same object); any other through a parameter that views its
    memory, so that updates of either are updates of both.
    """
    weight = table if table.dim() == 2 and isinstance(table, nn.Parameter) else None
    if weight is None:
        weight = nn.Parameter(table.detach().view(table.shape[0] if table.dim() else 1, -1))
    emb = GatherEmbedding(weight.shape[0], weight.shape[1], _weight=weight.detach())
    emb.weight = weight
    return emb


def pointwise_example_batch(
    train: Interactions, rows: np.ndarray, num_negatives: int, rng: np.random.Generator
) -> dict[str, torch.Tensor]:
    """``users[B]`` and ``items[B, 1 + num_negatives]`` (column 0 the positive) for training ``rows``.

    The negatives are uniform over the catalogue minus the example's own item: they depend on nothing
    but the row itself (they may be other positives of the user, which the non-private sampler excludes).
    """
    users, pos = train.users[rows], train.items[rows]
    draw = rng.integers(0, max(train.n_items - 1, 1), size=(len(rows), num_negatives))
    neg = draw + (draw >= pos[:, None])  # skip the positive: uniform over the other n_items - 1
    items = np.concatenate([pos[:, None], neg], axis=1).astype(np.int64)
    return {"users": torch.from_numpy(users.astype(np.int64)), "items": torch.from_numpy(items)}


def rating_example_batch(train: Interactions, rows: np.ndarray) -> dict[str, torch.Tensor]:
    """``users[B]``, ``items[B]`` and ``ratings[B]`` of training ``rows``."""
    assert train.ratings is not None
    return {
        "users": torch.from_numpy(train.users[rows].astype(np.int64)),
        "items": torch.from_numpy(train.items[rows].astype(np.int64)),
        "ratings": torch.from_numpy(train.ratings[rows].astype(np.float32)),
    }


class PairExamples(nn.Module):
    """Per-example BCE losses of a :class:`~recbench.models.towers.PairNet` with id branches.

    Branches: :class:`~recbench.models.towers.GMFBranch` (``p_u * q_i``) and
    :class:`~recbench.models.towers.MLPBranch` (the tower on ``concat(p_u, q_i)``); the predict layer
    acts on the concatenated branch outputs, as in the network. An example's loss is the mean BCE over
    its positive (label 1, or ``target`` for soft labels) and its negatives (label 0), plus ``reg`` times
    the squared norms of the embeddings it used. Inputs may carry extra leading dimensions
    (``users[U, K]``, ``items[U, K, m]``: blocks of examples for user-level DP), the losses then have
    the shape of ``users``.
    """

    #: ``forward`` accepts leading block dimensions (see :mod:`recbench.training.privacy_user`).
    blocks = True

    def __init__(self, net: nn.Module, reg: float = 0.0) -> None:
        super().__init__()
        for name, branch in net.branches.items():
            if not isinstance(branch, (GMFBranch, MLPBranch)) or getattr(branch, "masked", False):
                raise ConfigError(
                    f"the {name!r} branch ({type(branch).__name__}) of this network cannot be trained "
                    "privately (side-feature branches are not supported); set model.use_features=false."
                )
        branches = list(net.branches.values())
        # views of the tables (the network's own embedding layers stay out: each layer is seen once)
        self.users = nn.ModuleList(shared_embedding(b.user.weight) for b in branches)
        self.items = nn.ModuleList(shared_embedding(b.item.weight) for b in branches)
        self.towers = nn.ModuleList(nn.Identity() if isinstance(b, GMFBranch) else b.tower for b in branches)
        self.gmf = [isinstance(b, GMFBranch) for b in branches]
        self.predict = net.predict
        self.reg = float(reg)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """``[B]`` losses of ``users[B]`` with ``items[B, m]``, every layer called once as a module."""
        users, items = batch["users"], batch["items"]
        parts, penalty = [], torch.zeros(users.shape, device=users.device)
        for user, item, tower, gmf in zip(self.users, self.items, self.towers, self.gmf, strict=True):
            u, v = user(users), item(items)  # [B, d], [B, m, d]
            if gmf:
                parts.append(u.unsqueeze(-2) * v)
            else:
                parts.append(tower(torch.cat([u.unsqueeze(-2).expand_as(v), v], dim=-1)))
            if self.reg:
                penalty = penalty + u.pow(2).sum(-1) + v.pow(2).sum((-2, -1))
        logits = self.predict(torch.cat(parts, dim=-1)).squeeze(-1)
        labels = torch.zeros_like(logits)
        labels[..., 0] = batch.get("target", 1.0)
        loss = F.binary_cross_entropy_with_logits(logits, labels, reduction="none").mean(-1)
        return loss + self.reg * penalty


class RatingExamples(nn.Module):
    """Per-example squared errors of a :class:`~recbench.models.factorization.DotProduct` plus L2.

    ``(r - mu - b_u - b_i - p_u . q_i)^2 + user_reg ||p_u||^2 + item_reg ||q_i||^2 +
    bias_reg (b_u^2 + b_i^2)``: the per-rating form of MF's and PMF's batch objectives. Inputs may carry
    leading block dimensions (``users[U, K]``...), as in :class:`PairExamples`.
    """

    #: ``forward`` accepts leading block dimensions (see :mod:`recbench.training.privacy_user`).
    blocks = True

    def __init__(self, net: nn.Module, user_reg: float, item_reg: float, bias_reg: float = 0.0) -> None:
        super().__init__()
        self.user, self.item = shared_embedding(net.user), shared_embedding(net.item)
        self.user_bias = shared_embedding(net.user_bias) if net.user_bias is not None else None
        self.item_bias = shared_embedding(net.item_bias) if net.item_bias is not None else None
        self.register_buffer("global_mean", net.global_mean.detach().clone())
        self.user_reg, self.item_reg, self.bias_reg = float(user_reg), float(item_reg), float(bias_reg)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """``[B]`` losses."""
        p, q = self.user(batch["users"]), self.item(batch["items"])
        pred = (p * q).sum(-1) + self.global_mean
        loss = self.user_reg * p.pow(2).sum(-1) + self.item_reg * q.pow(2).sum(-1)
        for table, idx in ((self.user_bias, batch["users"]), (self.item_bias, batch["items"])):
            if table is not None:
                b = table(idx)[..., 0]
                pred = pred + b
                loss = loss + self.bias_reg * b.pow(2)
        return (batch["ratings"] - pred).pow(2) + loss
