"""A plain MLP classifier on (user, item) embeddings (its blocks live in :mod:`recbench.models.towers`)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from recbench.data.interactions import Interactions
from recbench.errors import ConfigError, DataError
from recbench.models.base import Capabilities, sigmoid_probabilities
from recbench.models.pointwise import PointwiseRecommender, check_choice
from recbench.models.towers import MLPBranch, PairNet, feature_branch, init_embeddings
from recbench.training.trainer import Trainer


class MLPClassifier(PointwiseRecommender):
    """A plain MLP classifier on ``concat(user embedding, item embedding)`` with a sigmoid output.

    The basic multi-layer perceptron recommender that neural collaborative filtering builds on (cf.
    the MLP of He et al., WWW 2017, §3.3): He-normal embeddings (``kaiming_normal_``, std
    ``sqrt(2 / embedding_dim)``) with a small L2 penalty, ReLU layers of ``hidden_layers`` widths
    (128 and 64 by default), one sigmoid output, binary cross-entropy, Adam (the Trainer's default).

    Parameters
    ----------
    embedding_dim: size of the user and item embeddings.
    hidden_layers: widths of the ReLU layers.
    reg: L2 penalty on the embeddings used in a batch (per example).
    mode: ``implicit`` (every interaction a positive, ``num_negatives`` sampled negatives each;
        ranking) or ``rating`` (labels ``rating / max_rating`` as soft targets; :meth:`predict`
        returns ratings on the original scale).
    num_negatives, negative_sampling: negatives per positive in implicit mode, ``uniform`` or
        ``popularity``.
    use_features: concatenate the pooled side-feature embeddings (one per user and item feature
        field, same ``embedding_dim``) with the id embeddings at the tower's input
        (:class:`FeatureMLPBranch`). Ids without training interactions then get a zero embedding, so
        cold items (users) are scored from their features; negatives are drawn among the items with
        training interactions only; ``reg`` covers the feature embeddings used too. Needs side
        features (the pipeline loads the dataset's defaults when the ``features`` group is unset).
    id_dropout: with ``use_features``, the probability of zeroing a training example's user and
        item id embeddings (so that the tower learns to score from features alone; ignored otherwise).
    sparse_updates: sparse embedding gradients over the rows a batch reads and the lazy row-wise Adam
        (:mod:`recbench.training.sparse_rows`); ``False``: dense gradients and steps over the tables.
    trainer, seed: the shared Trainer (``None`` = defaults) and the seed.
    """

    training_defaults: ClassVar[dict[str, Any]] = {
        "epochs": 20,
        "batch_size": 1024,
        "lr": 3e-3,
        "patience": 5,
    }

    def __init__(
        self,
        *,
        embedding_dim: int = 32,
        hidden_layers: Sequence[int] = (128, 64),
        reg: float = 0.05,
        mode: str = "implicit",
        num_negatives: int = 4,
        negative_sampling: str = "uniform",
        use_features: bool = False,
        id_dropout: float = 0.1,
        sparse_updates: bool = True,
        trainer: Trainer | None = None,
        seed: int = 0,
    ) -> None:
        self.embedding_dim = embedding_dim
        self.hidden_layers = hidden_layers
        self.reg = reg
        self.mode = mode
        self.num_negatives = num_negatives
        self.negative_sampling = negative_sampling
        self.use_features = use_features
        self.id_dropout = id_dropout
        self.sparse_updates = sparse_updates
        self.trainer = trainer
        self.seed = seed

    capability_settings = {"ratings": {"mode": "rating"}}

    @classmethod
    def capabilities_for(cls, params: Mapping[str, Any]) -> Capabilities:
        """Ratings (and the need for them) with ``mode=rating``; side features with ``use_features``."""
        rating = params.get("mode") == "rating"
        return super().capabilities_for(params).replace(ratings=rating, needs_ratings=rating)

    def build_network(self, train: Interactions) -> nn.Module:
        """Embeddings, the ReLU tower and a one-logit output layer; records ``max_rating_``."""
        check_choice("mode", self.mode, ("implicit", "rating"))
        check_choice("negative_sampling", self.negative_sampling, ("uniform", "popularity"))
        if int(self.embedding_dim) < 1 or not self.hidden_layers or min(map(int, self.hidden_layers)) < 1:
            raise ConfigError(
                f"model.embedding_dim={self.embedding_dim!r} and model.hidden_layers={self.hidden_layers!r} "
                "must be positive (hidden_layers a non-empty list)."
            )
        if self.mode == "rating":
            if train.ratings is None or len(train) == 0:
                raise DataError(
                    "model=mlp with model.mode=rating needs explicit ratings, but the training data has "
                    "none. Use a dataset with ratings or model.mode=implicit."
                )
            self.max_rating_ = float(train.ratings.max())
        elif int(self.num_negatives) < 1:
            raise ConfigError(f"model.num_negatives={self.num_negatives!r} must be >= 1 in implicit mode.")
        dim, sparse = int(self.embedding_dim), bool(self.sparse_updates)
        if self.use_features:
            branch = feature_branch(self, train, dim, self.hidden_layers, 0.0, sparse)
            net = PairNet({"mlp": branch}, id_dropout=float(self.id_dropout))
        else:
            branch = MLPBranch(train.n_users, train.n_items, dim, self.hidden_layers, sparse=sparse)
            net = PairNet({"mlp": branch})
        return init_embeddings(net, nn.init.kaiming_normal_)

    def batches(
        self, train: Interactions, batch_size: int, rng: np.random.Generator
    ) -> Iterator[dict[str, torch.Tensor]]:
        """Implicit: :func:`pointwise_batches`; rating: shuffled pairs with ``rating / max`` targets."""
        if self.mode == "implicit":
            yield from super().batches(train, batch_size, rng)
            return
        assert train.ratings is not None
        order = rng.permutation(len(train))
        users, items = train.users[order], train.items[order][:, None]
        target = train.ratings[order] / np.float32(self.max_rating_)
        for start in range(0, len(order), batch_size):
            part = slice(start, start + batch_size)
            yield {
                "users": torch.from_numpy(users[part]),
                "items": torch.from_numpy(items[part]),
                "target": torch.from_numpy(target[part]),
            }

    def loss(self, net: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Binary cross-entropy (hard labels, or soft ``rating / max`` labels) plus the L2 penalty."""
        users, items = batch["users"], batch["items"]
        if "target" in batch:
            logits = net(users, items)[:, 0]
            loss = F.binary_cross_entropy_with_logits(logits, batch["target"])
        else:
            loss = super().loss(net, batch)
        if self.reg:
            loss = loss + float(self.reg) * net.branches["mlp"].l2(users, items) / len(users)
        return loss

    def example_batch(
        self, train: Interactions, rows: np.ndarray, rng: np.random.Generator
    ) -> dict[str, torch.Tensor]:
        """Implicit: positives with uniform negatives; rating: the rows with ``rating / max`` targets."""
        if self.mode == "implicit":
            return super().example_batch(train, rows, rng)
        assert train.ratings is not None
        return {
            "users": torch.from_numpy(train.users[rows].astype(np.int64)),
            "items": torch.from_numpy(train.items[rows].astype(np.int64)[:, None]),
            "target": torch.from_numpy(train.ratings[rows] / np.float32(self.max_rating_)),
        }

    def predict_proba(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """``float32[n]`` ``sigmoid(logit)`` of the pairs: the probability that the BCE loss trained.

        In implicit mode, the probability of an interaction (positives against sampled negatives).
        In rating mode, the soft label ``rating / max_rating`` the model regressed, i.e.
        ``predict(users, items) / max_rating_``: a probability-like value in ``[0, 1]`` that the
        evaluator treats as a click probability too (trained on observed ratings only, it says
        nothing calibrated about unobserved items, so expect a poor log-loss against sampled
        negatives; ``eval.ctr_threshold`` labels are the natural match).
        """
        return sigmoid_probabilities(self, users, items)

    def predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """``float32[n]`` predicted ratings ``sigmoid(logit) * max_rating_`` (rating mode only)."""
        if self.mode != "rating":
            raise ConfigError("MLPClassifier.predict needs model.mode=rating (implicit mode only ranks).")
        return sigmoid_probabilities(self, users, items) * np.float32(self.max_rating_)
