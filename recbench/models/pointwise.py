"""Pointwise training and scoring shared by the neural models that score (user, item) pairs.

:class:`PointwiseRecommender` is the base of the MLP classifier and the NCF family: every positive
comes with ``num_negatives`` sampled unobserved items (:func:`pointwise_batches`), the loss is
binary cross-entropy on logits (:func:`pointwise_loss`), so ``predict_proba`` (the logit's
sigmoid) is a click probability, and full ranking pushes every (user, item) pair through the
network in chunks of users of at most ``max_score_pairs`` pairs (:func:`score_all_items`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from recbench.data.interactions import Interactions
from recbench.errors import ConfigError
from recbench.models.base import Capabilities, TorchRecommender, sigmoid_probabilities
from recbench.models.per_example import PairExamples, pointwise_example_batch
from recbench.training.losses import bce_loss
from recbench.training.samplers import PositiveSet, popularity_negatives, uniform_negatives

#: Most (user, item) pairs pushed through a network in one scoring forward: bounds memory, and
#: chunks this small stay cache-friendly (faster on CPU than one big forward).
MAX_SCORE_PAIRS = 2**16
#: The same bound on an accelerator, where memory is plentiful and every forward costs a launch.
GPU_SCORE_PAIRS = 2**22


def negative_pool(model: Any) -> np.ndarray | None:
    """Items that negatives are drawn from: with ``use_features``, only those with training
    interactions (unseen items stay neutral, as in the feature-aware models); else ``None`` (all)."""
    if getattr(model, "use_features", False):
        return np.flatnonzero(model.seen_items_)
    return None


def pointwise_batches(
    train: Interactions,
    batch_size: int,
    rng: np.random.Generator,
    num_negatives: int,
    sampling: str,
    pool: np.ndarray | None = None,
) -> Iterator[dict[str, torch.Tensor]]:
    """Shuffled ``users[B]`` and ``items[B, 1 + num_negatives]`` batches (column 0 the positive).

    ``batch_size`` counts positives. Negatives are drawn once per epoch, excluding each user's
    training items, uniformly or by popularity (``(count + 1) ** 0.75``), among the items ``pool``
    (``None``: the whole catalogue).
    """
    order = rng.permutation(len(train))
    users, items = train.users[order], train.items[order][:, None]
    if num_negatives > 0:
        csr, counts = train.binary_csr, train.item_counts()
        if pool is not None:
            csr, counts = csr[:, pool], counts[pool]
        positives = PositiveSet(csr)
        if sampling == "popularity":
            neg = popularity_negatives(positives, counts, users, num_negatives, rng)
        else:
            neg = uniform_negatives(positives, users, num_negatives, rng)
        items = np.concatenate([items, neg if pool is None else pool[neg]], axis=1)
    for start in range(0, len(users), batch_size):
        yield {
            "users": torch.from_numpy(users[start : start + batch_size]),
            "items": torch.from_numpy(items[start : start + batch_size]),
        }


def pointwise_loss(net: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Binary cross-entropy (on logits) of each positive (column 0) against its sampled negatives."""
    logits = net(batch["users"], batch["items"])
    return bce_loss(logits[:, 0], logits[:, 1:])


def score_in_chunks(
    fn: Callable[[torch.Tensor], torch.Tensor], users: torch.Tensor, n_items: int, max_pairs: int
) -> torch.Tensor:
    """``fn(chunk) -> [len(chunk), n_items]`` over chunks of ``users`` of at most ``max_pairs`` pairs.

    On an accelerator the chunks may grow to :data:`GPU_SCORE_PAIRS` pairs (fewer kernel launches).
    """
    if len(users) == 0:
        return torch.zeros((0, n_items), device=users.device)
    if users.device.type != "cpu":
        max_pairs = max(int(max_pairs), GPU_SCORE_PAIRS)
    step = max(1, int(max_pairs) // max(n_items, 1))
    return torch.cat([fn(users[i : i + step]) for i in range(0, len(users), step)])


def score_all_items(net: nn.Module, users: torch.Tensor, n_items: int, max_pairs: int) -> torch.Tensor:
    """``net(users, every item)`` -> ``[len(users), n_items]``, in chunks of users."""
    all_items = torch.arange(n_items, device=users.device)
    return score_in_chunks(lambda chunk: net(chunk, all_items), users, n_items, max_pairs)


def check_choice(key: str, value: Any, allowed: Sequence[str]) -> None:
    """:class:`ConfigError` naming ``model.<key>`` unless ``value`` is one of ``allowed``."""
    if value not in allowed:
        raise ConfigError(f"model.{key}={value!r} must be one of {', '.join(map(repr, allowed))}.")


class PointwiseRecommender(TorchRecommender):
    """A :class:`TorchRecommender` trained pointwise on sampled negatives and scored pair by pair.

    Subclasses build a network ``net(users[B], items[B, m] or items[m]) -> logits [B, m]`` and set
    the hyperparameters ``num_negatives`` and ``negative_sampling`` (``uniform`` or
    ``popularity``); with ``use_features``, negatives come from the items with training
    interactions only (:func:`negative_pool`).
    """

    max_score_pairs: ClassVar[int] = MAX_SCORE_PAIRS
    num_negatives: int
    negative_sampling: str
    capabilities = Capabilities(probabilities=True)

    @classmethod
    def capabilities_for(cls, params: Mapping[str, Any]) -> Capabilities:
        """Side features are needed with ``use_features=true`` (where the model has that switch).
        Private training (DP-SGD) works with id embeddings and uniform negatives (popularity
        sampling reads every example's item counts)."""
        features = bool(params.get("use_features", False))
        private = not features and params.get("negative_sampling") == "uniform"
        return cls.capabilities.replace(needs_features=features, private=private)

    def batches(
        self, train: Interactions, batch_size: int, rng: np.random.Generator
    ) -> Iterator[dict[str, torch.Tensor]]:
        """Pointwise batches with ``num_negatives`` sampled items per positive (:func:`pointwise_batches`)."""
        return pointwise_batches(
            train, batch_size, rng, int(self.num_negatives), self.negative_sampling, negative_pool(self)
        )

    def loss(self, net: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Binary cross-entropy on logits (:func:`pointwise_loss`)."""
        return pointwise_loss(net, batch)

    def example_network(self) -> nn.Module:
        """Per-example losses through standard layers, for private training (:class:`PairExamples`)."""
        return PairExamples(self.network_, reg=float(getattr(self, "reg", 0.0)))

    def example_batch(
        self, train: Interactions, rows: np.ndarray, rng: np.random.Generator
    ) -> dict[str, torch.Tensor]:
        """The rows' positives with uniform negatives drawn per row (:func:`pointwise_example_batch`)."""
        return pointwise_example_batch(train, rows, int(self.num_negatives), rng)

    def score_users(self, net: nn.Module, users: torch.Tensor, history: Interactions) -> torch.Tensor:
        """Logits of every item, users in chunks of at most ``max_score_pairs`` pairs."""
        return score_all_items(net, users, self.n_items_, self.max_score_pairs)

    predict_proba = sigmoid_probabilities  # sigmoid of the BCE logit
