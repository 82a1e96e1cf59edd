"""Building blocks for training whose per-batch cost follows the batch, not the table sizes.

An embedding table read through plain indexing gets a dense gradient as large as the table, and a
dense optimiser then steps every row of it, every batch: invisible with a few thousand users and
items, dominant with a few hundred thousand. These functions read the rows a batch uses and, with
``sparse=True``, give the table a sparse COO gradient holding only those (distinct, coalesced)
rows; the Trainer then steps with the lazy row-wise Adam
(:class:`~recbench.training.row_adam.RowAdam`), so one step costs what the batch touched.

A network that trains this way sets ``sparse_gradients = True`` (the Trainer reads that attribute
to choose the optimiser). Its L2 penalty is computed on the gathered rows only
(:func:`row_squares`), never over a whole table; decoupled weight decay, which would touch every row,
is refused by the Trainer for such networks.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


def rows_gradient(values: torch.Tensor | None, rows: torch.Tensor, shape: torch.Size) -> torch.Tensor | None:
    """A sparse COO gradient of a table of ``shape`` holding ``values`` at the distinct, sorted ``rows``."""
    if values is None:
        return None
    return torch.sparse_coo_tensor(
        rows.unsqueeze(0), values, shape, is_coalesced=True, check_invariants=False
    )


class _GatherRows(torch.autograd.Function):
    """``table[index]`` whose gradient is a coalesced sparse tensor over the distinct rows of ``index``."""

    @staticmethod
    def forward(ctx: Any, table: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        flat = index.reshape(-1)
        ctx.save_for_backward(flat)
        ctx.shape = table.shape
        return table.index_select(0, flat).reshape(*index.shape, *table.shape[1:])

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, None]:
        (flat,) = ctx.saved_tensors
        distinct, local = torch.unique(flat, return_inverse=True)
        grad = grad.reshape(len(flat), *ctx.shape[1:])
        values = grad.new_zeros((len(distinct), *ctx.shape[1:])).index_add_(0, local, grad)
        return rows_gradient(values, distinct, ctx.shape), None


def gather_rows(table: torch.Tensor, index: torch.Tensor, sparse: bool) -> torch.Tensor:
    """``table[index]`` (``index`` of any shape; ``table`` of any rank).

    With ``sparse`` the table's gradient is a sparse tensor over the rows ``index`` holds (its cost
    follows ``index``); otherwise it is the usual dense gradient (``index_select``'s backward).
    """
    if sparse and table.requires_grad and torch.is_grad_enabled():
        return _GatherRows.apply(table, index)
    flat = table.index_select(0, index.reshape(-1))
    return flat.reshape(*index.shape, *table.shape[1:])


def lookup(table: nn.Embedding, index: torch.Tensor) -> torch.Tensor:
    """``table(index)`` through :func:`gather_rows`, sparse when the embedding was built with
    ``sparse=True`` (``index_select`` otherwise, whose backward is about twice as fast on CPU as the
    embedding's own)."""
    return gather_rows(table.weight, index, bool(table.sparse))


class _RowSquares(torch.autograd.Function):
    """``sum_j w_j ||T[rows_j]||^2`` computed on the gathered rows only.

    The gradient ``2 w T[r]`` lives on the distinct rows of the batch: a sparse COO tensor with
    ``sparse``, else written into a dense zero table.
    """

    @staticmethod
    def forward(
        ctx: Any, table: torch.Tensor, rows: torch.Tensor, weights: torch.Tensor, sparse: bool
    ) -> torch.Tensor:
        distinct, local = torch.unique(rows.reshape(-1), return_inverse=True)
        w = table.new_zeros(len(distinct)).index_add_(0, local, weights.reshape(-1).to(table.dtype))
        gathered = table.index_select(0, distinct)
        ctx.save_for_backward(distinct, w, gathered)
        ctx.shape, ctx.sparse = table.shape, sparse
        return w @ gathered.reshape(len(distinct), -1).pow(2).sum(1)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        distinct, w, gathered = ctx.saved_tensors
        values = (2.0 * grad) * w.view(-1, *([1] * (gathered.dim() - 1))) * gathered
        if ctx.sparse:
            return rows_gradient(values, distinct, ctx.shape), None, None, None
        return gathered.new_zeros(ctx.shape).index_copy_(0, distinct, values), None, None, None


def row_squares(table: torch.Tensor, rows: torch.Tensor, weights: torch.Tensor, sparse: bool) -> torch.Tensor:
    """``sum_j weights[j] * ||table[rows[j]]||^2``: an L2 penalty on the rows a batch used.

    Each distinct row is read once (its weights summed), so the cost follows the batch; with
    ``sparse`` the gradient is a sparse tensor over those rows.
    """
    return _RowSquares.apply(table, rows, weights, sparse)


def has_sparse_embeddings(module: nn.Module) -> bool:
    """Whether any :class:`torch.nn.Embedding` in ``module`` was built with ``sparse=True``."""
    return any(isinstance(m, nn.Embedding) and m.sparse for m in module.modules())
