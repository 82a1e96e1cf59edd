"""Distributed training (DDP over gloo on CPU): settings checks, and two real processes on tiny data.

The slow test starts two processes with :func:`recbench.training.distributed.spawn` (the code path of
``trainer.strategy=ddp trainer.devices=2``) and checks, for a dense network (DistributedDataParallel)
and for one with sparse row gradients (explicit all-gather, lazy Adam), that two processes with half
batches train the same weights as one process with the whole batch; that resuming from a checkpoint
ends where an uninterrupted run ends; that only rank 0 writes the checkpoint; and that evaluation
sharded by users gives the one-process metrics.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from recbench.data.interactions import Interactions
from recbench.errors import ConfigError
from recbench.evaluation.evaluator import EvalSpec, evaluate
from recbench.evaluation.sharding import gather_rows, shard_rows
from recbench.models.base import TorchRecommender
from recbench.training import Trainer, distributed

N_USERS, N_ITEMS, N_ROWS = 40, 30, 512
ROOT = Path(__file__).resolve().parents[2]


def importable_here(monkeypatch: pytest.MonkeyPatch) -> None:
    """Let the spawned processes import this module by the name pytest gave it (``tests.training...``).

    Spawned processes unpickle the function they run by module name and copy the parent's ``sys.path``;
    under ``--import-mode=importlib`` the repository root is not on it, so put it there for the test.
    """
    monkeypatch.syspath_prepend(str(ROOT))


def tiny_data(seed: int = 0) -> Interactions:
    """512 distinct (user, item) pairs with ratings: a size that the batches below divide evenly."""
    rng = np.random.default_rng(seed)
    cells = rng.choice(N_USERS * N_ITEMS, size=N_ROWS, replace=False)
    return Interactions(
        users=(cells // N_ITEMS).astype(np.int32),
        items=(cells % N_ITEMS).astype(np.int32),
        ratings=rng.integers(1, 6, size=N_ROWS).astype(np.float32),
        n_users=N_USERS,
        n_items=N_ITEMS,
    )


class _Sparse(nn.Module):
    def __init__(self, n_users: int, n_items: int, factors: int) -> None:
        super().__init__()
        self.sparse_gradients = True
        self.u = nn.Embedding(n_users, factors, sparse=True)
        self.i = nn.Embedding(n_items, factors, sparse=True)
        self.bias = nn.Parameter(torch.zeros(1))  # a dense parameter beside the sparse tables


class Dot(TorchRecommender):
    """Squared-error dot product (dense: a linear head too; sparse: embeddings with sparse gradients and
    a dense bias)."""

    def __init__(self, *, sparse: bool = False, trainer: Trainer | None = None, seed: int = 0) -> None:
        self.sparse = sparse
        self.trainer = trainer
        self.seed = seed

    def build_network(self, train: Interactions) -> nn.Module:
        if self.sparse:
            return _Sparse(train.n_users, train.n_items, 8)
        return nn.ModuleDict(
            {
                "u": nn.Embedding(train.n_users, 8),
                "i": nn.Embedding(train.n_items, 8),
                "head": nn.Linear(8, 1),
            }
        )

    def batches(
        self, train: Interactions, batch_size: int, rng: np.random.Generator
    ) -> Iterator[dict[str, torch.Tensor]]:
        order = rng.permutation(len(train))
        assert train.ratings is not None
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            yield {
                "u": torch.from_numpy(train.users[idx].astype(np.int64)),
                "i": torch.from_numpy(train.items[idx].astype(np.int64)),
                "r": torch.from_numpy(train.ratings[idx]),
            }

    def _pred(self, net: nn.Module, u: torch.Tensor, i: torch.Tensor) -> torch.Tensor:
        x = net.u(u) * net.i(i) if self.sparse else net["u"](u) * net["i"](i)
        return x.sum(-1) + net.bias if self.sparse else net["head"](x)[..., 0]

    def loss(self, net: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return ((self._pred(net, batch["u"], batch["i"]) - batch["r"]) ** 2).mean()

    def score_users(self, net: nn.Module, users: torch.Tensor, history: Interactions) -> torch.Tensor:
        items = torch.arange(history.n_items)
        return self._pred(net, users[:, None].expand(-1, len(items)), items[None, :].expand(len(users), -1))


def train(
    sparse: bool, epochs: int, batch_size: int, ckpt: str | None = None, resume: str | None = None
) -> dict:
    """Fit a :class:`Dot` and evaluate it; the weights, epoch losses and test ndcg@10."""
    data = tiny_data()
    trainer = Trainer(
        epochs=epochs, batch_size=batch_size, lr=0.05, device="cpu", progress=False,
        checkpoint_dir=ckpt, resume=resume,
    )  # fmt: skip
    model = Dot(sparse=sparse, trainer=trainer).fit(data)
    test = tiny_data(seed=1)
    ndcg = evaluate(model, test, data, EvalSpec(metrics=("ndcg",), ks=(10,), progress=False)).metrics[
        "ndcg@10"
    ]
    weights = {k: v.detach().tolist() for k, v in model.network_.state_dict().items()}
    return {"weights": weights, "losses": [r["loss"] for r in model.history_.rows], "ndcg": ndcg}


def two_process_checks(tmp: str) -> dict:
    """What each rank of the spawned pair computes; rank 0's result goes back to the test."""
    distributed.init_from_env("cpu")  # as the pipeline does in each process
    out: dict = {"rank": distributed.rank(), "world": distributed.world_size()}
    for sparse in (False, True):
        key = "sparse" if sparse else "dense"
        out[key] = train(sparse, epochs=2, batch_size=128)  # 4 global steps per epoch, 64 rows per rank
        ckpt = str(Path(tmp, key))
        train(sparse, epochs=1, batch_size=128, ckpt=ckpt)
        out[f"{key}_resumed"] = train(sparse, epochs=2, batch_size=128, ckpt=ckpt, resume=ckpt)
    out["odd"] = train(True, epochs=1, batch_size=96)  # 48 rows per rank: the last step has one batch
    part = np.arange(7)[shard_rows(7)] * 10
    out["gathered"] = gather_rows(part[:, None], 7)[:, 0].tolist()
    return out


@pytest.mark.slow
def test_two_processes_train_as_one_process_with_the_global_batch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    importable_here(monkeypatch)
    got = distributed.spawn(two_process_checks, (str(tmp_path),), 2, threads=1)
    assert (got["rank"], got["world"]) == (0, 2)
    assert got["gathered"] == [0, 10, 20, 30, 40, 50, 60]
    for key in ("dense", "sparse"):
        alone = train(key == "sparse", epochs=2, batch_size=128)
        both = got[key]
        np.testing.assert_allclose(both["losses"], alone["losses"], rtol=1e-5)
        for name, w in alone["weights"].items():
            np.testing.assert_allclose(both["weights"][name], w, rtol=1e-4, atol=1e-5)
        assert both["ndcg"] == pytest.approx(alone["ndcg"], abs=1e-6)
        resumed = got[f"{key}_resumed"]
        assert resumed["losses"] == both["losses"]
        for name, w in both["weights"].items():
            assert resumed["weights"][name] == w, f"{key} resume differs in {name}"
    # 512 rows at 48 per rank: the sixth step holds one batch only; it still averages exactly
    for name, w in train(True, epochs=1, batch_size=96)["weights"].items():
        np.testing.assert_allclose(got["odd"]["weights"][name], w, rtol=1e-4, atol=1e-5)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dense", "sparse"]  # rank 0 wrote, once each


def fail_on_rank_1() -> None:
    """Rank 1 raises a ConfigError while rank 0 waits in a collective."""
    distributed.init_from_env("cpu")
    if distributed.rank() == 1:
        raise ConfigError("model.factors=-1 must be >= 1 (raised in process 1)")
    torch.distributed.barrier()


@pytest.mark.slow
def test_a_failing_process_stops_the_others_and_its_error_is_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    importable_here(monkeypatch)
    with pytest.raises(ConfigError, match=r"model.factors=-1 must be >= 1 \(raised in process 1\)"):
        distributed.spawn(fail_on_rank_1, (), 2, threads=1)


# --- settings (fast) -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("strategy", "devices", "match"),
    [("ddp", 0, "trainer.devices=0"), ("ddp", -2, "trainer.devices=-2"), ("fsdp", None, "trainer.strategy")],
)
def test_bad_settings_are_config_errors(strategy: str, devices: int | None, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        Trainer(strategy=strategy, devices=devices)


def test_plan_refuses_ddp_for_models_without_a_trainer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    with pytest.raises(ConfigError, match="model=pop does not train with torch"):
        distributed.plan("ddp", 2, "cpu", torch_model=False, model="pop")
    with pytest.raises(ConfigError, match="needs trainer.strategy=ddp"):
        distributed.plan("auto", 2, "cpu", torch_model=True, model="bpr")
    assert distributed.plan("ddp", 2, "cpu", torch_model=True, model="bpr") == distributed.Launch(
        2, spawn=True
    )
    assert not distributed.plan("auto", None, "cpu", torch_model=False, model="pop").distributed


def test_plan_under_torchrun_follows_world_size(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert distributed.plan("auto", None, "cpu", torch_model=True, model="bpr") == distributed.Launch(2)
    with pytest.raises(ConfigError, match="launcher started 2 processes"):
        distributed.plan("ddp", 3, "cpu", torch_model=True, model="bpr")
    with pytest.raises(ConfigError, match="model=itemknn does not train with torch"):
        distributed.plan("auto", None, "cpu", torch_model=False, model="itemknn")


def test_outside_a_process_group_sharding_is_the_identity() -> None:
    rows = np.arange(12).reshape(6, 2)
    assert shard_rows(6) == slice(0, 6) and gather_rows(rows, 6) is rows
    assert distributed.is_main() and not distributed.active()


def test_plan_refuses_more_gpus_than_the_machine_has(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(ConfigError, match="needs 2 GPUs, but this machine has 1"):
        distributed.plan("ddp", 2, "auto", torch_model=True, model="bpr")
    assert (
        distributed.backend_for("auto") == "cpu:gloo,cuda:nccl" and distributed.backend_for("cpu") == "gloo"
    )
