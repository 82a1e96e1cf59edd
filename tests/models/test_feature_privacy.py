"""DP-SGD of FM, Wide&Deep and DeepFM: the per-example view, clipping, private fits, the pipeline."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("opacus")

from recbench.models.feature_models import FM, DeepFM, WideDeep
from recbench.training.privacy import PrivacySettings, PrivateSession
from recbench.training.trainer import Trainer
from tests.privacy_reference import clipped_sum, step_gradient

from ..conftest import block_interactions
from .test_feature_models import small, with_features

MODELS = [FM, DeepFM, WideDeep]


@pytest.fixture(scope="module")
def featured():
    return with_features(block_interactions())


def _built(cls, train, **kw):
    """A model of ``cls`` with its network built (what ``fit`` does before training), no dropout."""
    torch.manual_seed(0)
    kw.setdefault("id_dropout", 0.0)
    if cls is not FM:
        kw.setdefault("dropout", 0.0)
    model = small(cls, num_negatives=2, **kw)
    model._check(train)
    if model.loss_type == "mse":
        model.rating_range_ = (float(train.ratings.min()), float(train.ratings.max()))
    model.n_users_, model.n_items_ = train.n_users, train.n_items
    model.device_ = torch.device("cpu")
    model.network_ = model.build_network(train)
    return model


@pytest.mark.parametrize("cls", MODELS)
@pytest.mark.parametrize("loss_type", ["bce", "bpr", "mse"])
def test_view_scores_what_the_network_scores(cls, loss_type, featured) -> None:
    model = _built(cls, featured, loss_type=loss_type)
    model.network_.bias.data.fill_(0.3)
    batch = model.example_batch(featured, np.arange(0, 60, 7), np.random.default_rng(0))
    view = model.example_network()
    model.network_.eval()  # no id dropout: the same columns in both
    with torch.no_grad():
        logits = model.network_(batch["users"], batch["items"])
        losses = view(batch)
    if loss_type == "mse":
        expected = (batch["ratings"] - logits).pow(2)
    elif loss_type == "bpr":
        expected = -F.logsigmoid(logits[:, :1] - logits[:, 1:]).mean(1)
    else:
        labels = torch.zeros_like(logits)
        labels[:, 0] = 1
        expected = F.binary_cross_entropy_with_logits(logits, labels, reduction="none").mean(1)
    assert losses.shape == (len(batch["users"]),)
    assert torch.allclose(losses, expected, atol=1e-6)
    mid = 0.0 if loss_type != "mse" else sum(model.rating_range_) / 2
    assert float(model.network_.bias.detach()) == mid  # reset to a public value, not the data's mean


@pytest.mark.parametrize(
    ("cls", "loss_type"), [(FM, "bce"), (DeepFM, "bpr"), (WideDeep, "bce"), (WideDeep, "mse")]
)
def test_each_example_gradient_is_clipped(cls, loss_type, featured) -> None:
    """With no noise, the step's gradient is the sum of each example's gradient clipped to the norm."""
    model = _built(cls, featured, loss_type=loss_type)
    rows = np.array([0, 5, 17, 40])
    batch = model.example_batch(featured, rows, np.random.default_rng(0))
    view = copy.deepcopy(model).example_network()  # independent reference: one example at a time
    clip = 0.1
    examples = ({k: v[j : j + 1] for k, v in batch.items()} for j in range(len(rows)))
    expected, norms = clipped_sum(view, examples, clip)
    assert min(norms) > clip  # every example is clipped
    settings = PrivacySettings(enabled=True, noise_multiplier=0.0, max_grad_norm=clip)
    session = PrivateSession(
        settings,
        model,
        featured,
        epochs=1,
        batch_size=16,
        make_optimizer=lambda m: torch.optim.SGD(m.parameters(), lr=0.0),
        seed=0,
    )
    session.step(batch)
    got = step_gradient(session.module, session.optimizer.expected_batch_size)
    assert torch.allclose(got, expected, rtol=1e-4, atol=1e-7)
    assert float(got.norm()) <= len(rows) * clip * (1 + 1e-5)
    session.close()


@pytest.mark.parametrize(("cls", "loss_type"), [(DeepFM, "bce"), (WideDeep, "mse")])
def test_each_user_gradient_is_clipped_at_user_level(cls, loss_type, featured) -> None:
    """unit=user: the step's gradient is the sum over users of their mean example loss's gradient, each
    clipped; the view runs on ``[users, examples]`` blocks."""
    model = _built(cls, featured, loss_type=loss_type)
    view = copy.deepcopy(model).example_network()  # reference: plain autograd, one user at a time
    settings = PrivacySettings(
        enabled=True, noise_multiplier=0.0, max_grad_norm=0.05, unit="user", users_per_batch=2, delta=1e-2
    )
    session = PrivateSession(
        settings,
        model,
        featured,
        epochs=1,
        batch_size=1024,
        make_optimizer=lambda m: torch.optim.SGD(m.parameters(), lr=0.0),
        seed=0,
    )
    batch = session.units.batch(np.array([0, 13, 27]), np.random.default_rng(1))
    assert batch["mask"].sum(1).min() > 1  # several examples per user block
    users = ({k: v[b][batch["mask"][b] > 0] for k, v in batch.items() if k != "mask"} for b in range(3))
    expected, norms = clipped_sum(view, users, 0.05, reduce=torch.mean)
    assert min(norms) > 0.05  # every user is clipped
    session.step(batch)
    got = step_gradient(session.module, session.optimizer.expected_batch_size)
    assert torch.allclose(got, expected, rtol=1e-4, atol=1e-7)
    session.close()


@pytest.mark.parametrize("cls", MODELS)
def test_private_fit_spends_the_target_and_scores(cls, featured) -> None:
    def trainer(privacy: PrivacySettings | None) -> Trainer:
        return Trainer(epochs=2, batch_size=64, lr=1e-2, progress=False, privacy=privacy)

    model = small(cls, trainer=trainer(PrivacySettings(enabled=True, target_epsilon=4.0)))
    model.fit(featured)
    report = model.history_.privacy
    assert report["unit"] == "example" and report["epsilon"] == pytest.approx(4.0, rel=0.02)
    assert report["steps"] == report["planned_steps"] == 2 * math.ceil(len(featured) / 64)
    assert all(math.isfinite(row["loss"]) for row in model.history_.rows)
    assert not any(m._forward_hooks or m._backward_hooks for m in model.network_.modules())
    scores = model.score(np.arange(5), featured)
    assert scores.shape == (5, featured.n_items) and np.isfinite(scores).all()
    plain_model = small(cls, trainer=trainer(None)).fit(featured)  # DP changed the weights
    state, plain = model.network_.state_dict(), plain_model.network_.state_dict()
    assert not all(torch.equal(state[k], plain[k]) for k in plain)


def test_pipeline_trains_widedeep_privately(tmp_path: Path) -> None:
    from hydra import compose, initialize_config_dir

    from recbench.pipeline import RunContext, run

    pd.DataFrame({"id": range(40), "genre": ["a|b", "b", "c", ""] * 10}).to_csv(
        tmp_path / "items.csv", index=False
    )
    pd.DataFrame({"id": range(60), "gender": ["F", "M", "M"] * 20}).to_csv(
        tmp_path / "users.csv", index=False
    )
    overrides = [
        "dataset=tiny",
        "trainer=fast",
        f"paths.cache_dir={tmp_path / 'cache'}",
        "model=widedeep",
        "model.hidden=[8]",
        "features=default",
        f"features.item_file={tmp_path / 'items.csv'}",
        f"features.user_file={tmp_path / 'users.csv'}",
        "features.item_fields=[genre:multi]",
        "features.user_fields=[gender]",
        "privacy=dp",
        "trainer.privacy.target_epsilon=2",
    ]
    config_dir = Path(__file__).resolve().parents[2] / "configs"
    with initialize_config_dir(version_base="1.3", config_dir=str(config_dir)):
        record = run(compose("train", overrides=overrides), RunContext(tmp_path / "r", {"model": "widedeep"}))
    extra = json.loads((tmp_path / "r" / "metrics.json").read_text())["extra"]
    assert record.status == "ok" and extra["privacy.unit"] == "example"
    assert 1.9 < extra["privacy.epsilon"] <= 2.0 + 1e-6 and extra["privacy.noise_multiplier"] > 0
    assert {"privacy.delta", "privacy.max_grad_norm", "privacy.sample_rate", "privacy.steps"} <= set(extra)


def test_fm_bag_backward_matches_autograd() -> None:
    """The hand-fused backward of the FM view's side sums equals autograd's (double precision)."""
    from recbench.models.feature_examples import _FMBags

    gen = torch.Generator().manual_seed(0)
    vec = torch.randn(3, 2, 7, 5, dtype=torch.float64, generator=gen, requires_grad=True)
    lin = torch.randn(3, 2, 7, dtype=torch.float64, generator=gen, requires_grad=True)
    side_of = torch.randint(0, 4, (3, 2, 7), generator=gen)
    weights = torch.rand(3, 2, 7, dtype=torch.float64, generator=gen)
    weights = weights * (torch.rand(3, 2, 7, generator=gen) > 0.3)  # some lookups of weight 0
    sides = torch.zeros(3, 2, 4, 7, dtype=torch.float64)
    sides.scatter_(-2, side_of.unsqueeze(-2), weights.unsqueeze(-2))
    assert torch.autograd.gradcheck(lambda v, b: _FMBags.apply(v, b, side_of, weights, 4), (vec, lin))
    total, own = _FMBags.apply(vec, lin, side_of, weights, 4)
    bags = sides.unsqueeze(-1) * vec.unsqueeze(-3)  # [..., G, K, dim]: each side's weighted rows
    ref_total = bags.sum(-2)
    pairwise = 0.5 * (ref_total.pow(2).sum(-1) - bags.pow(2).sum((-2, -1)))
    ref_own = (sides * lin.unsqueeze(-2)).sum(-1) + pairwise
    torch.testing.assert_close(total, ref_total)
    torch.testing.assert_close(own, ref_own)
