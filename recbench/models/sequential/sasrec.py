"""SASRec: next-item recommendation with causal self-attention (Kang & McAuley, ICDM 2018)."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from recbench.data.interactions import Interactions
from recbench.models.sequential.layers import (
    TransformerEncoder,
    check_positive,
)
from recbench.models.sequential.next_item import NextItemRecommender
from recbench.training.trainer import Trainer


class SASRecNet(nn.Module):
    """Causal transformer over item tokens; item embeddings are shared with the output layer."""

    def __init__(
        self, n_items: int, max_len: int, dim: int, n_layers: int, n_heads: int, dropout: float
    ) -> None:
        super().__init__()
        self.n_items = n_items
        self.encoder = TransformerEncoder(
            n_items + 1,
            max_len,
            dim,
            n_layers,
            n_heads,
            dropout,
            dim,
            causal=True,
            activation="relu",
            scale_tokens=True,
        )

    @property
    def token_weight(self) -> torch.Tensor:
        """``[n_items + 1, dim]`` token embeddings (row 0 = padding), also the output weights."""
        return self.encoder.tokens.weight

    def forward(self, seqs: torch.Tensor, *, last_only: bool = False) -> torch.Tensor:
        """``seqs[B, T]`` -> ``[B, T, dim]``; position ``t`` summarises tokens ``<= t`` only.

        ``last_only=True`` computes only the last position (``[B, 1, dim]``), for scoring.
        """
        return self.encoder(seqs, last_only=last_only)


class SASRec(NextItemRecommender):
    """Self-attentive sequential recommendation.

    A stack of causal transformer layers with learned position embeddings reads the user's most
    recent ``max_len`` items; the hidden state at each position scores the next item by a dot
    product with the (shared) item embeddings. As in the paper, item embeddings are scaled by
    ``sqrt(hidden_dim)`` before the position embeddings are added. Training uses every position of
    each user's sequence at once, in batches of users with similar history lengths (so that little
    time goes to padding); the loss is computed only at non-padding positions.

    Parameters
    ----------
    max_len: most recent items the model reads (and trains on, per user and epoch).
    hidden_dim: embedding and hidden size.
    n_layers, n_heads: transformer depth and attention heads.
    dropout: dropout on embeddings, attention weights and residual branches.
    loss_type: ``ce`` = full softmax cross-entropy over all items (the stronger choice in recent
        replications), ``sampled`` = softmax against ``n_negatives`` sampled items (for large
        catalogues), ``bce`` = binary cross-entropy with one sampled negative per position (the
        original paper), or ``auto`` = ``ce`` up to
        :data:`~recbench.models.sequential.objectives.SAMPLED_ABOVE_ITEMS` items, else ``sampled``.
    n_negatives: items drawn per row (one user's sequence) for ``loss_type=sampled``, shared by its positions.
    sampler: how the sampled negatives are drawn: ``popularity`` (with the log-q correction) or
        ``uniform`` (see :class:`~recbench.models.sequential.data.RowNegatives`).
    crop: train on a random window of ``max_len + 1`` items per long history each epoch instead of
        always the most recent one. Off by default: on ml-100k (leave-one-out) the most recent
        window ranks better than random windows (see the README), since the test target follows the
        most recent items.
    shuffle_ties: put each user's items that share a timestamp in a new random order every epoch
        (see :func:`~recbench.models.sequential.data.shuffle_ties`; no effect without timestamps).
        On by default: in ml-100k half of a user's consecutive ratings share their second, so their
        order in the file is arbitrary. Shuffling it keeps the model from learning that order (the
        README's sequential results give the gain).
    trainer: the shared :class:`~recbench.training.Trainer` (``None`` = defaults).
    seed: initialisation, dropout and sampling seed.

    References
    ----------
    W.-C. Kang and J. McAuley. Self-Attentive Sequential Recommendation. ICDM 2018.
    """

    padding_invariant: ClassVar[bool] = True  # masked attention, right-aligned positions
    #: Chosen on ml-100k (leave-one-out, full ranking): with one sequence per user an epoch has few
    #: steps, so small batches of users and lr 2e-3 work best. With shuffled ties validation NDCG
    #: keeps creeping up for tens of epochs while it moves noticeably between epochs, so patience 10
    #: (not the global 3): with patience 5 some seeds stop far too early (see the README).
    training_defaults: ClassVar[dict[str, Any]] = {
        "epochs": 50,
        "batch_size": 16,
        "lr": 2e-3,
        "weight_decay": 0.0,
        "patience": 10,
    }

    def __init__(
        self,
        *,
        max_len: int = 200,
        hidden_dim: int = 64,
        n_layers: int = 2,
        n_heads: int = 1,
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
        self.hidden_dim = hidden_dim
        self.n_layers = n_layers
        self.n_heads = n_heads
        self.dropout = dropout
        self.loss_type = loss_type
        self.n_negatives = n_negatives
        self.sampler = sampler
        self.crop = crop
        self.shuffle_ties = shuffle_ties
        self.trainer = trainer
        self.seed = seed

    def last_hidden(self, net: nn.Module, seqs: torch.Tensor) -> torch.Tensor:
        """The state after each row's last token; the last layer computes that position only."""
        return net(seqs, last_only=True)[:, -1]

    def build_network(self, train: Interactions) -> SASRecNet:
        """A fresh :class:`SASRecNet` for ``train.n_items``."""
        self.objective_for(train)
        check_positive("SASRec", max_len=self.max_len, hidden_dim=self.hidden_dim, n_heads=self.n_heads)
        return SASRecNet(
            train.n_items, self.max_len, self.hidden_dim, self.n_layers, self.n_heads, self.dropout
        )
