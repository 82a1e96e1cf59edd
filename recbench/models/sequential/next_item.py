"""Training and scoring shared by the left-to-right next-item models (GRU4Rec, NextItNet, SASRec)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import ClassVar

import numpy as np
import torch
from torch import nn

from recbench.data.interactions import Interactions
from recbench.errors import ConfigError
from recbench.models.adhoc import score_own_history
from recbench.models.base import Capabilities, TorchRecommender
from recbench.models.sequential.data import (
    full_sequences,
    history_sequences,
    length_sorted_chunks,
    memo,
    next_item_batches,
    row_negatives,
    rows_with,
    tie_times,
    user_window_batch,
)
from recbench.models.sequential.layers import item_logits, similar_tokens
from recbench.models.sequential.objectives import next_item_loss, objective


class NextItemRecommender(TorchRecommender):
    """A model whose network reads left-padded item sequences and predicts the next item at every position.

    The network maps ``[B, L]`` tokens (``0`` = padding) to ``[B, L, d]`` hidden states and exposes
    ``token_weight``, the item embeddings that score a hidden state. Training uses every non-padding
    position of each user's sequence at once (:func:`next_item_batches`, :func:`next_item_loss`);
    a user is scored from the hidden state after the last item of their ``history``. Subclasses set
    the hyperparameters ``max_len``, ``loss_type``, ``n_negatives``, ``sampler``, ``crop`` and
    ``shuffle_ties`` (the objectives are those of :mod:`~recbench.models.sequential.objectives`; the
    one in use after ``fit`` is ``loss_type_``), and
    ``padding_invariant`` when left padding cannot change the output (masked attention with
    right-aligned positions): training then groups users of similar history length and drops
    all-padding columns, and scoring skips most of the padding.
    """

    capabilities = Capabilities(history=True, explain=True, similar=True, needs_sequences=True)
    padding_invariant: ClassVar[bool] = False
    max_len: int
    loss_type: str
    n_negatives: int
    sampler: str
    crop: bool
    shuffle_ties: bool

    def objective_for(self, train: Interactions) -> str:
        """Resolve and check ``loss_type`` for ``train``'s catalogue; kept as ``loss_type_``.

        Called by each subclass's ``build_network`` (``auto`` picks ``ce`` or ``sampled`` by item count).
        """
        self.loss_type_ = objective(
            type(self).__name__, self.loss_type, self.n_negatives, train.n_items, self.sampler
        )
        return self.loss_type_

    def batch_count(self, train: Interactions, batch_size: int) -> int:
        """Batches in one epoch of :meth:`batches` (one row per user with at least two items)."""
        seqs = full_sequences(train, self.max_len + 1)
        rows = memo(train, ("rows", seqs.shape[1], 2), lambda: rows_with(seqs, 2))
        return -(-len(rows) // int(batch_size))

    def batches(
        self, train: Interactions, batch_size: int, rng: np.random.Generator
    ) -> Iterator[dict[str, torch.Tensor]]:
        """One row per user: ``max_len`` inputs and their next items (see :func:`next_item_batches`)."""
        return next_item_batches(
            train,
            self.max_len,
            batch_size,
            rng,
            crop=self.crop,
            negatives=self.loss_type_ == "bce",
            trim=self.padding_invariant,
            ties=self.shuffle_ties,
            negatives_of_rows=row_negatives(train, self.n_negatives, self.sampler)
            if self.loss_type_ == "sampled"
            else None,
        )

    def private_body(self, net: nn.Module) -> nn.Module | None:
        """The trunk of ``net`` (input embeddings ``[U, T, d]`` to hidden states) through modules Opacus
        can clip per user, sharing its parameters; ``None`` (the default) when the model cannot be trained
        privately. Models that return one declare ``Capabilities(private=True)``."""
        return None

    def sequence_network(self) -> nn.Module:
        """The per-user view of the network for user-level DP-SGD
        (:class:`~recbench.models.sequential.private.SequenceUsers`; full softmax only)."""
        from recbench.models.sequential.private import SequenceUsers, register

        register()
        name = type(self).__name__
        body = self.private_body(self.network_)
        if body is None:
            raise ConfigError(f"{name} cannot be trained privately; set privacy=none.")
        if self.loss_type_ != "ce":
            raise ConfigError(
                f"{name} trains privately with the full softmax only, but its objective is "
                f"{self.loss_type_!r} (model.loss_type={self.loss_type}; the sampled objectives read item "
                "counts or other users' items). Set model.loss_type=ce."
            )
        return SequenceUsers(self.network_.items.weight, body, self.network_.token_weight)

    def sequence_batch(
        self, train: Interactions, users: np.ndarray, rng: np.random.Generator
    ) -> dict[str, torch.Tensor]:
        """The training windows of those ``users`` that have a target (two items or more), built as in
        non-private training from each user's own items only."""
        seqs = full_sequences(train, self.max_len + 1)
        rows = memo(train, ("rows", seqs.shape[1], 2), lambda: rows_with(seqs, 2))
        trainable = memo(train, ("row_mask", seqs.shape[1], 2), lambda: np.isin(np.arange(len(seqs)), rows))
        users = users[trainable[users]]  # built once per training set, not per step
        times = tie_times(train, self.max_len + 1) if self.shuffle_ties else None
        trim = self.padding_invariant
        return user_window_batch(seqs, times, users, self.max_len, rng, crop=self.crop, trim=trim)

    def loss(self, net: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Next-item loss at every non-padding position."""
        return next_item_loss(
            type(self).__name__, net(batch["seqs"]), batch, net.token_weight, self.n_items_, self.loss_type_
        )

    def last_hidden(self, net: nn.Module, seqs: torch.Tensor) -> torch.Tensor:
        """``[B, d]`` hidden states after each row's last token (a subclass may compute only those)."""
        return net(seqs)[:, -1]

    def score_users(self, net: nn.Module, users: torch.Tensor, history: Interactions) -> torch.Tensor:
        """Scores of every item from the hidden state after each user's last ``history`` item."""
        seqs = history_sequences(history, self.max_len)[users.cpu().numpy()]
        if not self.padding_invariant:
            hidden = self.last_hidden(net, torch.as_tensor(seqs, device=users.device))
            return item_logits(hidden, net.token_weight, self.n_items_)
        out = torch.empty(len(seqs), self.n_items_, device=users.device)
        for rows, chunk in length_sorted_chunks(seqs):  # left padding changes nothing: skip most of it
            hidden = self.last_hidden(net, torch.as_tensor(chunk, device=users.device))
            out[torch.as_tensor(rows, device=users.device)] = item_logits(
                hidden, net.token_weight, self.n_items_
            )
        return out

    #: A session is the input sequence (see :mod:`recbench.models.adhoc`).
    score_history = score_own_history

    def similar_items(self, items: np.ndarray) -> np.ndarray:
        """``float32[len(items), n_items]``: cosine similarity of the item embeddings that score a
        hidden state (``token_weight``)."""
        return similar_tokens(self.network_.token_weight, self.n_items_, items)
