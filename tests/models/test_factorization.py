"""Matrix factorisation (BPR, MF, PMF): contract, sensitivity, rating fit, configs, failure modes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from recbench.data.interactions import Interactions
from recbench.errors import DataError, TrainingError
from recbench.models.base import capabilities_of
from recbench.models.factorization import BPR, MF, PMF, DotProduct, _GatherDot
from recbench.training.trainer import Trainer

MODELS = {"bpr": BPR, "mf": MF, "pmf": PMF}
#: every hyperparameter and a changed value for it (parameter-sensitivity test)
CHANGES = {
    "bpr": {
        "factors": 8,
        "reg": 0.5,
        "num_negatives": 3,
        "item_bias": False,
        "init_std": 0.5,
        "sparse_updates": False,
    },
    "mf": {"factors": 8, "reg": 0.5, "bias_reg": 0.5, "init_std": 0.5, "sparse_updates": False},
    "pmf": {
        "factors": 8,
        "lambda_u": 2.0,
        "lambda_v": 2.0,
        "prior_per_rating": False,
        "init_std": 0.5,
        "sparse_updates": False,
    },
}


def make(name: str, epochs: int = 10, lr: float = 0.05, **params: object) -> BPR | MF | PMF:
    trainer = Trainer(epochs=epochs, batch_size=64, lr=lr, device="cpu", progress=False)
    return MODELS[name](**{"factors": 16, "seed": 0, **params}, trainer=trainer)


def test_bpr_top1_in_block(blocks: Interactions) -> None:
    model = make("bpr", epochs=30).fit(blocks)
    scores = model.score(np.arange(blocks.n_users), blocks)
    top1 = scores.argmax(1)
    assert ((top1 // 8) == (np.arange(blocks.n_users) // 10)).mean() == 1.0


@pytest.mark.parametrize("name", list(MODELS))
def test_every_hyperparameter_matters(name: str, blocks: Interactions) -> None:
    users = np.arange(blocks.n_users)
    base = make(name, epochs=3).fit(blocks).score(users, blocks)
    for key, value in CHANGES[name].items():
        changed = make(name, epochs=3, **{key: value}).fit(blocks).score(users, blocks)
        assert not np.allclose(changed, base, atol=1e-5), f"{name}.{key} has no effect"
    assert set(MODELS[name]().get_params()) - {"trainer", "seed"} == set(CHANGES[name])


def explicit(n_users: int = 60, n_items: int = 40, density: float = 0.5, seed: int = 0):
    """Ratings from a rank-2 model with user/item offsets plus noise, split 80/20 at random."""
    rng = np.random.default_rng(seed)
    u, i = np.nonzero(rng.random((n_users, n_items)) < density)
    p, q = rng.normal(size=(n_users, 2)), rng.normal(size=(n_items, 2))
    b_u, b_i = rng.normal(0, 0.5, n_users), rng.normal(0, 0.5, n_items)
    r = 3 + b_u[u] + b_i[i] + (p[u] * q[i]).sum(1) + rng.normal(0, 0.2, len(u))
    data = Interactions(u, i, n_users, n_items, ratings=np.clip(r, 1, 5).astype(np.float32))
    test = rng.random(len(data)) < 0.2
    return data.select(~test), data.select(test)


@pytest.mark.parametrize(
    ("name", "params"), [("mf", {}), ("pmf", {}), ("pmf", {"prior_per_rating": False, "lambda_u": 2.0})]
)
def test_rating_models_beat_global_mean(name: str, params: dict) -> None:
    train, test = explicit()
    model = make(name, epochs=40, lr=0.02, factors=8, **params).fit(train)
    caps = capabilities_of(model)
    assert caps.ratings and caps.needs_ratings
    pred = model.predict(test.users, test.items)
    assert pred.dtype == np.float32 and pred.shape == (len(test),)
    assert pred.min() >= 1.0 and pred.max() <= 5.0
    rmse = np.sqrt(np.mean((pred - test.ratings) ** 2))
    baseline = np.sqrt(np.mean((train.ratings.mean() - test.ratings) ** 2))
    assert rmse < 0.8 * baseline
    # score() gives the same (unclipped) predictions over the catalogue
    scores = model.score(test.users[:5], train)
    inside = (pred[:5] > 1.0) & (pred[:5] < 5.0)
    np.testing.assert_allclose(scores[np.arange(5), test.items[:5]][inside], pred[:5][inside], rtol=1e-5)


def test_rating_models_need_ratings(blocks: Interactions) -> None:
    implicit = Interactions(blocks.users, blocks.items, blocks.n_users, blocks.n_items)
    with pytest.raises(DataError, match="ratings"):
        make("mf").fit(implicit)
    make("bpr", epochs=1).fit(implicit)  # BPR reads interactions only


@pytest.mark.parametrize("name", list(MODELS))
def test_absurd_learning_rate_raises(name: str, blocks: Interactions) -> None:
    with pytest.raises(TrainingError):
        make(name, epochs=3, lr=1e30).fit(blocks)


@pytest.mark.parametrize("sparse", [False, True])
def test_l2_rows_matches_gathered_sum(sparse: bool) -> None:
    torch.manual_seed(0)
    net = DotProduct(5, 7, 3, item_bias=True, sparse=sparse)
    torch.nn.init.normal_(net.item_bias)
    users, items = torch.tensor([0, 4, 4]), torch.tensor([[0, 3], [3, 3], [6, 1]])
    weights = torch.tensor([[1.0, 0.5], [2.0, 0.5], [1.0, 1.0]])
    factors, biases = net.l2_rows(users, torch.ones(3), items, weights)
    expected = net.user[users].pow(2).sum() + (net.item[items].pow(2).sum(-1) * weights).sum()
    torch.testing.assert_close(factors, expected)
    torch.testing.assert_close(biases, (net.item_bias[items].pow(2) * weights).sum())


def test_dot_product_forward_and_gradient() -> None:
    torch.manual_seed(0)
    net = DotProduct(5, 4, 3, user_bias=True, item_bias=True, global_mean=3.5).double()
    for bias in (net.user_bias, net.item_bias):
        torch.nn.init.normal_(bias)
    users = torch.tensor([0, 2, 4, 2])
    full = net.all_items(users)
    torch.testing.assert_close(net(users, torch.arange(4).expand(4, 4)), full)
    torch.testing.assert_close(net(users, torch.tensor([1, 0, 3, 0])), full[torch.arange(4), [1, 0, 3, 0]])
    items = torch.tensor([[1, 0], [3, 3], [2, 1], [0, 0]])
    tables = tuple(t.detach().clone().requires_grad_() for t in (net.user, net.item, net.item_bias))
    assert torch.autograd.gradcheck(lambda p, q, b: _GatherDot.apply(p, q, b, users, items), tables)
    assert torch.autograd.gradcheck(lambda p, q: _GatherDot.apply(p, q, None, users, items), tables[:2])


def test_saved_rating_model_predicts_the_same(tmp_path: Path) -> None:
    from recbench.models.persistence import load_state, save_model

    train, test = explicit()
    model = make("mf", epochs=3).fit(train)
    save_model(model, tmp_path)
    restored = load_state(make("mf", epochs=3), tmp_path, train)
    np.testing.assert_array_equal(
        restored.predict(test.users, test.items), model.predict(test.users, test.items)
    )


@pytest.mark.parametrize("biases", [(False, False, 0.0), (True, True, 3.5), (False, True, 0.0)])
def test_scoring_outside_autograd_equals_the_differentiable_scores(biases: tuple[bool, bool, float]) -> None:
    user_bias, item_bias, mean = biases
    torch.manual_seed(0)
    net = DotProduct(30, 50, 8, user_bias=user_bias, item_bias=item_bias, global_mean=mean)
    with torch.no_grad():
        for table in (net.user_bias, net.item_bias):
            if table is not None:
                table.normal_()
    users = torch.tensor([4, 0, 29, 4, 11])
    differentiable = net.all_items(users)  # autograd on: torch's product, the terms added one by one
    with torch.no_grad():
        scored = net.all_items(users)  # numpy's BLAS, the terms added in place
    assert differentiable.requires_grad and not scored.requires_grad
    assert scored.dtype == torch.float32 and scored.shape == (5, 50)
    np.testing.assert_allclose(scored.numpy(), differentiable.detach().numpy(), rtol=1e-5, atol=1e-5)
    pairs = net(users.repeat_interleave(50), torch.arange(50).repeat(5)).detach().reshape(5, 50)
    np.testing.assert_allclose(scored.numpy(), pairs.numpy(), rtol=1e-5, atol=1e-5)
