"""Per-sample gradient norms of ``nn.Embedding`` and ``nn.Linear`` for Opacus's ghost clipping.

Ghost clipping (:mod:`recbench.training.privacy`) needs, for every layer, the L2 norm of each sample's
weight gradient, computed from the layer's input (``activations``) and the gradient of its output
(``backprops``) without materialising per-sample gradients of large tables. Opacus ships such *norm
samplers*; the two here compute the same values with less work for the shapes of recbench's per-example
views, where a sample reads a few rows (a user, a positive and its negatives) and runs its layers on a
few positions:

* :func:`embedding_norm_sample`: a sample's table gradient adds ``g_j`` into row ``ids_j``; its squared
  norm is ``sum_j ||g_j||^2`` plus ``2 <g_j, g_k>`` for every pair ``j < k`` reading the same row.
  Opacus forms the full ``[B, m, m]`` Gram matrix of the ``g_j`` (one small matrix product per sample);
  here the diagonal is one elementwise pass and only the pairs that repeat a row (rare for examples,
  common in user blocks) are gathered.
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


def embedding_norm_sample(
    layer: nn.Embedding, activations: list[torch.Tensor], backprops: torch.Tensor
) -> dict[nn.Parameter, torch.Tensor]:
    """Per-sample norms of an ``nn.Embedding``'s weight gradient (``ids`` ``[B, ...]``, any number of
    lookups per sample; the padding row gets no gradient)."""
    ids = activations[0].reshape(activations[0].shape[0], -1)
    grads = backprops.reshape(ids.shape[0], ids.shape[1], -1)
    if layer.padding_idx is not None:
        grads = grads * (ids != layer.padding_idx).unsqueeze(-1).to(grads.dtype)
    squares = grads.pow(2).sum((1, 2))
    if ids.shape[1] > 1:
        same = torch.triu(ids.unsqueeze(2) == ids.unsqueeze(1), diagonal=1)
        b, j, k = same.nonzero(as_tuple=True)
        if len(b):
            squares = squares.index_add(0, b, 2 * (grads[b, j] * grads[b, k]).sum(-1))
    return {layer.weight: squares.clamp_min(0).sqrt()}


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

    register_norm_sampler(nn.Embedding)(embedding_norm_sample)
    register_norm_sampler(nn.Linear)(linear_norm_sample)
