"""Deep matrix factorisation (Xue et al., IJCAI 2017).

A user is represented by its row of the interaction matrix, an item by its column; two MLP towers
map them into a common space and the prediction is their cosine similarity. The first layer of each
tower is linear on a very sparse input, so it is computed as an embedding-bag sum (the weight rows
of the row's items, weighted by the ratings), and so is its gradient: a batch carries only the
non-zeros of the rows and columns it needs, never a dense ``n_users x n_items`` matrix. Rows and
columns are computed once per batch for the distinct users and items in it, then gathered for the
(user, item) pairs.

The loss is the paper's normalised cross-entropy: targets are ``rating / max_rating`` for observed
pairs and 0 for sampled negatives; the cosine is clamped to ``[1e-6, 1]`` before the log.

References
----------
Xue, H.-J., Dai, X., Zhang, J., Huang, S. and Chen, J. (2017). Deep Matrix Factorization Models
for Recommender Systems. Proceedings of IJCAI 2017, 3203-3209.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import nn

from recbench.data.interactions import Interactions
from recbench.errors import ConfigError
from recbench.models.base import TorchRecommender
from recbench.models.pointwise import MAX_SCORE_PAIRS, check_choice, score_in_chunks
from recbench.models.towers import MLPTower
from recbench.training.samplers import PositiveSet, popularity_negatives, uniform_negatives
from recbench.training.sparse_rows import rows_gradient
from recbench.training.trainer import Trainer


def gather_rows(mat: sp.csr_matrix, rows: np.ndarray, transpose: bool = True) -> dict[str, torch.Tensor]:
    """The non-zeros of ``mat[rows]`` as 1-D tensors (with ``transpose``, in both orientations).

    ``index``/``weight``/``offset`` list each row's columns and values (``nn.EmbeddingBag`` input);
    ``t_index``/``t_weight``/``t_offset`` hold the transpose restricted to the columns present
    (``t_cols``, sorted): for each, the positions in ``rows`` that contain it. The backward pass of
    :class:`SparseTower` uses them to compute the first layer's gradient on those columns only.
    """
    sub = mat[rows]
    parts = {
        "index": torch.from_numpy(sub.indices.astype(np.int64)),
        "weight": torch.from_numpy(sub.data.astype(np.float32)),
        "offset": torch.from_numpy(sub.indptr[:-1].astype(np.int64)),
    }
    if not transpose:
        return parts
    sub_t = sub.T.tocsr()
    present = np.flatnonzero(np.diff(sub_t.indptr))
    return {
        **parts,
        "t_cols": torch.from_numpy(present.astype(np.int64)),
        "t_index": torch.from_numpy(sub_t.indices.astype(np.int64)),
        "t_weight": torch.from_numpy(sub_t.data.astype(np.float32)),
        "t_offset": torch.from_numpy(sub_t.indptr[present].astype(np.int64)),
    }


class _SparseRowsMatmul(torch.autograd.Function):
    """``X @ W`` for a sparse ``X`` given in both orientations; both passes are embedding-bag sums.

    The gradient ``X^T @ G`` covers the columns of ``X`` present in the batch (``t_cols``): a sparse
    tensor over those rows of ``W`` with ``sparse``, else written into a dense zero table.
    """

    @staticmethod
    def forward(ctx: Any, weight: torch.Tensor, sparse: bool, *parts: torch.Tensor) -> torch.Tensor:
        index, value, offset, t_cols, t_index, t_value, t_offset = parts
        ctx.save_for_backward(t_cols, t_index, t_value, t_offset)
        ctx.sparse, ctx.shape = sparse, weight.shape
        return F.embedding_bag(index, weight, offset, mode="sum", per_sample_weights=value)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        t_cols, t_index, t_value, t_offset = ctx.saved_tensors
        values = F.embedding_bag(t_index, grad, t_offset, mode="sum", per_sample_weights=t_value)
        if ctx.sparse:
            grad_w = rows_gradient(values, t_cols, ctx.shape)
        else:
            grad_w = values.new_zeros(ctx.shape).index_copy_(0, t_cols, values)
        return (grad_w, None, *([None] * 7))


class SparseTower(nn.Module):
    """A linear first layer on sparse rows (:func:`gather_rows` output) followed by an :class:`MLPTower`.

    The first layer is ``X @ W`` computed as an embedding-bag sum; its gradient ``X^T @ G`` is
    another embedding-bag sum over the transposed non-zeros, which is about twice as fast on CPU as
    ``nn.EmbeddingBag``'s own backward (no sort of the indices), and touches only the rows of ``W``
    whose inputs occur in the batch. ``sparse``: that gradient is a sparse tensor
    (:mod:`recbench.training.sparse_rows`), so the optimiser steps only those rows.
    """

    def __init__(
        self, n_inputs: int, widths: Sequence[int], dropout: float = 0.0, sparse: bool = False
    ) -> None:
        super().__init__()
        self.first = nn.Parameter(torch.empty(n_inputs, int(widths[0])))
        nn.init.normal_(self.first, std=0.01)
        self.tower = MLPTower(int(widths[0]), widths[1:], dropout) if len(widths) > 1 else None
        self.sparse = sparse

    def forward(self, rows: dict[str, torch.Tensor]) -> torch.Tensor:
        """Representations ``[n_rows, widths[-1]]`` of the rows (without the transpose: no gradient)."""
        if "t_index" in rows:
            keys = ("index", "weight", "offset", "t_cols", "t_index", "t_weight", "t_offset")
            h = _SparseRowsMatmul.apply(self.first, self.sparse, *(rows[k] for k in keys))
        else:
            h = F.embedding_bag(
                rows["index"], self.first, rows["offset"], mode="sum", per_sample_weights=rows["weight"]
            )
        return h if self.tower is None else self.tower(h)


class DMFNet(nn.Module):
    """User tower over matrix rows, item tower over matrix columns."""

    def __init__(
        self, n_users: int, n_items: int, layers: Sequence[int], dropout: float, sparse: bool = False
    ) -> None:
        super().__init__()
        self.users = SparseTower(n_items, layers, dropout, sparse)
        self.items = SparseTower(n_users, layers, dropout, sparse)
        #: the first layers' gradients are sparse: the Trainer then uses a sparse-aware optimiser
        self.sparse_gradients = sparse

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Cosine similarity of each (user, item) pair of a training batch."""
        u = F.normalize(self.users(_unprefixed("u", batch)), dim=-1)[batch["pair_u"]]
        v = F.normalize(self.items(_unprefixed("i", batch)), dim=-1)[batch["pair_i"]]
        return (u * v).sum(-1)


def _prefixed(prefix: str, parts: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {f"{prefix}_{k}": v for k, v in parts.items()}


def _unprefixed(prefix: str, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k[len(prefix) + 1 :]: v for k, v in batch.items() if k.startswith(f"{prefix}_")}


class DMF(TorchRecommender):
    """Deep matrix factorisation: cosine of user-row and item-column MLP towers (Xue et al., 2017).

    Parameters
    ----------
    layers: widths of both towers; the first layer is the sparse linear one, the others ReLU.
    dropout: dropout after every ReLU layer.
    num_negatives: sampled unobserved items (target 0) per observed pair.
    negative_sampling: ``uniform`` or ``popularity`` (``(count + 1) ** 0.75``).
    use_ratings: feed ratings as input values and ``rating / max_rating`` as targets (the paper);
        ``False`` treats every interaction as 1. Data without ratings always uses 1.
    sparse_updates: sparse gradients of the first layers over the rows and columns a batch reads, and
        the lazy row-wise Adam (:mod:`recbench.training.sparse_rows`); ``False``: dense ones. A batch
        still reads the whole matrix rows and columns of its users and items (the model's input), so
        its cost grows with their lengths.
    trainer: the shared :class:`~recbench.training.Trainer` (``None`` = defaults).
    seed: initialisation and sampling seed.
    """

    training_defaults: ClassVar[dict[str, Any]] = {"epochs": 12, "batch_size": 1024, "lr": 1e-3}
    max_score_pairs: ClassVar[int] = MAX_SCORE_PAIRS

    def __init__(
        self,
        *,
        layers: Sequence[int] = (128, 128),
        dropout: float = 0.0,
        num_negatives: int = 8,
        negative_sampling: str = "uniform",
        use_ratings: bool = True,
        sparse_updates: bool = True,
        trainer: Trainer | None = None,
        seed: int = 0,
    ) -> None:
        self.layers = layers
        self.dropout = dropout
        self.num_negatives = num_negatives
        self.negative_sampling = negative_sampling
        self.use_ratings = use_ratings
        self.sparse_updates = sparse_updates
        self.trainer = trainer
        self.seed = seed

    def _matrix(self, data: Interactions) -> sp.csr_matrix:
        """Users x items input matrix: ``rating / max_rating`` (or 1.0) per interaction."""
        if self.use_ratings and data.ratings is not None:
            mat = data.csr.copy()
            mat.data = mat.data / np.float32(self.max_rating_)
            return mat
        return data.binary_csr

    def build_network(self, train: Interactions) -> nn.Module:
        """Both towers; records ``max_rating_`` (1.0 for implicit data)."""
        check_choice("negative_sampling", self.negative_sampling, ("uniform", "popularity"))
        if not self.layers or min(map(int, self.layers)) < 1 or int(self.num_negatives) < 1:
            raise ConfigError(
                f"model.layers={self.layers!r} must be a non-empty list of positive widths and "
                f"model.num_negatives={self.num_negatives!r} >= 1."
            )
        if not 0.0 <= float(self.dropout) < 1.0:
            raise ConfigError(f"model.dropout={self.dropout!r} must lie in [0, 1).")
        has_ratings = train.ratings is not None and len(train) > 0
        self.max_rating_ = float(train.ratings.max()) if has_ratings else 1.0  # type: ignore[union-attr]
        layers = [int(w) for w in self.layers]
        return DMFNet(train.n_users, train.n_items, layers, float(self.dropout), bool(self.sparse_updates))

    def batches(
        self, train: Interactions, batch_size: int, rng: np.random.Generator
    ) -> Iterator[dict[str, torch.Tensor]]:
        """Shuffled positives (``batch_size`` per batch) with their negatives, rows and columns."""
        rows = self._matrix(train)
        cols = rows.T.tocsr()
        k = int(self.num_negatives)
        users = np.repeat(np.arange(rows.shape[0], dtype=np.int64), np.diff(rows.indptr))
        items, targets = rows.indices.astype(np.int64), rows.data.astype(np.float32)
        order = rng.permutation(len(users))
        users, items, targets = users[order], items[order], targets[order]
        positives = PositiveSet(rows)
        if self.negative_sampling == "popularity":
            neg = popularity_negatives(positives, np.diff(cols.indptr), users, k, rng)
        else:
            neg = uniform_negatives(positives, users, k, rng)
        for start in range(0, len(users), batch_size):
            part = slice(start, start + batch_size)
            b_users = np.repeat(users[part], k + 1)
            b_items = np.concatenate([items[part, None], neg[part]], axis=1).ravel()
            target = np.concatenate([targets[part, None], np.zeros_like(neg[part], np.float32)], axis=1)
            uniq_u, pair_u = np.unique(b_users, return_inverse=True)
            uniq_i, pair_i = np.unique(b_items, return_inverse=True)
            yield {
                **_prefixed("u", gather_rows(rows, uniq_u)),
                **_prefixed("i", gather_rows(cols, uniq_i)),
                "pair_u": torch.from_numpy(pair_u.astype(np.int64)),
                "pair_i": torch.from_numpy(pair_i.astype(np.int64)),
                "target": torch.from_numpy(target.ravel()),
            }

    def loss(self, net: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Normalised cross-entropy of the clamped cosine against ``rating / max_rating`` targets."""
        pred = net(batch).clamp(1e-6, 1.0)
        return F.binary_cross_entropy(pred, batch["target"])

    def score_users(self, net: nn.Module, users: torch.Tensor, history: Interactions) -> torch.Tensor:
        """Cosine of every user's row (from ``history``) with every item's column."""
        rows = self._matrix(history)
        device = users.device
        items = net.items(_to(gather_rows(rows.T.tocsr(), np.arange(history.n_items), False), device))
        items = F.normalize(items, dim=-1)

        def chunk(part: torch.Tensor) -> torch.Tensor:
            u = net.users(_to(gather_rows(rows, part.cpu().numpy(), False), device))
            return F.normalize(u, dim=-1) @ items.T

        return score_in_chunks(chunk, users, history.n_items, self.max_score_pairs)


def _to(parts: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device) for k, v in parts.items()}
