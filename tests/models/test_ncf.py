"""GMF, NCF-MLP and NeuMF: contract, sensitivity, pretraining, chunked scoring, configs, GPU."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from recbench.data.interactions import Interactions
from recbench.errors import ConfigError
from recbench.models.ncf import GMF, NCFMLP, NeuMF
from recbench.models.persistence import read_network, save_model, save_network
from recbench.training.trainer import Trainer

MODELS = {"gmf": GMF, "ncf_mlp": NCFMLP, "ncf": NeuMF}
SMALL = {
    "gmf": {"embedding_dim": 8},
    "ncf_mlp": {"embedding_dim": 8, "mlp_layers": [16, 8]},
    "ncf": {"embedding_dim": 8, "mlp_embedding_dim": 8, "mlp_layers": [16, 8]},
}
#: hyperparameters that shape the model and a changed value for each (parameter-sensitivity test)
CHANGES = {
    "gmf": {
        "embedding_dim": 4,
        "num_negatives": 2,
        "negative_sampling": "popularity",
        "sparse_updates": False,
    },
    "ncf_mlp": {
        "embedding_dim": 4,
        "mlp_layers": [8],
        "dropout": 0.3,
        "num_negatives": 2,
        "negative_sampling": "popularity",
        "sparse_updates": False,
    },
    "ncf": {
        "embedding_dim": 4,
        "mlp_embedding_dim": 4,
        "mlp_layers": [8],
        "dropout": 0.3,
        "num_negatives": 2,
        "negative_sampling": "popularity",
        "sparse_updates": False,
    },
}


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny tensors gain nothing from intra-op threads, and on a busy machine they cost a lot."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def make(name: str, epochs: int = 3, lr: float = 0.01, device: str = "cpu", **params: object):
    trainer = Trainer(epochs=epochs, batch_size=64, lr=lr, device=device, progress=False)
    return MODELS[name](**{**SMALL[name], "seed": 0, **params}, trainer=trainer)


@pytest.mark.parametrize("name", ["gmf", "ncf"])
def test_top1_within_block(name: str, blocks: Interactions) -> None:
    scores = make(name, epochs=15, lr=0.03).fit(blocks).score(np.arange(blocks.n_users), blocks)
    scores[blocks.users, blocks.items] = -np.inf  # seen items are masked by the evaluator
    top1_block = scores.argmax(1) // 8
    can_hit = blocks.user_counts() < 8  # users who have not seen every item of their block
    assert (top1_block == np.arange(blocks.n_users) // 10)[can_hit].all()


@pytest.mark.parametrize("name", list(MODELS))
def test_every_hyperparameter_matters(name: str, blocks: Interactions) -> None:
    users = np.arange(blocks.n_users)
    base = make(name, epochs=2).fit(blocks).score(users, blocks)
    for key, value in CHANGES[name].items():
        changed = make(name, epochs=2, **{key: value}).fit(blocks).score(users, blocks)
        assert not np.allclose(changed, base, atol=1e-5), f"{name}.{key} has no effect"
    tunable = {k for k in MODELS[name]().get_params() if k not in ("seed", "trainer")}
    # use_features / id_dropout need side features: tests/models/test_id_feature_models.py
    assert tunable - set(CHANGES[name]) <= {
        "pretrained_gmf",
        "pretrained_mlp",
        "alpha",
        "use_features",
        "id_dropout",
    }


def test_chunked_scoring_matches_unchunked(blocks: Interactions, monkeypatch: pytest.MonkeyPatch) -> None:
    users = np.arange(blocks.n_users)
    model = make("ncf").fit(blocks)
    whole = model.score(users, blocks)
    monkeypatch.setattr(NeuMF, "max_score_pairs", blocks.n_items * 3)  # 3 users per forward
    calls = []
    forward = model.network_.forward
    monkeypatch.setattr(model.network_, "forward", lambda u, i: calls.append(len(u)) or forward(u, i))
    np.testing.assert_allclose(model.score(users, blocks), whole, rtol=0, atol=1e-6)
    assert max(calls) == 3 and sum(calls) == blocks.n_users


def test_neumf_starts_from_pretrained_runs(
    blocks: Interactions, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gmf = make("gmf", epochs=5).fit(blocks)
    mlp = make("ncf_mlp", epochs=5).fit(blocks)
    (tmp_path / "gmf").mkdir()
    (tmp_path / "mlp").mkdir()
    save_model(gmf, tmp_path / "gmf")  # what the pipeline writes into a run directory
    assert save_network(mlp, tmp_path / "mlp") == tmp_path / "mlp" / "model.pt"
    seen: list[object] = []
    real_load = torch.load
    monkeypatch.setattr(
        torch, "load", lambda *a, **kw: seen.append(kw.get("weights_only")) or real_load(*a, **kw)
    )
    neumf = make("ncf", pretrained_gmf=str(tmp_path / "gmf"), pretrained_mlp=str(tmp_path / "mlp"), alpha=0.3)
    net = neumf.build_network(blocks)
    assert seen == [True, True]
    for name, source in (("gmf", gmf.network_), ("mlp", mlp.network_)):
        for key, value in source.branches[name].state_dict().items():
            assert torch.equal(net.branches[name].state_dict()[key], value)
    users = torch.arange(blocks.n_users)
    items = torch.arange(blocks.n_items)
    with torch.no_grad():
        expected = 0.3 * gmf.network_(users, items) + 0.7 * mlp.network_(users, items)
        torch.testing.assert_close(net.eval()(users, items), expected)
    fitted = make("ncf", epochs=1, pretrained_gmf=str(tmp_path / "gmf"), pretrained_mlp=str(tmp_path / "mlp"))
    assert np.isfinite(fitted.fit(blocks).score(users.numpy(), blocks)).all()


def test_pretrained_errors_name_the_key(blocks: Interactions, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="model.pretrained_gmf"):
        make("ncf", pretrained_gmf=str(tmp_path / "missing")).build_network(blocks)
    save_network(make("gmf", epochs=1).fit(blocks), tmp_path / "gmf.pt")
    assert set(read_network(tmp_path / "gmf.pt")) >= {"predict.weight", "branches.gmf.user.weight"}
    with pytest.raises(ConfigError, match="model.pretrained_gmf"):
        make("ncf", embedding_dim=6, pretrained_gmf=str(tmp_path / "gmf.pt")).build_network(blocks)


@pytest.mark.parametrize(
    ("key", "value"), [("embedding_dim", 0), ("mlp_layers", []), ("dropout", 1.0), ("negative_sampling", "x")]
)
def test_bad_options_raise_config_errors(key: str, value: object, blocks: Interactions) -> None:
    with pytest.raises(ConfigError, match=f"model.{key}"):
        make("ncf", **{key: value}).fit(blocks)


@pytest.mark.gpu
def test_ncf_on_cuda(blocks: Interactions) -> None:
    if not torch.cuda.is_available():
        pytest.skip("CUDA is not available")
    model = make("ncf", device="cuda").fit(blocks)
    assert model.network_.predict.weight.is_cuda
    scores = model.score(np.arange(blocks.n_users), blocks)
    assert scores.shape == (blocks.n_users, blocks.n_items) and np.isfinite(scores).all()
