"""Models' own ``similar_items`` (issue 14): each equals a direct computation from the model's state,
and ``recbench similar`` on a saved run answers with it, not with the score-column fallback."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

import recbench.models.similarity as similarity
from recbench.config import build
from recbench.data.interactions import Interactions
from recbench.models.base import Recommender, capabilities_of
from recbench.models.similarity import cosine_similar
from tests.conftest import block_interactions

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"


def cosine(vectors: object) -> np.ndarray:
    """Dense reference: the cosine of every pair of rows (float64)."""
    v = np.asarray(vectors.detach().cpu().numpy() if hasattr(vectors, "detach") else vectors, np.float64)
    unit = v / np.linalg.norm(v, axis=1, keepdims=True)
    return unit @ unit.T


def _tokens(model: Recommender) -> np.ndarray:
    return cosine(model.network_.token_weight[1 : model.n_items_ + 1])


def _decoder_items(model: Recommender) -> np.ndarray:
    net = model.network_  # the moving average of the output layer when the autoencoder keeps one
    return cosine(getattr(net, "avg_output_weight", net.output.weight))


def _lightgcn(model: Recommender) -> np.ndarray:
    import torch

    with torch.no_grad():
        return cosine(model.network_.propagate()[model.network_.n_users :])


#: model -> its item-item matrix, computed directly from the fitted state
REFERENCES: dict[str, Callable[[Recommender], np.ndarray]] = {
    "itemknn": lambda m: m.similarity_.toarray(),
    "ease": lambda m: m.weights_,
    "puresvd": lambda m: cosine(m.item_factors_),
    "nmf": lambda m: cosine(m.item_factors_),
    "als": lambda m: cosine(m.item_factors_),
    "mf": lambda m: cosine(m.network_.item),
    "pmf": lambda m: cosine(m.network_.item),
    "bpr": lambda m: cosine(m.network_.item),
    "gmf": lambda m: cosine(m.network_.branches["gmf"].item.weight * m.network_.predict.weight[0]),
    "lightgcn": _lightgcn,
    "multvae": _decoder_items,
    "multdae": _decoder_items,
    "sasrec": _tokens,
    "gru4rec": _tokens,
    "nextitnet": _tokens,
    "bert4rec": _tokens,
    "caser": lambda m: cosine(m.network_.output.weight[1 : m.n_items_ + 1]),
}


def make(name: str) -> Recommender:
    with initialize_config_dir(version_base="1.3", config_dir=str(CONFIG_DIR)):
        cfg = compose("train", overrides=[f"model={name}", "trainer=fast", "trainer.epochs=1"])
    return build(cfg.model, "model")


@pytest.fixture(scope="module")
def data() -> Interactions:
    return block_interactions(seed=5)


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_similar_items_is_the_models_own_item_item_notion(name: str, data: Interactions) -> None:
    model = make(name).fit(data)
    assert capabilities_of(model).similar
    items = np.array([0, 9, data.n_items - 1])
    got = model.similar_items(items)
    assert got.shape == (len(items), data.n_items) and got.dtype == np.float32
    np.testing.assert_allclose(got, REFERENCES[name](model)[items], rtol=1e-4, atol=1e-5)


def test_cosine_similar_is_blocked_and_exact(monkeypatch: pytest.MonkeyPatch) -> None:
    """Query rows go in blocks (here one row at a time); zero vectors are similar to nothing."""
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(50, 6)).astype(np.float32)
    vectors[7] = 0.0
    monkeypatch.setattr(similarity, "BLOCK_ENTRIES", 50)
    items = np.array([3, 7, 49, 3])
    got = cosine_similar(vectors, items)
    ref = cosine(np.delete(vectors, 7, axis=0))
    ref = np.insert(np.insert(ref, 7, 0.0, axis=0), 7, 0.0, axis=1)  # the zero vector: cosine 0
    np.testing.assert_allclose(got, ref[items], atol=1e-6)


def test_similar_on_a_saved_run_uses_the_models_own(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``recbench similar`` on a trained bpr run lists the items nearest by cosine of the item factors,
    and never scores users (the score-column fallback)."""
    from recbench.cli import main
    from recbench.pipeline import RunContext, run
    from recbench.serving import load_run

    with initialize_config_dir(version_base="1.3", config_dir=str(CONFIG_DIR)):
        cfg = compose(
            "train",
            overrides=[
                "dataset=tiny",
                "trainer=fast",
                "trainer.epochs=1",
                "model=bpr",
                f"paths.cache_dir={tmp_path / 'cache'}",
            ],
        )
    run(cfg, RunContext(output_dir=tmp_path / "run", choices={"model": "bpr"}))
    (tmp_path / "run" / ".hydra").mkdir()
    OmegaConf.save(cfg, tmp_path / "run" / ".hydra" / "config.yaml")  # what Hydra writes beside a CLI run
    loaded = load_run(tmp_path / "run")
    ref = cosine(loaded.model.network_.item)[4]
    ref[4] = -np.inf
    expected = loaded.ids.items[np.argsort(-ref, kind="stable")[:3]]

    def no_scoring(*args: object, **kwargs: object) -> None:
        raise AssertionError("similar fell back to comparing score columns")

    monkeypatch.setattr(type(loaded.model), "score", no_scoring)
    monkeypatch.setenv("COLUMNS", "200")
    out = tmp_path / "similar.txt"
    with pytest.raises(SystemExit) as done, out.open("w") as fh:
        monkeypatch.setattr("sys.stdout", fh)
        main(["similar", str(tmp_path / "run"), "--item", str(loaded.ids.items[4]), "--k", "3"])
    assert done.value.code == 0
    rows = [line.split("│") for line in out.read_text().splitlines() if line.startswith("│")]
    listed = [cells[2].strip() for cells in rows if cells[1].strip().isdigit()]
    assert listed == [str(i) for i in expected]
