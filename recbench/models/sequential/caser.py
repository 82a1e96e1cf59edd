"""Caser: convolutional sequence embedding recommendation (Tang & Wang, WSDM 2018)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from recbench.data.interactions import Interactions
from recbench.models.base import Capabilities, TorchRecommender
from recbench.models.sequential.data import (
    full_sequences,
    history_sequences,
    memo,
    negative_tokens,
    row_negatives,
    shuffle_ties,
    shuffled_batches,
    tie_times,
)
from recbench.models.sequential.layers import Dropout, check_positive, similar_tokens
from recbench.models.sequential.objectives import (
    batch_log_q,
    check_logits_memory,
    objective,
    sampled_cross_entropy,
)
from recbench.training.losses import bce_loss
from recbench.training.trainer import Trainer


class CaserNet(nn.Module):
    """Horizontal and vertical convolutions over the last ``window`` items, plus a user embedding."""

    def __init__(
        self, n_users: int, n_items: int, window: int, dim: int, n_h: int, n_v: int, dropout: float
    ) -> None:
        super().__init__()
        self.n_items = n_items
        self.items = nn.Embedding(n_items + 1, dim, padding_idx=0)
        self.users = nn.Embedding(n_users, dim)
        # Convolutions whose filters span the full width (horizontal) or height (vertical) of the
        # window-by-dim image are linear maps of unfolded slices; nn.Linear is much faster than Conv2d here.
        self.vertical = nn.Linear(window, n_v)
        self.horizontal = nn.ModuleList(nn.Linear(h * dim, n_h) for h in range(1, window + 1))
        self.fc = nn.Linear(n_v * dim + n_h * window, dim)
        self.drop = Dropout(dropout)
        self.output = nn.Embedding(n_items + 1, 2 * dim, padding_idx=0)
        self.bias = nn.Embedding(n_items + 1, 1, padding_idx=0)
        for emb in (self.items, self.users, self.output):
            nn.init.normal_(emb.weight, std=1.0 / dim)
        with torch.no_grad():
            self.items.weight[0].zero_()
            self.output.weight[0].zero_()
            self.bias.weight.zero_()

    def forward(self, users: torch.Tensor, seqs: torch.Tensor) -> torch.Tensor:
        """``users[B]`` and their last ``window`` tokens ``seqs[B, window]`` -> ``[B, 2 * dim]``."""
        e = self.items(seqs)  # [B, L, d]
        vertical = self.vertical(e.transpose(1, 2)).flatten(1)  # [B, d * n_v]
        pooled = [  # filter of height h slid over the L - h + 1 positions, then max-pooled: [B, n_h]
            F.relu(conv(e.unfold(1, h, 1).flatten(2))).amax(dim=1)
            for h, conv in enumerate(self.horizontal, start=1)
        ]
        z = F.relu(self.fc(self.drop(torch.cat([vertical, *pooled], dim=1))))
        return torch.cat([z, self.users(users)], dim=1)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Scores of the ``n_items`` real items (tokens ``1..n_items``) for representations ``x``."""
        return x @ self.output.weight[1 : self.n_items + 1].T + self.bias.weight[1 : self.n_items + 1].T

    def token_scores(self, x: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """``x[B, 2d]`` scored against ``tokens[B, K]`` -> ``[B, K]``."""
        return (x.unsqueeze(1) * self.output(tokens)).sum(-1) + self.bias(tokens).squeeze(-1)


class Caser(TorchRecommender):
    """Convolutional sequence embedding model.

    The embeddings of a user's last ``window`` items form an image. Horizontal filters of heights
    ``1..window`` (max-pooled over time) capture union-level and point-level sequential patterns;
    vertical filters take weighted sums over the window. Their output, concatenated with a user
    embedding, scores the items. Each training example is a (user, ``window`` items, next
    ``targets`` items) slice of a training sequence.

    Parameters
    ----------
    window: number of previous items read (``L`` in the paper).
    targets: number of following items predicted per example (``T`` in the paper).
    embedding_dim: item and user embedding size.
    n_h, n_v: number of horizontal filters per height and of vertical filters.
    dropout: dropout before the fully connected layer.
    loss_type: ``ce`` (softmax cross-entropy over all items, per target), ``sampled`` (softmax
        against ``n_negatives`` items drawn per example), ``bce`` (binary cross-entropy with one
        sampled negative per target, as in the paper) or ``auto`` (``ce`` up to
        :data:`~recbench.models.sequential.objectives.SAMPLED_ABOVE_ITEMS` items, else ``sampled``).
    n_negatives: items drawn per example for ``loss_type=sampled``, shared by its targets.
    sampler: how the sampled negatives are drawn: ``popularity`` (with the log-q correction) or
        ``uniform`` (see :class:`~recbench.models.sequential.data.RowNegatives`).
    shuffle_ties: reorder each user's items that share a timestamp at random each epoch before the
        examples are cut (off by default: on ml-100k it did not help Caser; see the README).
    trainer: the shared :class:`~recbench.training.Trainer` (``None`` = defaults).
    seed: initialisation, dropout and sampling seed.

    References
    ----------
    J. Tang and K. Wang. Personalized Top-N Sequential Recommendation via Convolutional Sequence
    Embedding. WSDM 2018.
    """

    capabilities = Capabilities(explain=True, similar=True, needs_sequences=True)
    training_defaults: ClassVar[dict[str, Any]] = {
        "epochs": 30,
        "batch_size": 512,
        "lr": 1e-3,
        "weight_decay": 0.0,
    }

    def __init__(
        self,
        *,
        window: int = 5,
        targets: int = 3,
        embedding_dim: int = 50,
        n_h: int = 16,
        n_v: int = 4,
        dropout: float = 0.5,
        loss_type: str = "auto",
        n_negatives: int = 256,
        sampler: str = "popularity",
        shuffle_ties: bool = False,
        trainer: Trainer | None = None,
        seed: int = 0,
    ) -> None:
        self.window = window
        self.targets = targets
        self.embedding_dim = embedding_dim
        self.n_h = n_h
        self.n_v = n_v
        self.dropout = dropout
        self.loss_type = loss_type
        self.n_negatives = n_negatives
        self.sampler = sampler
        self.shuffle_ties = shuffle_ties
        self.trainer = trainer
        self.seed = seed

    def build_network(self, train: Interactions) -> CaserNet:
        """A fresh :class:`CaserNet` for the users and items of ``train``."""
        self.loss_type_ = objective("Caser", self.loss_type, self.n_negatives, train.n_items, self.sampler)
        check_positive(
            "Caser",
            window=self.window,
            targets=self.targets,
            embedding_dim=self.embedding_dim,
            n_h=self.n_h,
            n_v=self.n_v,
        )
        return CaserNet(
            train.n_users, train.n_items, self.window, self.embedding_dim, self.n_h, self.n_v, self.dropout
        )

    def _examples(self, seqs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(users, inputs[N, window], targets[N, targets])``: every slice with a preceding item.

        ``seqs`` are the users' full left-padded sequences with ``window`` extra padding columns.
        """
        rows, cols = np.nonzero(seqs[:, self.window :] != 0)
        cols = cols + self.window  # column of the first target
        keep = seqs[rows, cols - 1] != 0  # at least one real item before the target
        rows, cols = rows[keep], cols[keep]
        inputs = seqs[rows[:, None], cols[:, None] - self.window + np.arange(self.window)]
        tcols = cols[:, None] + np.arange(self.targets)
        inside = tcols < seqs.shape[1]
        targets = np.where(inside, seqs[rows[:, None], np.minimum(tcols, seqs.shape[1] - 1)], 0)
        return rows, inputs, targets

    def batches(
        self, train: Interactions, batch_size: int, rng: np.random.Generator
    ) -> Iterator[dict[str, torch.Tensor]]:
        """Shuffled (user, previous ``window`` items, next ``targets`` items) examples; ``0`` = no target."""
        width = self.window + self.targets
        seqs = full_sequences(train, width, extra=self.window)
        times = tie_times(train, width, extra=self.window) if self.shuffle_ties else None
        if times is not None:  # new orders, hence new examples, every epoch
            users, inputs, targets = self._examples(shuffle_ties(seqs, times, rng))
        else:
            users, inputs, targets = memo(
                train, ("caser", self.window, self.targets), lambda: self._examples(seqs)
            )
        for idx in shuffled_batches(len(users), batch_size, rng):
            batch = {
                "users": torch.from_numpy(users[idx]),
                "seqs": torch.from_numpy(inputs[idx]),
                "targets": torch.from_numpy(targets[idx]),
            }
            if self.loss_type_ == "bce":
                batch["negatives"] = torch.from_numpy(negative_tokens(train, users[idx], self.targets, rng))
            elif self.loss_type_ == "sampled":
                row_negatives(train, self.n_negatives, self.sampler).add_to(batch, targets[idx], rng)
            yield batch

    def loss(self, net: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Cross-entropy per target item (full or sampled softmax), or BCE of each target against its
        sampled negative."""
        x = net(batch["users"], batch["seqs"])
        targets = batch["targets"]
        valid = targets != 0
        rows = torch.nonzero(valid, as_tuple=True)[0]
        if self.loss_type_ == "ce":
            # logits, their gathered rows and the log-softmax: three [rows, n_items] buffers
            check_logits_memory("Caser", len(x) + 2 * len(rows), self.n_items_, x.device, copies=1)
            logits = net.logits(x)  # [B, n_items], shared by the example's targets
            return F.cross_entropy(logits[rows], targets[valid] - 1)
        if self.loss_type_ == "sampled":
            negatives = batch["row_negatives"]  # [B, K]: each example's own draws
            pos = net.token_scores(x, targets)[valid]
            neg = net.token_scores(x, negatives)[rows]
            pos_q, neg_q = batch_log_q(batch)
            if pos_q is not None and neg_q is not None:
                pos_q, neg_q = pos_q[valid], neg_q[rows]
            return sampled_cross_entropy(pos, neg, targets[valid], negatives[rows], pos_q, neg_q)
        pos = net.token_scores(x, targets)[valid]
        neg = net.token_scores(x, batch["negatives"])[valid]
        return bce_loss(pos, neg)

    def score_users(self, net: nn.Module, users: torch.Tensor, history: Interactions) -> torch.Tensor:
        """Scores of every item from each user's embedding and last ``window`` ``history`` items."""
        seqs = history_sequences(history, self.window)[users.cpu().numpy()]
        return net.logits(net(users, torch.as_tensor(seqs, device=users.device)))

    def similar_items(self, items: np.ndarray) -> np.ndarray:
        """``float32[len(items), n_items]``: cosine similarity of the output item embeddings (the
        vectors that score a user's representation)."""
        return similar_tokens(self.network_.output.weight, self.n_items_, items)
