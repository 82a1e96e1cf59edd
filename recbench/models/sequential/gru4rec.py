"""GRU4Rec: session-based recommendation with recurrent neural networks (Hidasi et al., ICLR 2016)."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from recbench.data.interactions import Interactions
from recbench.models.base import Capabilities
from recbench.models.sequential.layers import (
    Dropout,
    check_positive,
    init_item_tables,
)
from recbench.models.sequential.next_item import NextItemRecommender
from recbench.training.trainer import Trainer


class GRU4RecNet(nn.Module):
    """Item embeddings -> stacked GRU -> dot product with separate output item embeddings."""

    def __init__(
        self, n_items: int, embedding_dim: int, hidden_dim: int, n_layers: int, dropout: float
    ) -> None:
        super().__init__()
        self.items = nn.Embedding(n_items + 1, embedding_dim, padding_idx=0)
        self.gru = nn.GRU(
            embedding_dim, hidden_dim, n_layers, batch_first=True, dropout=dropout if n_layers > 1 else 0.0
        )
        self.drop = Dropout(dropout)
        self.output = nn.Embedding(n_items + 1, hidden_dim, padding_idx=0)
        init_item_tables(self.items, self.output)

    @property
    def token_weight(self) -> torch.Tensor:
        """``[n_items + 1, hidden_dim]`` output item embeddings (row 0 = padding, never scored)."""
        return self.output.weight

    def forward(self, seqs: torch.Tensor) -> torch.Tensor:
        """``seqs[B, T]`` -> GRU states ``[B, T, hidden_dim]`` (recurrent, hence causal)."""
        states, _ = self.gru(self.drop(self.items(seqs)))
        return self.drop(states)


class GRU4Rec(NextItemRecommender):
    """Recurrent next-item recommendation.

    A GRU reads the user's item sequence; its state after each item scores the next item. This is
    the user-sequence variant used in recent sequential benchmarks: each user's history is one
    sequence, every position is trained at once, and the default objective is the full softmax
    cross-entropy that Hidasi and Czapp found strongest in their later re-examination of GRU4Rec.

    Parameters
    ----------
    max_len: most recent items the model reads (and trains on, per user and epoch).
    embedding_dim: size of the input item embeddings.
    hidden_dim: GRU state size (also the size of the output item embeddings).
    n_layers: stacked GRU layers.
    dropout: dropout on the input embeddings and on the GRU outputs.
    loss_type: ``ce`` (full softmax cross-entropy), ``sampled`` (softmax against ``n_negatives``
        sampled items), ``bce`` (one sampled negative per position) or ``auto`` (``ce`` up to
        :data:`~recbench.models.sequential.objectives.SAMPLED_ABOVE_ITEMS` items, else ``sampled``).
    n_negatives: items drawn per row (one user's sequence) for ``loss_type=sampled``, shared by its positions.
    sampler: how the sampled negatives are drawn: ``popularity`` (with the log-q correction) or
        ``uniform`` (see :class:`~recbench.models.sequential.data.RowNegatives`).
    crop: train on a random window of ``max_len + 1`` items per long history each epoch.
    shuffle_ties: reorder each user's items that share a timestamp at random each epoch (see
        :class:`~recbench.models.sequential.sasrec.SASRec`; the README's sequential results say what
        it gains).
    trainer: the shared :class:`~recbench.training.Trainer` (``None`` = defaults).
    seed: initialisation, dropout and sampling seed.

    References
    ----------
    B. Hidasi, A. Karatzoglou, L. Baltrunas and D. Tikk. Session-based Recommendations with Recurrent
    Neural Networks. ICLR 2016.
    """

    #: user-level DP-SGD (``privacy=dp trainer.privacy.unit=user``, full softmax): :meth:`sequence_network`
    capabilities = Capabilities(history=True, explain=True, similar=True, needs_sequences=True, private=True)

    training_defaults: ClassVar[dict[str, Any]] = {
        "epochs": 100,
        "batch_size": 64,
        "lr": 3e-3,
        "weight_decay": 0.0,
    }

    def __init__(
        self,
        *,
        max_len: int = 50,
        embedding_dim: int = 64,
        hidden_dim: int = 64,
        n_layers: int = 1,
        dropout: float = 0.2,
        loss_type: str = "auto",
        n_negatives: int = 256,
        sampler: str = "popularity",
        crop: bool = False,
        shuffle_ties: bool = True,
        trainer: Trainer | None = None,
        seed: int = 0,
    ) -> None:
        self.max_len = max_len
        self.embedding_dim = embedding_dim
        self.hidden_dim = hidden_dim
        self.n_layers = n_layers
        self.dropout = dropout
        self.loss_type = loss_type
        self.n_negatives = n_negatives
        self.sampler = sampler
        self.crop = crop
        self.shuffle_ties = shuffle_ties
        self.trainer = trainer
        self.seed = seed

    def build_network(self, train: Interactions) -> GRU4RecNet:
        """A fresh :class:`GRU4RecNet` for ``train.n_items``."""
        self.objective_for(train)
        check_positive(
            "GRU4Rec",
            max_len=self.max_len,
            embedding_dim=self.embedding_dim,
            hidden_dim=self.hidden_dim,
            n_layers=self.n_layers,
        )
        return GRU4RecNet(train.n_items, self.embedding_dim, self.hidden_dim, self.n_layers, self.dropout)

    def private_body(self, net: nn.Module) -> nn.Module:
        """The GRU layers as step-by-step modules (:class:`~recbench.models.sequential.private.GRUBody`)."""
        from recbench.models.sequential.private import GRUBody

        return GRUBody(net.gru, self.dropout)
