"""Declared capabilities: they agree with the classes' methods, and the pipeline decides "cannot" first.

Every "this model cannot do that" is decided from the class's declaration before any data is loaded or
any model trained (issue 14: ``model=mlp eval=rating`` used to train fully, then fail).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf

import recbench.pipeline as pipeline
from recbench.config import model_capabilities, model_config, models_with
from recbench.errors import ConfigError
from recbench.explanations import METHODS
from recbench.models.base import CAPABILITIES, Capabilities, capabilities_of
from recbench.pipeline import RunContext, run

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"
MODELS = sorted(p.stem for p in (CONFIG_DIR / "model").glob("*.yaml"))


def cfg_for(tmp_path: Path, *overrides: str) -> DictConfig:
    with initialize_config_dir(version_base="1.3", config_dir=str(CONFIG_DIR)):
        return compose(
            "train",
            overrides=["dataset=tiny", "trainer=fast", f"paths.cache_dir={tmp_path / 'cache'}", *overrides],
        )


@pytest.fixture
def no_work(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Fails the test if the pipeline loads data (or, through it, trains anything)."""
    calls: list[str] = []

    def refuse(*args: object, **kwargs: object) -> None:
        calls.append("load")
        raise AssertionError("data was loaded before the capability check")

    monkeypatch.setattr(pipeline, "load_cached", refuse)
    return calls


def test_declarations_match_the_methods() -> None:
    """For every model config: probabilities => predict_proba, ratings => predict, and similar,
    history, fold_in, explain <=> the method (or explanation) exists; a declared capability setting
    really grants the capability."""
    from hydra.utils import get_object

    for name in MODELS:
        node = model_config(name)
        cls = get_object(node._target_)
        caps = model_capabilities(node)
        assert caps.rank, name
        if caps.probabilities:
            assert callable(getattr(cls, "predict_proba", None)), name
        if caps.ratings:
            assert callable(getattr(cls, "predict", None)), name
        assert caps.similar == callable(getattr(cls, "similar_items", None)), name
        assert caps.history == callable(getattr(cls, "score_history", None)), name
        assert caps.fold_in == callable(getattr(cls, "fold_in_spec", None)), name
        assert caps.explain == (cls.__name__ in METHODS), name
        for capability, switch in cls.capability_settings.items():
            assert getattr(model_capabilities(OmegaConf.merge(node, dict(switch))), capability), name


def test_built_model_and_config_agree(tmp_path: Path) -> None:
    cfg = cfg_for(tmp_path, "model=mlp", "model.mode=rating", "model.use_features=true")
    from recbench.config import build

    caps = capabilities_of(build(cfg.model, "model"))
    assert caps == model_capabilities(cfg.model)
    assert caps.ratings and caps.needs_ratings and caps.needs_features and caps.probabilities


def test_models_with_reads_the_model_configs() -> None:
    assert {"mf", "pmf", "nmf", "itemknn", "userknn"} <= set(models_with("ratings"))
    assert "mlp" not in models_with("ratings") and "mlp model.mode=rating" in models_with("ratings", True)
    assert "fm model.loss_type=mse" in models_with("ratings", settings=True)
    assert {"gmf", "ncf", "mlp", "fm"} <= set(models_with("probabilities"))
    assert {"sasrec", "bert4rec", "gru4rec", "caser", "nextitnet"} == set(models_with("needs_sequences"))
    assert {"fm", "widedeep", "deepfm", "taste_hybrid", "content_knn"} == set(models_with("needs_features"))
    assert {"common_neighbors", "adamic_adar", "jaccard", "ppr", "taste_hybrid"} == set(
        models_with("needs_user_graph")
    )
    assert "pop" not in models_with("ratings")
    assert set(CAPABILITIES) == set(Capabilities.__dataclass_fields__)
    with pytest.raises(ValueError, match="not one of"):
        models_with("fly")


def test_mlp_rating_eval_fails_before_data_or_training(tmp_path: Path, no_work: list[str]) -> None:
    cfg = cfg_for(tmp_path, "model=mlp", "eval=rating")
    with pytest.raises(ConfigError) as err:
        run(cfg, RunContext(tmp_path / "r", {"model": "mlp"}))
    text = str(err.value)
    assert "model=mlp" in text and "rmse" in text and "mf" in text and "mlp model.mode=rating" in text
    assert no_work == []


def test_mlp_in_rating_mode_passes_the_check(tmp_path: Path, no_work: list[str]) -> None:
    """The declaration follows the hyperparameters: mode=rating predicts ratings (it reaches data loading)."""
    cfg = cfg_for(tmp_path, "model=mlp", "model.mode=rating", "eval=rating")
    with pytest.raises(AssertionError, match="data was loaded"):
        run(cfg, RunContext(tmp_path / "r", {"model": "mlp"}))


@pytest.mark.parametrize(
    ("loss", "evaluation", "needle"),
    [
        ("bpr", "rating", "does not predict ratings"),
        ("bpr", "ctr", "probabilities"),
        ("bce", "rating", "ratings"),
    ],
)
def test_fm_request_fails_before_data_or_training(
    tmp_path: Path, no_work: list[str], loss: str, evaluation: str, needle: str
) -> None:
    cfg = cfg_for(tmp_path, "model=fm", f"model.loss_type={loss}", f"eval={evaluation}")
    if evaluation == "ctr":
        cfg.eval.metrics = ["auc", "logloss"]
    with pytest.raises(ConfigError, match=needle) as err:
        run(cfg, RunContext(tmp_path / "r", {"model": "fm"}))
    assert "model=fm" in str(err.value)
    assert no_work == []


def test_timestamp_needs_fail_before_training(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """trending declared needs_timestamps but nothing checked it; now data without times stops the run."""
    from recbench.models.trending import Trending

    def no_fit(*args: object, **kwargs: object) -> None:
        raise AssertionError("trained before the check")

    monkeypatch.setattr(Trending, "fit", no_fit)
    real = pipeline.load_cached

    def without_times(*args: object, **kwargs: object):
        import dataclasses

        data, ids = real(*args, **kwargs)
        return dataclasses.replace(data, timestamps=None), ids

    monkeypatch.setattr(pipeline, "load_cached", without_times)
    with pytest.raises(ConfigError, match="model=trending reads interaction timestamps"):
        run(
            cfg_for(tmp_path, "model=trending", "split=random"),
            RunContext(tmp_path / "r", {"model": "trending"}),
        )
