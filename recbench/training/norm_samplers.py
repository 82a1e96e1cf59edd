"""Per-sample gradient norms of ``nn.Embedding`` and ``nn.Linear`` for Opacus's ghost clipping.

Ghost clipping (:mod:`recbench.training.privacy`) needs, for every layer, the L2 norm of each sample's
weight gradient, computed from the layer's input (``activations``) and the gradient of its output
(``backprops``) without materialising per-sample gradients of large tables. Opacus ships such *norm
samplers*; the two here compute the same values with less work for the shapes of recbench's per-example
views, where a sample reads a few rows (a user, a positive and its negatives) and runs its layers on a
few positions:

* :func:`embedding_norm_sample`: a sample's table gradient adds ``g_j`` into row ``ids_j``. Opacus forms
  the full ``[B, m, m]`` Gram matrix of the ``g_j`` masked by equal ids (one small matrix product per
  sample, ``m^2`` pairs: slow for the dozens of lookups of a feature model's example, most of them
  padding). Here a sample that reads each row once has the squared norm ``sum_j ||g_j||^2``; for the
  samples that repeat a row, the lookups are sorted by row and the ``g_j`` of equal rows summed (one
  ``index_add``), so the cost is linear in ``m``.
* :func:`linear_norm_sample`: for inputs ``[B, T, in]`` (``T`` positions per sample: the items of an
  example, the examples of a user block; more leading dimensions are flattened into ``T``), the
  squared weight-gradient norm is either ``<G G^T, A A^T>`` (two ``T x T`` Gram matrices, cost
  ``T^2 (in + out)``, Opacus's choice) or ``||G^T A||^2`` (the per-sample gradient itself, cost
  ``T in out``), whichever is cheaper for the layer: the predict layer of NCF (``out = 1``) takes the
  second. The bias's norm is ``||sum_t g_t||`` (Opacus forms a Gram matrix for it as well).

Both are checked against plain autograd, one sample at a time, by the clipping tests.
"""

from __future__ import annotations

import torch
from torch import nn


class GatherEmbedding(nn.Embedding):
    """An ``nn.Embedding`` read with ``index_select``: the same values, and a backward (``index_add``)
    several times faster on CPU than the embedding's own. The per-example views read their tables
    through it; :func:`register` gives it :func:`embedding_norm_sample`. No ``padding_idx``."""

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """``weight[ids]``: ``[*ids.shape, embedding_dim]``."""
        return self.weight.index_select(0, ids.reshape(-1)).reshape(*ids.shape, self.embedding_dim)


def embedding_norm_sample(
    layer: nn.Embedding, activations: list[torch.Tensor], backprops: torch.Tensor
) -> dict[nn.Parameter, torch.Tensor]:
    """Per-sample norms of an ``nn.Embedding``'s weight gradient (``ids`` ``[B, ...]``, any number of
    lookups per sample; the padding row gets no gradient)."""
    ids = activations[0].reshape(activations[0].shape[0], -1)
    grads = backprops.reshape(ids.shape[0], ids.shape[1], -1)
    if layer.padding_idx is not None:
        grads = grads * (ids != layer.padding_idx).unsqueeze(-1).to(grads.dtype)
    if ids.shape[1] == 1:
        return {layer.weight: grads[:, 0].norm(dim=-1)}
    sorted_ids, order = ids.sort(dim=1)
    first = torch.ones_like(sorted_ids, dtype=torch.bool)  # the first lookup of each row of a sample
    first[:, 1:] = sorted_ids[:, 1:] != sorted_ids[:, :-1]
    repeats = (~first).any(1).nonzero().squeeze(1)  # samples that read a row more than once
    if 2 * len(repeats) > len(ids):  # most do: sum every sample's lookups per distinct row
        return {layer.weight: _row_sum_squares(grads, first, order).sqrt()}
    squares = grads.pow(2).sum((1, 2))  # right for the samples that read each row once
    if len(repeats):
        squares[repeats] = _row_sum_squares(grads[repeats], first[repeats], order[repeats])
    return {layer.weight: squares.sqrt()}


def _row_sum_squares(grads: torch.Tensor, first: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """``[B]`` squared norms of the samples' table gradients: the lookups' gradients ``grads`` ``[B, m, d]``
    summed per distinct row (``order`` sorts each sample's lookups by row, ``first`` marks the first
    lookup of each row in that order)."""
    n, m, dim = grads.shape
    in_order = first.reshape(-1).cumsum(0).reshape(n, m) - 1  # one id per (sample, row), in sorted order
    group = torch.empty_like(in_order).scatter_(1, order, in_order)  # ... at each lookup's own position
    rows = grads.new_zeros(int(in_order[-1, -1]) + 1, dim).index_add_(
        0, group.reshape(-1), grads.reshape(-1, dim)
    )
    sample = torch.arange(n, device=grads.device).repeat_interleave(first.sum(1))
    return grads.new_zeros(n).index_add_(0, sample, rows.pow(2).sum(-1))


def linear_norm_sample(
    layer: nn.Linear, activations: list[torch.Tensor], backprops: torch.Tensor
) -> dict[nn.Parameter, torch.Tensor]:
    """Per-sample norms of an ``nn.Linear``'s weight and bias gradients for inputs ``[B, in]`` or
    ``[B, ..., in]`` (the middle dimensions are one sample's positions)."""
    n = backprops.shape[0]
    g = backprops.reshape(n, -1, backprops.shape[-1])
    a = activations[0].to(backprops.dtype).reshape(n, -1, activations[0].shape[-1])
    positions, out, inp = g.shape[1], g.shape[2], a.shape[2]
    norms: dict[nn.Parameter, torch.Tensor] = {}
    if layer.weight.requires_grad:
        if positions == 1:
            squares = g[:, 0].pow(2).sum(-1) * a[:, 0].pow(2).sum(-1)
        elif positions * (out + inp) < out * inp:
            squares = (torch.bmm(g, g.transpose(1, 2)) * torch.bmm(a, a.transpose(1, 2))).sum((1, 2))
        else:
            squares = torch.bmm(g.transpose(1, 2), a).pow(2).sum((1, 2))
        norms[layer.weight] = squares.clamp_min(0).sqrt()
    if layer.bias is not None and layer.bias.requires_grad:
        norms[layer.bias] = g.sum(1).norm(dim=-1)
    return norms


def register() -> None:
    """Make Opacus's ghost clipping use these samplers for ``nn.Embedding`` and ``nn.Linear``."""
    from opacus.grad_sample.utils import register_norm_sampler

    register_norm_sampler([nn.Embedding, GatherEmbedding])(embedding_norm_sample)
    register_norm_sampler(nn.Linear)(linear_norm_sample)
