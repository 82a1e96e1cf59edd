"""Every experiment and search config composes, the options its sweep names exist, and one runs end to end."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf, open_dict

from recbench.config import build
from recbench.models.base import Recommender

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"
EXPERIMENTS = sorted(p.stem for p in (CONFIG_DIR / "experiment").glob("*.yaml"))
SEARCHES = sorted(p.stem for p in (CONFIG_DIR / "search").glob("*_optuna.yaml"))  # optuna_base: shared part
#: Config groups a sweep may range over; their options must exist as files.
GROUPS = ("model", "dataset", "split", "eval", "trainer")


def compose_train(*overrides: str) -> DictConfig:
    with initialize_config_dir(version_base="1.3", config_dir=str(CONFIG_DIR)):
        return compose("train", overrides=list(overrides), return_hydra_config=True)


def sweep_values(cfg: DictConfig) -> dict[str, list[str]]:
    """``hydra.sweeper.params`` expanded into lists of values (basic sweeper syntax: a,b,c)."""
    params = cfg.hydra.sweeper.get("params") or {}
    parser = OverridesParser.create()
    out = {}
    for key, value in params.items():
        override = parser.parse_override(f"{key}={value}")
        out[str(key)] = list(override.sweep_string_iterator()) if override.is_sweep_override() else [value]
    return out


def test_there_are_experiments_and_searches() -> None:
    assert {"ml100k_all", "ncf_ml-1m", "sasrec_ml-1m", "rating_ml-100k", "baselines_ml-100k"} <= set(
        EXPERIMENTS
    )
    assert "bpr_optuna" in SEARCHES


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_experiment_composes_with_its_own_dataset(name: str) -> None:
    cfg = compose_train(f"experiment={name}")
    choices = cfg.hydra.runtime.choices
    assert choices.experiment == name
    assert choices.dataset not in ("synthetic", "tiny"), "an experiment names a real dataset"
    assert cfg.tags, "an experiment tags its runs"
    build(cfg.split, "split")
    build(cfg.eval, "eval")


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_option_an_experiment_sweeps_over_exists_and_builds(name: str) -> None:
    cfg = compose_train(f"experiment={name}")
    swept = {k: v for k, v in sweep_values(cfg).items() if k in GROUPS}
    if swept:
        assert cfg.hydra.mode == RunMode.MULTIRUN, "an experiment with sweep params sets hydra.mode: MULTIRUN"
    else:
        build(cfg.model, "model")
    base = compose_train(f"experiment={name}", "dataset=tiny", "trainer=fast")
    for group, options in swept.items():
        assert len(options) == len(set(options)), f"{group} repeats an option"
        for option in options:
            path = CONFIG_DIR / group / f"{option}.yaml"
            assert path.is_file(), f"{name}: no {group}={option}"
            node = build(with_option(base, group, path), group)
            if group == "model":
                assert isinstance(node, Recommender)


def with_option(base: DictConfig, group: str, path: Path) -> DictConfig:
    """``base[group]`` swapped for the option file at ``path``, interpolations resolved against ``base``.

    Much cheaper than composing once per option; options with their own defaults list are composed.
    """
    option = OmegaConf.load(path)
    if "defaults" in option:
        overrides = [f"experiment={base.hydra.runtime.choices.experiment}", "dataset=tiny", "trainer=fast"]
        return compose_train(*overrides, f"{group}={path.stem}")[group]
    cfg = base.copy()
    with open_dict(cfg):
        cfg[group] = option
    return cfg[group]


def test_ml100k_all_covers_the_ranking_models_with_three_seeds() -> None:
    cfg = compose_train("experiment=ml100k_all")
    values = sweep_values(cfg)
    assert sorted(values["seed"]) == ["1", "2", "3"]
    models = set(values["model"])
    assert {"pop", "itemknn", "bpr", "sasrec"} <= models
    assert not models & {"mf", "pmf", "nmf"}, "rating-only models belong to rating_ml-100k"


def test_ncf_ml_1m_reports_sampled_and_full_ranking_on_the_same_split() -> None:
    cfg = compose_train("experiment=ncf_ml-1m")
    assert cfg.hydra.runtime.choices.split == "loo" and cfg.dataset.variant == "ml-1m"
    spec = build(cfg.eval, "eval")
    assert spec.sampled_negatives == 100 and spec.also_full_ranking


def test_rating_ml_100k_is_five_fold_rmse() -> None:
    cfg = compose_train("experiment=rating_ml-100k")
    assert cfg.hydra.runtime.choices.split == "kfold" and cfg.split.folds == 5
    assert "rmse" in cfg.eval.metrics
    assert sorted(sweep_values(cfg)["model"]) == sorted(["mf", "pmf", "nmf", "userknn_rating", "itemknn"])


@pytest.mark.parametrize("name", SEARCHES)
def test_search_composes_and_optimises_a_validation_metric(name: str) -> None:
    cfg = compose_train(f"search={name}", "dataset=tiny", "trainer=fast")
    assert cfg.optimized_metric.startswith("val/")
    assert cfg.hydra.runtime.choices["hydra/sweeper"] == "optuna"
    expected = "minimize" if cfg.optimized_metric.endswith(("rmse", "mae")) else "maximize"
    assert cfg.hydra.sweeper.direction == expected
    assert cfg.hydra.sweeper.sampler.seed == cfg.seed
    assert 20 <= cfg.hydra.sweeper.n_trials <= 30
    model = build(cfg.model, "model")
    searched = [k.split(".", 1)[1] for k in cfg.hydra.sweeper.params if k.startswith("model.")]
    assert searched and set(searched) <= set(model.get_params()), "search params must be model parameters"


@pytest.mark.slow
def test_an_experiment_runs_end_to_end_on_tiny_data(tmp_path: Path) -> None:
    out = tmp_path / "sweep"
    env = {**os.environ, "RECBENCH_CACHE_DIR": str(tmp_path / "cache"), "HYDRA_FULL_ERROR": "1"}
    args = [
        "experiment=baselines_ml-100k",
        "dataset=tiny",
        "trainer=fast",
        "hydra.sweeper.params.seed=1",
        f"hydra.sweep.dir={out}",
    ]
    proc = subprocess.run(
        [sys.executable, "-m", "recbench", "train", *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-5000:]
    table = pd.read_csv(out / "summary.csv")
    expected = sweep_values(compose_train("experiment=baselines_ml-100k"))["model"]
    assert sorted(table["model"]) == sorted(expected)
    assert (table["status"] == "ok").all(), table.loc[table["status"] != "ok", ["model", "error"]]
    assert (table["experiment"] == "baselines_ml-100k").all() and (table["dataset"] == "tiny").all()
