"""The single chokepoint between YAML and objects: :func:`build` checks, then instantiates.

Every object recbench makes from a config (dataset source, splitter, model, trainer, evaluation spec)
goes through :func:`build`, which

* refuses ``_target_`` values outside an allowlist (configs are code: keep what they may name small),
* checks every key against the target's constructor so a misspelt key fails with the valid names,
* turns Hydra's instantiation errors into one-paragraph :class:`~recbench.errors.ConfigError` messages.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hydra.errors import InstantiationException
from hydra.utils import get_object, instantiate
from omegaconf import DictConfig, ListConfig, OmegaConf

from recbench.errors import ConfigError, RecbenchError
from recbench.validation import check_config_types

#: Module prefixes a ``_target_`` may name. Users extend it with their own package via
#: ``RECBENCH_ALLOWED_TARGETS=mypkg.,otherpkg.``.
ALLOWED_PREFIXES: tuple[str, ...] = ("recbench.", "torch.optim.")

#: The configs shipped with recbench: the repo's top-level ``configs/`` in a source checkout or an
#: editable install, else the copy packaged into the wheel as ``recbench._configs``.
_REPO_CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def config_dir() -> str:
    """Primary config folder: ``$RECBENCH_CONFIG_DIR``, else the repo's ``configs/``, else the wheel's."""
    env = os.environ.get("RECBENCH_CONFIG_DIR")
    if env:
        return str(Path(env).resolve())
    if (_REPO_CONFIGS / "train.yaml").is_file():
        return str(_REPO_CONFIGS)
    return "pkg://recbench._configs"


def _allowed() -> tuple[str, ...]:
    extra = tuple(p.strip() for p in os.environ.get("RECBENCH_ALLOWED_TARGETS", "").split(",") if p.strip())
    return ALLOWED_PREFIXES + extra


def _check_node(node: Any, where: str) -> None:
    """Recursively check ``_target_`` allowlist and constructor keys below ``node``."""
    if isinstance(node, DictConfig):
        target = node.get("_target_") if "_target_" in node else None
        if target is not None:
            _check_target(str(target), node, where)
        for key in node:
            if str(key).startswith("_"):
                continue
            child = node._get_node(key)
            if isinstance(child, (DictConfig, ListConfig)) and not child._is_missing():
                _check_node(child, f"{where}.{key}")
    elif isinstance(node, ListConfig):
        for i, child in enumerate(node._iter_ex(resolve=False)):
            if isinstance(child, (DictConfig, ListConfig)):
                _check_node(child, f"{where}[{i}]")


def _check_target(target: str, node: DictConfig, where: str) -> None:
    if not target.startswith(_allowed()):
        raise ConfigError(
            f"{where}._target_={target!r} is not allowed: recbench only builds classes under "
            f"{', '.join(_allowed())}. To use your own class, add its package to the environment "
            "variable RECBENCH_ALLOWED_TARGETS (comma-separated prefixes, e.g. 'mypkg.')."
        )
    try:
        obj = get_object(target)
    except Exception as exc:  # hydra raises ImportError or its own errors here
        raise ConfigError(
            f"{where}._target_={target!r} cannot be imported ({exc}). Check the spelling of the class path."
        ) from exc
    if node.get("_partial_", False) or not inspect.isclass(obj):
        return
    params = inspect.signature(obj.__init__).parameters
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return
    valid = [name for name in params if name != "self"]
    unknown = [str(k) for k in node if not str(k).startswith("_") and str(k) not in valid]
    if unknown:
        raise ConfigError(
            f"Unknown key(s) {', '.join(f'{where}.{k}' for k in unknown)} for {target}. "
            f"Valid keys are: {', '.join(valid)}. Fix the spelling in the YAML file or on the command line."
        )


def build(node: DictConfig, where: str = "config", **kwargs: Any) -> Any:
    """Instantiate ``node`` (a config with ``_target_``) after checking targets and keys.

    Parameters
    ----------
    node: the config node, e.g. ``cfg.model``.
    where: the node's path in the full config, used in error messages (``"model"``).
    kwargs: extra constructor arguments that override the config.
    """
    if not isinstance(node, DictConfig) or "_target_" not in node:
        raise ConfigError(f"The '{where}' config has no _target_: it must name the class to build.")
    _check_node(node, where)
    check_config_types(node, where)
    try:
        return instantiate(node, **kwargs)
    except InstantiationException as exc:
        cause = exc.__cause__
        if isinstance(cause, RecbenchError):
            raise cause from None
        raise ConfigError(f"Could not build '{where}' ({node._target_}): {cause or exc}") from exc


def flatten(node: Mapping[str, Any] | DictConfig, prefix: str = "") -> dict[str, Any]:
    """``{"model.factors": 64, ...}`` from a nested config (resolved), skipping ``_target_``-like keys."""
    if isinstance(node, DictConfig):
        node = OmegaConf.to_container(node, resolve=True)  # type: ignore[assignment]
    out: dict[str, Any] = {}
    for key, value in node.items():
        if str(key).startswith("_") and key != "_target_":
            continue
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out
