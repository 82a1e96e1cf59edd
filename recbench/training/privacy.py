"""Differentially private training (DP-SGD) of the torch models, with Opacus doing the work.

When ``trainer.privacy.enabled`` (and ``target_epsilon`` is not ``'inf'``), the :class:`~recbench.training.
Trainer` hands its steps to a :class:`PrivateSession`, which wraps three things with Opacus's
``PrivacyEngine.make_private``:

* the **data loader**: one example is one training interaction (``unit=example``); an index loader over
  the training rows becomes Opacus's ``DPDataLoader``, which draws every step's batch by Poisson
  sampling (each row independently with probability ``q = 1 / steps_per_epoch``), the sampling the
  accountant assumes. The model builds the batch of the drawn rows (:meth:`PrivatelyTrainable.example_batch`)
  from those rows alone: pointwise models draw their negatives uniformly from the catalogue (excluding
  only the example's own item), never from other users' data or item counts;
  with ``unit=user`` the loader samples users instead, and a user's examples form one unit
  (:mod:`recbench.training.privacy_user`);
* the **model**: a module of standard layers (``nn.Embedding``, ``nn.Linear``) sharing the network's
  parameters and returning one loss per example (:meth:`PrivatelyTrainable.example_network`), wrapped
  for ghost clipping (per-example gradient norms without materialising per-example gradients of the
  embedding tables);
* the **optimiser**: a ``DPOptimizer`` that clips each example's gradient to ``max_grad_norm`` and adds
  Gaussian noise of standard deviation ``noise_multiplier * max_grad_norm`` to their sum at every step.

The accountant (``rdp`` or ``prv``) turns the noise multiplier, the sampling rate and the number of
steps into the spent epsilon at ``delta``; with ``target_epsilon``, the noise multiplier is solved so
that all configured epochs spend exactly the target. :meth:`PrivacySession.report` is what
``metrics.json`` records under ``privacy.*``.

What is not covered: hyperparameters, early stopping and the choice of the best epoch on the validation
split (model selection reads validation interactions and, to mask seen items, the training ones); the
rating scale of rating models (treated as public); the item catalogue and the user ids (public). The
randomness comes from seeded torch generators (reproducible runs), not a cryptographically secure source.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from recbench.data.interactions import Interactions
from recbench.errors import ConfigError

#: Accountants that the ``accountant`` setting may name (Opacus's RDP and PRV accountants).
ACCOUNTANTS = ("rdp", "prv")
#: Privacy units: one interaction (``example``), or all of a user's interactions (``user``, see
#: :mod:`recbench.training.privacy_user`).
UNITS = ("example", "user")
#: The models that can be trained privately (the ``private`` capability), for error messages.
PRIVATE_MODELS = (
    "gmf, ncf_mlp, ncf, mlp, mf, pmf, fm, widedeep, deepfm, and gru4rec, nextitnet with unit=user"
)
#: Rényi orders of the RDP accountant. Opacus's default list spends most of its time in fractional
#: orders above 2 (the noise-multiplier search took many seconds per run) and stops at 63, below the
#: optimum of large epsilons; three fractional orders below 2, every integer to 64, then a few larger ones.
RDP_ORDERS: tuple[float, ...] = tuple([1.25, 1.5, 1.75, *range(2, 65), 80, 96, 128, 160, 192, 256])
#: What ``metrics.json`` says about model selection (``privacy.model_selection``).
MODEL_SELECTION_NOTE = (
    "outside the guarantee: early stopping and the choice of the best epoch read the validation split "
    "(and the training items to mask), and are not counted by the accountant"
)


@dataclass
class PrivacySettings:
    """The ``trainer.privacy`` settings (config group ``privacy=``).

    Parameters
    ----------
    enabled: train with DP-SGD (Opacus); ``False`` trains exactly as without these settings.
    target_epsilon: the epsilon that all configured epochs may spend; the noise multiplier is solved
        for it. ``'inf'`` (a string, since ``metrics.json`` holds no infinity) means no privacy: the run
        trains as with ``enabled=false`` (the non-private end of a privacy-utility sweep).
    noise_multiplier: the noise standard deviation in units of ``max_grad_norm``, instead of a target
        epsilon (exactly one of the two is set when enabled; ``0`` clips without noise: epsilon infinite).
    delta: the delta of (epsilon, delta)-DP; ``None``: ``1 / n`` for ``n`` privacy units (training
        examples, or users with ``unit=user``), rounded down to a power of ten. Must be below ``1 / n``.
    max_grad_norm: every unit's gradient is clipped to this L2 norm.
    accountant: ``rdp`` (Rényi DP) or ``prv`` (privacy random variables, tighter).
    unit: ``example`` (one interaction) or ``user`` (all of a user's interactions: users are
        Poisson-sampled and each user's gradient is clipped, :mod:`recbench.training.privacy_user`).
    users_per_batch: with ``unit=user``, the expected number of users per step (``trainer.batch_size``
        keeps counting examples and is not used).
    max_examples_per_user: with ``unit=user``, at most this many of a sampled user's training examples
        (drawn without replacement at every step) enter the user's gradient; bounds the cost of a step.
    """

    enabled: bool = False
    target_epsilon: float | str | None = None
    noise_multiplier: float | None = None
    delta: float | None = None
    max_grad_norm: float = 1.0
    accountant: str = "rdp"
    unit: str = "example"
    users_per_batch: int = 256
    max_examples_per_user: int = 32

    def __post_init__(self) -> None:
        if not self.enabled:
            return
        eps, sigma = self.target_epsilon, self.noise_multiplier
        if isinstance(eps, float) and math.isinf(eps):
            raise ConfigError(
                "trainer.privacy.target_epsilon=inf cannot be recorded in metrics.json; write it as the "
                "string 'inf' (quoted on the command line: trainer.privacy.target_epsilon=\"'inf'\") for a "
                "non-private run, or set trainer.privacy.enabled=false."
            )
        if isinstance(eps, str) and eps != "inf":
            raise ConfigError(
                f"trainer.privacy.target_epsilon={eps!r} must be a positive number (e.g. 1.0) or 'inf'."
            )
        if (eps is None) == (sigma is None):
            raise ConfigError(
                "trainer.privacy: set exactly one of target_epsilon (e.g. trainer.privacy.target_epsilon=1) "
                f"and noise_multiplier (got target_epsilon={eps!r}, noise_multiplier={sigma!r})."
            )
        if eps is not None and eps != "inf" and not (isinstance(eps, (int, float)) and eps > 0):
            raise ConfigError(
                f"trainer.privacy.target_epsilon={eps!r} must be > 0 (smaller = more private, e.g. 1.0), "
                "or 'inf' for no privacy."
            )
        if sigma is not None and not (sigma >= 0 and math.isfinite(sigma)):
            raise ConfigError(f"trainer.privacy.noise_multiplier={sigma!r} must be a finite number >= 0.")
        if self.delta is not None and not 0 < self.delta < 1:
            raise ConfigError(
                f"trainer.privacy.delta={self.delta!r} must lie in (0, 1) and below 1/number of training "
                "examples; leave it null for that default."
            )
        if not (self.max_grad_norm > 0 and math.isfinite(self.max_grad_norm)):
            raise ConfigError(f"trainer.privacy.max_grad_norm={self.max_grad_norm!r} must be > 0 (e.g. 1.0).")
        if self.accountant not in ACCOUNTANTS:
            raise ConfigError(
                f"trainer.privacy.accountant={self.accountant!r} must be one of {', '.join(ACCOUNTANTS)}."
            )
        if self.unit not in UNITS:
            raise ConfigError(f"trainer.privacy.unit={self.unit!r} must be one of {', '.join(UNITS)}.")
        for key in ("users_per_batch", "max_examples_per_user"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"trainer.privacy.{key}={value!r} must be a whole number >= 1 (e.g. 32).")

    @property
    def active(self) -> bool:
        """Whether training runs with DP-SGD (enabled, and not the ``'inf'`` non-private setting)."""
        return bool(self.enabled) and self.target_epsilon != "inf"


def default_delta(n: int) -> float:
    """``1 / n`` rounded down to a power of ten (``1e-5`` for 80,000 examples)."""
    return float(10.0 ** math.floor(math.log10(1.0 / max(n, 1))))


class PrivatelyTrainable(Protocol):
    """What a model declaring ``Capabilities(private=True)`` provides to :class:`PrivateSession`."""

    network_: nn.Module

    def example_network(self) -> nn.Module:
        """A module sharing ``network_``'s parameters (the same tensors) whose ``forward(batch)`` returns
        one loss per example, ``[B]``, computed through layers Opacus supports (``nn.Embedding``,
        ``nn.Linear``...) called as modules; the mean of the losses is the model's training loss."""
        ...

    def example_batch(
        self, train: Interactions, rows: np.ndarray, rng: np.random.Generator
    ) -> dict[str, torch.Tensor]:
        """The batch of training rows ``rows``, each example built from its own row only."""
        ...


def _register_norm_sampler() -> None:
    """Opacus's ghost clipping with recbench's norm samplers (:mod:`recbench.training.norm_samplers`)."""
    from recbench.training import norm_samplers

    norm_samplers.register()


class ExampleUnits:
    """The example-level privacy unit (``unit=example``): one training interaction, one row of ``train``.

    What :class:`PrivateSession` asks of a unit: how many there are (``count``, what is Poisson-sampled),
    the expected units per step, the network returning one loss per unit, and the batch of sampled units.
    """

    name = "example"
    noun = "training examples"

    def __init__(self, model: PrivatelyTrainable, train: Interactions) -> None:
        self.model, self.train, self.count = model, train, len(train)

    def batch_size(self, trainer_batch_size: int) -> int:
        """Expected examples per step: ``trainer.batch_size``."""
        return trainer_batch_size

    def network(self) -> nn.Module:
        """The model's per-example view (:meth:`PrivatelyTrainable.example_network`)."""
        return self.model.example_network()

    def batch(self, rows: np.ndarray, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        """The batch of the sampled training ``rows``."""
        return self.model.example_batch(self.train, rows, rng)

    def report(self) -> dict[str, Any]:
        """Unit-specific ``privacy.*`` entries (none for examples)."""
        return {}


def _units(settings: PrivacySettings, model: Any, train: Interactions) -> Any:
    """The privacy unit of ``settings.unit`` (the sequential models know only the user)."""
    sequences = hasattr(model, "sequence_network")
    if sequences and settings.unit != "user":
        raise ConfigError(sequence_unit_error(type(model).__name__))
    if settings.unit == "user":
        from recbench.training.privacy_user import SequenceUnits, UserUnits

        return SequenceUnits(model, train, settings) if sequences else UserUnits(model, train, settings)
    if not hasattr(model, "example_network") or not hasattr(model, "example_batch"):
        raise ConfigError(
            f"trainer.privacy.enabled=true, but {type(model).__name__} cannot be trained privately (it "
            f"declares no per-example losses). Models that can: {PRIVATE_MODELS}; or set "
            "trainer.privacy.enabled=false."
        )
    return ExampleUnits(model, train)


def sequence_unit_error(model: str) -> str:
    """The message refusing example-level DP for a sequential model."""
    return (
        f"trainer.privacy.unit=example, but {model} trains on whole user sequences (one training row "
        "mixes all of a user's latest items), so its privacy unit can only be the user: set "
        "trainer.privacy.unit=user."
    )


class _PerExampleLoss(nn.Module):
    """The criterion Opacus's ghost clipping wraps: the per-example losses, reduced as asked."""

    def __init__(self) -> None:
        super().__init__()
        self.reduction = "mean"

    def forward(self, losses: torch.Tensor) -> torch.Tensor:
        if self.reduction == "none":
            return losses
        return losses.sum() if self.reduction == "sum" else losses.mean()


class PrivateSession:
    """One private fit: Opacus's engine around the model's example network, optimiser and data.

    Built by the Trainer at the start of a fit (:meth:`Trainer.fit`); :meth:`batches` yields one
    epoch of Poisson-sampled batches, :meth:`step` takes one DP-SGD step, :meth:`report` gives the
    accountant's numbers and :meth:`close` removes Opacus's hooks from the network.
    """

    def __init__(
        self,
        settings: PrivacySettings,
        model: Any,
        train: Interactions,
        *,
        epochs: int,
        batch_size: int,
        make_optimizer: Any,
        seed: int,
    ) -> None:
        from opacus import PrivacyEngine
        from opacus.accountants.utils import get_noise_multiplier
        from opacus.validators import ModuleValidator

        _register_norm_sampler()

        units = _units(settings, model, train)
        batch_size = units.batch_size(batch_size)
        n = units.count
        if n == 0:
            raise ConfigError(
                f"trainer.privacy.enabled=true needs {units.noun}; the training split has none."
            )
        self.settings, self.model, self.train, self.n, self.units = settings, model, train, n, units
        self.delta = default_delta(n) if settings.delta is None else float(settings.delta)
        if self.delta >= 1.0 / n:
            raise ConfigError(
                f"trainer.privacy.delta={self.delta:g} must be below 1/n = {1.0 / n:.3g} for the {n} "
                f"{units.noun} (a larger delta allows leaking one outright). Use "
                f"trainer.privacy.delta={default_delta(n):g} or leave it null."
            )
        self.steps_per_epoch = max(1, math.ceil(n / batch_size))
        self.sample_rate = 1.0 / self.steps_per_epoch
        self.planned_steps = epochs * self.steps_per_epoch
        if settings.noise_multiplier is not None:
            self.noise_multiplier = float(settings.noise_multiplier)
        else:
            self.noise_multiplier = float(
                get_noise_multiplier(
                    target_epsilon=float(settings.target_epsilon),  # type: ignore[arg-type]
                    target_delta=self.delta,
                    sample_rate=self.sample_rate,
                    steps=self.planned_steps,
                    accountant=settings.accountant,
                    **self._accountant_options(),
                )
            )
        view = units.network()
        errors = ModuleValidator.validate(view, strict=False)
        if errors:
            raise ConfigError(
                f"trainer.privacy.enabled=true, but {type(model).__name__}'s network has layers Opacus "
                f"cannot train privately: {'; '.join(str(e) for e in errors[:3])}. Use a model whose layers "
                f"it supports ({PRIVATE_MODELS}) or set trainer.privacy.enabled=false."
            )
        rows = torch.utils.data.TensorDataset(torch.arange(n))
        loader = torch.utils.data.DataLoader(
            rows, batch_size=batch_size, generator=torch.Generator().manual_seed(seed)
        )
        with warnings.catch_warnings():  # seeded generators are a documented choice (module docstring)
            warnings.filterwarnings("ignore", message="Secure RNG turned off")
            self.engine = PrivacyEngine(accountant=settings.accountant)
        noise = torch.Generator(device=next(view.parameters()).device).manual_seed(seed + 1)
        self.module, self.optimizer, self.criterion, self.loader = self.engine.make_private(
            module=view,
            optimizer=make_optimizer(view),
            criterion=_PerExampleLoss(),
            data_loader=loader,
            noise_multiplier=self.noise_multiplier,
            max_grad_norm=float(settings.max_grad_norm),
            poisson_sampling=True,
            noise_generator=noise,
            grad_sample_mode="ghost",
        )
        self.steps = 0

    def batches(self, rng: np.random.Generator) -> Iterator[dict[str, torch.Tensor]]:
        """One epoch: ``steps_per_epoch`` Poisson-sampled batches of units, built by the model.

        The draws are those of Opacus's ``DPDataLoader`` (its Poisson batch sampler, the one the
        accountant was set up for), taken straight from the sampler: the loader would fetch and collate
        the drawn indices of the index dataset one by one, which cost more than the training step.
        """
        for ids in self.loader.batch_sampler:
            yield self.units.batch(np.asarray(ids, dtype=np.int64), rng)

    def step(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """One DP-SGD step on ``batch``: per-example clipping, noise, update; returns the mean loss."""
        self.optimizer.zero_grad(set_to_none=True)
        if len(next(iter(batch.values()))) == 0:  # an empty Poisson draw: the step is noise only
            for p in self.module.parameters():
                p.grad = torch.zeros_like(p)
            loss = torch.zeros(())
        else:
            dp_loss = self.criterion(self.module(batch))
            with warnings.catch_warnings():  # the inputs are ids: no input gradients, as intended
                warnings.filterwarnings("ignore", message="Full backward hook is firing")
                dp_loss.backward()
            loss = dp_loss.detach()
        self.optimizer.step()
        self.steps += 1
        return loss

    @property
    def epsilon(self) -> float:
        """The epsilon spent so far at :attr:`delta` (``inf`` without noise)."""
        if self.noise_multiplier == 0:
            return math.inf
        if self.steps == 0:
            return 0.0
        return float(self.engine.accountant.get_epsilon(delta=self.delta, **self._accountant_options()))

    def _accountant_options(self) -> dict[str, Any]:
        """Keyword arguments of the accountant's ``get_epsilon`` (the RDP orders)."""
        return {"alphas": list(RDP_ORDERS)} if self.settings.accountant == "rdp" else {}

    def report(self) -> dict[str, Any]:
        """The ``privacy.*`` entries of ``metrics.json``."""
        eps = self.epsilon
        return {
            "unit": self.settings.unit,
            "epsilon": eps if math.isfinite(eps) else None,  # null: unbounded (no noise)
            "delta": self.delta,
            "target_epsilon": self.settings.target_epsilon,
            "noise_multiplier": self.noise_multiplier,
            "max_grad_norm": float(self.settings.max_grad_norm),
            "sample_rate": self.sample_rate,
            "expected_batch_size": self.n * self.sample_rate,
            "steps": self.steps,
            "planned_steps": self.planned_steps,
            "accountant": self.settings.accountant,
            "sampling": "poisson",
            "model_selection": MODEL_SELECTION_NOTE,
            **self.units.report(),
        }

    def close(self) -> None:
        """Remove Opacus's hooks and per-example buffers from the (shared) network."""
        self.module._close()
