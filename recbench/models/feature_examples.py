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

FM, whose sides are single bags of columns (``bag_sides``), takes a shorter road to the same scores: an
example's lookups are compacted to the columns of non-zero weight (padding slots of multi-hot fields,
dropped ids), and the sums of every side (the user, the positive, each negative) are one batched matrix
product of a weight matrix with the looked-up rows. Both the forward and the two backward passes of
ghost clipping then handle the columns an example really reads, about half of the padded slots on
MovieLens.

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
        self._bags = bool(getattr(net, "bag_sides", False))

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Losses of ``users[B]`` with ``items[B, m]`` (``items[B]`` and ``ratings[B]`` for mse), shaped like
        ``users``; the inputs may carry leading block dimensions (``users[U, K]``, ``items[U, K, m]``)."""
        users, items = batch["users"], batch["items"]
        pairs = items if items.dim() > users.dim() else items.unsqueeze(-1)
        ucols, uw = self._slots("user", users)  # [..., Lu]
        icols, iw = self._slots("item", pairs)  # [..., m, Li]
        ids = torch.cat([ucols, icols.flatten(-2)], dim=-1)
        w = torch.cat([uw, iw.flatten(-2)], dim=-1)
        if self._bags:
            out = self._bag_scores(users, ids, w, ucols.shape[-1], icols.shape[-2:])
        else:
            out = self._side_scores(users, pairs, ids, w, ucols.shape[-1], icols.shape)
        return self._losses(batch, out)

    def _bag_scores(
        self, users: torch.Tensor, ids: torch.Tensor, w: torch.Tensor, lu: int, item_slots: torch.Size
    ) -> torch.Tensor:
        """FM scores ``[..., m]`` of the lookups ``ids``/``w`` ``[..., Lu + m Li]`` (user slots first).

        The lookups of non-zero weight are moved to the front of each example and the rest cut off;
        each keeps its side (0 the user, ``1 + j`` item ``j``) for :class:`_FMBags`.
        """
        m, li = item_slots
        side_of = torch.cat(
            [torch.zeros(lu, dtype=torch.long), torch.arange(1, m + 1).repeat_interleave(li)]
        ).to(ids.device)
        real = w != 0
        width = max(int(real.sum(-1).max()), 1) if real.numel() else 1
        order = torch.argsort((~real).to(torch.int8), dim=-1, stable=True)[..., :width]
        ids, w, side_of = ids.gather(-1, order), w.gather(-1, order), side_of[order]
        total, own = _FMBags.apply(self.embed(ids), self.linear(ids).squeeze(-1), side_of, w, m + 1)
        user, item = total[..., :1, :], total[..., 1:, :]
        bias = self.bias(torch.zeros_like(users))
        return bias + own[..., :1] + own[..., 1:] + (user * item).sum(-1)

    def _side_scores(
        self,
        users: torch.Tensor,
        pairs: torch.Tensor,
        ids: torch.Tensor,
        w: torch.Tensor,
        lu: int,
        icols_shape: torch.Size,
    ) -> torch.Tensor:
        """Scores ``[..., m]`` through the network's own :meth:`side_terms` and :meth:`combine`."""
        vec = self.embed(ids) * w.unsqueeze(-1)  # one call each: every column of the example
        lin = self.linear(ids).squeeze(-1) * w
        cut = [lu, ids.shape[-1] - lu]  # split (not sliced: a cheaper backward)
        (user_vec, item_vec), (user_lin, item_lin) = vec.split(cut, dim=-2), lin.split(cut, dim=-1)
        user = self._side_terms("user", user_vec, user_lin.sum(-1))
        item_vec = item_vec.reshape(*icols_shape, -1)
        item = self._side_terms("item", item_vec, item_lin.reshape(icols_shape).sum(-1))
        user = [(k, u.unsqueeze(users.dim())) for k, u in user]  # broadcast over the m items
        out = self._combine(self.bias(torch.zeros_like(users)), user, item)  # [..., m]
        if self.cross is not None:
            x_u = self._dense("user", users).unsqueeze(-2)
            out = out + (x_u * self.cross(self._dense("item", pairs))).sum(-1)
        return out

    def _losses(self, batch: dict[str, torch.Tensor], out: torch.Tensor) -> torch.Tensor:
        """Per-example losses of the scores ``out`` ``[..., m]`` (column 0 the positive)."""
        if self.loss_type == "mse":
            return (batch["ratings"] - out[..., 0]).pow(2)
        if self.loss_type == "bpr":
            return -F.logsigmoid(out[..., :1] - out[..., 1:]).mean(-1)
        labels = torch.zeros_like(out)
        labels[..., 0] = 1.0
        return F.binary_cross_entropy_with_logits(out, labels, reduction="none").mean(-1)


class _FMBags(torch.autograd.Function):
    """FM sides from looked-up rows, with a hand-fused backward.

    ``vec`` ``[..., K, dim]`` and ``lin`` ``[..., K]`` are the embeddings and first-order weights of an
    example's ``K`` lookups; lookup ``k`` belongs to side ``side_of[..., k]`` (of ``n_sides``) with weight
    ``w[..., k]``. With ``sides[..., g, k]`` those weights, returns every side's sum ``total = sides @ vec``
    ``[..., G, dim]`` and own term ``own = sides @ lin + 0.5 (|total|^2 - sides^2 @ |vec|^2)``
    ``[..., G]``. Autograd would take several passes over the ``[..., K, dim]`` tensors in the backward;
    here a lookup's gradient is its side's gradient row (one gather), scaled, minus a multiple of its
    own row (one fused multiply-add). ``side_of`` and ``w`` are data and take no gradient.
    """

    @staticmethod
    def forward(
        ctx: Any, vec: torch.Tensor, lin: torch.Tensor, side_of: torch.Tensor, w: torch.Tensor, n_sides: int
    ) -> Any:
        """``(total, own)`` of the lookups."""
        sides = w.new_zeros(*w.shape[:-1], n_sides, w.shape[-1])
        sides.scatter_(-2, side_of.unsqueeze(-2), w.unsqueeze(-2))  # [..., G, K]
        total = sides @ vec
        norms = torch.linalg.vector_norm(vec, dim=-1).square()  # [..., K]
        squares = sides.square()
        own = (sides * lin.unsqueeze(-2)).sum(-1) + 0.5 * (
            total.square().sum(-1) - (squares * norms.unsqueeze(-2)).sum(-1)
        )
        ctx.save_for_backward(vec, side_of, w, total)
        return total, own

    @staticmethod
    def backward(ctx: Any, grad_total: torch.Tensor | None, grad_own: torch.Tensor | None) -> Any:
        """Gradients of ``vec`` and ``lin``."""
        vec, side_of, w, total = ctx.saved_tensors
        if grad_total is None:
            grad_total = torch.zeros_like(total)
        if grad_own is None:
            grad_own = total.new_zeros(total.shape[:-1])
        n_sides, dim = total.shape[-2], total.shape[-1]
        # d own_g / d vec_k = sides_gk total_g - sides_gk^2 vec_k, d total_g / d vec_k = sides_gk
        through = (grad_total + total * grad_own.unsqueeze(-1)).reshape(-1, dim)  # [... G, dim]: small
        examples = side_of.numel() // side_of.shape[-1]
        rows = torch.arange(examples, device=side_of.device).unsqueeze(-1) * n_sides
        rows = (rows + side_of.reshape(examples, -1)).reshape(-1)
        own_of = grad_own.reshape(-1).index_select(0, rows).reshape(w.shape)  # each lookup's side's grad_own
        grad_vec = through.index_select(0, rows).reshape(vec.shape)
        grad_vec.mul_(w.unsqueeze(-1)).addcmul_(vec, (w.square() * own_of).unsqueeze(-1), value=-1.0)
        return grad_vec, w * own_of, None, None, None
