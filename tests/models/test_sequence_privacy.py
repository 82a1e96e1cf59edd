"""User-level DP-SGD of GRU4Rec and NextItNet: per-user view, per-user clipping, private fits, refusals."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("opacus")

from recbench.errors import ConfigError
from recbench.models.sequential.gru4rec import GRU4Rec
from recbench.models.sequential.nextitnet import NextItNet
from recbench.models.sequential.private import GRURecurrence
from recbench.training.privacy import PrivacySettings, PrivateSession
from recbench.training.trainer import Trainer
from tests.models.test_sequential import cycles
from tests.privacy_reference import clipped_sum, step_gradient

SMALL = {
    "gru4rec": (GRU4Rec, {"embedding_dim": 6, "hidden_dim": 5}),
    "nextitnet": (NextItNet, {"embedding_dim": 6, "kernel_size": 2, "dilations": [1, 2]}),
}
MODELS = list(SMALL)


def small(name: str, trainer: Trainer, **kw):
    cls, params = SMALL[name]
    return cls(**{"max_len": 8, "dropout": 0.0, "loss_type": "ce", **params, **kw}, trainer=trainer)


def built(name: str = "gru4rec", **kw):
    """A small model with its network built on the cycles data (what ``fit`` does before training)."""
    torch.manual_seed(0)
    model = small(name, Trainer(epochs=1, batch_size=8, progress=False), **kw)
    data = cycles()
    model.n_users_, model.n_items_ = data.n_users, data.n_items
    model.device_ = torch.device("cpu")
    model.network_ = model.build_network(data)
    return model


def test_recurrence_equals_torch_gru() -> None:
    torch.manual_seed(1)
    gru = torch.nn.GRU(4, 3, 2, batch_first=True)
    x = torch.randn(5, 7, 4)
    expected, _ = gru(x)
    h = GRURecurrence(gru, 1)(GRURecurrence(gru, 0)(x))
    torch.testing.assert_close(h, expected, rtol=1e-5, atol=1e-6)
    assert GRURecurrence(gru, 0).weight_hh is gru.weight_hh_l0  # shared, not copied


@pytest.mark.parametrize("name", MODELS)
def test_view_loss_is_the_users_mean_cross_entropy(name: str) -> None:
    model = built(name)
    data = cycles()
    batch = model.sequence_batch(data, np.arange(6), np.random.default_rng(0))
    view = model.sequence_network().eval()
    got = view(batch)
    net = model.network_.eval()
    hidden = net(batch["seqs"])  # [U, T, d]
    logits = hidden @ net.token_weight[1:].T
    targets = batch["targets"]
    expected = []
    for u in range(len(targets)):
        keep = targets[u] != 0
        expected.append(F.cross_entropy(logits[u][keep], targets[u][keep] - 1))
    torch.testing.assert_close(got, torch.stack(expected), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", MODELS)
def test_each_user_gradient_is_clipped(name: str) -> None:
    """No noise: the step's gradient is the sum over users of their loss's gradient clipped to the norm."""
    model = built(name)
    data = cycles()
    reference = copy.deepcopy(model).sequence_network()  # plain autograd, one user at a time
    settings = PrivacySettings(
        enabled=True, noise_multiplier=0.0, max_grad_norm=0.05, unit="user", users_per_batch=4, delta=1e-2
    )
    session = PrivateSession(
        settings,
        model,
        data,
        epochs=1,
        batch_size=8,
        make_optimizer=lambda m: torch.optim.SGD(m.parameters(), lr=0.0),
        seed=0,
    )
    batch = session.units.batch(np.array([0, 3, 9, 20]), np.random.default_rng(1))
    users = ({k: v[u : u + 1] for k, v in batch.items()} for u in range(len(batch["seqs"])))
    expected, norms = clipped_sum(reference, users, 0.05)
    assert min(norms) > 0.05  # every user is clipped
    session.step(batch)
    got = step_gradient(session.module, session.optimizer.expected_batch_size)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-7)
    session.close()


@pytest.mark.parametrize("name", MODELS)
def test_private_fit_spends_the_target_and_changes_the_weights(name: str) -> None:
    data = cycles()

    def fitted(privacy: PrivacySettings | None):
        trainer = Trainer(epochs=2, batch_size=8, lr=1e-2, progress=False, privacy=privacy)
        return small(name, trainer).fit(data)

    settings = PrivacySettings(enabled=True, target_epsilon=4.0, unit="user", users_per_batch=8, delta=1e-2)
    model = fitted(settings)
    report = model.history_.privacy
    assert report["unit"] == "user" and report["epsilon"] == pytest.approx(4.0, rel=0.02)
    assert report["steps"] == report["planned_steps"] == 2 * math.ceil(data.n_users / 8)
    assert report["max_items_per_user"] == 9
    assert all(math.isfinite(row["loss"]) for row in model.history_.rows)
    assert not any(m._forward_hooks or m._backward_hooks for m in model.network_.modules())
    scores = model.score(np.arange(4), data)
    assert scores.shape == (4, data.n_items) and np.isfinite(scores).all()
    plain = fitted(None).network_.state_dict()
    assert not all(torch.equal(model.network_.state_dict()[k], plain[k]) for k in plain)


def test_example_level_and_sampled_objectives_are_refused() -> None:
    data = cycles()
    example = PrivacySettings(enabled=True, noise_multiplier=1.0, delta=1e-5)
    with pytest.raises(ConfigError, match="unit=user"):
        PrivateSession(example, built(), data, epochs=1, batch_size=8, make_optimizer=None, seed=0)
    user = PrivacySettings(enabled=True, noise_multiplier=1.0, unit="user", delta=1e-2)
    with pytest.raises(ConfigError, match="model.loss_type=ce"):
        PrivateSession(
            user, built(loss_type="sampled"), data, epochs=1, batch_size=8, make_optimizer=None, seed=0
        )


def test_user_cross_entropy_matches_autograd() -> None:
    """The per-user loss with its gradient formed in the forward pass equals F.cross_entropy's, and so do
    the gradients (double precision), with padding positions and a class of logit -inf."""
    from recbench.models.sequential.private import _UserCrossEntropy

    gen = torch.Generator().manual_seed(3)
    logits = torch.randn(3, 4, 6, dtype=torch.float64, generator=gen)
    logits[..., 0] = float("-inf")  # the padding token, never a candidate
    logits.requires_grad_()
    targets = torch.tensor([[0, 2, 5, 1], [3, 3, 0, 0], [0, 0, 0, 4]])
    weights = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64)
    got = _UserCrossEntropy.apply(logits, targets)
    (grad,) = torch.autograd.grad((got * weights).sum(), logits)
    plain = logits.detach().clone().requires_grad_()
    ce = F.cross_entropy(plain.flatten(0, 1), targets.flatten(), ignore_index=0, reduction="none").view(3, 4)
    valid = (targets != 0).double()
    expected = (ce * valid).sum(1) / valid.sum(1)
    (expected_grad,) = torch.autograd.grad((expected * weights).sum(), plain)
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(grad[..., 1:], expected_grad[..., 1:])
    assert torch.all(grad[..., 0] == 0)


def test_pipeline_trains_gru4rec_privately_at_user_level(tmp_path) -> None:
    import json
    from pathlib import Path

    from hydra import compose, initialize_config_dir

    from recbench.pipeline import RunContext, run

    config_dir = Path(__file__).resolve().parents[2] / "configs"
    overrides = [
        "dataset=tiny",
        "split=loo",
        "trainer=fast",
        f"paths.cache_dir={tmp_path / 'cache'}",
        "model=gru4rec",
        "model.max_len=8",
        "privacy=dp",
        "trainer.privacy.unit=user",
        "trainer.privacy.target_epsilon=8",
        "trainer.epochs=2",
    ]
    with initialize_config_dir(version_base="1.3", config_dir=str(config_dir)):
        cfg = compose("train", overrides=overrides)
    record = run(cfg, RunContext(tmp_path / "r", {"model": "gru4rec"}))
    extra = json.loads((tmp_path / "r" / "metrics.json").read_text())["extra"]
    assert record.status == "ok" and extra["privacy.unit"] == "user"
    assert extra["privacy.epsilon"] == pytest.approx(8.0, rel=0.02)
    assert extra["privacy.max_items_per_user"] == 9
