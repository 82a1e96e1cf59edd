"""Mult-VAE / Mult-DAE: loss against a hand computation, fold-in of unseen users, annealing."""

from __future__ import annotations

import numpy as np
import torch

from recbench.data.interactions import Interactions
from recbench.models.autoencoders import MultDAE, MultVAE
from recbench.training.trainer import Trainer
from tests.conftest import block_interactions


def tiny_batch() -> tuple[np.ndarray, dict[str, torch.Tensor]]:
    x = np.array([[1, 0, 1, 0, 0], [0, 1, 1, 1, 0]], dtype=np.float64)
    batch = {"indices": torch.tensor([0, 2, 1, 2, 3]), "offsets": torch.tensor([0, 2])}
    return x, batch


def test_multvae_loss_equals_hand_computed_value() -> None:
    x, batch = tiny_batch()
    model = MultVAE(hidden=3, latent=2, dropout=0.0, anneal_cap=0.2, anneal_steps=10)
    model.n_users_, model.n_items_ = 2, 5
    torch.manual_seed(0)
    net = model.build_network(Interactions(np.array([0]), np.array([0]), 2, 5)).double()
    net.steps.fill_(4)  # beta = min(0.2, 4 / 10) = 0.2
    p = {k: v.detach().numpy() for k, v in net.named_parameters()}
    torch.manual_seed(7)
    loss = float(model.loss(net, batch))
    torch.manual_seed(7)
    eps = torch.randn(2, 2, dtype=torch.float64).numpy()

    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    h = np.tanh(xn @ p["encoder"] + p["encoder_bias"])
    code = h @ p["to_latent.weight"].T + p["to_latent.bias"]
    mu, logvar = code[:, :2], code[:, 2:]
    z = mu + eps * np.exp(0.5 * logvar)
    logits = np.tanh(z @ p["decoder.weight"].T + p["decoder.bias"]) @ p["output.weight"].T + p["output.bias"]
    log_softmax = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    nll = -(log_softmax * x).sum(1).mean()
    kl = (0.5 * (np.exp(logvar) + mu**2 - 1 - logvar).sum(1)).mean()
    assert abs(loss - (nll + 0.2 * kl)) < 1e-9
    assert int(net.steps) == 5  # the annealing clock advanced
    assert model.beta(0) == 0.0 and model.beta(1) == 0.1 and model.beta(10**6) == 0.2


def test_multdae_loss_is_the_multinomial_likelihood() -> None:
    x, batch = tiny_batch()
    model = MultDAE(hidden=3, latent=2, dropout=0.0)
    torch.manual_seed(0)
    net = model.build_network(Interactions(np.array([0]), np.array([0]), 2, 5)).double()
    logits = net(batch["indices"], batch["offsets"])[0].detach().numpy()
    log_softmax = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    assert abs(float(model.loss(net, batch)) - (-(log_softmax * x).sum(1).mean())) < 1e-9


def test_autoencoders_fold_in_users_unseen_in_training() -> None:
    data = block_interactions(seed=5)
    held_out = data.users < 5  # half of block 0's users never appear in training
    train = data.select(~held_out)
    for cls in (MultVAE, MultDAE):
        model = cls(
            hidden=32,
            latent=8,
            trainer=Trainer(epochs=40, batch_size=8, lr=1e-2, device="cpu", progress=False),
        )
        model.fit(train)
        scores = model.score(np.arange(5), data)  # their history comes only at scoring time
        inside = scores[:, :8].mean(1)
        outside = scores[:, 8:].mean(1)
        assert (inside > outside).all(), cls.__name__
        # an ad-hoc history: a user with two block-2 items is recommended block-2 items
        adhoc = Interactions(np.array([0, 0]), np.array([16, 17]), data.n_users, data.n_items)
        row = model.score(np.array([0]), adhoc)[0]
        assert row[16:24].mean() > row[np.r_[0:16, 24:32]].mean(), cls.__name__


def dae_network(average: float) -> torch.nn.Module:
    model = MultDAE(hidden=3, latent=2, dropout=0.0, average=average)
    return model.build_network(Interactions(np.array([0]), np.array([0]), 2, 5)).double()


def test_weight_average_follows_the_ramped_decay_and_is_what_evaluation_uses() -> None:
    _, batch = tiny_batch()
    model = MultDAE(hidden=3, latent=2, dropout=0.0, average=0.5)
    torch.manual_seed(0)
    net = dae_network(0.5)
    expected = {name: p.detach().clone() for name, p in net.named_parameters()}
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    for t in range(4):
        decay = min(0.5, (1 + t) / (5 + t))  # 0.2, 0.333, 0.429, then capped at 0.5
        for name, p in net.named_parameters():
            expected[name] = decay * expected[name] + (1 - decay) * p.detach()
        opt.zero_grad()
        model.loss(net, batch).backward()
        opt.step()
    assert int(net.steps) == 4
    for name in expected:
        assert torch.allclose(net.get_buffer("avg_" + name.replace(".", "_")), expected[name]), name
    # evaluation mode runs the averaged weights, training mode the trained ones
    trained, averaged = dae_network(0.0), dae_network(0.0)
    trained.load_state_dict({k: v for k, v in net.state_dict().items() if not k.startswith("avg_")})
    averaged.load_state_dict({**expected, "steps": net.steps})
    net.eval(), trained.eval(), averaged.eval()
    logits = net(batch["indices"], batch["offsets"])[0]
    assert torch.allclose(logits, averaged(batch["indices"], batch["offsets"])[0])
    assert not torch.allclose(logits, trained(batch["indices"], batch["offsets"])[0])
    net.train()
    assert torch.allclose(
        net(batch["indices"], batch["offsets"])[0], trained(batch["indices"], batch["offsets"])[0]
    )


def test_weights_saved_without_an_average_load_with_the_average_started_from_them() -> None:
    _, batch = tiny_batch()
    torch.manual_seed(0)
    old = dae_network(0.0)  # as saved before the average existed: no avg_* entries
    net = dae_network(0.98)
    net.load_state_dict(old.state_dict())
    old.eval(), net.eval()
    assert torch.equal(net(batch["indices"], batch["offsets"])[0], old(batch["indices"], batch["offsets"])[0])
