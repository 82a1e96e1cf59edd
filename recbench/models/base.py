"""Model interfaces: the :class:`Recommender` contract and the torch template :class:`TorchRecommender`.

Rules every model follows (scikit-learn's estimator conventions):

* ``__init__`` takes keyword-only hyperparameters, stores each verbatim under the same name, and
  does nothing else. Data-dependent shapes (``n_users``, ``n_items``) are read in :meth:`fit`.
* Learned state lives in attributes ending in ``_`` that only :meth:`fit` sets.
* ``score`` returns ``float32[len(users), n_items]``; higher is better. Masking of items the user
  has already seen is the evaluator's job, not the model's.
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

import numpy as np

from recbench.data.interactions import Interactions

if TYPE_CHECKING:
    import torch
    from torch import nn

    from recbench.training.trainer import Trainer, TrainHistory


@dataclass(frozen=True)
class Capabilities:
    """What a model class can do and what it needs, declared on the class (``capabilities = ...``).

    The pipeline and the serving layer read these before any data is loaded or any model trained
    (:func:`capabilities_of`, :func:`recbench.config.model_capabilities`), so a request a model cannot
    serve fails at once, naming the models that can (:func:`recbench.config.models_with`).

    Can do (``True``: the model has the method or behaviour):

    * ``rank``: ``score(users, history)`` ranks the catalogue (every model).
    * ``ratings``: ``predict(users, items)`` returns explicit ratings (``eval=rating``: rmse, mae).
    * ``probabilities``: ``predict_proba(users, items)`` returns click probabilities (logloss, accuracy).
    * ``history``: has ``score_history(sessions)``: scores ad-hoc histories (sessions of users the
      model never trained on, see :mod:`recbench.models.adhoc`).
    * ``fold_in``: has ``fold_in_spec()``: a new user's factor is solved exactly from a history (factor
      models), so the score splits exactly into one term per history item.
    * ``explain``: :func:`recbench.explanations.explain` has a method for the model (its decomposition,
      attention, occlusion or popularity).
    * ``similar``: has its own ``similar_items(items) -> float[len(items), n_items]`` (item-item
      similarities or item embeddings); without it, serving compares score columns.
    * ``private``: can be trained with differential privacy (``trainer.privacy.enabled``): has
      ``example_network()`` and ``example_batch(train, rows, rng)``
      (:class:`~recbench.training.privacy.PrivatelyTrainable`).
    * ``concurrent_score``: ``score`` only reads fitted arrays (no lazy state, no mode switches), so it
      may run in several threads at once; the evaluator then scores blocks in its worker threads
      (``eval.num_threads``), not only ranks them.

    Needs (``True``: the run fails before loading data when the dataset cannot provide it):

    * ``needs_sequences``: time-ordered histories (timestamps, a temporal leave-one-out split).
    * ``needs_ratings``: explicit ratings in the training data.
    * ``needs_features``: side features (the pipeline and the run loader load them).
    * ``needs_timestamps``: interaction times (but not sequences).
    * ``needs_user_graph``: a user-user graph (items are users, e.g. ``dataset=lastfm-friends``).
    """

    rank: bool = True
    ratings: bool = False
    probabilities: bool = False
    history: bool = False
    fold_in: bool = False
    explain: bool = False
    similar: bool = False
    private: bool = False
    concurrent_score: bool = False
    needs_sequences: bool = False
    needs_ratings: bool = False
    needs_features: bool = False
    needs_timestamps: bool = False
    needs_user_graph: bool = False

    def replace(self, **changes: bool) -> Capabilities:
        """A copy with ``changes`` applied (for hyperparameter-dependent capabilities)."""
        return dataclasses.replace(self, **changes)


#: Capability names (the fields of :class:`Capabilities`), as used by ``models_with``.
CAPABILITIES: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(Capabilities))


class Recommender(ABC):
    """Base class of every recommender (see the module docstring for the rules)."""

    #: What the class can do and needs; a class whose capabilities depend on its hyperparameters
    #: (e.g. ``mode=rating``, ``loss_type=bce``, ``use_features``) overrides :meth:`capabilities_for`.
    capabilities: ClassVar[Capabilities] = Capabilities()
    #: Settings that grant a capability the defaults lack, ``{capability: {param: value}}`` (e.g.
    #: ``{"ratings": {"mode": "rating"}}``); error messages suggest them as ``model.param=value``.
    capability_settings: ClassVar[Mapping[str, Mapping[str, Any]]] = {}

    @classmethod
    def capabilities_for(cls, params: Mapping[str, Any]) -> Capabilities:
        """The capabilities of an instance built with hyperparameters ``params`` (complete: callers go
        through :func:`class_capabilities`, which fills in the constructor's defaults). Called on the
        class, before anything is built or trained."""
        return cls.capabilities

    @abstractmethod
    def fit(self, train: Interactions, val: Interactions | None = None) -> Recommender:
        """Learn from ``train`` (``val`` may drive early stopping); returns ``self``."""

    @abstractmethod
    def score(self, users: np.ndarray, history: Interactions) -> np.ndarray:
        """Scores ``float32[len(users), n_items]`` for ``users`` (``int64``), higher = better.

        ``history`` is what the model may know at inference time (KNN fold-in, sequence context):
        train for validation, train + validation for test.
        """

    @classmethod
    def _param_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        return [
            p.name
            for p in sig.parameters.values()
            if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        ]

    def get_params(self) -> dict[str, Any]:
        """Hyperparameters as given to ``__init__`` (read back from same-named attributes)."""
        return {name: getattr(self, name) for name in self._param_names()}

    def clone(self, **overrides: Any) -> Recommender:
        """An unfitted copy with the same hyperparameters, except ``overrides``."""
        params = {k: copy.deepcopy(v) for k, v in self.get_params().items()}
        params.update(overrides)
        return type(self)(**params)

    @classmethod
    def param_defaults(cls) -> dict[str, Any]:
        """The constructor's default hyperparameters (parameters without a default are left out)."""
        sig = inspect.signature(cls.__init__)
        return {
            name: p.default
            for name, p in sig.parameters.items()
            if name in cls._param_names() and p.default is not p.empty
        }

    @property
    def predicts_probabilities(self) -> bool:
        """Whether ``predict_proba`` gives click probabilities (``capabilities.probabilities``)."""
        return capabilities_of(self).probabilities

    @property
    def is_fitted(self) -> bool:
        """Whether :meth:`fit` has set any learned (``_``-suffixed) attribute."""
        return any(k.endswith("_") and not k.startswith("__") for k in vars(self))

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items() if k != "trainer")
        return f"{type(self).__name__}({args})"


def class_capabilities(cls: type[Recommender], params: Mapping[str, Any] | None = None) -> Capabilities:
    """The capabilities of ``cls`` built with ``params`` (the constructor's defaults fill the rest)."""
    return cls.capabilities_for({**cls.param_defaults(), **(params or {})})


def capabilities_of(model: Recommender) -> Capabilities:
    """The capabilities of a built ``model`` (its class's declaration for its hyperparameters)."""
    return class_capabilities(type(model), model.get_params())


@runtime_checkable
class ProbabilityPredictor(Protocol):
    """The method a model declaring ``Capabilities(probabilities=True)`` has (fm, widedeep, deepfm with
    ``loss_type=bce``, gmf, ncf_mlp, ncf, mlp); the evaluator's logloss and accuracy need it. Whether a
    model has the capability is read from its declaration (:func:`capabilities_of`), never from the
    presence of the method.
    """

    def predict_proba(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """``float32[n]`` probabilities in ``[0, 1]`` that ``users[j]`` interacts with ``items[j]``."""
        ...


#: Default bound of the (user, item) pairs :meth:`TorchRecommender.pair_outputs` sends through the
#: network at once (a model's ``max_score_pairs`` overrides it).
PAIR_CHUNK = 1 << 16


class TorchRecommender(Recommender):
    """Template for torch models: :meth:`fit` and :meth:`score` are written once, here.

    Subclasses store their hyperparameters (plus ``trainer`` and ``seed``) in ``__init__`` and fill in
    four hooks: :meth:`build_network`, :meth:`batches`, :meth:`loss` and :meth:`score_users`. The model
    *owns* its network (``self.network_``); it is not itself an ``nn.Module``.

    Training runs inside a forked torch RNG seeded with ``seed``, so weight initialisation, dropout
    and sampling are reproducible without touching the caller's global random state.
    """

    trainer: Trainer | None
    seed: int
    #: Tuned training settings of this model (epochs, batch_size, lr, weight_decay, validate_every =
    #: early-stopping evaluation interval) used where the
    #: trainer config leaves them unset; the effective trainer is kept as ``trainer_`` after fit.
    training_defaults: ClassVar[dict[str, Any]] = {}

    @abstractmethod
    def build_network(self, train: Interactions) -> nn.Module:
        """A fresh network for the id space (and, if needed, the data) of ``train``."""

    @abstractmethod
    def batches(
        self, train: Interactions, batch_size: int, rng: np.random.Generator
    ) -> Iterator[dict[str, torch.Tensor]]:
        """One epoch of training batches (CPU tensors; the trainer moves them to the device)."""

    @abstractmethod
    def loss(self, net: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Scalar training loss of ``net`` on ``batch``."""

    @abstractmethod
    def score_users(self, net: nn.Module, users: torch.Tensor, history: Interactions) -> torch.Tensor:
        """``[len(users), n_items]`` scores computed by ``net`` (called under ``torch.no_grad``)."""

    def _trainer(self) -> Trainer:
        from recbench.training.trainer import Trainer

        return self.trainer if self.trainer is not None else Trainer()

    def effective_trainer(self) -> Trainer:
        """The trainer :meth:`fit` trains with: the configured one, its unset settings filled from
        :attr:`training_defaults`, then the global defaults (known before training)."""
        return self._trainer().with_defaults(**self.training_defaults)

    def fit(self, train: Interactions, val: Interactions | None = None) -> TorchRecommender:
        """Build the network and train it with the shared :class:`~recbench.training.Trainer`."""
        import torch

        trainer = self.effective_trainer()
        self.trainer_ = trainer
        self.device_ = trainer.resolved_device()
        self.n_users_, self.n_items_ = train.n_users, train.n_items
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            self.network_ = self.build_network(train).to(self.device_)
            self.history_: TrainHistory = trainer.fit(self, train, val, seed=self.seed)
        return self

    def score(self, users: np.ndarray, history: Interactions) -> np.ndarray:
        """Scores from :meth:`score_users` with the network in eval mode, as ``float32`` numpy."""
        import torch

        net = self.network_
        was_training = net.training  # switched only when needed: each switch walks every module
        if was_training:
            net.eval()
        try:
            with torch.no_grad():
                idx = torch.as_tensor(np.asarray(users, dtype=np.int64), device=self.device_)
                out = self.score_users(net, idx, history)
        finally:
            if was_training:
                net.train()
        return out.float().cpu().numpy()

    def pair_outputs(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """``float32[n]``: ``network_(users, items[:, None])[:, 0]`` for the pairs (eval mode, no grad).

        For networks that take ``users[B]`` with ``items[B, m]`` and return ``[B, m]`` (the pointwise
        models' logits); pairs go through in chunks of ``max_score_pairs`` (default :data:`PAIR_CHUNK`).
        """
        import torch

        users = np.asarray(users, dtype=np.int64)
        items = np.asarray(items, dtype=np.int64)
        if users.shape != items.shape or users.ndim != 1:
            raise ValueError(f"users {users.shape} and items {items.shape} must be 1-D of the same length")
        net, out = self.network_, np.empty(len(users), dtype=np.float32)
        step = int(getattr(self, "max_score_pairs", PAIR_CHUNK))
        was_training = net.training
        net.eval()
        try:
            with torch.no_grad():
                for start in range(0, len(users), step):
                    part = slice(start, start + step)
                    u = torch.from_numpy(users[part]).to(self.device_)
                    i = torch.from_numpy(items[part, None]).to(self.device_)
                    out[part] = net(u, i)[:, 0].float().cpu().numpy()
        finally:
            net.train(was_training)
        return out


def sigmoid_probabilities(model: TorchRecommender, users: np.ndarray, items: np.ndarray) -> np.ndarray:
    """``float32[n]`` ``sigmoid(logit)`` of the pairs, for models whose network outputs BCE logits.

    Shared ``predict_proba`` of the pointwise models (``predict_proba = sigmoid_probabilities`` in a
    class body makes it a method).
    """
    logits = model.pair_outputs(users, items).astype(np.float64)
    return (0.5 * (1.0 + np.tanh(0.5 * logits))).astype(np.float32)  # overflow-free sigmoid
