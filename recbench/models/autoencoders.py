"""Mult-VAE and Mult-DAE (Liang, Krishnan, Hoffman & Jebara, "Variational Autoencoders for
Collaborative Filtering", WWW 2018): autoencoders of a user's interaction row with a multinomial
likelihood over the catalogue.

Both models have no user parameters: a user is encoded from the history row at scoring time
(fold-in), so users unseen in training, or an ad-hoc history, are scored without refitting.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import nn

from recbench.data.interactions import Interactions
from recbench.errors import ConfigError
from recbench.models.adhoc import score_own_history
from recbench.models.base import Capabilities, TorchRecommender
from recbench.models.similarity import cosine_similar
from recbench.training.trainer import Trainer


class AutoencoderNet(nn.Module):
    """``[n_items] -> hidden -> latent -> hidden -> [n_items]`` with tanh between the layers.

    A batch of binary rows comes as CSR parts: the column ``indices`` of all entries and the
    ``offsets`` where each row starts. Each row is L2-normalised, its entries dropped out
    (``dropout``, training only), and the first layer is a weighted sum of the ``encoder`` rows
    of its items (``embedding_bag``): the cost of the input layer follows the entries, not the
    catalogue. With ``variational=True`` the encoder's last layer gives the mean and log-variance
    of a Gaussian latent code (sampled in training, its mean in evaluation); otherwise it is a
    deterministic tanh layer. ``steps`` counts optimiser steps (the KL annealing and averaging
    clock, saved with the weights).

    With ``average > 0`` the network also keeps an exponential moving average of its weights
    (buffers ``avg_<name>``, saved with the weights): :meth:`advance` folds the current weights in
    before every training step, and in evaluation mode the forward pass uses the averaged weights.
    """

    def __init__(
        self,
        n_items: int,
        hidden: int,
        latent: int,
        dropout: float,
        *,
        variational: bool,
        average: float = 0.0,
    ) -> None:
        super().__init__()
        self.variational = variational
        self.latent = latent
        self.drop = nn.Dropout(dropout)
        first = nn.Linear(n_items, hidden)
        self.encoder = nn.Parameter(first.weight.detach().T.contiguous())  # [n_items, hidden]
        self.encoder_bias = nn.Parameter(torch.empty(hidden))
        self.to_latent = nn.Linear(hidden, 2 * latent if variational else latent)
        self.decoder = nn.Linear(latent, hidden)
        self.output = nn.Linear(hidden, n_items)
        nn.init.xavier_normal_(self.encoder)
        nn.init.normal_(self.encoder_bias, std=0.001)
        for layer in (self.to_latent, self.decoder, self.output):
            nn.init.xavier_normal_(layer.weight)
            nn.init.normal_(layer.bias, std=0.001)
        self.register_buffer("steps", torch.zeros((), dtype=torch.int64))
        self.average = float(average)
        self.averaged = [name for name, _ in self.named_parameters()] if self.average > 0 else []
        for name in self.averaged:
            self.register_buffer(_avg_name(name), self.get_parameter(name).detach().clone())
        self.register_load_state_dict_pre_hook(_average_from_weights)

    def advance(self) -> int:
        """Before a training step: fold the current weights into the moving average (when kept) and
        advance the step clock; returns the number of steps taken before this one.

        At step ``t`` the decay is ``min(average, (1 + t) / (5 + t))``: early on the average follows
        the weights closely (the random initialisation fades out at once, and a short training is
        not dragged back by it), and it reaches ``average`` once ``t`` is large.
        """
        t = int(self.steps)
        if self.averaged:
            decay = min(self.average, (1.0 + t) / (5.0 + t))
            with torch.no_grad():
                current = [self.get_parameter(name).detach() for name in self.averaged]
                torch._foreach_lerp_(self._averages(), current, 1.0 - decay)
        self.steps += 1
        return t

    def _averages(self) -> list[torch.Tensor]:
        return [self.get_buffer(_avg_name(name)) for name in self.averaged]

    def weights(self) -> dict[str, torch.Tensor]:
        """The weights the forward pass uses: the averaged ones in evaluation mode (when kept), else
        the trained parameters, by parameter name."""
        if self.training or not self.averaged:
            return dict(self.named_parameters())
        return dict(zip(self.averaged, self._averages()))

    def forward(
        self, indices: torch.Tensor, offsets: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """``(logits [B, n_items], mu, logvar)`` of the rows; ``mu`` / ``logvar`` are ``None`` for the DAE."""
        w = self.weights()
        counts = row_lengths(indices, offsets)
        weights = torch.rsqrt(counts.clamp(min=1).to(self.encoder.dtype)).repeat_interleave(counts)
        summed = F.embedding_bag(
            indices, w["encoder"], offsets, mode="sum", per_sample_weights=self.drop(weights)
        )
        code = F.linear(torch.tanh(summed + w["encoder_bias"]), w["to_latent.weight"], w["to_latent.bias"])
        mu = logvar = None
        if self.variational:
            mu, logvar = code[:, : self.latent], code[:, self.latent :]
            z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar) if self.training else mu
        else:
            z = torch.tanh(code)
        hidden = torch.tanh(F.linear(z, w["decoder.weight"], w["decoder.bias"]))
        return F.linear(hidden, w["output.weight"], w["output.bias"]), mu, logvar


def _average_from_weights(module: AutoencoderNet, state: dict[str, Any], prefix: str, *_: Any) -> None:
    """Load hook: weights saved without an average (before it existed) start it from the weights."""
    for name in module.averaged:
        key = prefix + _avg_name(name)
        if key not in state and prefix + name in state:
            state[key] = state[prefix + name]


def _avg_name(name: str) -> str:
    """Buffer name of the moving average of parameter ``name`` (``output.weight``: ``avg_output_weight``)."""
    return "avg_" + name.replace(".", "_")


def row_lengths(indices: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """Entries per row of a CSR batch given by its ``indices`` and row start ``offsets``."""
    ends = torch.cat([offsets[1:], offsets.new_tensor([len(indices)])])
    return ends - offsets


def multinomial_nll(logits: torch.Tensor, indices: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """``-mean_u sum_i x_ui log softmax(logits_u)_i`` for the binary rows ``x`` given as CSR parts."""
    rows = torch.arange(len(offsets), device=logits.device).repeat_interleave(row_lengths(indices, offsets))
    return -F.log_softmax(logits, dim=1)[rows, indices].sum() / len(offsets)


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """``mean_u KL(N(mu_u, exp(logvar_u)) || N(0, I))``."""
    return 0.5 * (torch.exp(logvar) + mu.pow(2) - 1.0 - logvar).sum(1).mean()


class _MultAutoencoder(TorchRecommender):
    """Shared fit / batches / scoring of :class:`MultVAE` and :class:`MultDAE`."""

    variational: ClassVar[bool]
    capabilities = Capabilities(history=True, similar=True)
    score_history = score_own_history
    training_defaults: ClassVar[dict[str, Any]] = dict(
        epochs=200, batch_size=256, lr=3e-3, weight_decay=0.0, validate_every=2, patience=3
    )
    hidden: int
    latent: int
    dropout: float
    average: float

    def build_network(self, train: Interactions) -> nn.Module:
        """A fresh :class:`AutoencoderNet` over ``train``'s catalogue."""
        if (
            int(self.hidden) < 1
            or int(self.latent) < 1
            or not 0.0 <= float(self.dropout) < 1.0
            or not 0.0 <= float(self.average) < 1.0
        ):
            raise ConfigError(
                f"{type(self).__name__}: need hidden >= 1, latent >= 1, 0 <= dropout < 1 and "
                f"0 <= average < 1 (got hidden={self.hidden!r}, latent={self.latent!r}, "
                f"dropout={self.dropout!r}, average={self.average!r})."
            )
        return AutoencoderNet(
            train.n_items,
            int(self.hidden),
            int(self.latent),
            float(self.dropout),
            variational=self.variational,
            average=float(self.average),
        )

    def batches(
        self, train: Interactions, batch_size: int, rng: np.random.Generator
    ) -> Iterator[dict[str, torch.Tensor]]:
        """Shuffled blocks of the (binary) training rows of users with at least one interaction."""
        matrix = train.binary_csr
        active = np.flatnonzero(np.diff(matrix.indptr))
        order = active[rng.permutation(len(active))]
        for start in range(0, len(order), batch_size):
            yield _csr_rows(matrix, order[start : start + batch_size])

    def score_users(self, net: nn.Module, users: torch.Tensor, history: Interactions) -> torch.Tensor:
        """Decoder logits of each user's history row (the fold-in; higher = more likely next)."""
        batch = _csr_rows(history.binary_csr, users.cpu().numpy())
        return net(batch["indices"].to(users.device), batch["offsets"].to(users.device))[0]

    def similar_items(self, items: np.ndarray) -> np.ndarray:
        """``float32[len(items), n_items]``: cosine similarity of the decoder's item vectors (the rows
        of the output layer that score a decoded hidden state; the averaged ones when kept)."""
        net = self.network_
        was_training = net.training
        net.eval()
        try:
            vectors = net.weights()["output.weight"].detach().cpu().numpy()
        finally:
            net.train(was_training)
        return cosine_similar(vectors, items)


def _csr_rows(matrix: sp.csr_matrix, rows: np.ndarray) -> dict[str, torch.Tensor]:
    """The chosen CSR rows as ``indices`` (item of every entry) and ``offsets`` (row starts)."""
    part = matrix[rows]
    return {
        "indices": torch.from_numpy(part.indices.astype(np.int64)),
        "offsets": torch.from_numpy(part.indptr[:-1].astype(np.int64)),
    }


class MultVAE(_MultAutoencoder):
    r"""Mult-VAE^PR: a variational autoencoder of the interaction row with a multinomial likelihood.

    For a batch of binary rows :math:`x_u`, the loss is

    .. math:: -\frac{1}{|B|}\sum_u \sum_i x_{ui} \log \mathrm{softmax}(f(z_u))_i
              + \beta\, \frac{1}{|B|}\sum_u \mathrm{KL}(q(z_u \mid x_u) \,\|\, \mathcal N(0, I)),

    with :math:`z_u` drawn from the encoder's Gaussian :math:`q` and :math:`\beta` annealed
    linearly from 0 to ``anneal_cap`` over ``anneal_steps`` optimiser steps (the paper's partial
    regularisation). Scores are the decoder logits at the posterior mean.

    Parameters
    ----------
    hidden: width of the hidden layer of encoder and decoder (the paper's 600 for catalogues of
        tens of thousands of items; the default suits MovieLens-100k-sized data).
    latent: dimension of the latent code (the paper's 200).
    dropout: input dropout rate.
    anneal_cap: largest KL weight :math:`\beta`.
    anneal_steps: optimiser steps over which :math:`\beta` rises to ``anneal_cap``.
    average: decay per optimiser step of the moving average of the weights that validation and
        scoring use (``0``: the trained weights themselves).
    trainer: the shared :class:`~recbench.training.Trainer` (``None``: tuned defaults).
    seed: seed of initialisation, batch order, dropout and latent sampling.
    """

    variational = True
    training_defaults: ClassVar[dict[str, Any]] = {**_MultAutoencoder.training_defaults, "lr": 1e-2}

    def __init__(
        self,
        *,
        hidden: int = 200,
        latent: int = 64,
        dropout: float = 0.5,
        anneal_cap: float = 0.5,
        anneal_steps: int = 200,
        average: float = 0.98,
        trainer: Trainer | None = None,
        seed: int = 0,
    ) -> None:
        self.hidden = hidden
        self.latent = latent
        self.dropout = dropout
        self.anneal_cap = anneal_cap
        self.anneal_steps = anneal_steps
        self.average = average
        self.trainer = trainer
        self.seed = seed

    def beta(self, steps: int) -> float:
        """The KL weight after ``steps`` optimiser steps."""
        if int(self.anneal_steps) <= 0:
            return float(self.anneal_cap)
        return min(float(self.anneal_cap), steps / int(self.anneal_steps))

    def loss(self, net: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Multinomial NLL plus the annealed KL term (see the class docstring); advances the clock."""
        indices, offsets = batch["indices"], batch["offsets"]
        logits, mu, logvar = net(indices, offsets)
        assert mu is not None and logvar is not None
        beta = self.beta(net.advance())
        return multinomial_nll(logits, indices, offsets) + beta * gaussian_kl(mu, logvar)


class MultDAE(_MultAutoencoder):
    r"""Mult-DAE: a denoising autoencoder of the interaction row with a multinomial likelihood.

    The encoder is deterministic (``items -> hidden -> latent``, tanh); the loss is the
    multinomial negative log-likelihood of the rows given the (dropped-out) input, and scores are
    the decoder logits of the full history row. An L2 penalty on the weights (the paper's) is the
    trainer's ``weight_decay`` (0 by default; ``search=multdae_optuna`` searches it).

    Parameters
    ----------
    hidden: width of the hidden layers.
    latent: dimension of the bottleneck.
    dropout: input dropout rate (the denoising corruption).
    average: decay per optimiser step of the moving average of the weights that validation and
        scoring use (``0``: the trained weights themselves).
    trainer: the shared :class:`~recbench.training.Trainer` (``None``: tuned defaults).
    seed: seed of initialisation, batch order and dropout.
    """

    variational = False

    def __init__(
        self,
        *,
        hidden: int = 600,
        latent: int = 200,
        dropout: float = 0.5,
        average: float = 0.98,
        trainer: Trainer | None = None,
        seed: int = 0,
    ) -> None:
        self.hidden = hidden
        self.latent = latent
        self.dropout = dropout
        self.average = average
        self.trainer = trainer
        self.seed = seed

    def loss(self, net: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Multinomial NLL of the rows (advances the weight average)."""
        indices, offsets = batch["indices"], batch["offsets"]
        net.advance()
        return multinomial_nll(net(indices, offsets)[0], indices, offsets)
