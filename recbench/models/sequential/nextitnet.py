"""NextItNet: dilated causal convolutions for next-item recommendation (Yuan et al., WSDM 2019)."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from recbench.data.interactions import Interactions
from recbench.errors import ConfigError
from recbench.models.base import Capabilities
from recbench.models.sequential.layers import (
    CausalConvBlock,
    check_positive,
    init_item_tables,
)
from recbench.models.sequential.next_item import NextItemRecommender
from recbench.training.trainer import Trainer


class NextItNetNet(nn.Module):
    """Item embeddings -> residual blocks of dilated causal convolutions -> output item embeddings."""

    def __init__(
        self, n_items: int, dim: int, kernel_size: int, dilations: list[int], dropout: float
    ) -> None:
        super().__init__()
        self.items = nn.Embedding(n_items + 1, dim, padding_idx=0)
        self.blocks = nn.Sequential(*(CausalConvBlock(dim, kernel_size, d, dropout) for d in dilations))
        self.output = nn.Embedding(n_items + 1, dim, padding_idx=0)
        init_item_tables(self.items, self.output)

    @property
    def token_weight(self) -> torch.Tensor:
        """``[n_items + 1, dim]`` output item embeddings (row 0 = padding, never scored)."""
        return self.output.weight

    def forward(self, seqs: torch.Tensor) -> torch.Tensor:
        """``seqs[B, T]`` -> ``[B, T, dim]``; position ``t`` depends on tokens ``<= t`` only."""
        return self.blocks(self.items(seqs))


class NextItNet(NextItemRecommender):
    """Convolutional generative next-item model.

    A stack of residual blocks, each holding two dilated causal 1-D convolutions (dilations ``d``
    and ``2d``), reads the item sequence; the output at each position scores the next item. The
    receptive field grows exponentially with depth, so long histories cost few layers.

    Parameters
    ----------
    max_len: most recent items the model reads (and trains on, per user and epoch).
    embedding_dim: channel size of embeddings and convolutions.
    kernel_size: convolution width.
    dilations: first dilation of each residual block (its second convolution uses twice that);
        the paper's ``[1, 2, 4, 8]`` per two blocks corresponds to ``[1, 4]`` here.
    dropout: dropout inside the residual branches.
    loss_type: ``ce`` (full softmax cross-entropy, as in the paper), ``sampled`` (softmax against
        ``n_negatives`` sampled items), ``bce`` (one sampled negative per position) or ``auto``
        (``ce`` up to :data:`~recbench.models.sequential.objectives.SAMPLED_ABOVE_ITEMS` items,
        else ``sampled``).
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
    F. Yuan, A. Karatzoglou, I. Arapakis, J. M. Jose and X. He. A Simple Convolutional Generative
    Network for Next Item Recommendation. WSDM 2019.
    """

    #: user-level DP-SGD (``privacy=dp trainer.privacy.unit=user``, full softmax): :meth:`private_body`
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
        kernel_size: int = 3,
        dilations: list[int] | tuple[int, ...] = (1, 4, 1, 4),
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
        self.kernel_size = kernel_size
        self.dilations = dilations
        self.dropout = dropout
        self.loss_type = loss_type
        self.n_negatives = n_negatives
        self.sampler = sampler
        self.crop = crop
        self.shuffle_ties = shuffle_ties
        self.trainer = trainer
        self.seed = seed

    def private_body(self, net: nn.Module) -> nn.Module:
        """The network's own residual blocks (convolutions and layer norms Opacus clips per user)."""
        return net.blocks

    def build_network(self, train: Interactions) -> NextItNetNet:
        """A fresh :class:`NextItNetNet` for ``train.n_items``."""
        self.objective_for(train)
        check_positive(
            "NextItNet", max_len=self.max_len, embedding_dim=self.embedding_dim, kernel_size=self.kernel_size
        )
        dilations = [int(d) for d in self.dilations]
        if not dilations or min(dilations) < 1:
            raise ConfigError(
                f"model.dilations={list(self.dilations)!r} must be a non-empty list of integers >= 1 "
                "for NextItNet (configs/model/nextitnet.yaml or `model.dilations=[1,4,1,4]`)."
            )
        return NextItNetNet(train.n_items, self.embedding_dim, self.kernel_size, dilations, self.dropout)
