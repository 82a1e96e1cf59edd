"""DMF: contract, sensitivity, sparse first layer, gradients, chunked scoring, config."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from recbench.data.interactions import Interactions
from recbench.errors import ConfigError
from recbench.models.dmf import DMF, SparseTower, gather_rows
from recbench.training.trainer import Trainer

#: hyperparameters and a changed value for each (parameter-sensitivity test)
CHANGES = {
    "layers": [16],
    "dropout": 0.3,
    "num_negatives": 2,
    "negative_sampling": "popularity",
    "use_ratings": False,
    "sparse_updates": False,
}


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny tensors gain nothing from intra-op threads, and on a busy machine they cost a lot."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def make(epochs: int = 3, lr: float = 0.01, **params: object) -> DMF:
    trainer = Trainer(epochs=epochs, batch_size=64, lr=lr, device="cpu", progress=False)
    return DMF(**{"layers": [32, 16], "seed": 0, **params}, trainer=trainer)


def test_scores_are_cosines(blocks: Interactions) -> None:
    """DMF scores are cosines of the two towers' outputs (the shared contract checks the rest)."""
    scores = make().fit(blocks).score(np.arange(blocks.n_users), blocks)
    assert scores.max() <= 1.0 + 1e-5 and scores.min() >= -1.0 - 1e-5


def test_learns_the_blocks(blocks: Interactions) -> None:
    # the fixture's ratings are random noise, so learn from the interactions alone here
    model = make(epochs=20, lr=0.02, layers=[32, 32], use_ratings=False).fit(blocks)
    scores = model.score(np.arange(blocks.n_users), blocks)
    scores[blocks.users, blocks.items] = -np.inf
    can_hit = blocks.user_counts() < 8  # users who have not seen every item of their block
    assert ((scores.argmax(1) // 8) == (np.arange(blocks.n_users) // 10))[can_hit].all()


def test_every_hyperparameter_matters(blocks: Interactions) -> None:
    users = np.arange(blocks.n_users)
    base = make(epochs=2).fit(blocks).score(users, blocks)
    for key, value in CHANGES.items():
        changed = make(epochs=2, **{key: value}).fit(blocks).score(users, blocks)
        assert not np.allclose(changed, base, atol=1e-5), f"dmf.{key} has no effect"
    assert set(DMF().get_params()) - {"seed", "trainer"} == set(CHANGES)


def test_batches_carry_only_nonzeros(blocks: Interactions) -> None:
    """The first layer is sparse: a batch holds 1-D index/value lists, never a dense users x items matrix."""
    model = make()
    model.max_rating_ = 5.0
    batches = list(model.batches(blocks, 16, np.random.default_rng(0)))
    assert sum(len(b["target"]) for b in batches) == len(blocks) * (1 + model.num_negatives)
    for batch in batches:
        assert all(t.dim() == 1 for t in batch.values())
        n_users, n_items = len(batch["u_offset"]), len(batch["i_offset"])
        # one bag per distinct user / item of the batch, holding only that row's / column's non-zeros
        assert len(batch["u_index"]) == len(batch["u_t_index"]) <= len(blocks)
        assert len(batch["i_index"]) == len(batch["i_t_index"]) <= len(blocks)
        assert n_users == len(torch.unique(batch["pair_u"])) and n_items == len(torch.unique(batch["pair_i"]))
        # the transpose covers only the columns present (the first layer's gradient rows)
        for side in ("u", "i"):
            present = torch.unique(batch[f"{side}_index"])
            assert torch.equal(batch[f"{side}_t_cols"], present)
            assert len(batch[f"{side}_t_offset"]) == len(present)
        assert int(batch["pair_u"].max()) < n_users and int(batch["pair_i"].max()) < n_items
        largest = max(t.numel() for t in batch.values())
        assert largest < blocks.n_users * blocks.n_items


def test_sparse_first_layer_matches_dense_matmul() -> None:
    mat = sp.random(12, 9, density=0.3, random_state=0, format="csr", dtype=np.float32)
    rows = np.array([0, 3, 3, 7, 11])
    tower = SparseTower(9, [5])
    out = tower(gather_rows(mat, rows))
    dense = torch.from_numpy(mat[rows].toarray())
    torch.testing.assert_close(out, dense @ tower.first)
    grad = torch.randn_like(out)
    (got,) = torch.autograd.grad(out, tower.first, grad)
    torch.testing.assert_close(got, dense.T @ grad)


def test_chunked_scoring_matches_unchunked(blocks: Interactions, monkeypatch: pytest.MonkeyPatch) -> None:
    users = np.arange(blocks.n_users)
    model = make().fit(blocks)
    whole = model.score(users, blocks)
    monkeypatch.setattr(DMF, "max_score_pairs", blocks.n_items * 3)
    np.testing.assert_allclose(model.score(users, blocks), whole, rtol=0, atol=1e-6)


def test_bad_options(blocks: Interactions) -> None:
    with pytest.raises(ConfigError, match="model.layers"):
        make(layers=[]).fit(blocks)
    with pytest.raises(ConfigError, match="model.negative_sampling"):
        make(negative_sampling="zipf").fit(blocks)
