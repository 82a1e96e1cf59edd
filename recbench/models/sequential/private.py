"""Per-user losses of GRU4Rec and NextItNet through layers Opacus can clip, for user-level DP-SGD.

A sequential model trains on whole user sequences: one row of a batch is one user's window of their
latest items, and its gradient mixes all of them. So its privacy unit is the user
(``trainer.privacy.unit=user``; :class:`~recbench.training.privacy_user.SequenceUnits` Poisson-samples
users and clips each user's gradient). :class:`SequenceUsers` is a view of such a network that shares its
parameters and returns one loss per user:

* the input item table is read through a gather layer (ghost clipping's embedding norms), the padding
  positions multiplied by 0 so that the padding row gets no gradient, as in the network;
* NextItNet's residual blocks of dilated convolutions and layer norms are the network's own modules
  (Opacus computes their per-user gradients); for GRU4Rec, every GRU layer is a :class:`GRURecurrence`,
  a module of the layer's own four parameters that runs the recurrence step by step. Its
  hidden-to-hidden weights act at every step, which ghost clipping's per-layer norms cannot handle; the
  per-user gradients of these small matrices are computed instead (:func:`recurrence_grad_sample`) and
  their norms enter the clipping with the others;
* the output item table is an ``nn.Linear`` of weight the network's output embeddings, applied to every
  position (its per-user norm from the ``[positions x positions]`` Gram form or the per-user gradient).

The loss of a user is the mean full-softmax cross-entropy over the positions of their window (the
non-private fit averages over all positions of a batch instead). Dropout is drawn as in training.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from recbench.models.per_example import shared_embedding


class GRURecurrence(nn.Module):
    """Layer ``layer`` of ``gru`` (``batch_first``) as a module of its own parameters, the same tensors.

    ``forward(x[B, T, in])`` returns the states ``[B, T, hidden]`` from a zero initial state, with the
    gates of :class:`torch.nn.GRU` (reset, update, new; ``h = (1 - z) * n + z * h_prev``). Its per-user
    gradients come from :func:`recurrence_grad_sample`.
    """

    def __init__(self, gru: nn.GRU, layer: int) -> None:
        super().__init__()
        self.weight_ih = getattr(gru, f"weight_ih_l{layer}")
        self.weight_hh = getattr(gru, f"weight_hh_l{layer}")
        self.bias_ih = getattr(gru, f"bias_ih_l{layer}")
        self.bias_hh = getattr(gru, f"bias_hh_l{layer}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """States after every step of ``x``."""
        inputs = F.linear(x, self.weight_ih, self.bias_ih)
        hidden = self.weight_hh.shape[1]
        return _gru_states(inputs, lambda h: F.linear(h, self.weight_hh, self.bias_hh), hidden)


def _gru_states(inputs: torch.Tensor, recurrent: Any, hidden: int) -> torch.Tensor:
    """GRU states ``[B, T, hidden]`` from the input gates ``inputs`` ``[B, T, 3 hidden]`` (all steps) and
    ``recurrent(h)``, the hidden gates ``[B, 3 hidden]`` of the previous state."""
    h = inputs.new_zeros(inputs.shape[0], hidden)
    states = []
    for step in inputs.unbind(1):  # one backward for all steps (a slice per step would zero-fill each)
        x_r, x_z, x_n = step.chunk(3, dim=-1)
        h_r, h_z, h_n = recurrent(h).chunk(3, dim=-1)
        r, z = torch.sigmoid(x_r + h_r), torch.sigmoid(x_z + h_z)
        n = torch.tanh(x_n + r * h_n)
        h = (1 - z) * n + z * h
        states.append(h)
    return torch.stack(states, dim=1)


def recurrence_grad_sample(
    layer: GRURecurrence, activations: list[torch.Tensor], backprops: torch.Tensor
) -> dict[nn.Parameter, torch.Tensor]:
    """Per-user gradients ``[B, *shape]`` of a :class:`GRURecurrence`'s parameters, for Opacus.

    The recurrence runs again on the layer's inputs ``activations[0]``; one backward of the states'
    gradients ``backprops`` gives the gradients of every step's gate pre-activations (input gates
    ``[B, T, 3H]``, hidden gates ``[B, 3H]`` per step), and a user's weight gradient is the sum over
    steps of the outer products of those with the step's input or previous state: one batched matrix
    product per weight. (Opacus's generic ``torch.func`` path redoes a vectorised backward per user.)
    """
    x = activations[0].detach()
    w_ih, w_hh, b_ih, b_hh = (
        p.detach() for p in (layer.weight_ih, layer.weight_hh, layer.bias_ih, layer.bias_hh)
    )
    gates, previous = [], []

    def recurrent(h: torch.Tensor) -> torch.Tensor:
        previous.append(h.detach())
        gate = F.linear(h, w_hh, b_hh)
        gates.append(gate if gate.requires_grad else gate.requires_grad_())  # step 0: from the zero state
        return gate

    with torch.enable_grad():
        inputs = F.linear(x, w_ih, b_ih).requires_grad_()
        states = _gru_states(inputs, recurrent, w_hh.shape[1])
        grads = torch.autograd.grad(states, [inputs, *gates], backprops)
    d_inputs, d_hidden = grads[0], torch.stack(grads[1:], dim=1)  # [B, T, 3H] each
    out = {
        layer.weight_ih: torch.bmm(d_inputs.transpose(1, 2), x),
        layer.bias_ih: d_inputs.sum(1),
        layer.weight_hh: torch.bmm(d_hidden.transpose(1, 2), torch.stack(previous, dim=1)),
        layer.bias_hh: d_hidden.sum(1),
    }
    return {p: g for p, g in out.items() if p.requires_grad}


def register() -> None:
    """Give Opacus :func:`recurrence_grad_sample` for :class:`GRURecurrence`."""
    from opacus.grad_sample.utils import register_grad_sampler

    register_grad_sampler(GRURecurrence)(recurrence_grad_sample)


class GRUBody(nn.Module):
    """GRU4Rec's trunk for the per-user view: dropout, the :class:`GRURecurrence` layers (dropout between
    stacked layers, as :class:`torch.nn.GRU` applies it), dropout; ``[U, T, d] -> [U, T, hidden]``."""

    def __init__(self, gru: nn.GRU, dropout: float) -> None:
        super().__init__()
        self.layers = nn.ModuleList(GRURecurrence(gru, i) for i in range(gru.num_layers))
        self.dropout, self.between = float(dropout), float(gru.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """States of every position."""
        x = F.dropout(x, self.dropout, self.training)
        for i, layer in enumerate(self.layers):
            if i:
                x = F.dropout(x, self.between, self.training)
            x = layer(x)
        return F.dropout(x, self.dropout, self.training)


class SequenceUsers(nn.Module):
    """``forward(batch)``: ``[U]`` losses of the users' windows ``seqs``/``targets`` ``[U, T]`` (0 = none).

    ``items`` and ``output`` are a network's input and output item tables (``[n_items + 1, d]``, row 0 the
    padding token), read here through a gather layer and an ``nn.Linear`` that share them; ``body`` maps
    the input embeddings ``[U, T, d]`` to the hidden states ``[U, T, d']`` that score the next item: the
    network's own modules where Opacus can clip them (NextItNet's convolution blocks), else a view of
    them (:class:`GRUBody`).
    """

    def __init__(self, items: nn.Parameter, body: nn.Module, output: nn.Parameter) -> None:
        super().__init__()
        self.items = shared_embedding(items)
        self.body = body
        self.output = nn.Linear(output.shape[1], output.shape[0])
        self.output.weight = output
        # a frozen bias of -inf on token 0 (padding, never a candidate) and 0 elsewhere: the softmax runs
        # over the real items, with no separate masking pass over the logits
        padding = torch.zeros(output.shape[0], dtype=output.dtype, device=output.device)
        padding[0] = float("-inf")
        self.output.bias = nn.Parameter(padding, requires_grad=False)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Mean cross-entropy over each user's positions with a target."""
        seqs, targets = batch["seqs"], batch["targets"]
        x = self.items(seqs) * (seqs != 0).unsqueeze(-1).to(self.items.weight.dtype)
        logits = self.output(self.body(x))  # [U, T, n_items + 1]
        return _UserCrossEntropy.apply(logits, targets)


class _UserCrossEntropy(torch.autograd.Function):
    """``[U]`` mean softmax cross-entropy of ``logits[U, T, C]`` over each user's positions with a target
    (``targets[U, T]``, 0 = none), its gradient formed in the forward pass in one buffer.

    ``F.cross_entropy`` keeps the log-probabilities and, in every backward pass, fills a zero matrix for
    the one-hots and makes more passes over it; ghost clipping runs the backward twice. Here the forward
    pass turns one ``[U, T, C]`` buffer into the gradient (softmax minus one-hot, scaled by a user's
    ``1 / positions``) and each backward pass scales it once.
    """

    @staticmethod
    def forward(ctx: Any, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The users' mean losses."""
        valid = targets != 0
        weight = valid.to(logits.dtype) / valid.sum(1, keepdim=True).clamp_min(1).to(logits.dtype)  # [U, T]
        top = logits.amax(-1, keepdim=True)
        grad = (logits - top).exp_()
        norm = grad.sum(-1, keepdim=True)
        picked = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1)  # -inf where there is no target
        losses = torch.where(valid, top.squeeze(-1) + norm.squeeze(-1).log() - picked, 0.0)
        grad.mul_(weight.unsqueeze(-1) / norm)  # softmax, scaled
        grad.scatter_add_(-1, targets.unsqueeze(-1), -weight.unsqueeze(-1))  # minus the one-hot
        ctx.save_for_backward(grad)
        return (losses * weight).sum(1)

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor, None]:
        """The logits' gradient, scaled by each user's output gradient."""
        (grad,) = ctx.saved_tensors
        return grad * grad_out.view(-1, *([1] * (grad.dim() - 1))), None
