"""Objectives of the sequential models: sampled softmax, the automatic choice, the logits' memory check."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir

from recbench.data.interactions import Interactions
from recbench.errors import ConfigError
from recbench.models.sequential import objectives
from recbench.models.sequential.bert4rec import BERT4Rec
from recbench.models.sequential.caser import Caser
from recbench.models.sequential.data import POPULARITY_ALPHA, RowNegatives, next_item_batches
from recbench.models.sequential.layers import item_cross_entropy
from recbench.models.sequential.objectives import (
    SAMPLED_ABOVE_ITEMS,
    check_logits_memory,
    resolve_loss_type,
    sampled_cross_entropy,
    sampled_item_cross_entropy,
)
from recbench.pipeline import RunContext, run
from recbench.training.trainer import Trainer
from tests.models.test_sequential import cycles, make, next_items

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def one_row(hidden: torch.Tensor, targets: torch.Tensor, negatives: torch.Tensor) -> tuple:
    """Positions ``hidden[N, d]`` / ``targets[N]`` as one row sharing ``negatives[K]``."""
    return hidden.unsqueeze(0), targets.unsqueeze(0), negatives.unsqueeze(0)


def test_sampled_loss_equals_a_hand_computation() -> None:
    # two positions of one row, d = 2; items are tokens 1..4; the row's negatives [2, 3, 2]
    hidden = torch.tensor([[1.0, 0.0], [0.5, -1.0]])
    weight = torch.tensor([[0.0, 0.0], [1.0, 2.0], [0.0, 1.0], [-1.0, 0.5], [2.0, 2.0]])
    targets = torch.tensor([1, 3])
    negatives = torch.tensor([2, 3, 2])
    hidden, targets, negatives = one_row(hidden, targets, negatives)
    loss = sampled_item_cross_entropy(hidden, weight, targets, negatives)
    # position 0: target 1 scores 1.0; negatives 2, 3, 2 score 0.0, -1.0, 0.0
    first = -1.0 + math.log(math.exp(1.0) + math.exp(0.0) + math.exp(-1.0) + math.exp(0.0))
    # position 1: target 3 scores -1.0; negative 3 is its own target (left out), 2 scores -1.0 twice
    second = 1.0 + math.log(math.exp(-1.0) + 2 * math.exp(-1.0))
    assert loss.item() == pytest.approx((first + second) / 2, rel=1e-6)


def test_a_negative_equal_to_the_target_changes_nothing() -> None:
    torch.manual_seed(0)
    hidden, weight = torch.randn(5, 4), torch.randn(9, 4)
    targets = torch.tensor([1, 2, 3, 4, 5])
    clean = torch.tensor([6, 7, 8])
    with_hits = torch.tensor([6, 7, 8, 3, 5])  # the targets of positions 2 and 4
    a = sampled_item_cross_entropy(hidden[None], weight, targets[None], clean[None])
    b = sampled_item_cross_entropy(hidden[None], weight, targets[None], with_hits[None])
    # positions 2 and 4 see exactly the clean negatives; the others see two more
    logits = hidden @ weight.T
    rows = []
    for i, t in enumerate(targets.tolist()):
        cands = [t, 6, 7, 8] + [n for n in (3, 5) if n != t]
        rows.append(-torch.log_softmax(logits[i, cands], 0)[0])
    assert b.item() == pytest.approx(torch.stack(rows).mean().item(), rel=1e-6)
    assert a.item() < b.item()


def test_sampled_with_every_item_equals_the_full_softmax() -> None:
    torch.manual_seed(1)
    hidden, weight = torch.randn(6, 3), torch.randn(8, 3)  # 7 items (tokens 1..7)
    targets = torch.tensor([1, 4, 7, 2, 2, 5])
    every = torch.arange(1, 8)  # the target is among them and left out, so: full softmax
    sampled = sampled_item_cross_entropy(hidden[None], weight, targets[None], every[None])
    assert sampled.item() == pytest.approx(item_cross_entropy(hidden, weight, 7, targets).item(), rel=1e-5)


def test_log_q_correction_lowers_each_logit_by_its_log_probability() -> None:
    pos, neg = torch.tensor([2.0, 0.5]), torch.tensor([[1.0, -1.0], [0.0, 3.0]])
    targets, negatives = torch.tensor([1, 2]), torch.tensor([3, 4])
    pos_q, neg_q = torch.log(torch.tensor([0.5, 0.25])), torch.log(torch.tensor([0.125, 0.125]))
    loss = sampled_cross_entropy(pos, neg, targets, negatives, pos_q, neg_q)
    by_hand = []
    for i in range(2):
        p = pos[i].item() - pos_q[i].item()
        n = [neg[i, j].item() - neg_q[j].item() for j in range(2)]
        by_hand.append(-p + math.log(math.exp(p) + sum(map(math.exp, n))))
    assert loss.item() == pytest.approx(sum(by_hand) / 2, rel=1e-6)


def test_uniform_negatives_are_items_and_seeded() -> None:
    data = cycles()  # 20 items
    sampler = RowNegatives(data, 1000, "uniform")
    a = sampler.draw(np.random.default_rng(3), 2)
    assert a.dtype == np.int64 and a.shape == (2, 1000)
    assert a.min() >= 1 and a.max() <= data.n_items  # tokens of real items: never padding (0) or [MASK]
    assert np.array_equal(a, sampler.draw(np.random.default_rng(3), 2))
    assert not np.array_equal(a[0], a[1])  # every row draws its own
    batch: dict = {}
    sampler.add_to(batch, np.array([[0, 3], [2, 1], [1, 0]]), np.random.default_rng(0))
    assert set(batch) == {"row_negatives"}  # uniform: the log-q terms cancel, none are given
    assert batch["row_negatives"].shape == (3, 1000)


def test_popularity_negatives_follow_the_smoothed_counts() -> None:
    items = np.repeat(np.arange(4), [70, 20, 9, 1])
    data = Interactions(np.zeros(len(items), dtype=np.int64), items, 1, 4)
    sampler = RowNegatives(data, 100_000, "popularity")
    drawn = np.bincount(sampler.draw(np.random.default_rng(0), 2).ravel() - 1, minlength=4) / 200_000
    expected = (np.array([70, 20, 9, 1]) + 1.0) ** POPULARITY_ALPHA
    np.testing.assert_allclose(drawn, expected / expected.sum(), atol=0.005)
    batch: dict = {}
    sampler.add_to(batch, np.array([[0, 1, 4]]), np.random.default_rng(0))
    q = expected / expected.sum()
    np.testing.assert_allclose(batch["target_log_q"].numpy(), [[0.0, np.log(q[0]), np.log(q[3])]], rtol=1e-5)
    np.testing.assert_allclose(
        batch["negative_log_q"].numpy(), np.log(q[batch["row_negatives"].numpy() - 1]), rtol=1e-5
    )


def test_auto_picks_the_full_softmax_up_to_the_threshold() -> None:
    assert resolve_loss_type("SASRec", "auto", 1682) == "ce"
    assert resolve_loss_type("SASRec", "auto", SAMPLED_ABOVE_ITEMS) == "ce"
    assert resolve_loss_type("SASRec", "auto", SAMPLED_ABOVE_ITEMS + 1) == "sampled"
    assert resolve_loss_type("SASRec", "ce", 10**6) == "ce"
    with pytest.raises(ConfigError, match="loss_type"):
        resolve_loss_type("SASRec", "softmax", 10)


def test_next_item_batches_carry_negatives_for_every_row() -> None:
    data = cycles()
    rng = np.random.default_rng(0)
    draws = RowNegatives(data, 7, "popularity")
    batch = next(next_item_batches(data, 6, 8, rng, crop=False, negatives=False, negatives_of_rows=draws))
    rows = len(batch["targets"])
    assert batch["row_negatives"].shape == (rows, 7) and batch["negative_log_q"].shape == (rows, 7)
    assert batch["target_log_q"].shape == batch["targets"].shape
    assert "row_negatives" not in next(next_item_batches(data, 6, 8, rng, crop=False, negatives=False))


def test_each_row_is_scored_against_its_own_negatives() -> None:
    """Two rows with different negatives: the loss is the mean over their positions, each position's softmax
    over its target and its own row's draws (what the batched product must pick)."""
    torch.manual_seed(2)
    hidden, weight = torch.randn(2, 3, 4), torch.randn(10, 4)
    targets = torch.tensor([[1, 2, 0], [0, 3, 4]])  # 0: no target at that position
    negatives = torch.tensor([[5, 6, 2], [7, 8, 9]])  # row 0 drew its position 1's target
    loss = sampled_item_cross_entropy(hidden, weight, targets, negatives)
    by_hand = []
    for r in range(2):
        for t in range(3):
            target = int(targets[r, t])
            if target:
                cands = [target] + [int(n) for n in negatives[r] if int(n) != target]
                by_hand.append(-torch.log_softmax(hidden[r, t] @ weight[cands].T, 0)[0])
    assert loss.item() == pytest.approx(torch.stack(by_hand).mean().item(), rel=1e-6)


def small_trainer(epochs: int) -> Trainer:
    return Trainer(epochs=epochs, batch_size=8, lr=1e-2, device="cpu", progress=False)


@pytest.mark.parametrize(("name", "sampler"), [("sasrec", "popularity"), ("gru4rec", "uniform")])
def test_sampled_softmax_learns_the_next_item(name: str, sampler: str) -> None:
    data = cycles()
    # GRU4Rec learns the loops more slowly from 10 of 20 items than from all of them
    epochs = 30 if name == "sasrec" else 80
    model = make(name, epochs=epochs, loss_type="sampled", n_negatives=10, sampler=sampler).fit(data)
    assert model.loss_type_ == "sampled"
    top = model.score(np.arange(data.n_users), data).argmax(axis=1)
    assert (top == next_items(data)).mean() >= 0.9


@pytest.mark.parametrize(
    "build",
    [
        lambda t: Caser(window=3, targets=1, embedding_dim=8, n_h=2, n_v=2, loss_type="sampled", trainer=t),
        lambda t: BERT4Rec(max_len=8, hidden_dim=8, n_layers=1, n_heads=1, loss_type="sampled", trainer=t),
    ],
)
def test_caser_and_bert4rec_train_with_the_sampled_softmax(build) -> None:
    model = build(small_trainer(2)).fit(cycles())
    assert model.loss_type_ == "sampled"
    assert all(math.isfinite(row["loss"]) for row in model.history_.rows)


def test_sampled_needs_a_positive_number_of_negatives_and_a_known_sampler() -> None:
    with pytest.raises(ConfigError, match="n_negatives"):
        make("sasrec", loss_type="sampled", n_negatives=0).fit(cycles())
    with pytest.raises(ConfigError, match="model.sampler='zipf'"):
        make("gru4rec", loss_type="sampled", sampler="zipf").fit(cycles())


def test_memory_check_refuses_with_the_setting_to_change(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("recbench.memory.available_bytes", lambda: 100 << 20)
    check_logits_memory("SASRec", 100, 1000, torch.device("cpu"))  # 0.8 MB: not even checked
    check_logits_memory("SASRec", 1000, 10_000, torch.device("cpu"))  # 80 MB of 100 MB: fits
    with pytest.raises(ConfigError) as err:
        check_logits_memory("SASRec", 16 * 200, 50_000, torch.device("cpu"))
    text = str(err.value)
    assert "50000 items" in text and "1.2 GiB" in text and "100.0 MiB" in text
    assert "model.loss_type=sampled" in text and "trainer.batch_size" in text


def test_full_softmax_of_a_model_is_refused_before_allocating(monkeypatch: pytest.MonkeyPatch) -> None:
    # Caser forms [batch, n_items] logits on CPU: with (pretend) 1 KiB free and no floor it refuses
    monkeypatch.setattr(objectives, "CHECK_FLOOR_BYTES", 0)
    monkeypatch.setattr("recbench.memory.available_bytes", lambda: 1024)
    model = Caser(
        window=3, targets=1, embedding_dim=8, n_h=2, n_v=2, loss_type="ce", trainer=small_trainer(1)
    )
    with pytest.raises(ConfigError, match="model.loss_type=sampled"):
        model.fit(cycles())


@pytest.mark.slow
def test_sampled_run_end_to_end(tmp_path: Path) -> None:
    with initialize_config_dir(version_base="1.3", config_dir=str(CONFIG_DIR)):
        cfg = compose(
            "train",
            overrides=[
                "dataset=tiny",
                "split=loo",
                "model=sasrec",
                "model.loss_type=sampled",
                "model.n_negatives=8",
                "model.max_len=20",
                "trainer.epochs=2",
                "trainer.device=cpu",
                "trainer.progress=false",
                f"paths.cache_dir={tmp_path / 'cache'}",
            ],
        )
    record = run(cfg, RunContext(tmp_path / "r", {"model": "sasrec"}))
    assert record.status == "ok"
    assert 0.0 <= record.metrics["test/ndcg@10"] <= 1.0
    assert len((tmp_path / "r" / "history.csv").read_text().strip().splitlines()) == 3  # header + 2 epochs
