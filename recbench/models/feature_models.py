"""Feature-aware models: FM, Wide&Deep and DeepFM over user/item ids and side features.

Each (user, item) pair is the sparse row ``[user id | user features | item id | item features]``
held by the shared :class:`~recbench.models.feature_embeddings.FeatureEmbeddings` (slots, fields,
cold-id handling and ``id_dropout`` are described there).

Full ranking keeps memory bounded: the user and item sides are computed separately and combined
by a matrix product (FM, wide part) or, for the MLP, by splitting its first layer into a user and
an item projection and evaluating the rest on chunks of users x all items.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Iterator, Mapping
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from recbench.data.interactions import Interactions
from recbench.errors import ConfigError, DataError
from recbench.models.base import Capabilities, TorchRecommender, sigmoid_probabilities
from recbench.models.feature_embeddings import FeatureEmbeddings, bag_terms, feature_embeddings
from recbench.models.feature_examples import FeatureExamples
from recbench.models.per_example import pointwise_example_batch, rating_example_batch
from recbench.training.losses import bce_loss, bpr_loss, mse_loss
from recbench.training.samplers import PositiveSet, uniform_negatives
from recbench.training.sparse_rows import has_sparse_embeddings
from recbench.training.trainer import Trainer

LOSSES = ("bce", "bpr", "mse")
_CHUNK_FLOATS = 1 << 23  # bound of the [users x items x hidden] block evaluated at once


def fm_pairwise_naive(x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``sum_{i<j} <v_i, v_j> x_i x_j`` by the O(k n^2) double sum (reference for tests)."""
    gram = v @ v.T
    inter = (x.unsqueeze(-1) * x.unsqueeze(-2)) * gram
    return torch.triu(inter, diagonal=1).sum((-2, -1))


def fm_pairwise(x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """The same sum in O(k n): ``0.5 * sum_f ((sum_i v_if x_i)^2 - sum_i v_if^2 x_i^2)`` (Rendle 2010)."""
    return 0.5 * ((x @ v).pow(2) - (x.pow(2) @ v.pow(2))).sum(-1)


class PairMLP(nn.Module):
    """MLP over ``[user fields | item fields]``, its first layer split into a user and an item projection.

    ``forward(hu, hi)`` takes the projections (broadcastable) and returns one logit per pair.
    """

    def __init__(self, in_user: int, in_item: int, hidden: tuple[int, ...], dropout: float) -> None:
        super().__init__()
        sizes = [int(h) for h in hidden] or [1]
        self.user_proj = nn.Linear(in_user, sizes[0], bias=False)
        self.item_proj = nn.Linear(in_item, sizes[0])
        layers: list[nn.Module] = []
        for a, b in zip(sizes, [*sizes[1:], 1]):
            layers += [nn.ReLU(), nn.Dropout(dropout), nn.Linear(a, b)]
        self.tail = nn.Sequential(*layers)

    def forward(self, hu: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
        """Logits of the pairs ``hu + hi`` (first hidden layer before its activation)."""
        return self.tail(hu + hi).squeeze(-1)

    def all_pairs(self, hu: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
        """``[len(hu), len(hi)]`` logits, evaluated on chunks of users to bound memory."""
        step = max(1, _CHUNK_FLOATS // max(hi.shape[0] * hi.shape[1], 1))
        return torch.cat([self(hu[s : s + step, None], hi[None]) for s in range(0, len(hu), step)])


def _expand(rows: torch.Tensor, inverse: torch.Tensor) -> torch.Tensor:
    """``rows[inverse]`` through ``index_select``, whose backward (``index_add``) is deterministic on CPU."""
    out = rows.index_select(0, inverse.reshape(-1))
    return out.reshape(*inverse.shape, *rows.shape[1:])


class SeparableNet(nn.Module):
    """A score that splits into a user side and an item side combined term by term.

    ``side(side, idx)`` returns a list of ``(kind, tensor)`` terms with the same kinds on both
    sides: ``add`` (one number per entity, summed), ``dot`` (vectors, dot product) and ``mlp``
    (first-layer projections of :class:`PairMLP`). Training pairs compute each distinct user and
    item of a batch once; full ranking combines all items by matrix products (and MLP chunks).
    ``side`` reads the side's weighted column embeddings and hands them to :meth:`side_terms`, the
    part that the per-example view of private training
    (:class:`~recbench.models.feature_examples.FeatureExamples`) shares.
    """

    def __init__(self, emb: FeatureEmbeddings, bias: float, mlp: PairMLP | None = None) -> None:
        super().__init__()
        self.emb = emb
        self.mlp = mlp
        self.bias = nn.Parameter(torch.tensor(float(bias)))
        #: embeddings built with ``sparse=True``: the Trainer then uses a sparse-aware optimiser
        self.sparse_gradients = has_sparse_embeddings(emb)

    @abstractmethod
    def side_terms(self, side: str, vec: torch.Tensor, lin: torch.Tensor) -> list[tuple[str, torch.Tensor]]:
        """The ``(kind, tensor)`` terms of ``side`` (``"user"`` or ``"item"``) from its weighted column
        embeddings ``vec`` ``[..., L, dim]`` and first-order term ``lin`` ``[...]``."""

    def side(self, side: str, idx: torch.Tensor) -> list[tuple[str, torch.Tensor]]:
        """The ``(kind, tensor)`` terms of ``side`` for ids ``idx``."""
        return self.side_terms(side, *self.emb.columns(side, idx))

    def combine(
        self, out: torch.Tensor, user: list[tuple[str, torch.Tensor]], item: list[tuple[str, torch.Tensor]]
    ) -> torch.Tensor:
        """``out`` plus the pair terms of aligned (broadcastable) user and item terms."""
        for (kind, u), (_, i) in zip(user, item):
            if kind == "add":
                out = out + u + i
            elif kind == "dot":
                out = out + (u * i).sum(-1)
            else:
                assert self.mlp is not None
                out = out + self.mlp(u, i)
        return out

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Logits of ``(users[b], items[b, ...])``; ``items`` is ``[B]`` or ``[B, m]``."""
        u_ids, u_inv = torch.unique(users, return_inverse=True)
        i_ids, i_inv = torch.unique(items, return_inverse=True)
        wide = items.dim() == 2
        user = [(k, _expand(u, u_inv)) for k, u in self.side("user", u_ids)]
        item = [(k, _expand(i, i_inv)) for k, i in self.side("item", i_ids)]
        if wide:
            user = [(k, u.unsqueeze(1)) for k, u in user]
        return self.combine(self.bias, user, item)

    def score_all(self, users: torch.Tensor) -> torch.Tensor:
        """``[len(users), n_items]`` logits: every item's side once, combined by matrix products."""
        items = torch.arange(self.emb.item_cols.shape[0], device=users.device)
        out = self.bias
        for (kind, u), (_, i) in zip(self.side("user", users), self.side("item", items)):
            if kind == "add":
                out = out + u[:, None] + i[None]
            elif kind == "dot":
                out = out + u @ i.T
            else:
                out = out + self.mlp.all_pairs(u, i)
        return out


def _mlp(emb: FeatureEmbeddings, hidden: tuple[int, ...], dropout: float) -> PairMLP:
    """The :class:`PairMLP` over all field embeddings of both sides."""
    dim = emb.embed.embedding_dim
    return PairMLP(emb.user_pool.shape[1] * dim, emb.item_pool.shape[1] * dim, tuple(hidden), float(dropout))


class FMNet(SeparableNet):
    """Factorization machine over the concatenated row: ``w0 + own(user) + own(item) + s_u . s_i``."""

    #: each side is one FM bag of all its columns (:func:`bag_terms`); the per-example view of private
    #: training computes such sides with weighted sums over only the columns an example really reads
    bag_sides = True

    def side_terms(self, side: str, vec: torch.Tensor, lin: torch.Tensor) -> list[tuple[str, torch.Tensor]]:
        """The side's own linear and pairwise terms, and its embedding sum."""
        s, own = bag_terms(vec, lin)
        return [("add", own), ("dot", s)]


def _fm_fields(fields: torch.Tensor, lin: torch.Tensor) -> list[tuple[str, torch.Tensor]]:
    """FM over field embeddings: within-side terms and the side's sum (crossed by a dot product)."""
    s = fields.sum(-2)
    return [("add", lin + 0.5 * (s.pow(2).sum(-1) - fields.pow(2).sum((-2, -1)))), ("dot", s)]


class DeepFMNet(SeparableNet):
    """DeepFM: FM over field embeddings (first and second order) plus the MLP, sharing embeddings."""

    def side_terms(self, side: str, vec: torch.Tensor, lin: torch.Tensor) -> list[tuple[str, torch.Tensor]]:
        """FM terms of the side's fields and its MLP projection."""
        assert self.mlp is not None
        fields = self.emb.pool(side, vec)
        proj = self.mlp.user_proj if side == "user" else self.mlp.item_proj
        return [*_fm_fields(fields, lin), ("mlp", proj(fields.flatten(-2)))]


class WideDeepNet(SeparableNet):
    """Wide & Deep: a linear model over all columns plus user-feature x item-feature crosses
    (``x_u^T C x_i``), and the MLP over field embeddings."""

    def __init__(
        self, emb: FeatureEmbeddings, bias: float, mlp: PairMLP, cross: tuple[int, int] | None
    ) -> None:
        super().__init__(emb, bias, mlp)
        self.cross = None if cross is None else nn.Parameter(torch.zeros(cross))

    def side_terms(self, side: str, vec: torch.Tensor, lin: torch.Tensor) -> list[tuple[str, torch.Tensor]]:
        """First-order term and MLP projection (the crosses are added by :meth:`side`)."""
        assert self.mlp is not None
        proj = self.mlp.user_proj if side == "user" else self.mlp.item_proj
        return [("add", lin), ("mlp", proj(self.emb.pool(side, vec).flatten(-2)))]

    def side(self, side: str, idx: torch.Tensor) -> list[tuple[str, torch.Tensor]]:
        """:meth:`side_terms` and, with crosses, ``x_u^T C`` (user side) or the dense ``x_i`` (item side)."""
        terms = super().side(side, idx)
        if self.cross is not None:
            x = self.emb.dense_features(side, idx)
            terms.append(("dot", x @ self.cross if side == "user" else x))
        return terms


class _FeatureModel(TorchRecommender):
    """Shared fit/batches/loss/scoring of :class:`FM`, :class:`WideDeep` and :class:`DeepFM`.

    Subclasses set the hyperparameters and implement :meth:`_network` from the embeddings.
    """

    capabilities = Capabilities(explain=True, needs_features=True, private=True)
    capability_settings = {"ratings": {"loss_type": "mse"}, "probabilities": {"loss_type": "bce"}}

    @classmethod
    def capabilities_for(cls, params: Mapping[str, Any]) -> Capabilities:
        """Probabilities with ``loss_type=bce``; ratings (which it then needs) with ``loss_type=mse``.
        Private training (DP-SGD) with every loss (:meth:`example_network`)."""
        loss = params.get("loss_type")
        return cls.capabilities.replace(
            probabilities=loss == "bce", ratings=loss == "mse", needs_ratings=loss == "mse"
        )

    factors: int
    use_ids: bool
    loss_type: str
    num_negatives: int
    id_dropout: float
    init_std: float
    sparse_updates: bool

    @abstractmethod
    def _network(self, emb: FeatureEmbeddings, bias: float, sizes: dict[str, int]) -> nn.Module:
        """The model's network on the shared embeddings (``sizes``: feature columns per side)."""

    def _check(self, train: Interactions) -> None:
        name = type(self).__name__
        if self.loss_type not in LOSSES:
            raise ConfigError(f"model.loss_type={self.loss_type!r} must be one of {list(LOSSES)}.")
        if self.loss_type == "mse" and train.ratings is None:
            raise DataError(
                f"{name} with loss_type=mse regresses ratings, but the data has none; use "
                "`model.loss_type=bce` (implicit feedback) or a dataset with ratings."
            )
        if self.loss_type != "mse" and (isinstance(self.num_negatives, bool) or int(self.num_negatives) < 1):
            raise ConfigError(f"model.num_negatives={self.num_negatives!r} must be an integer >= 1.")
        if not 0.0 <= float(self.id_dropout) < 1.0:
            raise ConfigError(f"model.id_dropout={self.id_dropout!r} must lie in [0, 1).")
        for side, table in (("user", train.user_features), ("item", train.item_features)):
            if table is None and not self.use_ids:
                raise DataError(
                    f"{name} with use_ids=false has nothing to describe the {side}s: the data carries no "
                    f"{side} features. Give them in a CSV file (an 'id' column, then one column per "
                    f"field) with `features=default features.{side}_file={side}s.csv`, or set "
                    "`model.use_ids=true`."
                )

    def fit(self, train: Interactions, val: Interactions | None = None) -> _FeatureModel:
        """Check the data, index the training positives for negative sampling, then train."""
        self._check(train)
        if self.loss_type == "mse":
            assert train.ratings is not None
            self.rating_range_ = (float(train.ratings.min()), float(train.ratings.max()))
        else:
            # negatives come from the items training knows: unseen (cold) items stay neutral
            self.sample_items_ = np.flatnonzero(train.item_counts() > 0)
            self.positives_ = PositiveSet(train.binary_csr[:, self.sample_items_])
        try:
            super().fit(train, val)
        finally:
            self.__dict__.pop("positives_", None)  # sampling state only
        return self

    def build_network(self, train: Interactions) -> nn.Module:
        """Slot layouts of both sides, the shared :class:`FeatureEmbeddings` and the model's network.

        Users and items without interactions in ``train`` (``seen_users_`` / ``seen_items_`` false)
        get weight 0 on their id slot, here and in every later score.
        """
        self.seen_users_ = train.user_counts() > 0
        self.seen_items_ = train.item_counts() > 0
        emb, sizes = feature_embeddings(
            train,
            self.seen_users_,
            self.seen_items_,
            use_ids=bool(self.use_ids),
            dim=int(self.factors),
            id_dropout=float(self.id_dropout),
            init_std=float(self.init_std),
            sparse=bool(self.sparse_updates),
        )
        bias = float(train.ratings.mean()) if self.loss_type == "mse" and train.ratings is not None else 0.0
        return self._network(emb, bias, sizes)

    def batches(
        self, train: Interactions, batch_size: int, rng: np.random.Generator
    ) -> Iterator[dict[str, torch.Tensor]]:
        """Shuffled positives with ``num_negatives`` sampled items each (``items`` ``[B, 1 + n]``),
        or shuffled ``(user, item, rating)`` rows for ``loss_type=mse``."""
        order = rng.permutation(len(train))
        for start in range(0, len(train), batch_size):
            idx = order[start : start + batch_size]
            users, items = train.users[idx], train.items[idx]
            if self.loss_type == "mse":
                assert train.ratings is not None
                yield {
                    "users": torch.from_numpy(users),
                    "items": torch.from_numpy(items),
                    "ratings": torch.from_numpy(train.ratings[idx]),
                }
                continue
            neg = self.sample_items_[uniform_negatives(self.positives_, users, int(self.num_negatives), rng)]
            yield {
                "users": torch.from_numpy(users),
                "items": torch.from_numpy(np.concatenate([items[:, None], neg], axis=1)),
            }

    def example_network(self) -> nn.Module:
        """Per-example losses through standard layers, for private training (:class:`FeatureExamples`).

        What the network took from the training data beyond the examples' own gradients is reset to
        public values first: every user and item gets weight 1 on its id slot (whether an entity has
        training interactions is private), and the bias starts at 0 (``mse``: the middle of the rating
        scale, which is public; the mean rating is not).
        """
        net = self.network_
        with torch.no_grad():
            low, high = self.rating_range_ if self.loss_type == "mse" else (0.0, 0.0)
            net.bias.fill_((low + high) / 2)
            for side in ("user", "item"):
                if net.emb.has_id[side]:
                    getattr(net.emb, f"{side}_weights")[:, 0] = 1.0
        self.seen_users_ = np.ones_like(self.seen_users_)
        self.seen_items_ = np.ones_like(self.seen_items_)
        return FeatureExamples(net, self.loss_type)

    def example_batch(
        self, train: Interactions, rows: np.ndarray, rng: np.random.Generator
    ) -> dict[str, torch.Tensor]:
        """The rows' ``(user, item, rating)`` (``mse``), or their positives with ``num_negatives``
        negatives drawn uniformly from the whole catalogue per row (:func:`pointwise_example_batch`)."""
        if self.loss_type == "mse":
            return rating_example_batch(train, rows)
        return pointwise_example_batch(train, rows, int(self.num_negatives), rng)

    def loss(self, net: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """BCE (positives vs sampled negatives), BPR, or squared error on ratings."""
        out = net(batch["users"], batch["items"])
        if self.loss_type == "mse":
            return mse_loss(out, batch["ratings"])
        if self.loss_type == "bpr":
            return bpr_loss(out[:, 0], out[:, 1:])
        return bce_loss(out[:, 0], out[:, 1:])

    def score_users(self, net: nn.Module, users: torch.Tensor, history: Interactions) -> torch.Tensor:
        """Logits (or predicted ratings) of every item, computed side by side (see the module docstring)."""
        return net.score_all(users)

    def predict_proba(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """``float32[n]`` click probabilities ``sigmoid(logit)`` of the pairs (``loss_type=bce`` only)."""
        if not self.predicts_probabilities:
            raise ConfigError(
                f"{type(self).__name__} predicts click probabilities only with model.loss_type=bce (it was "
                f"trained with {self.loss_type!r}, whose output is not a probability). Use "
                "model.loss_type=bce, or keep only auc in eval.metrics (it ranks the scores)."
            )
        return sigmoid_probabilities(self, users, items)

    def predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """``float32[n]`` predicted ratings, clipped to the training range (only with ``loss_type=mse``)."""
        if self.loss_type != "mse":
            raise ConfigError(
                f"{type(self).__name__} predicts ratings only with model.loss_type=mse "
                f"(it was trained with {self.loss_type!r})."
            )
        return np.clip(self.pair_outputs(users, items), *self.rating_range_).astype(np.float32)


class FM(_FeatureModel):
    r"""Factorization machine (Rendle, "Factorization Machines", ICDM 2010).

    Over the sparse row :math:`x = [\text{user id} \mid \text{user features} \mid \text{item id}
    \mid \text{item features}]`,

    .. math:: \hat y(x) = w_0 + \sum_j w_j x_j + \sum_{j<l} \langle v_j, v_l \rangle x_j x_l,

    with the pairwise term computed in :math:`O(kn)` as
    :math:`\tfrac12 \sum_f [(\sum_j v_{jf} x_j)^2 - \sum_j v_{jf}^2 x_j^2]`. It separates into a user
    part, an item part and :math:`s_u^\top s_i`, so full ranking is one matrix product. With ids only
    it is biased matrix factorisation.

    Parameters
    ----------
    factors: latent dimension :math:`k`.
    use_ids: include the user and item id columns (``False``: features only).
    loss_type: ``bce`` (sampled negatives), ``bpr`` (pairwise ranking) or ``mse`` (ratings).
    num_negatives: sampled negatives per positive and epoch (``bce``/``bpr``).
    id_dropout: probability of zeroing a training example's id columns (cold-start robustness).
    init_std: standard deviation of the factor initialisation.
    sparse_updates: sparse gradients over the embedding rows (columns) a batch reads and the lazy
        row-wise Adam (:mod:`recbench.training.sparse_rows`), so a step costs what the batch touched;
        ``False``: dense gradients and steps over the whole tables.
    trainer: the shared :class:`~recbench.training.Trainer` (``None``: tuned defaults).
    seed: seed of initialisation, batch order and sampling.
    """

    training_defaults: ClassVar[dict[str, Any]] = {
        "epochs": 20,
        "batch_size": 1024,
        "lr": 2e-3,
        "weight_decay": 0.0,
    }

    def __init__(
        self,
        *,
        factors: int = 64,
        use_ids: bool = True,
        loss_type: str = "bce",
        num_negatives: int = 4,
        id_dropout: float = 0.0,
        init_std: float = 0.05,
        sparse_updates: bool = True,
        trainer: Trainer | None = None,
        seed: int = 0,
    ) -> None:
        self.factors = factors
        self.use_ids = use_ids
        self.loss_type = loss_type
        self.num_negatives = num_negatives
        self.id_dropout = id_dropout
        self.init_std = init_std
        self.sparse_updates = sparse_updates
        self.trainer = trainer
        self.seed = seed

    def _network(self, emb: FeatureEmbeddings, bias: float, sizes: dict[str, int]) -> nn.Module:
        return FMNet(emb, bias)


class DeepFM(_FeatureModel):
    r"""DeepFM (Guo, Tang, Ye, Li & He, "DeepFM: A Factorization-Machine based Neural Network for
    CTR Prediction", IJCAI 2017).

    Each field (user id, each user feature field, item id, each item feature field) has one
    embedding :math:`e_f` (multi-valued fields pool their columns with weights ``1/len``). The FM
    component adds first-order weights and :math:`\sum_{f<g} \langle e_f, e_g \rangle`; the deep
    component is an MLP over the concatenated :math:`[e_1, \ldots, e_F]`; both share the
    embeddings, and the logit is their sum.

    Parameters
    ----------
    factors: embedding dimension of every field.
    hidden: sizes of the MLP's hidden layers.
    dropout: dropout after each hidden layer.
    use_ids, loss_type, num_negatives, id_dropout, init_std, sparse_updates, trainer, seed: as in
        :class:`FM`.
    """

    training_defaults: ClassVar[dict[str, Any]] = {
        "epochs": 20,
        "batch_size": 1024,
        "lr": 2e-3,
        "weight_decay": 0.0,
    }

    def __init__(
        self,
        *,
        factors: int = 32,
        hidden: tuple[int, ...] = (128, 64),
        dropout: float = 0.2,
        use_ids: bool = True,
        loss_type: str = "bce",
        num_negatives: int = 4,
        id_dropout: float = 0.1,
        init_std: float = 0.05,
        sparse_updates: bool = True,
        trainer: Trainer | None = None,
        seed: int = 0,
    ) -> None:
        self.factors = factors
        self.hidden = hidden
        self.dropout = dropout
        self.use_ids = use_ids
        self.loss_type = loss_type
        self.num_negatives = num_negatives
        self.id_dropout = id_dropout
        self.init_std = init_std
        self.sparse_updates = sparse_updates
        self.trainer = trainer
        self.seed = seed

    def _network(self, emb: FeatureEmbeddings, bias: float, sizes: dict[str, int]) -> nn.Module:
        return DeepFMNet(emb, bias, _mlp(emb, self.hidden, self.dropout))


class WideDeep(_FeatureModel):
    r"""Wide & Deep (Cheng et al., "Wide & Deep Learning for Recommender Systems", DLRS 2016).

    The wide part is a linear model over every column plus cross-product transformations of the
    user and item features, :math:`x_u^\top C\, x_i` (every user-feature x item-feature pair gets a
    weight); the deep part is an MLP over the field embeddings (as in :class:`DeepFM`). Both are
    trained jointly on the summed logit (with one optimiser, where the paper used FTRL for the wide
    and AdaGrad for the deep part).

    Parameters
    ----------
    factors: embedding dimension of every field.
    hidden: sizes of the MLP's hidden layers.
    dropout: dropout after each hidden layer.
    cross: add the user-feature x item-feature cross products to the wide part.
    use_ids, loss_type, num_negatives, id_dropout, init_std, sparse_updates, trainer, seed: as in
        :class:`FM`.
    """

    training_defaults: ClassVar[dict[str, Any]] = {
        "epochs": 20,
        "batch_size": 1024,
        "lr": 2e-3,
        "weight_decay": 0.0,
    }

    def __init__(
        self,
        *,
        factors: int = 32,
        hidden: tuple[int, ...] = (128, 64),
        dropout: float = 0.2,
        cross: bool = True,
        use_ids: bool = True,
        loss_type: str = "bce",
        num_negatives: int = 4,
        id_dropout: float = 0.1,
        init_std: float = 0.05,
        sparse_updates: bool = True,
        trainer: Trainer | None = None,
        seed: int = 0,
    ) -> None:
        self.factors = factors
        self.hidden = hidden
        self.dropout = dropout
        self.cross = cross
        self.use_ids = use_ids
        self.loss_type = loss_type
        self.num_negatives = num_negatives
        self.id_dropout = id_dropout
        self.init_std = init_std
        self.sparse_updates = sparse_updates
        self.trainer = trainer
        self.seed = seed

    def _network(self, emb: FeatureEmbeddings, bias: float, sizes: dict[str, int]) -> nn.Module:
        shape = (sizes["user_features"], sizes["item_features"])
        cross = shape if bool(self.cross) and min(shape) > 0 else None
        return WideDeepNet(emb, bias, _mlp(emb, self.hidden, self.dropout), cross)
