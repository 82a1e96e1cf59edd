"""Every config option composes and builds; bad options and keys fail with the valid names."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf

from recbench.config import build
from recbench.errors import ConfigError

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"
Compose = Callable[..., DictConfig]


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONFIG_DIR / group).glob("*.yaml"))


@pytest.fixture
def compose_train() -> Compose:
    def _compose(*overrides: str) -> DictConfig:
        with initialize_config_dir(version_base="1.3", config_dir=str(CONFIG_DIR)):
            return compose("train", overrides=["dataset=tiny", "trainer=fast", *overrides])

    return _compose


@pytest.mark.parametrize("group", ["dataset", "split", "eval", "trainer"])
def test_every_option_of_the_object_groups_builds(compose_train: Compose, group: str) -> None:
    for name in options(group):
        overrides = [f"{group}={name}"]
        cfg = compose_train(*overrides)
        node = cfg[group]
        missing = [k for k in node if OmegaConf.is_missing(node, k)]
        if missing:  # options that need a user value (a file path) must say so with ???
            assert group in ("dataset", "split"), f"{group}={name} has unset keys {missing}"
            continue
        build(node, group)


@pytest.mark.parametrize("name", options("experiment"))
def test_every_experiment_composes(compose_train: Compose, name: str) -> None:
    cfg = compose_train(f"experiment={name}")
    assert cfg.model._target_


def test_unknown_key_names_the_key_and_lists_valid_ones(compose_train: Compose) -> None:
    cfg = compose_train("model=pop")
    OmegaConf.set_struct(cfg, False)
    cfg.model.nonsense = 3
    with pytest.raises(ConfigError, match=r"model\.nonsense.*Valid keys"):
        build(cfg.model, "model")


def test_target_outside_allowlist_is_refused(compose_train: Compose) -> None:
    cfg = compose_train("model=pop")
    OmegaConf.set_struct(cfg, False)
    cfg.model._target_ = "os.system"
    with pytest.raises(ConfigError, match="not allowed"):
        build(cfg.model, "model")


def test_unknown_model_option_lists_choices(compose_train: Compose) -> None:
    from hydra.errors import MissingConfigException

    with pytest.raises(MissingConfigException, match="Available options"):
        compose_train("model=does_not_exist")
