"""Differentially private training: clipping, noise, accounting, refusals, and the untouched default path."""

from __future__ import annotations

import copy
import itertools
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

pytest.importorskip("opacus")

from opacus.accountants import PRVAccountant
from opacus.accountants.analysis.rdp import compute_rdp, get_privacy_spent

from recbench.data.interactions import Interactions
from recbench.errors import ConfigError
from recbench.models.factorization import MF, PMF
from recbench.models.mlp import MLPClassifier
from recbench.models.ncf import GMF, NCFMLP, NeuMF
from recbench.training.privacy import RDP_ORDERS, PrivacySettings, PrivateSession, default_delta
from recbench.training.trainer import Trainer, epoch_listener
from tests.privacy_reference import clipped_sum, step_gradient

from ..conftest import block_interactions


def _built(model, train: Interactions):
    """``model`` with its network built (what ``TorchRecommender.fit`` does before training)."""
    torch.manual_seed(0)
    model.n_users_, model.n_items_ = train.n_users, train.n_items
    model.device_ = torch.device("cpu")
    model.network_ = model.build_network(train)
    return model


def _session(model, train, *, sigma: float, clip: float, batch_size: int = 16, **kw) -> PrivateSession:
    settings = PrivacySettings(enabled=True, noise_multiplier=sigma, max_grad_norm=clip, **kw)
    return PrivateSession(
        settings,
        model,
        train,
        epochs=1,
        batch_size=batch_size,
        make_optimizer=lambda m: torch.optim.SGD(m.parameters(), lr=0.0),
        seed=0,
    )


@pytest.mark.parametrize("clip", [1e-3, 1e3])
def test_each_example_gradient_is_clipped(clip: float) -> None:
    """With no noise, the step's gradient is the sum of each example's gradient clipped to ``clip``."""
    train = block_interactions()
    model = _built(GMF(embedding_dim=8, num_negatives=2), train)
    rows = np.array([0, 5, 17, 40])
    batch = model.example_batch(train, rows, np.random.default_rng(0))
    # independent reference: plain autograd, one example at a time, on a copy of the network
    view = copy.deepcopy(model).example_network()
    examples = ({k: v[j : j + 1] for k, v in batch.items()} for j in range(len(rows)))
    expected, norms = clipped_sum(view, examples, clip)
    session = _session(model, train, sigma=0.0, clip=clip)
    session.step(batch)
    got = step_gradient(session.module, session.optimizer.expected_batch_size)
    assert torch.allclose(got, expected, rtol=1e-4, atol=1e-9)
    if clip < min(norms):  # every example was clipped: the sum has norm at most k * clip
        assert float(got.norm()) <= len(rows) * clip * (1 + 1e-5)
    else:
        assert max(norms) < clip
    session.close()


def test_noise_has_the_configured_scale() -> None:
    """An empty Poisson draw leaves pure noise: std = noise_multiplier * max_grad_norm (before averaging)."""
    train = block_interactions()
    model = _built(GMF(embedding_dim=64, num_negatives=1), train)
    sigma, clip = 1.3, 0.5
    session = _session(model, train, sigma=sigma, clip=clip)
    empty = model.example_batch(train, np.zeros(0, dtype=np.int64), np.random.default_rng(0))
    session.step(empty)
    noise = step_gradient(session.module, session.optimizer.expected_batch_size)
    assert noise.numel() > 4000
    assert float(noise.std()) == pytest.approx(sigma * clip, rel=0.05)
    assert abs(float(noise.mean())) < 0.05 * sigma * clip
    session.close()


def test_epsilon_grows_with_steps() -> None:
    train = block_interactions()
    model = _built(MF(factors=4), train)
    session = _session(model, train, sigma=1.0, clip=1.0)
    empty = model.example_batch(train, np.zeros(0, dtype=np.int64), np.random.default_rng(0))
    seen = [session.epsilon]
    for _ in range(4):
        session.step(empty)
        seen.append(session.epsilon)
    assert seen[0] == 0.0 and all(b > a for a, b in itertools.pairwise(seen))
    session.close()


@pytest.mark.parametrize(
    ("accountant", "budget"), [("rdp", {"target_epsilon": 3.0}), ("prv", {"noise_multiplier": 1.1})]
)
def test_spent_epsilon_matches_an_independent_recomputation(accountant: str, budget: dict) -> None:
    """A full private fit reaches its target and logs what the accountant needs to recompute it."""
    train = block_interactions(seed=3)
    privacy = PrivacySettings(enabled=True, accountant=accountant, delta=1e-4, **budget)
    model = GMF(
        embedding_dim=8, trainer=Trainer(epochs=3, batch_size=32, lr=1e-2, progress=False, privacy=privacy)
    )
    model.fit(train)
    rep = model.history_.privacy
    assert rep["unit"] == "example" and rep["sampling"] == "poisson" and rep["delta"] == 1e-4
    steps, q, sigma = rep["steps"], rep["sample_rate"], rep["noise_multiplier"]
    assert steps == rep["planned_steps"] == 3 * math.ceil(len(train) / 32)
    assert q == pytest.approx(1 / math.ceil(len(train) / 32))
    if accountant == "rdp":  # straight from the RDP analysis, no accountant object
        orders = list(RDP_ORDERS)  # the orders the run's accountant uses
        eps, _ = get_privacy_spent(
            orders=orders,
            rdp=compute_rdp(q=q, noise_multiplier=sigma, steps=steps, orders=orders),
            delta=1e-4,
        )
    else:
        acc = PRVAccountant()
        acc.history = [(sigma, q, steps)]
        eps = acc.get_epsilon(delta=1e-4)
    assert rep["epsilon"] == pytest.approx(eps, rel=1e-6)
    if "target_epsilon" in budget:  # all epochs ran: the target is spent
        assert rep["epsilon"] == pytest.approx(3.0, rel=0.02)
    assert "outside the guarantee" in rep["model_selection"]


def _fit_state(privacy: PrivacySettings | None, model_cls=GMF, **params):
    train = block_interactions(seed=1)
    model = model_cls(**params, trainer=Trainer(epochs=2, batch_size=32, progress=False, privacy=privacy))
    model.fit(train)
    return model.network_.state_dict(), [row["loss"] for row in model.history_.rows], model.history_.privacy


@pytest.mark.parametrize("model_cls", [GMF, MF])
def test_disabled_privacy_is_bit_identical_to_the_plain_trainer(model_cls) -> None:
    plain, plain_loss, none = _fit_state(None, model_cls)
    for settings in (PrivacySettings(enabled=False), PrivacySettings(enabled=True, target_epsilon="inf")):
        state, loss, report = _fit_state(settings, model_cls)
        assert loss == plain_loss and report is None is none
        assert all(torch.equal(state[k], plain[k]) for k in plain)


@pytest.mark.parametrize(
    ("model_cls", "params"),
    [
        (NCFMLP, {"embedding_dim": 4, "mlp_layers": (8, 4)}),
        (NeuMF, {"embedding_dim": 4, "mlp_embedding_dim": 4, "mlp_layers": (8, 4)}),
        (MLPClassifier, {"embedding_dim": 4, "hidden_layers": (8,)}),
        (MLPClassifier, {"embedding_dim": 4, "hidden_layers": (8,), "mode": "rating"}),
        (PMF, {"factors": 4}),
    ],
)
def test_every_private_model_trains_and_scores(model_cls, params) -> None:
    privacy = PrivacySettings(enabled=True, target_epsilon=4.0)
    _, loss, report = _fit_state(privacy, model_cls, **params)
    assert all(math.isfinite(x) for x in loss) and report["epsilon"] == pytest.approx(4.0, rel=0.02)


def test_private_fit_changes_the_weights_and_leaves_no_hooks() -> None:
    before, _, _ = _fit_state(None)
    state, _, _ = _fit_state(PrivacySettings(enabled=True, noise_multiplier=1.0))
    assert not all(torch.equal(state[k], before[k]) for k in before)
    train = block_interactions(seed=1)
    model = GMF(
        trainer=Trainer(
            epochs=1,
            batch_size=32,
            progress=False,
            privacy=PrivacySettings(enabled=True, noise_multiplier=1.0),
        )
    )
    model.fit(train)
    assert not any(m._forward_hooks or m._backward_hooks for m in model.network_.modules())
    assert model.score(np.arange(3), train).shape == (3, train.n_items)


@pytest.mark.parametrize(
    ("settings", "match"),
    [
        ({"target_epsilon": 0.0}, "must be > 0"),
        ({"target_epsilon": -1.0}, "must be > 0"),
        ({"target_epsilon": float("inf")}, "'inf'"),
        ({}, "exactly one of"),
        ({"target_epsilon": 1.0, "noise_multiplier": 1.0}, "exactly one of"),
        ({"target_epsilon": 1.0, "max_grad_norm": 0.0}, "max_grad_norm"),
        ({"target_epsilon": 1.0, "accountant": "gdp"}, "accountant"),
        ({"target_epsilon": 1.0, "unit": "group"}, "unit"),
        ({"target_epsilon": 1.0, "delta": 1.0}, "delta"),
    ],
)
def test_bad_settings_are_config_errors(settings, match) -> None:
    with pytest.raises(ConfigError, match=match):
        PrivacySettings(enabled=True, **settings)


@pytest.mark.parametrize(
    ("trainer", "match"),
    [
        ({"strategy": "ddp", "devices": 2}, "trainer.strategy=ddp"),
        ({"devices": 2}, "trainer.strategy=ddp"),
        ({"grad_clip_norm": 1.0}, "trainer.grad_clip_norm"),
        ({"resume": "outputs/some-run"}, "trainer.resume"),
    ],
)
def test_settings_dp_cannot_honour_are_refused_when_the_trainer_is_built(trainer, match) -> None:
    privacy = PrivacySettings(enabled=True, target_epsilon=1.0)
    with pytest.raises(ConfigError, match=match):
        Trainer(privacy=privacy, **trainer)
    Trainer(privacy=PrivacySettings(enabled=False), **trainer)  # no privacy: the same settings are fine


def test_delta_must_be_below_one_over_n_before_training() -> None:
    train = block_interactions()
    assert default_delta(len(train)) < 1 / len(train) <= 10 * default_delta(len(train))
    privacy = PrivacySettings(enabled=True, target_epsilon=1.0, delta=1.0 / len(train))
    model = GMF(trainer=Trainer(epochs=1, progress=False, privacy=privacy))
    rows = []
    with epoch_listener(rows.append), pytest.raises(ConfigError, match="below 1/n"):
        model.fit(train)
    assert rows == []


class _BatchNormNet(nn.Module):
    def __init__(self, n_users: int) -> None:
        super().__init__()
        self.user = nn.Embedding(n_users, 4)
        self.norm = nn.BatchNorm1d(4)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.norm(self.user(batch["users"])).sum(-1)


def test_unsupported_layer_is_a_config_error_before_training() -> None:
    train = block_interactions()
    model = _built(GMF(embedding_dim=4), train)
    model.example_network = lambda: _BatchNormNet(train.n_users)  # a layer Opacus cannot clip per example
    with pytest.raises(ConfigError, match="layers Opacus cannot"):
        _session(model, train, sigma=1.0, clip=1.0)


def test_models_without_per_example_losses_are_refused() -> None:
    from recbench.models.factorization import BPR

    train = block_interactions()
    privacy = PrivacySettings(enabled=True, target_epsilon=1.0)
    with pytest.raises(ConfigError, match="cannot be trained privately"):
        BPR(trainer=Trainer(epochs=1, progress=False, privacy=privacy)).fit(train)


# --- through the pipeline (compose API) ---------------------------------------------------------------


def _cfg(tmp_path: Path, *overrides: str):
    from hydra import compose, initialize_config_dir

    config_dir = Path(__file__).resolve().parents[2] / "configs"
    with initialize_config_dir(version_base="1.3", config_dir=str(config_dir)):
        return compose(
            "train",
            overrides=["dataset=tiny", "trainer=fast", f"paths.cache_dir={tmp_path / 'cache'}", *overrides],
        )


@pytest.mark.parametrize("model", ["itemknn", "bpr", "gmf model.negative_sampling=popularity", "sasrec"])
def test_pipeline_refuses_unable_models_naming_those_that_can(tmp_path: Path, model: str) -> None:
    from recbench.pipeline import RunContext, run

    name, *extra = model.split()
    cfg = _cfg(tmp_path, f"model={name}", *extra, "privacy=dp")
    with pytest.raises(ConfigError, match=r"Models that can: .*gmf.*mf"):
        run(cfg, RunContext(tmp_path / "r", {"model": name}))
    assert (
        "dataset" not in json.loads((tmp_path / "r" / "metrics.json").read_text())["extra"]
    )  # before loading


def test_pipeline_refuses_example_level_dp_of_a_sequential_model_before_loading(tmp_path: Path) -> None:
    from recbench.pipeline import RunContext, run

    cfg = _cfg(tmp_path, "model=gru4rec", "privacy=dp")
    with pytest.raises(ConfigError, match=r"whole user sequences.*trainer\.privacy\.unit=user"):
        run(cfg, RunContext(tmp_path / "r", {"model": "gru4rec"}))
    assert "dataset" not in json.loads((tmp_path / "r" / "metrics.json").read_text())["extra"]


def test_pipeline_records_the_privacy_numbers(tmp_path: Path) -> None:
    from recbench.pipeline import RunContext, run

    cfg = _cfg(tmp_path, "model=gmf", "privacy=dp", "trainer.privacy.target_epsilon=2", "trainer.epochs=2")
    record = run(cfg, RunContext(tmp_path / "r", {"model": "gmf"}))
    extra = json.loads((tmp_path / "r" / "metrics.json").read_text())["extra"]
    assert record.status == "ok" and extra["privacy.unit"] == "example"
    assert extra["privacy.epsilon"] <= 2.0 + 1e-6 and extra["privacy.noise_multiplier"] > 0
    assert {"privacy.delta", "privacy.max_grad_norm", "privacy.sample_rate", "privacy.steps"} <= set(extra)
