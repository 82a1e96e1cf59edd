"""BERT4Rec: bidirectional transformer trained by masked-item prediction (Sun et al., CIKM 2019)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

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
    row_negatives,
    rows_with,
    shuffled_batches,
    trim_padding,
    windows,
)
from recbench.models.sequential.layers import (
    TransformerEncoder,
    check_option,
    check_positive,
    item_logits,
    similar_tokens,
)
from recbench.models.sequential.objectives import (
    batch_log_q,
    full_item_cross_entropy,
    objective,
    sampled_item_cross_entropy,
)
from recbench.training.trainer import Trainer


class BERT4RecNet(nn.Module):
    """Bidirectional transformer over item tokens plus ``[MASK]`` (token ``n_items + 1``); tied output."""

    def __init__(
        self, n_items: int, max_len: int, dim: int, n_layers: int, n_heads: int, dropout: float
    ) -> None:
        super().__init__()
        self.n_items = n_items
        self.mask_token = n_items + 1
        self.encoder = TransformerEncoder(
            n_items + 2, max_len, dim, n_layers, n_heads, dropout, 4 * dim, causal=False, activation="gelu"
        )

    @property
    def token_weight(self) -> torch.Tensor:
        """``[n_items + 2, dim]`` token embeddings; only rows ``1..n_items`` are scored as items."""
        return self.encoder.tokens.weight

    def forward(self, seqs: torch.Tensor, *, last_only: bool = False) -> torch.Tensor:
        """``seqs[B, T]`` -> ``[B, T, dim]``; every position sees the whole (non-padding) sequence.

        ``last_only=True`` computes only the last position (``[B, 1, dim]``), for scoring.
        """
        return self.encoder(seqs, last_only=last_only)


class BERT4Rec(TorchRecommender):
    """Bidirectional sequential recommendation with a cloze (masked-item) objective.

    During training, each item of a user's sequence is replaced by ``[MASK]`` with probability
    ``mask_prob`` (at least one per sequence) and the transformer predicts the hidden items from
    both sides, with a softmax over the catalogue. To recommend, ``[MASK]`` is appended to the
    user's history and the item scores at that position are returned.

    Parameters
    ----------
    max_len: sequence length seen by the model, ``[MASK]`` included at scoring time.
    hidden_dim: embedding and hidden size (the feed-forward layers use ``4 * hidden_dim``).
    n_layers, n_heads: transformer depth and attention heads.
    dropout: dropout on embeddings, attention weights and residual branches.
    mask_prob: probability that a training item is masked.
    dupe_factor: differently masked copies of each user's sequence per epoch (the original
        implementation's ``dupe_factor``); more copies make an epoch longer and less noisy.
    crop: train on a random window of ``max_len`` items per long history each epoch.
    loss_type: ``ce`` (softmax over the catalogue, as in the paper), ``sampled`` (softmax against
        ``n_negatives`` items drawn per row) or ``auto`` (``ce`` up to
        :data:`~recbench.models.sequential.objectives.SAMPLED_ABOVE_ITEMS` items, else ``sampled``).
    n_negatives: items drawn per row for ``loss_type=sampled``, shared by its masked positions.
    sampler: how the sampled negatives are drawn: ``popularity`` (with the log-q correction) or
        ``uniform`` (see :class:`~recbench.models.sequential.data.RowNegatives`).
    trainer: the shared :class:`~recbench.training.Trainer` (``None`` = defaults).
    seed: initialisation, dropout and masking seed.

    References
    ----------
    F. Sun, J. Liu, J. Wu, C. Pei, X. Lin, W. Ou and P. Jiang. BERT4Rec: Sequential Recommendation
    with Bidirectional Encoder Representations from Transformer. CIKM 2019.
    """

    capabilities = Capabilities(history=True, explain=True, similar=True, needs_sequences=True)
    training_defaults: ClassVar[dict[str, Any]] = {
        "epochs": 60,
        "batch_size": 64,
        "lr": 1e-3,
        "weight_decay": 0.0,
    }

    def __init__(
        self,
        *,
        max_len: int = 100,
        hidden_dim: int = 64,
        n_layers: int = 2,
        n_heads: int = 2,
        dropout: float = 0.2,
        mask_prob: float = 0.2,
        dupe_factor: int = 5,
        crop: bool = False,
        loss_type: str = "auto",
        n_negatives: int = 256,
        sampler: str = "popularity",
        trainer: Trainer | None = None,
        seed: int = 0,
    ) -> None:
        self.max_len = max_len
        self.hidden_dim = hidden_dim
        self.n_layers = n_layers
        self.n_heads = n_heads
        self.dropout = dropout
        self.mask_prob = mask_prob
        self.dupe_factor = dupe_factor
        self.crop = crop
        self.loss_type = loss_type
        self.n_negatives = n_negatives
        self.sampler = sampler
        self.trainer = trainer
        self.seed = seed

    def build_network(self, train: Interactions) -> BERT4RecNet:
        """A fresh :class:`BERT4RecNet` for ``train.n_items``."""
        check_option("BERT4Rec", "loss_type", self.loss_type, ("auto", "ce", "sampled"))
        self.loss_type_ = objective("BERT4Rec", self.loss_type, self.n_negatives, train.n_items, self.sampler)
        check_positive(
            "BERT4Rec",
            hidden_dim=self.hidden_dim,
            n_heads=self.n_heads,
            mask_prob=self.mask_prob,
            dupe_factor=self.dupe_factor,
        )
        if self.max_len < 2 or self.mask_prob > 1:
            raise ConfigError(
                f"BERT4Rec needs model.max_len >= 2 (got {self.max_len}) and model.mask_prob in (0, 1] "
                f"(got {self.mask_prob}); fix configs/model/bert4rec.yaml or the command-line override."
            )
        return BERT4RecNet(
            train.n_items, self.max_len, self.hidden_dim, self.n_layers, self.n_heads, self.dropout
        )

    def batches(
        self, train: Interactions, batch_size: int, rng: np.random.Generator
    ) -> Iterator[dict[str, torch.Tensor]]:
        """Masked user sequences: ``seqs`` with [MASK], ``targets`` the hidden items (0 elsewhere).

        Every user appears ``dupe_factor`` times per epoch, each time with a fresh mask (and window).
        """
        seqs = full_sequences(train, self.max_len)
        rows = memo(train, ("rows", seqs.shape[1], 2), lambda: rows_with(seqs, 2))
        rows = np.tile(rows, int(self.dupe_factor))
        mask_token = train.n_items + 1
        for idx in shuffled_batches(len(rows), batch_size, rng):
            win = windows(seqs[rows[idx]], self.max_len, rng, crop=self.crop)
            real = win != 0
            masked = real & (rng.random(win.shape) < self.mask_prob)
            none = ~masked.any(axis=1)
            masked[none, -1] = True  # every sequence hides at least its last item
            first = win.shape[1] - trim_padding(win).shape[1]  # padding-only columns change nothing
            batch = {
                "seqs": torch.from_numpy(np.where(masked, mask_token, win)[:, first:]),
                "targets": torch.from_numpy(np.where(masked, win, 0)[:, first:]),
            }
            if self.loss_type_ == "sampled":
                row_negatives(train, self.n_negatives, self.sampler).add_to(
                    batch, batch["targets"].numpy(), rng
                )
            yield batch

    def loss(self, net: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Softmax cross-entropy (over the catalogue, or sampled) at the masked positions."""
        targets = batch["targets"]
        hidden = net(batch["seqs"])
        if self.loss_type_ == "sampled":
            return sampled_item_cross_entropy(
                hidden, net.token_weight, targets, batch["row_negatives"], *batch_log_q(batch)
            )
        valid = targets != 0
        hidden = hidden[valid]
        return full_item_cross_entropy("BERT4Rec", hidden, net.token_weight, self.n_items_, targets[valid])

    def score_users(self, net: nn.Module, users: torch.Tensor, history: Interactions) -> torch.Tensor:
        """Item scores at a ``[MASK]`` appended after each user's last ``max_len - 1`` ``history`` items."""
        seqs = history_sequences(history, self.max_len - 1)[users.cpu().numpy()]
        out = torch.empty(len(seqs), self.n_items_, device=users.device)
        for rows, chunk in length_sorted_chunks(seqs):  # left padding changes nothing: skip most of it
            chunk = torch.as_tensor(chunk, device=users.device)
            mask = torch.full((len(chunk), 1), self.n_items_ + 1, dtype=chunk.dtype, device=chunk.device)
            hidden = net(torch.cat([chunk, mask], dim=1), last_only=True)[:, -1]
            out[torch.as_tensor(rows, device=users.device)] = item_logits(
                hidden, net.token_weight, self.n_items_
            )
        return out

    #: A session is the input sequence, followed by ``[MASK]`` (see :mod:`recbench.models.adhoc`).
    score_history = score_own_history

    def similar_items(self, items: np.ndarray) -> np.ndarray:
        """``float32[len(items), n_items]``: cosine similarity of the item token embeddings (tied input
        and output)."""
        return similar_tokens(self.network_.token_weight, self.n_items_, items)
