"""Sparse row updates for every id-embedding torch model: the tables' gradients hold only the rows a
batch read (equal to the dense gradients there), and the Trainer steps them with the lazy row-wise Adam."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import pytest
import torch
from torch import nn

from recbench.data.interactions import Interactions
from recbench.models.base import TorchRecommender
from recbench.models.dmf import DMF
from recbench.models.factorization import MF, PMF
from recbench.models.feature_models import FM, DeepFM, WideDeep
from recbench.models.mlp import MLPClassifier
from recbench.models.ncf import GMF, NCFMLP, NeuMF
from recbench.training.row_adam import RowAdam
from recbench.training.sparse_rows import gather_rows, lookup, row_squares
from recbench.training.trainer import Trainer
from tests.conftest import block_interactions
from tests.models.test_feature_models import with_features

#: sizes that no layer width of the default networks shares, so a table is told by its first dimension
USERS_PER_BLOCK, ITEMS_PER_BLOCK = 11, 9


def test_gather_rows_gradient_is_the_dense_one_on_the_distinct_rows() -> None:
    torch.manual_seed(0)
    for shape in ((7, 3), (7,)):
        table = torch.randn(*shape, dtype=torch.float64, requires_grad=True)
        index = torch.tensor([[4, 1], [4, 6]])
        weights = torch.randn(*index.shape, *shape[1:], dtype=torch.float64)
        (gather_rows(table, index, True) * weights).sum().backward()
        sparse = table.grad
        table.grad = None
        (gather_rows(table, index, False) * weights).sum().backward()
        assert sparse.is_sparse
        assert sparse.coalesce().indices()[0].tolist() == [1, 4, 6]
        torch.testing.assert_close(sparse.to_dense(), table.grad)


def test_lookup_follows_the_embedding_flag_and_row_squares_matches() -> None:
    torch.manual_seed(0)
    emb = nn.Embedding(9, 2, sparse=True)
    idx = torch.tensor([3, 3, 8])
    lookup(emb, idx).sum().backward()
    assert emb.weight.grad.is_sparse
    with torch.no_grad():  # scoring: plain indexing, no autograd function
        torch.testing.assert_close(lookup(emb, idx), emb.weight[idx])
    w = torch.tensor([1.0, 2.0, 0.5])
    expected = (emb.weight[idx].pow(2).sum(1) * w).sum()
    torch.testing.assert_close(row_squares(emb.weight, idx, w, True), expected)


class FirstStep(Exception):
    """Ends a fit after its first optimiser step."""


class Recorder(torch.optim.Optimizer):
    """Keeps the gradients of the first step, then ends the fit (:class:`FirstStep`)."""

    first: ClassVar[list[torch.Tensor | None]] = []

    def __init__(self, params: Any, lr: float = 0.0, **_: Any) -> None:
        super().__init__(params, {"lr": lr})

    def step(self, closure: Callable[[], float] | None = None) -> None:  # type: ignore[override]
        Recorder.first.extend(p.grad for g in self.param_groups for p in g["params"])
        raise FirstStep


FEATURED = {"fm", "widedeep", "deepfm", "ncf+features", "mlp+features"}
BUILDERS: dict[str, Callable[..., TorchRecommender]] = {
    "mf": lambda **kw: MF(factors=4, **kw),
    "pmf": lambda **kw: PMF(factors=4, **kw),
    "gmf": lambda **kw: GMF(embedding_dim=4, **kw),
    "ncf_mlp": lambda **kw: NCFMLP(embedding_dim=4, mlp_layers=(8, 4), **kw),
    "ncf": lambda **kw: NeuMF(embedding_dim=4, mlp_embedding_dim=4, mlp_layers=(8, 4), **kw),
    "ncf+features": lambda **kw: NeuMF(
        embedding_dim=4, mlp_embedding_dim=4, mlp_layers=(8,), use_features=True, **kw
    ),
    "mlp": lambda **kw: MLPClassifier(embedding_dim=4, hidden_layers=(8,), **kw),
    "mlp+features": lambda **kw: MLPClassifier(embedding_dim=4, hidden_layers=(8,), use_features=True, **kw),
    "dmf": lambda **kw: DMF(layers=(8, 4), **kw),
    "fm": lambda **kw: FM(factors=4, **kw),
    "widedeep": lambda **kw: WideDeep(factors=4, hidden=(8,), **kw),
    "deepfm": lambda **kw: DeepFM(factors=4, hidden=(8,), **kw),
}


@pytest.fixture(scope="module")
def data() -> dict[bool, Interactions]:
    blocks = block_interactions(users_per_block=USERS_PER_BLOCK, items_per_block=ITEMS_PER_BLOCK)
    return {False: blocks, True: with_features(blocks, USERS_PER_BLOCK, ITEMS_PER_BLOCK)}


def first_gradients(name: str, train: Interactions, sparse: bool) -> tuple[TorchRecommender, list[Any]]:
    Recorder.first.clear()
    trainer = Trainer(epochs=1, batch_size=8, lr=0.01, device="cpu", progress=False, optimizer=Recorder)
    model = BUILDERS[name](sparse_updates=sparse, trainer=trainer, seed=1)
    with pytest.raises(FirstStep):
        model.fit(train)
    return model, list(Recorder.first)


@pytest.mark.parametrize("name", list(BUILDERS))
def test_tables_get_sparse_gradients_equal_to_the_dense_ones(
    name: str, data: dict[bool, Interactions]
) -> None:
    train = data[name in FEATURED]
    model, sparse = first_gradients(name, train, True)
    _, dense = first_gradients(name, train, False)
    net = model.network_
    assert net.sparse_gradients
    assert isinstance(Trainer(lr=0.01)._make_optimizer(net), RowAdam)
    tables = {train.n_users, train.n_items}
    tables |= {m.num_embeddings for m in net.modules() if isinstance(m, nn.Embedding)}
    n_sparse, partial = 0, False
    for (pname, param), s, d in zip(net.named_parameters(), sparse, dense):
        if s is None:  # a parameter this model's first batch did not reach (e.g. an unused bias)
            assert d is None or not d.any(), pname
            continue
        is_table = param.dim() >= 1 and param.shape[0] in tables
        assert s.is_sparse == is_table, f"{name}.{pname}: sparse={s.is_sparse}, table={is_table}"
        if s.is_sparse:
            n_sparse += 1
            s = s.coalesce()
            partial |= len(s.indices()[0]) < param.shape[0]  # only the rows the batch read
            s = s.to_dense()
        torch.testing.assert_close(s, d, rtol=1e-4, atol=1e-6, msg=f"{name}.{pname}")
    assert n_sparse >= 1 and partial
