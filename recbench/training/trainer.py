"""The one training loop shared by every torch model.

The Trainer holds only optimisation mechanics (epochs, batch size, optimiser, device, early stopping).
Anything that is part of a model's objective (negatives, loss type, masking) is a model hyperparameter.
It does not import :mod:`recbench.models`: it drives any object following :class:`Trainable`.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import logging
import math
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from recbench.data.interactions import Interactions
from recbench.errors import ConfigError, TrainingError
from recbench.training import distributed
from recbench.training.checkpoint import TrainState, load_checkpoint, restore_rng, save_checkpoint
from recbench.training.privacy import PrivacySettings, PrivateSession
from recbench.training.progress import batch_total, epoch_progress
from recbench.training.row_adam import RowAdam
from recbench.training.seeding import resolve_device

log = logging.getLogger(__name__)


class Trainable(Protocol):
    """What the Trainer needs from a model (``TorchRecommender`` provides it)."""

    network_: nn.Module

    def batches(
        self, train: Interactions, batch_size: int, rng: np.random.Generator
    ) -> Iterator[dict[str, torch.Tensor]]: ...

    def loss(self, net: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor: ...

    def score(self, users: np.ndarray, history: Interactions) -> np.ndarray: ...

    # Optional: ``fused_step(net, optimizer)`` returns ``None`` or a callable ``step(batch) -> loss``
    # that computes the loss and updates ``net`` and the optimiser's state in one call (BPR's compiled
    # step); the Trainer uses it in one process without DP-SGD or clipping, the loss route otherwise.


#: Functions called with every epoch row (see :func:`epoch_listener`); the pipeline's tracking hook.
_EPOCH_LISTENERS: ContextVar[tuple[Callable[[dict[str, float]], None], ...]] = ContextVar(
    "epoch_listeners", default=()
)


@contextmanager
def epoch_listener(fn: Callable[[dict[str, float]], None]) -> Iterator[None]:
    """Within the block, every Trainer calls ``fn(row)`` after each epoch (``epoch``, ``loss``,
    validation metric, ``seconds``). This is how experiment trackers see training progress without
    the Trainer knowing about them."""
    token = _EPOCH_LISTENERS.set((*_EPOCH_LISTENERS.get(), fn))
    try:
        yield
    finally:
        _EPOCH_LISTENERS.reset(token)


#: Validation metrics without a cut-off that early stopping accepts (rating errors and CTR metrics).
_POINTWISE_METRICS = frozenset({"rmse", "mae", "auc", "logloss", "accuracy"})


@dataclass
class EarlyStopping:
    """Stop when the validation metric has not improved by ``min_delta`` for ``patience`` evaluations.

    ``metric`` is an evaluator key: a ranking metric at a cut-off such as ``ndcg@10`` or
    ``recall@20``, or a pointwise one (``rmse``, ``mae``, ``auc``, ``logloss``, ``accuracy``).
    Errors (:data:`~recbench.evaluation.metrics.LOWER_IS_BETTER`) improve downwards, every other
    metric upwards. The best epoch's weights are restored at the end of training. ``patience`` and
    ``every`` left ``None`` take the model's preferred values (``training_defaults["patience"]`` /
    ``["validate_every"]``), else :data:`GLOBAL_DEFAULTS` (see :meth:`Trainer.with_defaults`).
    """

    metric: str = "ndcg@10"
    patience: int | None = None
    min_delta: float = 0.0
    every: int | None = None

    def __post_init__(self) -> None:
        name, at, k = self.metric.partition("@")
        pointwise = not at and name in _POINTWISE_METRICS
        if not pointwise and (not name or not k.isdigit() or int(k) <= 0):
            raise ConfigError(
                f"trainer.early_stopping.metric={self.metric!r} must look like 'ndcg@10' (metric@k, k > 0) "
                f"or be one of {sorted(_POINTWISE_METRICS)}."
            )
        if (self.patience is not None and self.patience < 1) or (self.every is not None and self.every < 1):
            raise ConfigError("trainer.early_stopping.patience and .every must be >= 1.")

    @property
    def name_and_k(self) -> tuple[str, int | None]:
        """``("ndcg", 10)`` for ``ndcg@10``; ``("rmse", None)`` for a metric without cut-off."""
        name, _, k = self.metric.partition("@")
        return name, int(k) if k else None

    @property
    def lower_is_better(self) -> bool:
        """Whether the metric is an error (``rmse``, ``mae``, ``logloss``...), minimised."""
        from recbench.evaluation.metrics import LOWER_IS_BETTER

        return self.name_and_k[0] in LOWER_IS_BETTER

    def improved(self, value: float, best: float | None) -> bool:
        """Whether ``value`` beats ``best`` by more than ``min_delta`` (in the metric's direction)."""
        if best is None:
            return True
        return value < best - self.min_delta if self.lower_is_better else value > best + self.min_delta


@dataclass
class TrainHistory:
    """Per-epoch record: ``rows`` hold ``epoch``, ``loss``, ``seconds`` (the whole epoch),
    ``train_seconds`` and ``train_cpu_seconds`` (wall and process CPU time of its training batches
    alone, without validation), ``batches`` and the validation metric if any."""

    rows: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int | None = None
    best_value: float | None = None
    stopped_early: bool = False
    #: the accountant's numbers of a private fit (:meth:`PrivateSession.report`), else ``None``
    privacy: dict[str, Any] | None = None


#: Fallback settings for values neither the config nor the model's ``training_defaults`` set.
GLOBAL_DEFAULTS: dict[str, Any] = {
    "epochs": 20,
    "batch_size": 1024,
    "lr": 1e-3,
    "weight_decay": 0.0,
    "validate_every": 1,  # early_stopping.every when the config leaves it unset
    "patience": 3,  # early_stopping.patience when the config leaves it unset
}

#: Keys of :data:`GLOBAL_DEFAULTS` that fill the early-stopping settings, not Trainer fields.
_STOPPER_DEFAULTS = {"validate_every": "every", "patience": "patience"}


@dataclass
class Trainer:
    """Mini-batch training with optional early stopping on a validation ranking metric.

    Parameters
    ----------
    epochs: maximum number of passes over the training data.
        ``epochs``, ``batch_size``, ``lr`` and ``weight_decay`` may be ``None``: the model's own
        ``training_defaults`` then apply (see :meth:`with_defaults`), else :data:`GLOBAL_DEFAULTS`.
    batch_size: examples per optimiser step (what an "example" is, the model decides).
    lr, weight_decay: passed to ``optimizer(params, lr=lr, weight_decay=weight_decay)``.
    optimizer: optimiser factory, e.g. ``torch.optim.Adam`` (YAML: ``_target_`` + ``_partial_: true``).
    device: ``auto`` (cuda if available), ``cpu``, ``cuda`` or ``cuda:N``.
    early_stopping: :class:`EarlyStopping`, or ``None`` to train all epochs.
    grad_clip_norm: clip the global gradient norm to this value when set.
    num_threads: ``torch.set_num_threads`` for the run (avoids oversubscription under parallel sweeps).
    progress: show a progress bar (only when stderr is a terminal).
    limit_batches: end every epoch after this many batches (``None``: all). For smoke runs and for
        timing a few batches of an epoch at a size where a whole one takes too long.
    checkpoint_dir: write ``checkpoint.pt`` there (the pipeline sets the run dir): after every
        ``checkpoint_every``-th epoch and after the last one (also when early stopping ends training).
    checkpoint_every: epochs between checkpoints (``1``: every epoch). A resumed run repeats the
        epochs after the last checkpoint, with the same result.
    resume: a run directory (or checkpoint file) of an interrupted run: training continues after its
        last saved epoch with the same weights, optimiser, RNG and early-stopping state, so a CPU run
        with a fixed seed ends exactly as if it had never stopped.
    strategy, devices: ``ddp`` with ``devices=N`` trains in N processes (DistributedDataParallel; the
        pipeline starts them); ``auto`` does so only when a launcher such as torchrun started the
        processes. See :mod:`recbench.training.distributed`.
    privacy: :class:`~recbench.training.privacy.PrivacySettings`; when active, the steps are DP-SGD
        steps through Opacus (:class:`~recbench.training.privacy.PrivateSession`).
    """

    epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    weight_decay: float | None = None
    optimizer: Callable[..., torch.optim.Optimizer] = torch.optim.Adam
    device: str = "auto"
    early_stopping: EarlyStopping | None = None
    grad_clip_norm: float | None = None
    num_threads: int | None = None
    progress: bool = True
    limit_batches: int | None = None
    checkpoint_dir: str | None = None
    checkpoint_every: int = 5
    resume: str | None = None
    strategy: str = "auto"
    devices: int | None = None
    privacy: PrivacySettings | None = None

    def __post_init__(self) -> None:
        distributed.check_settings(self.strategy, self.devices)
        if self.epochs is not None and self.epochs < 1:
            raise ConfigError(f"trainer.epochs={self.epochs} must be >= 1.")
        if self.batch_size is not None and self.batch_size < 1:
            raise ConfigError(f"trainer.batch_size={self.batch_size} must be >= 1.")
        if self.lr is not None and not (self.lr > 0 and math.isfinite(self.lr)):
            raise ConfigError(f"trainer.lr={self.lr} must be a positive number (e.g. 1e-3).")
        if self.weight_decay is not None and self.weight_decay < 0:
            raise ConfigError(f"trainer.weight_decay={self.weight_decay} must be >= 0.")
        if isinstance(self.checkpoint_every, bool) or int(self.checkpoint_every) < 1:
            raise ConfigError(f"trainer.checkpoint_every={self.checkpoint_every!r} must be an integer >= 1.")
        if self.privacy is not None and self.privacy.active:
            self._check_private_combination(several=self.strategy == "ddp" or (self.devices or 1) > 1)

    def with_defaults(self, **preferred: Any) -> Trainer:
        """A copy whose unset (``None``) settings take the model's ``preferred`` values, then the global ones.

        This is how a model states its tuned training settings (e.g. BPR's learning rate) while an
        explicit ``trainer.lr=...`` or ``trainer=fast`` on the command line still wins.
        """
        unknown = set(preferred) - set(GLOBAL_DEFAULTS)
        if unknown:
            raise ValueError(f"unknown training defaults {sorted(unknown)}")
        filled = {
            name: getattr(self, name)
            if getattr(self, name) is not None
            else preferred.get(name, GLOBAL_DEFAULTS[name])
            for name in GLOBAL_DEFAULTS
            if name not in _STOPPER_DEFAULTS
        }
        stopper = self.early_stopping
        if stopper is not None:
            unset = {
                field: preferred.get(key, GLOBAL_DEFAULTS[key])
                for key, field in _STOPPER_DEFAULTS.items()
                if getattr(stopper, field) is None
            }
            filled["early_stopping"] = replace(stopper, **unset)
        return replace(self, **filled)

    def resolved_device(self) -> torch.device:
        """The torch device this trainer runs on (the rank's own GPU in distributed training)."""
        return distributed.local_device(resolve_device(self.device))

    def fit(
        self, model: Trainable, train: Interactions, val: Interactions | None, *, seed: int
    ) -> TrainHistory:
        """Train ``model.network_`` in place; returns the per-epoch history.

        With early stopping and a validation set, the weights of the best epoch are restored.
        A non-finite epoch loss raises :class:`~recbench.errors.TrainingError`.
        """
        stopper_unset = self.early_stopping is not None and None in (
            self.early_stopping.every,
            self.early_stopping.patience,
        )
        if stopper_unset or None in (self.epochs, self.batch_size, self.lr, self.weight_decay):
            return self.with_defaults().fit(model, train, val, seed=seed)
        if self.num_threads:  # for this fit only: the caller's thread count is restored on exit
            before = torch.get_num_threads()
            torch.set_num_threads(int(self.num_threads))
            try:
                return dataclasses.replace(self, num_threads=None).fit(model, train, val, seed=seed)
            finally:
                torch.set_num_threads(before)
        device = self.resolved_device()
        net = model.network_
        rng = np.random.default_rng(seed)
        opt = self._make_optimizer(net)
        history = TrainHistory()
        private = self._private_session(model, train, seed)
        stopper = self.early_stopping if val is not None and len(val) > 0 else None
        best_state: dict[str, Any] | None = None
        bad_rounds = 0
        first = 1
        if self.resume:
            state = load_checkpoint(self.resume)
            net.load_state_dict(state.network)
            opt.load_state_dict(state.optimizer)
            restore_rng(rng, state.numpy_rng)
            torch.set_rng_state(state.torch_rng)
            history.rows = list(state.rows)
            history.best_value, history.best_epoch = state.best_value, state.best_epoch
            best_state, bad_rounds, first = state.best_network, state.bad_rounds, state.epoch + 1
            log.info("resuming from %s after epoch %d", self.resume, state.epoch)
            if stopper is not None and bad_rounds >= stopper.patience:
                first = self.epochs + 1  # it had already stopped early
                history.stopped_early = True
        sync = distributed.DistributedTraining(model, net, device) if distributed.active() else None
        fused = None  # a model's compiled step (loss, gradients and update in one call), where it has one
        if sync is None and private is None and not self.grad_clip_norm and hasattr(model, "fused_step"):
            fused = model.fused_step(net, opt)
        show = self.progress and sys.stderr.isatty() and distributed.is_main()
        bar = tqdm(range(first, self.epochs + 1), desc="train", unit="epoch", disable=not show, leave=False)
        for epoch in bar:
            start, cpu_start = time.perf_counter(), time.process_time()
            net.train()
            total = torch.zeros((), device=device)
            n_batches = 0
            batch_size = sync.local_batch_size(self.batch_size) if sync else self.batch_size
            total_batches = None
            if private is not None:
                batches = private.batches(rng)
            else:
                batches = model.batches(train, batch_size, rng)
                total_batches = batch_total(model, train, batch_size)
            if sync:
                batches = sync.shard(batches)
                total_batches = None if total_batches is None else -(-total_batches // sync.size)
            if self.limit_batches:
                batches = itertools.islice(batches, int(self.limit_batches))
                total_batches = None if total_batches is None else min(total_batches, int(self.limit_batches))
            for batch in epoch_progress(batches, epoch, total=total_batches, bar=show):
                batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
                if private is not None:  # clipping, noise and the update happen in the DP optimiser
                    total += private.step(batch).to(device)
                    n_batches += 1
                    continue
                if fused is not None:
                    total += fused(batch)
                    n_batches += 1
                    continue
                loss = sync.loss(batch) if sync else model.loss(net, batch)
                opt.zero_grad(set_to_none=True)
                sync.backward(loss) if sync else loss.backward()
                if self.grad_clip_norm:
                    nn.utils.clip_grad_norm_(net.parameters(), self.grad_clip_norm)
                opt.step()
                total += loss.detach()
                n_batches += 1
            epoch_loss = sync.epoch_loss() if sync else float(total) / max(n_batches, 1)
            train_seconds, train_cpu = time.perf_counter() - start, time.process_time() - cpu_start
            if not math.isfinite(epoch_loss):
                raise TrainingError(
                    f"The training loss became {epoch_loss} in epoch {epoch}. This usually means the "
                    f"learning rate is too high (trainer.lr={self.lr}); lower it, add "
                    "trainer.grad_clip_norm=1.0, or check the input ratings for extreme values."
                )
            row: dict[str, float] = {"epoch": epoch, "loss": epoch_loss, "batches": n_batches}
            if stopper is not None and epoch % stopper.every == 0:
                value = self._validate(model, train, val, stopper)
                row[f"val/{stopper.metric}"] = value
                if stopper.improved(value, history.best_value):
                    history.best_value, history.best_epoch = value, epoch
                    best_state = copy.deepcopy(net.state_dict())
                    bad_rounds = 0
                else:
                    bad_rounds += 1
            row.update(seconds=time.perf_counter() - start, train_seconds=train_seconds)
            row["train_cpu_seconds"] = train_cpu
            history.rows.append(row)
            for listener in _EPOCH_LISTENERS.get():
                listener(dict(row))
            bar.set_postfix({k: f"{v:.4f}" for k, v in row.items() if k.startswith(("loss", "val/"))})
            log.info("epoch %d: %s", epoch, {k: round(v, 5) for k, v in row.items() if k != "epoch"})
            stop = stopper is not None and bad_rounds >= stopper.patience
            due = stop or epoch == self.epochs or epoch % int(self.checkpoint_every) == 0
            if self.checkpoint_dir and distributed.is_main() and due:
                save_checkpoint(
                    TrainState(
                        epoch=epoch,
                        network=net.state_dict(),
                        optimizer=opt.state_dict(),
                        numpy_rng=rng.bit_generator.state,
                        torch_rng=torch.get_rng_state(),
                        rows=history.rows,
                        best_value=history.best_value,
                        best_epoch=history.best_epoch,
                        best_network=best_state,
                        bad_rounds=bad_rounds,
                    ),
                    self.checkpoint_dir,
                )
            if stop:
                history.stopped_early = True
                break
        bar.close()
        if private is not None:
            history.privacy = private.report()
            private.close()
        if best_state is not None:
            net.load_state_dict(best_state)
        return history

    def _check_private_combination(self, *, several: bool) -> None:
        """Refuse settings DP-SGD cannot honour (checked when the trainer is built, so before any data
        is loaded or any training process is started; again at fit time for launcher-started processes)."""
        clashes = [
            key
            for key, on in (
                ("trainer.resume", bool(self.resume)),
                ("trainer.grad_clip_norm", bool(self.grad_clip_norm)),
                ("trainer.strategy=ddp / trainer.devices", several),
            )
            if on
        ]
        if clashes:
            raise ConfigError(
                f"trainer.privacy.enabled=true cannot be combined with {', '.join(clashes)}: the "
                "accountant's state is not checkpointed (resume), DP-SGD clips each example to "
                "trainer.privacy.max_grad_norm (grad_clip_norm), and its Poisson sample is drawn in one "
                "process (ddp). Unset them, or train without privacy (privacy=none)."
            )

    def _private_session(self, model: Trainable, train: Interactions, seed: int) -> PrivateSession | None:
        """The DP-SGD session of this fit when ``privacy`` is active, else ``None``."""
        if self.privacy is None or not self.privacy.active:
            return None
        self._check_private_combination(several=distributed.active())  # torchrun: known only now
        assert self.epochs is not None and self.batch_size is not None
        return PrivateSession(
            self.privacy,
            model,
            train,
            epochs=self.epochs,
            batch_size=self.batch_size,
            make_optimizer=self._make_optimizer,
            seed=seed,
        )

    def _make_optimizer(self, net: nn.Module) -> torch.optim.Optimizer:
        """``optimizer(params, lr=..., weight_decay=...)``; Adam and AdamW get their fused kernel.

        The fused implementation (one kernel over all parameters, on CPU and CUDA) computes the same
        update as the default per-tensor loop, several times faster on CPU, which matters for
        models whose step is a large share of the work (BPR with big batches). It is used unless the
        config already chose (``fused``/``foreach`` given) or a parameter is not a dense float tensor.
        """
        params = list(net.parameters())
        kwargs: dict[str, Any] = {"lr": self.lr, "weight_decay": self.weight_decay}
        target = getattr(self.optimizer, "func", self.optimizer)
        chosen = set(getattr(self.optimizer, "keywords", {}) or {}) & {"fused", "foreach"}
        if getattr(net, "sparse_gradients", False):
            return self._sparse_optimizer(params, target)
        if (
            target in (torch.optim.Adam, torch.optim.AdamW)
            and not chosen
            and params
            and all(
                p.is_floating_point() and not p.is_sparse and p.device.type in ("cpu", "cuda") for p in params
            )
        ):
            kwargs["fused"] = True
        return self.optimizer(params, **kwargs)

    def _sparse_optimizer(self, params: list[nn.Parameter], target: Any) -> torch.optim.Optimizer:
        """The optimiser of a network with sparse gradients: Adam/AdamW become :class:`RowAdam`.

        :class:`~recbench.training.row_adam.RowAdam` (lazy Adam) keeps Adam's moments per row and
        updates only the rows present in a batch's gradient, so a step costs what the batch
        touched. Other optimisers are used as configured (``SGD`` and ``Adagrad`` accept sparse
        gradients). Weight decay would touch every row each step; such networks regularise the
        gathered rows in their loss instead.
        """
        if self.weight_decay:
            raise ConfigError(
                f"trainer.weight_decay={self.weight_decay} cannot be used with sparse updates (it would "
                "decay every row at every step). Use the model's own L2 (model.reg) and "
                "trainer.weight_decay=0, or model.sparse_updates=false."
            )
        if self.grad_clip_norm:
            raise ConfigError(
                f"trainer.grad_clip_norm={self.grad_clip_norm} is not supported with sparse updates; "
                "unset it, or set model.sparse_updates=false."
            )
        keywords = dict(getattr(self.optimizer, "keywords", {}) or {})
        if target in (torch.optim.Adam, torch.optim.AdamW):
            extra = {k: v for k, v in keywords.items() if k in ("betas", "eps")}
            return RowAdam(params, lr=self.lr, **extra)
        return self.optimizer(params, lr=self.lr)

    @staticmethod
    def _validate(
        model: Trainable, train: Interactions, val: Interactions | None, stopper: EarlyStopping
    ) -> float:
        from recbench.evaluation.evaluator import EvalSpec, evaluate

        assert val is not None
        name, k = stopper.name_and_k
        ks = {"ks": (k,)} if k else {}
        spec = EvalSpec(metrics=(name,), progress=False, **ks)  # the epoch bar is showing
        result = evaluate(model, val, train, spec)
        return float(result.metrics[stopper.metric])
