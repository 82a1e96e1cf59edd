"""User-level differential privacy (``trainer.privacy.unit=user``): sampling, clipping, accounting."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

pytest.importorskip("opacus")

from opacus.accountants.analysis.rdp import compute_rdp, get_privacy_spent

from recbench.data.interactions import Interactions
from recbench.errors import ConfigError
from recbench.models.factorization import MF
from recbench.models.ncf import GMF, NeuMF
from recbench.training.privacy import RDP_ORDERS, PrivacySettings, PrivateSession, default_delta
from recbench.training.privacy_user import sample_user_rows
from recbench.training.trainer import Trainer, epoch_listener
from tests.privacy_reference import clipped_sum, flat_grad, step_gradient

from ..conftest import block_interactions


def _heavy_user_data() -> Interactions:
    """User 0 has 30 interactions, users 1-4 have 3 each (40 items, ratings 1-5)."""
    rng = np.random.default_rng(0)
    users = np.concatenate([np.zeros(30, dtype=np.int64), np.repeat(np.arange(1, 5), 3)])
    items = np.concatenate([rng.permutation(40)[:30], np.tile([1, 2, 3], 4)])
    ratings = rng.integers(1, 6, size=len(users)).astype(np.float32)
    return Interactions(users, items, 5, 40, ratings=ratings)


def _session(model, train, *, clip: float, cap: int = 64, sigma: float = 0.0) -> PrivateSession:
    torch.manual_seed(0)
    model.n_users_, model.n_items_ = train.n_users, train.n_items
    model.device_ = torch.device("cpu")
    model.network_ = model.build_network(train)
    settings = PrivacySettings(
        enabled=True,
        noise_multiplier=sigma,
        max_grad_norm=clip,
        unit="user",
        users_per_batch=2,
        max_examples_per_user=cap,
        delta=1e-2,
    )
    return PrivateSession(
        settings,
        model,
        train,
        epochs=1,
        batch_size=1024,
        make_optimizer=lambda m: torch.optim.SGD(m.parameters(), lr=0.0),
        seed=0,
    )


@pytest.mark.parametrize(
    "make",
    [
        lambda: GMF(embedding_dim=8, num_negatives=2),
        lambda: NeuMF(embedding_dim=4, mlp_embedding_dim=4, mlp_layers=(8, 4), num_negatives=2),
        lambda: MF(factors=4),
    ],
)
@pytest.mark.parametrize("clip", [1e-3, 1e3])
def test_each_user_gradient_is_clipped(make, clip: float) -> None:
    """No noise: the step's gradient is the sum over users of the gradient of the user's mean example loss,
    each clipped to ``clip``; the heavy user (30 interactions) alone contributes a norm <= clip."""
    train = _heavy_user_data()
    session = _session(make(), train, clip=clip)
    batch = session.units.batch(np.array([0, 2, 4]), np.random.default_rng(1))
    assert batch["mask"].sum(1).tolist() == [30.0, 3.0, 3.0]
    # independent reference: plain autograd on the per-example network, one user's examples at a time
    view = session.units.model.example_network()
    users = ({k: v[b][batch["mask"][b] > 0] for k, v in batch.items() if k != "mask"} for b in range(3))
    expected, norms = clipped_sum(view, users, clip, reduce=torch.mean)
    scale = session.optimizer.expected_batch_size
    session.step(batch)
    got = step_gradient(session.module, scale)
    assert torch.allclose(got, expected, rtol=1e-4, atol=1e-9)
    heavy = {k: v[:1] for k, v in batch.items()}
    session.step(heavy)
    alone = float(flat_grad(session.module.parameters()).norm()) * scale
    if clip < min(norms):
        assert alone == pytest.approx(clip, rel=1e-4)  # clipped to exactly clip
    else:
        assert alone == pytest.approx(norms[0], rel=1e-4) and alone <= clip
    session.close()


def test_a_step_samples_at_most_cap_rows_per_user_without_replacement() -> None:
    train = _heavy_user_data()
    order = np.argsort(train.users, kind="stable")
    indptr = np.concatenate([[0], np.cumsum(np.bincount(train.users, minlength=train.n_users))])
    rng = np.random.default_rng(0)
    draws = []
    for _ in range(3):
        users, rows, where = sample_user_rows(indptr, order, np.array([0, 1, 3]), 8, rng)
        assert users.tolist() == [0, 1, 3]
        heavy = rows[where[0] == 0]
        assert len(heavy) == 8 == len(set(heavy.tolist())) and (train.users[heavy] == 0).all()
        assert sorted(rows[where[0] == 1].tolist()) == np.flatnonzero(train.users == 1).tolist()
        assert (where[1] < 8).all()
        draws.append(sorted(heavy.tolist()))
    assert draws[0] != draws[1] or draws[1] != draws[2]  # a fresh subsample every step
    # users 0 and 2 of three have no rows: they are left out of the step's blocks
    users, rows, _ = sample_user_rows(np.array([0, 0, 1, 1]), np.array([0]), np.array([0, 2]), 8, rng)
    assert len(users) == len(rows) == 0


def test_noise_has_the_configured_scale_per_user_step() -> None:
    train = _heavy_user_data()
    session = _session(GMF(embedding_dim=64), train, clip=0.5, sigma=1.3)
    session.step(session.units.batch(np.zeros(0, dtype=np.int64), np.random.default_rng(0)))
    noise = step_gradient(session.module, session.optimizer.expected_batch_size)
    assert float(noise.std()) == pytest.approx(1.3 * 0.5, rel=0.05)
    session.close()


def test_spent_epsilon_matches_a_recomputation_from_the_logged_user_level_numbers() -> None:
    train = block_interactions(seed=3)  # 40 users
    privacy = PrivacySettings(
        enabled=True, target_epsilon=3.0, unit="user", users_per_batch=8, max_examples_per_user=4
    )
    model = GMF(embedding_dim=8, trainer=Trainer(epochs=3, batch_size=32, progress=False, privacy=privacy))
    model.fit(train)
    rep = model.history_.privacy
    assert rep["unit"] == "user" and rep["users_per_batch"] == 8 and rep["max_examples_per_user"] == 4
    assert rep["delta"] == default_delta(train.n_users) == 0.01
    steps, q, sigma = rep["steps"], rep["sample_rate"], rep["noise_multiplier"]
    assert q == pytest.approx(1 / math.ceil(40 / 8)) and steps == rep["planned_steps"] == 3 * 5
    orders = list(RDP_ORDERS)
    rdp = compute_rdp(q=q, noise_multiplier=sigma, steps=steps, orders=orders)
    eps, _ = get_privacy_spent(orders=orders, rdp=rdp, delta=rep["delta"])
    assert rep["epsilon"] == pytest.approx(eps, rel=1e-6) and eps == pytest.approx(3.0, rel=0.02)
    assert all(math.isfinite(row["loss"]) for row in model.history_.rows)


@pytest.mark.parametrize(
    ("settings", "match"),
    [
        ({"users_per_batch": 0}, "users_per_batch"),
        ({"max_examples_per_user": 0}, "max_examples_per_user"),
        ({"max_examples_per_user": 2.5}, "max_examples_per_user"),
        ({"unit": "group"}, "unit"),
    ],
)
def test_bad_user_level_settings_are_config_errors(settings, match) -> None:
    with pytest.raises(ConfigError, match=match):
        PrivacySettings(enabled=True, target_epsilon=1.0, **{"unit": "user", **settings})


class _NoBlocks(nn.Module):
    def __init__(self, n_users: int) -> None:
        super().__init__()
        self.user = nn.Embedding(n_users, 4)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.user(batch["users"]).sum(-1)


def test_user_level_refusals_come_before_training() -> None:
    train = block_interactions()
    privacy = PrivacySettings(enabled=True, target_epsilon=1.0, unit="user", delta=1 / train.n_users)
    rows: list = []
    with epoch_listener(rows.append), pytest.raises(ConfigError, match=r"below 1/n .* 40 users"):
        GMF(trainer=Trainer(epochs=1, progress=False, privacy=privacy)).fit(train)
    model = GMF(
        trainer=Trainer(epochs=1, progress=False, privacy=PrivacySettings(**{**vars(privacy), "delta": None}))
    )
    model.example_network = lambda: _NoBlocks(train.n_users)  # a network without user blocks
    with epoch_listener(rows.append), pytest.raises(ConfigError, match="does not take user blocks"):
        model.fit(train)
    assert rows == []


def test_pipeline_records_the_user_level_numbers(tmp_path: Path) -> None:
    from hydra import compose, initialize_config_dir

    from recbench.pipeline import RunContext, run

    config_dir = Path(__file__).resolve().parents[2] / "configs"
    overrides = [
        "dataset=tiny",
        "trainer=fast",
        f"paths.cache_dir={tmp_path / 'cache'}",
        "model=mf",
        "privacy=dp",
        "trainer.privacy.unit=user",
        "trainer.privacy.target_epsilon=4",
        "trainer.privacy.users_per_batch=16",
        "trainer.privacy.max_examples_per_user=8",
    ]
    with initialize_config_dir(version_base="1.3", config_dir=str(config_dir)):
        cfg = compose("train", overrides=overrides)
    record = run(cfg, RunContext(tmp_path / "r", {"model": "mf"}))
    extra = json.loads((tmp_path / "r" / "metrics.json").read_text())["extra"]
    assert record.status == "ok" and extra["privacy.unit"] == "user"
    assert extra["privacy.epsilon"] <= 4.0 + 1e-6 and extra["privacy.max_examples_per_user"] == 8
    assert extra["privacy.users_per_batch"] == 16 and extra["privacy.sample_rate"] > 0
    n_users = round(extra["privacy.expected_batch_size"] / extra["privacy.sample_rate"])
    assert extra["privacy.delta"] == default_delta(n_users) < 1 / n_users


def test_privacy_report_keeps_user_level_runs_apart(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib

    import pandas as pd

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[2] / "scripts"))
    report = importlib.import_module("privacy_report")
    runs = pd.DataFrame(
        {
            "status": ["ok"] * 4,
            "model": ["mf"] * 4,
            "seed": [1, 2, 1, 2],
            "param.trainer.privacy.target_epsilon": ["8", "8", "8", "8"],
            "param.trainer.privacy.unit": ["example", "example", "user", "user"],
            "extra.privacy.epsilon": [7.99] * 4,
            "test/rmse": [0.95, 0.97, 1.2, 1.3],
        }
    )
    table = report.summarise(runs).set_index("model")
    assert table.loc["mf", "test/rmse_mean"] == pytest.approx(0.96)
    assert table.loc["mf (user-level)", "test/rmse_mean"] == pytest.approx(1.25)
