"""The optional `tuned` group: a `<model>_<dataset>` file applies to that pair only; the command line wins."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"
TUNED = CONFIG_DIR / "tuned" / "itemknn_ml-latest-small.yaml"


def _compose(*overrides: str) -> DictConfig:
    with initialize_config_dir(version_base="1.3", config_dir=str(CONFIG_DIR)):
        return compose("train", overrides=list(overrides), return_hydra_config=True)


@pytest.fixture(scope="module")
def tuned() -> dict:
    values = yaml.safe_load(TUNED.read_text())["model"]
    default = yaml.safe_load((CONFIG_DIR / "model" / "itemknn.yaml").read_text())
    assert any(values[k] != default[k] for k in values), "a tuned file that changes nothing"
    return values


def test_the_tuned_file_is_picked_up_for_its_model_and_dataset(tuned: dict) -> None:
    cfg = _compose("model=itemknn", "dataset=ml-latest-small")
    assert cfg.hydra.runtime.choices["tuned"] == "itemknn_ml-latest-small"
    assert {k: cfg.model[k] for k in tuned} == tuned
    assert cfg.dataset.variant == "ml-latest-small"  # nothing else moves
    # an explicit value on the command line still wins over the tuned file
    assert _compose("model=itemknn", "dataset=ml-latest-small", "model.k=7").model.k == 7


@pytest.mark.parametrize(
    ("model", "dataset"), [("itemknn", "ml-100k"), ("userknn", "ml-latest-small"), ("itemknn", "synthetic")]
)
def test_other_pairs_keep_their_defaults(tuned: dict, model: str, dataset: str) -> None:
    cfg = _compose(f"model={model}", f"dataset={dataset}")
    default = yaml.safe_load((CONFIG_DIR / "model" / f"{model}.yaml").read_text())
    assert {k: cfg.model[k] for k in tuned} == {k: default[k] for k in tuned}
