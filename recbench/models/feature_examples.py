"""Per-example losses of the feature models (FM, Wide&Deep, DeepFM) through standard layers (for DP-SGD).

The networks of :mod:`recbench.models.feature_models` compute each distinct user and item of a batch
once, read their tables with a functional gather (sparse gradients) and keep the bias and the wide
crosses as bare parameters. Differentially private training needs every parameter used through a layer
that Opacus can clip per example, each called once per step (Opacus's ghost clipping refuses a layer
used twice). :class:`FeatureExamples` is such a view of a trained network, sharing its parameters:

* one embedding call reads all the columns of an example (the user's slots and those of the
  positive and every negative item), and one call reads their first-order weights;
* the bias is a one-row embedding over the bias's memory, read at row 0 by every example;
* the MLP's user and item projections and its tail are the network's own ``nn.Linear`` layers;
* the wide crosses ``x_u^T C x_i`` are an ``nn.Linear`` whose weight is ``C`` itself, applied to the
  item's dense feature row and dotted with the user's.

The terms are combined by the network's own :meth:`~recbench.models.feature_models.SeparableNet.side_terms`
and :meth:`~recbench.models.feature_models.SeparableNet.combine`, so the view scores exactly what the
network scores. An example's batch is built from its own training row only (as for the other models,
:mod:`recbench.models.per_example`).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from recbench.models.per_example import shared_embedding


class FeatureExamples(nn.Module):
    """Per-example losses ``[B]`` of a feature model's network (a ``SeparableNet``).

    ``loss_type``: ``bce`` (mean binary cross-entropy over the positive and the example's negatives),
    ``bpr`` (mean ``-log sigmoid(pos - neg)`` over its negatives) or ``mse`` (squared rating error).
    The tables are read through views (:func:`~recbench.models.per_example.shared_embedding`) that
    take dense gradients, as Opacus needs, whatever the network's own layers take.
    """

    #: ``forward`` accepts leading block dimensions (user-level DP, :mod:`recbench.training.privacy_user`).
    blocks = True

    def __init__(self, net: Any, loss_type: str) -> None:
        super().__init__()
        emb = net.emb
        # views of the tables and the bias (the network's own layers stay out: each is seen once)
        self.embed, self.linear = shared_embedding(emb.embed.weight), shared_embedding(emb.linear.weight)
        self.bias = shared_embedding(net.bias)
        self.mlp = net.mlp
        cross = getattr(net, "cross", None)
        self.cross: nn.Linear | None = None
        if cross is not None:  # x_u^T C x_i = x_u . (C x_i): a linear layer of weight C on the item side
            self.cross = nn.Linear(cross.shape[1], cross.shape[0], bias=False)
            self.cross.weight = cross
        self.loss_type = loss_type
        # the network's methods (not submodules: Opacus must see each layer exactly once)
        self._slots, self._dense = emb.slots, emb.dense_features
        self._side_terms, self._combine = net.side_terms, net.combine

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Losses of ``users[B]`` with ``items[B, m]`` (``items[B]`` and ``ratings[B]`` for mse), shaped like
        ``users``; the inputs may carry leading block dimensions (``users[U, K]``, ``items[U, K, m]``)."""
        users, items = batch["users"], batch["items"]
        pairs = items if items.dim() > users.dim() else items.unsqueeze(-1)
        ucols, uw = self._slots("user", users)  # [..., Lu]
        icols, iw = self._slots("item", pairs)  # [..., m, Li]
        ids = torch.cat([ucols, icols.flatten(-2)], dim=-1)
        w = torch.cat([uw, iw.flatten(-2)], dim=-1)
        vec = self.embed(ids) * w.unsqueeze(-1)  # one call each: every column of the example
        lin = self.linear(ids).squeeze(-1) * w
        cut = [ucols.shape[-1], ids.shape[-1] - ucols.shape[-1]]  # split (not sliced: a cheaper backward)
        (user_vec, item_vec), (user_lin, item_lin) = vec.split(cut, dim=-2), lin.split(cut, dim=-1)
        user = self._side_terms("user", user_vec, user_lin.sum(-1))
        item_vec = item_vec.reshape(*icols.shape, -1)
        item = self._side_terms("item", item_vec, item_lin.reshape(icols.shape).sum(-1))
        user = [(k, u.unsqueeze(users.dim())) for k, u in user]  # broadcast over the m items
        out = self._combine(self.bias(torch.zeros_like(users)), user, item)  # [..., m]
        if self.cross is not None:
            x_u = self._dense("user", users).unsqueeze(-2)
            out = out + (x_u * self.cross(self._dense("item", pairs))).sum(-1)
        if self.loss_type == "mse":
            return (batch["ratings"] - out[..., 0]).pow(2)
        if self.loss_type == "bpr":
            return -F.logsigmoid(out[..., :1] - out[..., 1:]).mean(-1)
        labels = torch.zeros_like(out)
        labels[..., 0] = 1.0
        return F.binary_cross_entropy_with_logits(out, labels, reduction="none").mean(-1)
