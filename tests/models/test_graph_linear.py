"""LightGCN, RP3beta and SLIM checked against dense / scikit-learn references on tiny data."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recbench.data.interactions import Interactions
from recbench.errors import ConfigError
from recbench.models.lightgcn import LightGCN, normalized_adjacency
from recbench.models.persistence import load_state, save_model
from recbench.models.random_walk import RP3beta
from recbench.models.slim import SLIM
from recbench.training.samplers import PositiveSet
from recbench.training.trainer import Trainer


def random_implicit(n_users: int = 12, n_items: int = 9, density: float = 0.4, seed: int = 0) -> Interactions:
    rng = np.random.default_rng(seed)
    mask = rng.random((n_users, n_items)) < density
    mask[0, :] = False  # a user without interactions
    mask[:, 3] = False  # an item nobody has
    users, items = np.nonzero(mask)
    return Interactions(users, items, n_users, n_items)


def dense(data: Interactions) -> np.ndarray:
    return data.binary_csr.toarray().astype(np.float64)


def test_lightgcn_propagation_equals_dense_computation() -> None:
    data = random_implicit()
    x = dense(data)
    n_u, n_i = x.shape
    a = np.zeros((n_u + n_i, n_u + n_i))
    a[:n_u, n_u:], a[n_u:, :n_u] = x, x.T
    deg = a.sum(1)
    inv = np.where(deg > 0, deg, np.inf) ** -0.5
    a_hat = inv[:, None] * a * inv[None, :]
    np.testing.assert_allclose(normalized_adjacency(data.binary_csr).toarray(), a_hat, atol=1e-12)

    model = LightGCN(factors=5, layers=3, trainer=Trainer(epochs=1, device="cpu", progress=False))
    model.fit(data)
    net = model.network_
    e0 = net.embedding.detach().double().numpy()
    want = (e0 + a_hat @ e0 + a_hat @ a_hat @ e0 + a_hat @ a_hat @ a_hat @ e0) / 4
    np.testing.assert_allclose(net.propagate().detach().numpy(), want, rtol=1e-5, atol=1e-6)
    users = np.arange(n_u)
    np.testing.assert_allclose(model.score(users, data), want[:n_u] @ want[n_u:].T, rtol=1e-4, atol=1e-5)
    # the backward of the symmetric product is A_hat @ grad
    emb = net.embedding
    emb.grad = None
    net.propagate().sum().backward()
    ones = np.ones_like(e0)
    want_grad = (ones + a_hat @ ones + a_hat @ a_hat @ ones + a_hat @ a_hat @ a_hat @ ones) / 4
    np.testing.assert_allclose(emb.grad.numpy(), want_grad, rtol=1e-5)


def test_lightgcn_loss_regularises_only_gathered_rows() -> None:
    data = random_implicit()
    model = LightGCN(factors=4, layers=1, reg=0.5, trainer=Trainer(epochs=1, device="cpu", progress=False))
    model.fit(data)
    net = model.network_
    users = torch.tensor([1, 2])
    items = torch.tensor([[0, 4], [1, 5]])
    loss = model.loss(net, {"users": users, "items": items})
    final = net.propagate()
    u, i, j = final[users], final[items[:, 0] + 12], final[items[:, 1] + 12]
    bpr = -torch.nn.functional.logsigmoid((u * i).sum(1) - (u * j).sum(1)).mean()
    e = net.embedding
    l2 = e[users].pow(2).sum() + e[items[:, 0] + 12].pow(2).sum() + e[items[:, 1] + 12].pow(2).sum()
    torch.testing.assert_close(loss, bpr + 0.25 * l2 / 2)
    loss.backward()
    touched = {1, 2, 12, 13, 16, 17}
    untouched = [r for r in range(e.shape[0]) if r not in touched]
    # rows the batch never gathered get gradient only through the propagation, never from the L2
    reg_only = torch.autograd.grad(0.25 * l2 / 2, e)[0]
    assert torch.count_nonzero(reg_only[untouched]) == 0


def test_lightgcn_l2_counts_repeated_rows_and_averages_the_negatives() -> None:
    data = random_implicit()
    model = LightGCN(factors=3, layers=2, reg=0.3, trainer=Trainer(epochs=1, device="cpu", progress=False))
    model.fit(data)
    net = model.network_
    users = torch.tensor([1, 1, 5])  # user 1 twice, item 4 as a positive and twice as a negative
    items = torch.tensor([[4, 0, 2], [4, 6, 4], [7, 4, 8]])
    loss = model.loss(net, {"users": users, "items": items})
    final, e = net.propagate(), net.embedding
    u, it = final[users], final[items + 12]
    bpr = -torch.nn.functional.logsigmoid((u[:, None] * it[:, :1]).sum(-1) - (u[:, None] * it[:, 1:]).sum(-1))
    l2 = e[users].pow(2).sum() + e[items[:, 0] + 12].pow(2).sum() + e[items[:, 1:] + 12].pow(2).sum() / 2
    want = bpr.mean() + 0.5 * 0.3 * l2 / 3
    torch.testing.assert_close(loss, want)
    got_grad = torch.autograd.grad(loss, e)[0]
    torch.testing.assert_close(got_grad, torch.autograd.grad(want, e)[0])


def test_lightgcn_round_trips_through_save_and_load(tmp_path) -> None:
    data = random_implicit()
    model = LightGCN(factors=4, trainer=Trainer(epochs=2, device="cpu", progress=False)).fit(data)
    save_model(model, tmp_path)
    again = load_state(model.clone(), tmp_path, data)
    users = np.arange(data.n_users)
    np.testing.assert_allclose(again.score(users, data), model.score(users, data), rtol=1e-6)


def test_lightgcn_user_sampling_draws_users_uniformly_then_their_positives() -> None:
    data = random_implicit(n_users=6, n_items=40, density=0.5, seed=3)
    data = data.select(~((data.users == 2) & (data.items > 4)))  # user 2 keeps few positives
    model = LightGCN(sampling="users", trainer=Trainer(epochs=1, device="cpu", progress=False))
    model.fit(data)
    model.positives_ = PositiveSet(data.binary_csr)
    batches = [b for _ in range(40) for b in model.batches(data, 64, np.random.default_rng(_))]
    users = torch.cat([b["users"] for b in batches]).numpy()
    items = torch.cat([b["items"] for b in batches]).numpy()
    assert all(len(b["users"]) <= 64 for b in batches) and len(users) == 40 * len(data)
    active = np.flatnonzero(data.user_counts())
    share = np.bincount(users, minlength=data.n_users)[active] / len(users)
    np.testing.assert_allclose(share, 1 / len(active), atol=0.02)  # heavy and light users alike
    dense_x = dense(data)
    assert dense_x[users, items[:, 0]].all() and not dense_x[users, items[:, 1]].any()
    heavy = active[np.argmax(data.user_counts()[active])]
    drawn = np.bincount(items[users == heavy, 0], minlength=data.n_items)
    own = np.flatnonzero(dense_x[heavy])
    np.testing.assert_allclose(drawn[own] / drawn.sum(), 1 / len(own), atol=0.05)


def test_lightgcn_rejects_unknown_sampling() -> None:
    model = LightGCN(sampling="popular", trainer=Trainer(epochs=1, device="cpu", progress=False))
    with pytest.raises(ConfigError, match="model.sampling=interactions"):
        model.fit(random_implicit())


def rp3_dense(x: np.ndarray, alpha: float, beta: float, normalize: bool) -> np.ndarray:
    du, di = x.sum(1), x.sum(0)
    p_ui = np.divide(x, du[:, None], out=np.zeros_like(x), where=du[:, None] > 0) ** alpha
    p_iu = np.divide(x.T, di[:, None], out=np.zeros_like(x.T), where=di[:, None] > 0) ** alpha
    w = (p_iu @ p_ui) / np.where(di > 0, di, 1.0)[None, :] ** beta
    np.fill_diagonal(w, 0.0)
    if normalize:
        w = np.divide(w, w.sum(1, keepdims=True), out=np.zeros_like(w), where=w.sum(1, keepdims=True) > 0)
    return w


@pytest.mark.parametrize(
    ("alpha", "beta", "normalize"), [(1.0, 0.5, False), (0.7, 0.3, True), (1.0, 0.0, False)]
)
def test_rp3beta_scores_equal_dense_computation(alpha: float, beta: float, normalize: bool) -> None:
    data = random_implicit(seed=1)
    x = dense(data)
    model = RP3beta(k=100, alpha=alpha, beta=beta, normalize=normalize).fit(data)
    w = rp3_dense(x, alpha, beta, normalize)
    np.testing.assert_allclose(model.weights_.toarray(), w, rtol=1e-5, atol=1e-7)
    users = np.arange(data.n_users)
    np.testing.assert_allclose(model.score(users, data), x @ w, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(model.similar_items(np.array([2, 5])), w[[2, 5]], rtol=1e-5, atol=1e-7)
    # top-k: each row keeps (at most) its k largest weights; kept rows are rescaled when normalize
    top = RP3beta(k=3, alpha=alpha, beta=beta, normalize=normalize).fit(data).weights_.toarray()
    plain = rp3_dense(x, alpha, beta, False)
    for got, full in zip(top, plain):
        assert np.count_nonzero(got) <= 3
        kept = np.sort(full)[::-1][:3]
        kept = kept / kept.sum() if normalize and kept.sum() > 0 else kept
        np.testing.assert_allclose(np.sort(got)[::-1][:3], kept, rtol=1e-5, atol=1e-7)
    with pytest.raises(ConfigError, match="beta"):
        RP3beta(beta=-1.0).fit(data)


def test_slim_weights_solve_the_elastic_net_of_scikit_learn() -> None:
    from sklearn.linear_model import ElasticNet

    data = random_implicit(n_users=30, n_items=10, density=0.5, seed=2)
    x = dense(data)
    model = SLIM(alpha=0.01, l1_ratio=0.3, k=100, tol=1e-8, max_iter=5000, n_jobs=2).fit(data)
    w = model.weights_.toarray()
    for j in range(x.shape[1]):
        xj = x.copy()
        xj[:, j] = 0.0
        ref = ElasticNet(
            alpha=0.01, l1_ratio=0.3, positive=True, fit_intercept=False, tol=1e-8, max_iter=5000
        )
        ref.fit(xj, x[:, j])
        np.testing.assert_allclose(w[:, j], ref.coef_, rtol=1e-4, atol=1e-6)
    assert (w >= 0).all() and np.allclose(np.diag(w), 0.0)
    assert w[:, 3].sum() == 0.0 and w[:, :3].sum() > 0  # nobody has item 3: nothing predicts it
    users = np.arange(data.n_users)
    np.testing.assert_allclose(model.score(users, data), x @ w, rtol=1e-5, atol=1e-6)
    # top-k keeps the k largest weights of each column; threads do not change the result
    top2 = SLIM(alpha=0.01, l1_ratio=0.3, k=2, tol=1e-8, max_iter=5000, n_jobs=1).fit(data).weights_.toarray()
    for j in range(x.shape[1]):
        keep = np.sort(w[:, j])[::-1][:2]
        np.testing.assert_allclose(np.sort(top2[:, j])[::-1][:2], keep, rtol=1e-6, atol=1e-9)
        assert np.count_nonzero(top2[:, j]) <= 2


def test_slim_without_scikit_learn_says_how_to_install(monkeypatch) -> None:
    import builtins

    real_import = builtins.__import__

    def no_sklearn(name, *args, **kwargs):
        if name.startswith("sklearn"):
            raise ImportError("No module named 'sklearn'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_sklearn)
    with pytest.raises(Exception, match=r"recbench\[linear\]"):
        SLIM().fit(random_implicit())
    with pytest.raises(ConfigError, match="alpha"):
        SLIM(alpha=0.0).fit(random_implicit())


def test_slim_and_rp3beta_fold_in_histories_added_after_training() -> None:
    data = random_implicit(seed=3)
    extra = Interactions(np.array([0, 0]), np.array([1, 2]), data.n_users, data.n_items)
    both = data.concat(extra)
    for model in (SLIM(alpha=0.01, n_jobs=1), RP3beta()):
        model.fit(data)
        assert np.allclose(model.score(np.array([0]), data), 0.0)  # no history, no scores
        want = dense(both)[[0]] @ model.weights_.toarray()
        np.testing.assert_allclose(model.score(np.array([0]), both), want, rtol=1e-5, atol=1e-7)


def test_slim_and_rp3beta_explanations_sum_to_the_score() -> None:
    from recbench.explanations import ExplainInput, explain

    data = random_implicit(seed=4)
    for model in (SLIM(alpha=0.01, n_jobs=1), RP3beta()):
        model.fit(data)
        history = np.array([1, 2, 5])
        ctx = ExplainInput(items=history, ratings=None, user=None, history=data)
        out = explain(model, ctx, item=7)
        assert out.exact and "W[i, item]" in out.method
        assert abs(sum(c["weight"] for c in out.contributions) + out.rest - out.score) < 1e-6
        assert abs(out.score - float(model.weights_[history].toarray()[:, 7].sum())) < 1e-6
