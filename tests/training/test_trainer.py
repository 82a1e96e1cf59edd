"""The shared Trainer: defaults precedence, reproducibility, NaN guard, early stopping."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import torch
from torch import nn

from recbench.data.interactions import Interactions
from recbench.errors import ConfigError, TrainingError
from recbench.models.base import TorchRecommender
from recbench.training import EarlyStopping, Trainer
from recbench.training.losses import bpr_loss
from recbench.training.samplers import PositiveSet, uniform_negatives


class TinyBPR(TorchRecommender):
    """A minimal dot-product BPR model used only to exercise the Trainer."""

    training_defaults = {"epochs": 3, "lr": 0.05, "batch_size": 64}

    def __init__(
        self, *, factors: int = 8, poison: bool = False, trainer: Trainer | None = None, seed: int = 0
    ) -> None:
        self.factors = factors
        self.poison = poison
        self.trainer = trainer
        self.seed = seed

    def build_network(self, train: Interactions) -> nn.Module:
        self._positives = PositiveSet(train.binary_csr)
        net = nn.ModuleDict(
            {"u": nn.Embedding(train.n_users, self.factors), "i": nn.Embedding(train.n_items, self.factors)}
        )
        for emb in net.values():
            nn.init.normal_(emb.weight, std=0.1)
        return net

    def batches(
        self, train: Interactions, batch_size: int, rng: np.random.Generator
    ) -> Iterator[dict[str, torch.Tensor]]:
        order = rng.permutation(len(train))
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            users = train.users[idx]
            neg = uniform_negatives(self._positives, users, 1, rng)[:, 0]
            yield {k: torch.from_numpy(v) for k, v in (("u", users), ("p", train.items[idx]), ("n", neg))}

    def loss(self, net: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        u = net["u"](batch["u"])
        pos = (u * net["i"](batch["p"])).sum(-1)
        neg = (u * net["i"](batch["n"])).sum(-1)
        loss = bpr_loss(pos, neg)
        return loss * float("nan") if self.poison else loss

    def score_users(self, net: nn.Module, users: torch.Tensor, history: Interactions) -> torch.Tensor:
        return net["u"](users) @ net["i"].weight.T


def test_model_defaults_fill_unset_trainer_settings_but_explicit_values_win() -> None:
    t = Trainer(lr=0.5).with_defaults(**TinyBPR.training_defaults)
    assert (t.epochs, t.lr, t.batch_size, t.weight_decay) == (3, 0.5, 64, 0.0)
    assert Trainer().with_defaults().epochs == 20


def test_fit_trains_and_records_history(blocks: Interactions) -> None:
    model = TinyBPR(trainer=Trainer(device="cpu", progress=False)).fit(blocks)
    rows = model.history_.rows
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    assert rows[-1]["loss"] < rows[0]["loss"]
    assert model.trainer_.lr == 0.05


def test_same_seed_same_weights_and_global_rng_untouched(blocks: Interactions) -> None:
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = TinyBPR(trainer=Trainer(device="cpu"), seed=7).fit(blocks)
    after = torch.rand(1)
    assert torch.equal(before, after), "fit must not consume the caller's global torch RNG"
    b = TinyBPR(trainer=Trainer(device="cpu"), seed=7).fit(blocks)
    c = TinyBPR(trainer=Trainer(device="cpu"), seed=8).fit(blocks)
    users = np.arange(blocks.n_users)
    assert np.array_equal(a.score(users, blocks), b.score(users, blocks))
    assert not np.array_equal(a.score(users, blocks), c.score(users, blocks))


def test_nan_loss_stops_with_a_clear_error(blocks: Interactions) -> None:
    with pytest.raises(TrainingError, match=r"epoch 1.*learning rate"):
        TinyBPR(poison=True, trainer=Trainer(device="cpu")).fit(blocks)


def test_invalid_settings_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="trainer.lr"):
        Trainer(lr=0.0)
    with pytest.raises(ConfigError, match="trainer.epochs"):
        Trainer(epochs=0)
    with pytest.raises(ConfigError, match="metric@k"):
        EarlyStopping(metric="ndcg")


def test_early_stopping_stops_and_restores_best(blocks: Interactions) -> None:
    pytest.importorskip("recbench.evaluation.evaluator")
    train = blocks.select(np.arange(len(blocks)) % 5 != 0)
    val = blocks.select(np.arange(len(blocks)) % 5 == 0)
    stopper = EarlyStopping(metric="ndcg@5", patience=2)
    # a huge learning rate makes validation quality bounce, so patience triggers before 40 epochs
    model = TinyBPR(trainer=Trainer(device="cpu", epochs=40, lr=3.0, early_stopping=stopper)).fit(train, val)
    hist = model.history_
    assert len(hist.rows) < 40 and hist.stopped_early
    best = max(r["val/ndcg@5"] for r in hist.rows)
    assert hist.best_value == pytest.approx(best)
    from recbench.evaluation.evaluator import EvalSpec, evaluate

    restored = evaluate(model, val, train, EvalSpec(metrics=("ndcg",), ks=(5,))).metrics["ndcg@5"]
    assert restored == pytest.approx(best)


def test_validation_interval_follows_the_model_unless_configured() -> None:
    stopper = EarlyStopping(metric="ndcg@10", patience=2)
    assert Trainer(early_stopping=stopper).with_defaults(validate_every=10).early_stopping.every == 10
    assert Trainer(early_stopping=stopper).with_defaults().early_stopping.every == 1
    fixed = EarlyStopping(metric="ndcg@10", patience=2, every=3)
    assert Trainer(early_stopping=fixed).with_defaults(validate_every=10).early_stopping.every == 3


def test_patience_follows_the_model_unless_configured(blocks: Interactions) -> None:
    unset = EarlyStopping(metric="ndcg@10")
    assert Trainer(early_stopping=unset).with_defaults(patience=6).early_stopping.patience == 6
    assert Trainer(early_stopping=unset).with_defaults().early_stopping.patience == 3
    fixed = EarlyStopping(metric="ndcg@10", patience=2)
    assert Trainer(early_stopping=fixed).with_defaults(patience=6).early_stopping.patience == 2

    class PatientBPR(TinyBPR):
        training_defaults = {**TinyBPR.training_defaults, "patience": 7}

    trainer = Trainer(device="cpu", progress=False, early_stopping=unset)
    model = PatientBPR(trainer=trainer).fit(blocks, blocks)
    assert model.trainer_.early_stopping.patience == 7
    assert "val/ndcg@10" in model.history_.rows[0]
    assert TinyBPR(trainer=trainer).fit(blocks, blocks).trainer_.early_stopping.patience == 3


def test_early_stopping_on_an_error_metric_minimises_it() -> None:
    """val/rmse is an error: the best epoch is the lowest one, and its weights are restored."""
    from recbench.evaluation.evaluator import EvalSpec, evaluate
    from recbench.models.factorization import MF

    rng = np.random.default_rng(0)
    users, items = rng.integers(0, 40, 1500), rng.integers(0, 30, 1500)
    ratings = np.clip(np.round(3 + rng.normal(0, 1, 1500)), 1, 5).astype(np.float32)
    data = Interactions(users=users, items=items, ratings=ratings, n_users=40, n_items=30)
    train, val = data.select(np.arange(1500) % 5 != 0), data.select(np.arange(1500) % 5 == 0)
    stopper = EarlyStopping(metric="rmse", patience=2)
    # no L2 and a high learning rate: the model overfits the noise, so val/rmse turns upwards
    trainer = Trainer(device="cpu", epochs=60, lr=0.05, batch_size=64, early_stopping=stopper)
    model = MF(factors=16, reg=0.0, bias_reg=0.0, trainer=trainer).fit(train, val)
    hist = model.history_
    values = [r["val/rmse"] for r in hist.rows]
    assert stopper.lower_is_better and hist.stopped_early
    assert hist.best_value == pytest.approx(min(values)) and values[-1] > min(values)
    restored = evaluate(model, val, train, EvalSpec(metrics=("rmse",))).metrics["rmse"]
    assert restored == pytest.approx(min(values), rel=1e-5)
    assert EarlyStopping(metric="auc").name_and_k == ("auc", None)
    with pytest.raises(ConfigError, match="rmse"):
        EarlyStopping(metric="rmse@10x")
