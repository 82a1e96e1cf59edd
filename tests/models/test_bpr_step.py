"""BPR's compiled CPU step: the same update as the torch route (autograd + RowAdam), and when it is used."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recbench.data.interactions import Interactions
from recbench.models.bpr_step import FusedBPRStep
from recbench.models.factorization import BPR, DotProduct
from recbench.training.trainer import Trainer


def _pair(item_bias: bool, dtype: torch.dtype) -> tuple[BPR, DotProduct, DotProduct]:
    model = BPR(factors=5, reg=0.05, item_bias=item_bias, seed=0)
    torch.manual_seed(0)
    torch_net = DotProduct(7, 11, 5, item_bias=item_bias, sparse=True).to(dtype)
    if item_bias:
        torch.nn.init.normal_(torch_net.item_bias)
    fused_net = DotProduct(7, 11, 5, item_bias=item_bias, sparse=True).to(dtype)
    fused_net.load_state_dict(torch_net.state_dict())
    return model, torch_net, fused_net


@pytest.mark.parametrize("item_bias", [True, False])
@pytest.mark.parametrize("n_neg", [1, 3])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fused_step_equals_autograd_and_row_adam(item_bias: bool, n_neg: int, dtype: torch.dtype) -> None:
    """Three steps on batches with repeated users and items: the same loss, parameters and moments."""
    model, torch_net, fused_net = _pair(item_bias, dtype)
    trainer = Trainer(epochs=1, batch_size=4, lr=0.05, weight_decay=0.0)
    torch_opt, fused_opt = trainer._make_optimizer(torch_net), trainer._make_optimizer(fused_net)
    step = model.fused_step(fused_net, fused_opt)
    assert isinstance(step, FusedBPRStep)
    rng = np.random.default_rng(1)
    for _ in range(3):
        users = torch.from_numpy(rng.integers(0, 7, 6))
        items = torch.from_numpy(rng.integers(0, 11, (6, 1 + n_neg)))
        batch = {"users": users, "items": items}
        loss = model.loss(torch_net, batch)
        torch_opt.zero_grad(set_to_none=True)
        loss.backward()
        torch_opt.step()
        assert step(batch) == pytest.approx(float(loss.detach()), rel=1e-5)
    tol = dict(rtol=1e-4, atol=1e-6) if dtype == torch.float32 else dict(rtol=1e-7, atol=1e-9)
    for a, b in zip(torch_net.parameters(), fused_net.parameters()):
        torch.testing.assert_close(b, a, **tol)
    for a, b in zip(torch_opt.state_dict()["state"].values(), fused_opt.state_dict()["state"].values()):
        assert a["step"] == b["step"] == 3
        torch.testing.assert_close(b["exp_avg"], a["exp_avg"], **tol)
        torch.testing.assert_close(b["exp_avg_sq"], a["exp_avg_sq"], **tol)


def test_fused_step_only_where_it_reproduces_the_torch_route() -> None:
    model, _, net = _pair(True, torch.float32)
    sgd = torch.optim.SGD(net.parameters(), lr=0.1)
    assert model.fused_step(net, sgd) is None
    dense = DotProduct(7, 11, 5, item_bias=True)
    dense_opt = Trainer(lr=0.1, weight_decay=0.0)._make_optimizer(dense)
    assert BPR(sparse_updates=False).fused_step(dense, dense_opt) is None


def test_out_of_range_ids_raise() -> None:
    model, _, net = _pair(True, torch.float32)
    step = model.fused_step(net, Trainer(lr=0.1, weight_decay=0.0)._make_optimizer(net))
    with pytest.raises(IndexError, match="item id out of range"):
        step({"users": torch.tensor([0]), "items": torch.tensor([[1, 11]])})


def test_training_uses_the_fused_step_and_matches_the_torch_route(
    blocks: Interactions, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A whole fit through the Trainer: the fused and the torch route end at the same scores."""
    trainer = Trainer(epochs=3, batch_size=64, lr=0.05, device="cpu", progress=False)
    fused = BPR(factors=8, seed=0, trainer=trainer).fit(blocks)
    calls = []
    original = FusedBPRStep.__call__
    monkeypatch.setattr(FusedBPRStep, "__call__", lambda self, b: calls.append(1) or original(self, b))
    BPR(factors=8, seed=0, trainer=trainer).fit(blocks)
    assert len(calls) == fused.history_.rows[0]["batches"] * 3
    monkeypatch.setattr(BPR, "fused_step", lambda self, net, opt: None)
    plain = BPR(factors=8, seed=0, trainer=trainer).fit(blocks)
    users = np.arange(blocks.n_users)
    np.testing.assert_allclose(fused.score(users, blocks), plain.score(users, blocks), rtol=1e-3, atol=1e-4)
    assert [r["loss"] for r in fused.history_.rows] == pytest.approx([r["loss"] for r in plain.history_.rows])
