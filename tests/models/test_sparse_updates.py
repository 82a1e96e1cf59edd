"""Sparse updates of the factor tables: gradients of the touched rows only, SparseAdam, O(batch) steps."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recbench.data.interactions import Interactions
from recbench.errors import ConfigError
from recbench.models.factorization import BPR, DotProduct
from recbench.training.row_adam import RowAdam
from recbench.training.trainer import Trainer


def _loss(net: DotProduct, users: torch.Tensor, items: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    factors, biases = net.l2_rows(users, torch.ones(len(users)), items, w)
    return net(users, items).pow(2).sum() + factors + biases


def test_sparse_gradients_equal_the_dense_ones() -> None:
    torch.manual_seed(0)
    dense = DotProduct(6, 9, 4, user_bias=True, item_bias=True).double()
    sparse = DotProduct(6, 9, 4, user_bias=True, item_bias=True, sparse=True).double()
    torch.nn.init.normal_(dense.item_bias)
    torch.nn.init.normal_(dense.user_bias)
    sparse.load_state_dict(dense.state_dict())
    users, items = torch.tensor([0, 4, 4, 2]), torch.tensor([[0, 3], [3, 3], [8, 1], [0, 5]])
    w = torch.tensor([[1.0, 0.5], [1.0, 0.5], [1.0, 0.5], [1.0, 0.5]])
    _loss(dense, users, items, w).backward()
    _loss(sparse, users, items, w).backward()
    for d, s in zip(dense.parameters(), sparse.parameters()):
        assert s.grad.is_sparse
        torch.testing.assert_close(s.grad.to_dense(), d.grad)
        untouched = torch.ones(len(d), dtype=torch.bool)
        untouched[s.grad.coalesce().indices()[0]] = False
        assert (d.grad[untouched] == 0).all()
    # the gathered-row L2 equals the explicit sum over the batch's occurrences
    factors, biases = dense.l2_rows(users, torch.ones(4), items, w)
    want_f = dense.user[users].pow(2).sum() + (dense.item[items].pow(2).sum(-1) * w).sum()
    want_b = dense.user_bias[users].pow(2).sum() + (dense.item_bias[items].pow(2) * w).sum()
    torch.testing.assert_close((factors, biases), (want_f, want_b))


def test_row_adam_updates_only_the_touched_rows() -> None:
    torch.manual_seed(0)
    net = DotProduct(50, 40, 4, item_bias=True, sparse=True)
    opt = Trainer(epochs=1, batch_size=4, lr=0.1, weight_decay=0.0)._make_optimizer(net)
    assert isinstance(opt, RowAdam)
    before = net.user.detach().clone()
    users, items = torch.tensor([3, 7]), torch.tensor([[1, 2], [5, 6]])
    _loss(net, users, items, torch.ones(2, 2)).backward()
    opt.step()
    changed = (net.user.detach() != before).any(1)
    assert changed[[3, 7]].all() and changed.sum() == 2


def test_sparse_updates_refuse_weight_decay_and_clipping(blocks: Interactions) -> None:
    for bad in (dict(weight_decay=0.1), dict(grad_clip_norm=1.0)):
        model = BPR(factors=4, trainer=Trainer(epochs=1, batch_size=32, lr=0.01, progress=False, **bad))
        with pytest.raises(ConfigError, match="sparse updates"):
            model.fit(blocks)


def test_sparse_bpr_learns_the_blocks(blocks: Interactions) -> None:
    trainer = Trainer(epochs=30, batch_size=64, lr=0.05, device="cpu", progress=False)
    model = BPR(factors=16, seed=0, trainer=trainer).fit(blocks)
    assert model.network_.sparse_gradients
    top1 = model.score(np.arange(blocks.n_users), blocks).argmax(1)
    assert ((top1 // 8) == (np.arange(blocks.n_users) // 10)).mean() == 1.0
