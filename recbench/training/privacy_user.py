"""User-level differential privacy (``trainer.privacy.unit=user``): the unit is a user, not an interaction.

Example-level DP-SGD (:mod:`recbench.training.privacy`) bounds what one training interaction can change;
a user with many interactions is protected only at group-privacy level. Here the privacy unit is *all*
of one user's training interactions, and :class:`~recbench.training.privacy.PrivateSession` runs
the same Opacus machinery over users instead of rows:

* **sampling**: Opacus's ``DPDataLoader`` Poisson-samples user ids ``0 .. n_users - 1`` (each user
  independently with probability ``q = 1 / ceil(n_users / users_per_batch)``), and the accountant gets
  that ``q``. The user ids are treated as public (as with example-level DP); a sampled user without
  training interactions contributes nothing;
* **the unit's loss**: a sampled user's block holds up to ``max_examples_per_user`` of its training rows,
  drawn without replacement at every step; each row becomes an example exactly as in example-level
  training (:meth:`~recbench.training.privacy.PrivatelyTrainable.example_batch`, with its own uniformly
  drawn negatives), and the user's loss is the **mean** of its examples' losses. The block is padded to
  ``[users, K]`` with a mask, and the model's per-example network runs on it with the block as leading
  dimensions (networks that allow it declare ``blocks = True``), so each layer sees one row per user;
* **clipping and noise**: Opacus's ghost clipping computes one gradient norm per user (the row of the
  batch), clips every user's gradient to ``max_grad_norm``, sums them, adds Gaussian noise of standard
  deviation ``noise_multiplier * max_grad_norm`` to every parameter and divides by the expected number
  of users per step.

The cap on examples per user bounds the cost of a step (at most ``users x max_examples_per_user``
examples); it does not weaken the guarantee, which holds per user whatever the number of interactions
(a user's whole data changes at most one clipped gradient per step), but a capped user's gradient is
estimated from a subsample, which costs utility.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from recbench.data.interactions import Interactions
from recbench.errors import ConfigError

#: Models whose per-example network accepts user blocks (``blocks = True``).
USER_LEVEL_MODELS = "gmf, ncf_mlp, ncf, mlp, mf, pmf, fm, widedeep, deepfm, gru4rec, nextitnet"


class UserBlocks(nn.Module):
    """One loss per user: the mean of the per-example losses of the user's block.

    ``forward(batch)`` takes the model's example batch with leading dimensions ``[U, K]`` (``K`` example
    slots per user) and a ``mask[U, K]`` (1 for a real example, 0 for padding) and returns ``[U]``.
    Padded slots get zero loss, hence zero gradient.
    """

    def __init__(self, examples: nn.Module) -> None:
        super().__init__()
        self.examples = examples

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """``[U]`` mean losses of the users' blocks."""
        mask = batch["mask"]
        losses = self.examples({k: v for k, v in batch.items() if k != "mask"})
        return (losses * mask).sum(-1) / mask.sum(-1).clamp_min(1.0)


def sample_user_rows(
    indptr: np.ndarray, order: np.ndarray, users: np.ndarray, cap: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The training rows of the sampled ``users``: all of a user's rows, or ``cap`` of them drawn
    without replacement when it has more.

    ``order[indptr[u]:indptr[u + 1]]`` are user ``u``'s rows. Returns ``(users, rows, slot)``: the sampled
    users that have rows, and for every chosen row its position in that array and its slot ``< cap``.
    """
    counts = indptr[users + 1] - indptr[users]
    users = users[counts > 0]
    counts = counts[counts > 0]
    parts = []
    for u, c in zip(users.tolist(), counts.tolist(), strict=True):
        start = indptr[u]
        if c <= cap:
            parts.append(order[start : start + c])
        else:
            parts.append(order[start + rng.choice(c, size=cap, replace=False)])
    take = np.minimum(counts, cap)
    rows = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
    block = np.repeat(np.arange(len(users)), take)
    slot = np.arange(len(rows)) - np.repeat(np.cumsum(take) - take, take)
    return users, rows, np.stack([block, slot]) if len(rows) else np.zeros((2, 0), dtype=np.int64)


def to_blocks(
    batch: dict[str, torch.Tensor], users: np.ndarray, where: np.ndarray
) -> dict[str, torch.Tensor]:
    """Reshape an example batch (tensors ``[R, ...]``) into user blocks ``[U, K, ...]`` plus ``mask[U, K]``.

    ``where[:, r] = (block, slot)`` of example ``r``; padded slots hold zeros, and ``users[U, K]`` holds
    each block's user id in every slot.
    """
    n_blocks = len(users)
    width = int(where[1].max()) + 1 if where.shape[1] else 0
    index = (torch.from_numpy(where[0]), torch.from_numpy(where[1]))
    out: dict[str, torch.Tensor] = {}
    for key, value in batch.items():
        padded = value.new_zeros((n_blocks, width, *value.shape[1:]))
        padded[index] = value
        out[key] = padded
    out["users"] = torch.from_numpy(users.astype(np.int64)).unsqueeze(1).expand(n_blocks, width).contiguous()
    mask = torch.zeros(n_blocks, width)
    mask[index] = 1.0
    out["mask"] = mask
    return out


class _SampledUsers:
    """What the user-level units share: ``count`` user ids are Poisson-sampled (and divide the default
    delta), ``users_per_batch`` of them per step in expectation (``trainer.batch_size`` is not used)."""

    name = "user"
    noun = "users"

    def __init__(self, model: Any, train: Interactions, settings: Any) -> None:
        self.model, self.train = model, train
        self.count = int(train.n_users)
        self.users_per_batch = int(settings.users_per_batch)

    def batch_size(self, trainer_batch_size: int) -> int:
        """Expected users per step: ``users_per_batch``."""
        return self.users_per_batch


class UserUnits(_SampledUsers):
    """The user-level privacy unit (``unit=user``) for :class:`~recbench.training.privacy.PrivateSession`.

    A step's batch is the blocks of the sampled users (:func:`sample_user_rows`, :func:`to_blocks`).
    """

    def __init__(self, model: Any, train: Interactions, settings: Any) -> None:
        super().__init__(model, train, settings)
        self.cap = int(settings.max_examples_per_user)
        users = np.asarray(train.users)
        self.order = np.argsort(users, kind="stable")
        self.indptr = np.zeros(self.count + 1, dtype=np.int64)
        np.cumsum(np.bincount(users, minlength=self.count), out=self.indptr[1:])

    def network(self) -> nn.Module:
        """The model's per-example network, run on user blocks (:class:`UserBlocks`)."""
        view = self.model.example_network()
        if not getattr(view, "blocks", False):
            raise ConfigError(
                f"trainer.privacy.unit=user, but {type(self.model).__name__}'s per-example network does not "
                f"take user blocks. Models that can: {USER_LEVEL_MODELS}; or use "
                "trainer.privacy.unit=example."
            )
        return UserBlocks(view)

    def batch(self, users: np.ndarray, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        """The blocks of the sampled ``users``: up to ``cap`` examples each, built by the model."""
        users, rows, where = sample_user_rows(self.indptr, self.order, users.astype(np.int64), self.cap, rng)
        return to_blocks(self.model.example_batch(self.train, rows, rng), users, where)

    def report(self) -> dict[str, Any]:
        """The user-level entries of ``metrics.json``'s ``privacy.*``."""
        return {
            "users_per_batch": self.users_per_batch,
            "max_examples_per_user": self.cap,
            "unit_loss": "mean over the user's sampled examples",
        }


class SequenceUnits(_SampledUsers):
    """The user-level unit of the sequential models: a user is one training row, their sequence window.

    User ids are Poisson-sampled as in :class:`UserUnits`; a step's batch is the windows of the sampled
    users that have a training target, built by the model (``sequence_batch``), and its network returns
    one loss per window (``sequence_network``). The ``max_len`` latest items of a user enter their
    window; older ones are never read, so they are protected trivially.
    """

    def network(self) -> nn.Module:
        """The model's per-user view (``sequence_network``)."""
        return self.model.sequence_network()

    def batch(self, users: np.ndarray, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        """The windows of the sampled ``users``."""
        return self.model.sequence_batch(self.train, users.astype(np.int64), rng)

    def report(self) -> dict[str, Any]:
        """The user-level entries of ``metrics.json``'s ``privacy.*``."""
        return {
            "users_per_batch": self.users_per_batch,
            "max_items_per_user": int(self.model.max_len) + 1,
            "unit_loss": "mean over the positions of the user's latest window",
        }
