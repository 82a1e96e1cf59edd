"""LightGCN (He, Deng, Wang, Li, Zhang & Wang, SIGIR 2020): embeddings smoothed over the
user-item graph by a parameter-free, normalised propagation, trained with BPR."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from recbench.data.interactions import Interactions
from recbench.errors import ConfigError
from recbench.models.base import Capabilities, TorchRecommender
from recbench.models.similarity import cosine_similar
from recbench.training.losses import bpr_loss
from recbench.training.samplers import PositiveSet, uniform_negatives, user_uniform_positives
from recbench.training.trainer import Trainer


def normalized_adjacency(matrix: sp.csr_matrix) -> sp.csr_matrix:
    """``D^-1/2 A D^-1/2`` of the bipartite graph ``A = [[0, R], [R^T, 0]]`` of a binary ``R``.

    Nodes are the users (``0 .. n_users - 1``) followed by the items; isolated nodes get a zero row.
    """
    r = sp.csr_matrix(matrix, dtype=np.float64)
    adj = sp.bmat([[None, r], [r.T, None]], format="csr")
    deg = np.asarray(adj.sum(axis=1)).ravel()
    inv_sqrt = np.divide(1.0, np.sqrt(deg), out=np.zeros_like(deg), where=deg > 0)
    out = (sp.diags(inv_sqrt) @ adj @ sp.diags(inv_sqrt)).tocsr()
    out.sort_indices()
    return out


#: Values of ``LightGCN.sampling``.
_SAMPLINGS = ("interactions", "users")


class _SymmetricProduct(torch.autograd.Function):
    """``adj @ x`` for a *symmetric* sparse ``adj``: the backward is ``adj @ grad`` (no transpose)."""

    @staticmethod
    def forward(ctx: Any, adj: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        ctx.adj = adj
        return adj @ x

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[None, torch.Tensor]:
        return None, ctx.adj @ grad.contiguous()


class LightGCNNet(nn.Module):
    """Ego embeddings of users and items (one table) and their ``layers``-step propagation.

    The normalised adjacency is a fixed sparse CSR tensor rebuilt from the training data, not a
    parameter or buffer (it is not saved with the weights).
    """

    def __init__(
        self, adjacency: sp.csr_matrix, n_users: int, dim: int, layers: int, init_std: float
    ) -> None:
        super().__init__()
        self.n_users = n_users
        self.layers = layers
        n = adjacency.shape[0]
        self.embedding = nn.Parameter(torch.randn(n, dim) * init_std)
        with warnings.catch_warnings():  # "sparse CSR support is in beta": faster than COO here
            warnings.simplefilter("ignore", UserWarning)
            self._adjacency = torch.sparse_csr_tensor(
                torch.from_numpy(adjacency.indptr.astype(np.int64)),
                torch.from_numpy(adjacency.indices.astype(np.int64)),
                torch.from_numpy(adjacency.data.astype(np.float32)),
                size=adjacency.shape,
                check_invariants=False,
            )

    def propagate(self) -> torch.Tensor:
        """``mean_{l=0..L} A_hat^l E``: the layer combination of the paper (uniform weights)."""
        emb = self.embedding
        if self._adjacency.device != emb.device:
            self._adjacency = self._adjacency.to(emb.device)
        total, layer = emb, emb
        for _ in range(self.layers):
            layer = _SymmetricProduct.apply(self._adjacency, layer)
            total = total + layer
        return total / (self.layers + 1)


class LightGCN(TorchRecommender):
    r"""LightGCN: BPR on embeddings propagated over the normalised user-item graph.

    With :math:`\hat A = D^{-1/2} A D^{-1/2}` the normalised adjacency of the bipartite training
    graph and :math:`E^{(0)}` the ego embeddings (users and items in one table), the final
    embeddings are the layer mean :math:`E = \frac{1}{L+1}\sum_{l=0}^{L} \hat A^l E^{(0)}` and a
    pair scores :math:`e_u^\top e_i`. Each batch of training positives :math:`(u, i)` with
    ``num_negatives`` uniformly drawn negatives :math:`j` minimises

    .. math:: -\ln\sigma(e_u^\top e_i - e_u^\top e_j)
              + \frac{\lambda}{2}\big(\|e^{(0)}_u\|^2 + \|e^{(0)}_i\|^2 + \|e^{(0)}_j\|^2\big),

    averaged over the batch, the L2 term on the *ego* embeddings of the rows the batch gathers
    (rows it does not gather get no L2 gradient). The propagation runs once per batch over the whole graph, as
    in the paper; scoring propagates once per call and multiplies the users' rows by the items'.

    Parameters
    ----------
    factors: embedding dimension.
    layers: propagation steps :math:`L`.
    reg: :math:`\lambda`.
    num_negatives: sampled negatives per positive (their L2 is averaged).
    init_std: standard deviation of the normal initialisation of the ego embeddings.
    sampling: how an epoch's ``len(train)`` positives are drawn: ``interactions`` (each training
        pair once, shuffled) or ``users`` (a user uniformly, then one of their positives, as the
        paper's reference implementation samples; light users weigh as much as heavy ones).
    trainer: the shared :class:`~recbench.training.Trainer` (``None``: tuned defaults).
    seed: seed of initialisation, batch order and negative sampling.
    """

    capabilities = Capabilities(similar=True)
    training_defaults: ClassVar[dict[str, Any]] = dict(
        epochs=300, batch_size=16384, lr=4e-2, weight_decay=0.0, validate_every=2, patience=5
    )

    def __init__(
        self,
        *,
        factors: int = 64,
        layers: int = 3,
        reg: float = 1e-3,
        num_negatives: int = 4,
        init_std: float = 0.1,
        sampling: str = "users",
        trainer: Trainer | None = None,
        seed: int = 0,
    ) -> None:
        self.factors = factors
        self.layers = layers
        self.reg = reg
        self.num_negatives = num_negatives
        self.init_std = init_std
        self.sampling = sampling
        self.trainer = trainer
        self.seed = seed

    def fit(self, train: Interactions, val: Interactions | None = None) -> LightGCN:
        """Index the training positives (for negative sampling), then train."""
        if self.sampling not in _SAMPLINGS:
            raise ConfigError(
                f"LightGCN: model.sampling={self.sampling!r} is not one of {list(_SAMPLINGS)}; use "
                "model.sampling=interactions (every training pair once per epoch) or model.sampling=users."
            )
        self.positives_ = PositiveSet(train.binary_csr)
        try:
            super().fit(train, val)
        finally:
            del self.positives_  # sampling state only; not needed to score
        return self

    def build_network(self, train: Interactions) -> nn.Module:
        """A :class:`LightGCNNet` over the normalised training graph."""
        if (
            int(self.factors) < 1
            or int(self.layers) < 0
            or int(self.num_negatives) < 1
            or float(self.reg) < 0
        ):
            raise ConfigError(
                f"LightGCN: need factors >= 1, layers >= 0, num_negatives >= 1 and reg >= 0 (got "
                f"factors={self.factors!r}, layers={self.layers!r}, num_negatives={self.num_negatives!r}, "
                f"reg={self.reg!r})."
            )
        adjacency = normalized_adjacency(train.binary_csr)
        return LightGCNNet(
            adjacency, train.n_users, int(self.factors), int(self.layers), float(self.init_std)
        )

    def batches(
        self, train: Interactions, batch_size: int, rng: np.random.Generator
    ) -> Iterator[dict[str, torch.Tensor]]:
        """``len(train)`` positives (see ``sampling``), each followed by its sampled negatives:
        ``items`` is ``[B, 1 + n_neg]``."""
        order = rng.permutation(len(train)) if self.sampling == "interactions" else None
        csr = train.binary_csr if order is None else None
        for start in range(0, len(train), batch_size):
            if order is not None:
                idx = order[start : start + batch_size]
                users, pos = train.users[idx], train.items[idx]
            else:
                users, pos = user_uniform_positives(csr, min(batch_size, len(train) - start), rng)
            neg = uniform_negatives(self.positives_, users, int(self.num_negatives), rng)
            items = np.concatenate([pos[:, None], neg], axis=1)
            yield {"users": torch.from_numpy(users), "items": torch.from_numpy(items)}

    def loss(self, net: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """BPR loss on propagated embeddings plus L2 on the gathered ego embeddings."""
        users, items = batch["users"], batch["items"]
        final = net.propagate()
        item_rows = items + net.n_users
        u = final.index_select(0, users)
        it = final.index_select(0, item_rows.reshape(-1)).view(*items.shape, -1)
        scores = (u.unsqueeze(1) * it).sum(-1)  # cheaper than einsum (a batched matmul) on CPU
        ego = net.embedding
        # the squared norms of the rows the batch gathers, each counted as often as gathered (a
        # negative 1 / n_neg times): one weighted sum over the table instead of gathering the rows
        # again, as cheap as one propagation step and far cheaper than the gathers' backward
        rows = ego.shape[0]
        weight = torch.bincount(users, minlength=rows) + torch.bincount(item_rows[:, 0], minlength=rows)
        negatives = torch.bincount(item_rows[:, 1:].reshape(-1), minlength=rows)
        weight = weight.to(ego.dtype) + negatives.to(ego.dtype) / (items.shape[1] - 1)
        l2 = weight @ ego.pow(2).sum(1)
        return bpr_loss(scores[:, 0], scores[:, 1:]) + 0.5 * float(self.reg) * l2 / len(users)

    def score_users(self, net: nn.Module, users: torch.Tensor, history: Interactions) -> torch.Tensor:
        """``E[users] @ E[items]^T`` from one propagation."""
        final = net.propagate()
        return final.index_select(0, users) @ final[net.n_users :].T

    def similar_items(self, items: np.ndarray) -> np.ndarray:
        """``float32[len(items), n_items]``: cosine similarity of the propagated item embeddings."""
        with torch.no_grad():
            emb = self.network_.propagate()[self.network_.n_users :]
        return cosine_similar(emb.float().cpu().numpy(), items)
