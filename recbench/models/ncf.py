"""Neural collaborative filtering (He et al., WWW 2017): GMF, NCF-MLP and NeuMF.

The three models are composed from shared blocks: :class:`~recbench.models.towers.GMFBranch`
(``p_u * q_i``), the :class:`~recbench.models.towers.MLPBranch` tower on ``concat(p_u, q_i)`` and
:class:`~recbench.models.towers.PairNet`, which fuses the branches with one linear predict layer.
Training and scoring are those of :class:`~recbench.models.pointwise.PointwiseRecommender`:
every positive comes with ``num_negatives`` sampled unobserved items and the loss is binary
cross-entropy on logits, so ``predict_proba(users, items)`` (the logit's sigmoid) is a click
probability.

NeuMF starts from trained GMF and NCF-MLP runs through
:func:`~recbench.models.persistence.read_network` (a run directory's ``model.pt``).

``NeuMF(use_features=True)`` feeds side features to the MLP branch
(:class:`~recbench.models.towers.FeatureMLPBranch`); ids without training interactions then get zero
embeddings in both branches, so cold items are ranked by their features.

References
----------
He, X., Liao, L., Zhang, H., Nie, L., Hu, X. and Chua, T.-S. (2017). Neural Collaborative
Filtering. Proceedings of WWW 2017, 173-182.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from recbench.data.interactions import Interactions
from recbench.errors import ConfigError
from recbench.models.base import Capabilities
from recbench.models.persistence import read_network
from recbench.models.pointwise import PointwiseRecommender, check_choice
from recbench.models.similarity import cosine_similar
from recbench.models.towers import GMFBranch, MLPBranch, PairNet, feature_branch, init_embeddings
from recbench.training.trainer import Trainer

#: Standard deviation of the normal initialisation of the embeddings (as in the paper).
EMBEDDING_INIT_STD = 0.01


def _check(model: PointwiseRecommender, positive: Sequence[str], widths: Sequence[int] | None = None) -> None:
    for key in positive:
        if int(getattr(model, key)) < 1:
            raise ConfigError(f"model.{key}={getattr(model, key)!r} must be a positive integer.")
    if not 0.0 <= float(getattr(model, "dropout", 0.0)) < 1.0:
        raise ConfigError(f"model.dropout={model.dropout!r} must lie in [0, 1).")
    if widths is not None and (len(widths) == 0 or min(map(int, widths)) < 1):
        raise ConfigError(f"model.mlp_layers={widths!r} must be a non-empty list of positive widths.")
    check_choice("negative_sampling", model.negative_sampling, ("uniform", "popularity"))


def _normal_init(weight: torch.Tensor) -> None:
    nn.init.normal_(weight, std=EMBEDDING_INIT_STD)


class GMF(PointwiseRecommender):
    """Generalised matrix factorisation: ``sigmoid(h^T (p_u * q_i))`` (He et al., WWW 2017, §3.2).

    Parameters
    ----------
    embedding_dim: size of the user and item embeddings (predictive factors).
    num_negatives: uniformly (or popularity-) sampled unobserved items per positive.
    negative_sampling: ``uniform`` or ``popularity`` (``(count + 1) ** 0.75``).
    sparse_updates: sparse embedding gradients over the rows a batch reads and the lazy row-wise Adam
        (:mod:`recbench.training.sparse_rows`), so a step costs what the batch touched; ``False``:
        dense gradients and steps over the whole tables (weight decay and gradient clipping need it).
    trainer: the shared :class:`~recbench.training.Trainer` (``None`` = defaults).
    seed: initialisation and sampling seed.
    """

    capabilities = Capabilities(probabilities=True, similar=True)
    # On ml-100k validation NDCG sits on a popularity-level plateau for the first epochs and then
    # rises: patience 5 lets early stopping see past the plateau. GMF keeps improving for longer (30
    # epochs); NCF-MLP and NeuMF keep 20, since without a validation set (nothing restores the best
    # epoch) they overfit when trained longer.
    training_defaults: ClassVar[dict[str, Any]] = {
        "epochs": 30,
        "batch_size": 4096,
        "lr": 5e-3,
        "patience": 5,
    }

    def __init__(
        self,
        *,
        embedding_dim: int = 32,
        num_negatives: int = 4,
        negative_sampling: str = "uniform",
        sparse_updates: bool = True,
        trainer: Trainer | None = None,
        seed: int = 0,
    ) -> None:
        self.embedding_dim = embedding_dim
        self.num_negatives = num_negatives
        self.negative_sampling = negative_sampling
        self.sparse_updates = sparse_updates
        self.trainer = trainer
        self.seed = seed

    def build_network(self, train: Interactions) -> nn.Module:
        """A GMF branch with its predict layer."""
        _check(self, ("embedding_dim", "num_negatives"))
        sparse = bool(self.sparse_updates)
        net = PairNet(
            {"gmf": GMFBranch(train.n_users, train.n_items, int(self.embedding_dim), sparse=sparse)}
        )
        return init_embeddings(net, _normal_init)

    def similar_items(self, items: np.ndarray) -> np.ndarray:
        """``float32[len(items), n_items]``: cosine similarity of the items' weighted embeddings
        ``h * q_i`` (the logit is ``p_u . (h * q_i)``, so these are the vectors users' scores read)."""
        net = self.network_
        vectors = net.branches["gmf"].item.weight * net.predict.weight[0]
        return cosine_similar(vectors.detach().cpu().numpy(), items)


class NCFMLP(PointwiseRecommender):
    """NCF's multi-layer perceptron on ``concat(p_u, q_i)`` (He et al., WWW 2017, §3.3).

    Parameters
    ----------
    embedding_dim: size of the user and item embeddings (the tower's input is twice that).
    mlp_layers: widths of the ReLU tower; the last one is the number of predictive factors.
    dropout: dropout after every tower layer.
    num_negatives, negative_sampling, sparse_updates, trainer, seed: as in :class:`GMF`.
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
        embedding_dim: int = 64,
        mlp_layers: Sequence[int] = (128, 64, 32),
        dropout: float = 0.0,
        num_negatives: int = 8,
        negative_sampling: str = "uniform",
        sparse_updates: bool = True,
        trainer: Trainer | None = None,
        seed: int = 0,
    ) -> None:
        self.embedding_dim = embedding_dim
        self.mlp_layers = mlp_layers
        self.dropout = dropout
        self.num_negatives = num_negatives
        self.negative_sampling = negative_sampling
        self.sparse_updates = sparse_updates
        self.trainer = trainer
        self.seed = seed

    def build_network(self, train: Interactions) -> nn.Module:
        """An MLP branch with its predict layer."""
        _check(self, ("embedding_dim", "num_negatives"), self.mlp_layers)
        branch = MLPBranch(
            train.n_users,
            train.n_items,
            int(self.embedding_dim),
            self.mlp_layers,
            float(self.dropout),
            sparse=bool(self.sparse_updates),
        )
        return init_embeddings(PairNet({"mlp": branch}), _normal_init)


class NeuMF(PointwiseRecommender):
    """Neural matrix factorisation: GMF and MLP branches fused by one predict layer (§3.4).

    Parameters
    ----------
    embedding_dim: GMF embedding size.
    mlp_embedding_dim: MLP embedding size.
    mlp_layers, dropout: the MLP tower (see :class:`NCFMLP`).
    num_negatives, negative_sampling: as in :class:`GMF`.
    pretrained_gmf, pretrained_mlp: run directories (or ``model.pt`` files) of trained :class:`GMF`
        and :class:`NCFMLP` models with matching sizes; their weights initialise the branches and
        the predict layer becomes ``[alpha * h_gmf, (1 - alpha) * h_mlp]`` (§3.4.1).
    alpha: the trade-off between the two pretrained predict layers (0.5 in the paper).
    use_features: feed side features to the MLP branch: its tower's input becomes
        ``[user id emb, pooled user feature embs, item id emb, pooled item feature embs]`` (one
        ``mlp_embedding_dim`` embedding per feature field; :class:`~recbench.models.towers.FeatureMLPBranch`).
        The GMF branch stays an id-only ``p_u * q_i`` (an element-wise product needs one vector per
        side, not a list of fields). Ids without training interactions get zero embeddings in both
        branches, so a cold item is scored from its features (by the MLP branch) and never from an
        untrained id embedding; negatives are drawn among the items with training interactions only.
        The MLP branch's embeddings (ids and features) then start He-normal (std
        ``sqrt(2 / mlp_embedding_dim)``, as in :class:`~recbench.models.mlp.MLPClassifier`) rather
        than N(0, 0.01): from that small start the GMF branch fits the ids first and the tower never
        learns to read the features (cold items then rank alike for every user).
        Needs side features (the pipeline loads the dataset's defaults when the ``features`` group is
        unset); cannot be combined with ``pretrained_mlp`` (NCF-MLP has no feature embeddings).
    id_dropout: with ``use_features``, the probability of zeroing the user (item) id embeddings of a
        training example in both branches at once, so that the features learn to carry the score
        alone (DropoutNet style; ignored otherwise).
    sparse_updates, trainer, seed: as in :class:`GMF`.
    """

    training_defaults: ClassVar[dict[str, Any]] = {
        "epochs": 20,
        "batch_size": 4096,
        "lr": 5e-3,
        "patience": 5,
    }

    def __init__(
        self,
        *,
        embedding_dim: int = 32,
        mlp_embedding_dim: int = 16,
        mlp_layers: Sequence[int] = (32, 16, 8),
        dropout: float = 0.0,
        num_negatives: int = 8,
        negative_sampling: str = "uniform",
        pretrained_gmf: str | None = None,
        pretrained_mlp: str | None = None,
        alpha: float = 0.5,
        use_features: bool = False,
        id_dropout: float = 0.1,
        sparse_updates: bool = True,
        trainer: Trainer | None = None,
        seed: int = 0,
    ) -> None:
        self.embedding_dim = embedding_dim
        self.mlp_embedding_dim = mlp_embedding_dim
        self.mlp_layers = mlp_layers
        self.dropout = dropout
        self.num_negatives = num_negatives
        self.negative_sampling = negative_sampling
        self.pretrained_gmf = pretrained_gmf
        self.pretrained_mlp = pretrained_mlp
        self.alpha = alpha
        self.use_features = use_features
        self.id_dropout = id_dropout
        self.sparse_updates = sparse_updates
        self.trainer = trainer
        self.seed = seed

    def build_network(self, train: Interactions) -> nn.Module:
        """Both branches and the fused predict layer, initialised from pretrained runs if given."""
        _check(self, ("embedding_dim", "mlp_embedding_dim", "num_negatives"), self.mlp_layers)
        if not 0.0 <= float(self.alpha) <= 1.0:
            raise ConfigError(f"model.alpha={self.alpha!r} must lie in [0, 1].")
        n_users, n_items = train.n_users, train.n_items
        dim, drop, sparse = int(self.mlp_embedding_dim), float(self.dropout), bool(self.sparse_updates)
        mlp: nn.Module
        if self.use_features:
            if self.pretrained_mlp:
                raise ConfigError(
                    f"model.pretrained_mlp={self.pretrained_mlp!r} cannot initialise the MLP branch of "
                    "NeuMF with model.use_features=true: an NCF-MLP run has no feature embeddings. Drop "
                    "pretrained_mlp (pretrained_gmf still works) or set model.use_features=false."
                )
            mlp = feature_branch(self, train, dim, self.mlp_layers, drop, sparse)
            known = (self.seen_users_, self.seen_items_)
        else:
            mlp = MLPBranch(n_users, n_items, dim, self.mlp_layers, drop, sparse)
            known = None
        p = float(self.id_dropout) if self.use_features else 0.0
        gmf = GMFBranch(n_users, n_items, int(self.embedding_dim), known, sparse)
        net = PairNet({"gmf": gmf, "mlp": mlp}, p)
        init_embeddings(net, _normal_init)
        if self.use_features:  # see the class docstring: the tower must see the features from the start
            nn.init.kaiming_normal_(mlp.emb.embed.weight)
        alpha = float(self.alpha)
        sources = {"gmf": (self.pretrained_gmf, alpha), "mlp": (self.pretrained_mlp, 1.0 - alpha)}
        if any(path for path, _ in sources.values()):
            with torch.no_grad():
                net.predict.bias.zero_()
                start = 0
                for name, (path, weight) in sources.items():
                    width = net.branches[name].out_dim
                    if path:  # a branch without a pretrained run keeps its random initialisation
                        _load_branch(net, name, str(path), weight, slice(start, start + width))
                    start += width
        return net


def _load_branch(net: PairNet, name: str, path: str, weight: float, cols: slice) -> None:
    """Copy branch ``name`` of a saved GMF / NCF-MLP network into ``net``; scale its predict layer."""
    key = f"model.pretrained_{name}"
    state = read_network(path, key=key)
    prefix = f"branches.{name}."
    saved = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    saved_shapes = {k: tuple(v.shape) for k, v in saved.items()}
    wanted = {k: tuple(v.shape) for k, v in net.branches[name].state_dict().items()}
    saved_shapes["predict.weight"] = (
        tuple(state["predict.weight"].shape) if "predict.weight" in state else None
    )
    wanted["predict.weight"] = (1, cols.stop - cols.start)
    if not saved:
        problem = (
            f"it holds no {name} branch, so it is not a run of model={'gmf' if name == 'gmf' else 'ncf_mlp'}"
        )
    elif saved_shapes != wanted:
        diff = [
            f"{k}: saved {saved_shapes.get(k)}, needed {wanted.get(k)}"
            for k in sorted(set(saved_shapes) | set(wanted))
            if saved_shapes.get(k) != wanted.get(k)
        ]
        problem = "its sizes differ (" + "; ".join(diff[:3]) + ")"
    else:
        net.branches[name].load_state_dict(saved)
        net.predict.weight[:, cols] = weight * state["predict.weight"]
        net.predict.bias += weight * state["predict.bias"]
        return
    raise ConfigError(
        f"{key}={path!r} does not fit this NeuMF: {problem}. Pretrain on the same dataset with the "
        "same embedding size (and mlp_layers) as this model."
    )
