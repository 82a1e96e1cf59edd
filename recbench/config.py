"""The single chokepoint between YAML and objects: :func:`build` checks, then instantiates.

Every object recbench makes from a config (dataset source, splitter, model, trainer, evaluation spec)
goes through :func:`build`, which

* refuses ``_target_`` values outside an allowlist (configs are code: keep what they may name small),
* checks every key against the target's constructor so a misspelt key fails with the valid names
  (:func:`check_config_types`, which also checks the types of numeric and boolean values),
* turns Hydra's instantiation errors into one-paragraph :class:`~recbench.errors.ConfigError` messages.

:func:`check_config_types` walks a config node (following interpolations such as a model's
``trainer: ${trainer}``) and compares every scalar handed to a ``_target_`` class with the type hint of
the matching constructor parameter; it also refuses keys the constructor does not take, below
interpolated nodes too. Only plain numeric and boolean hints are judged (``int``, ``float``, ``bool``
and their unions with ``None``); anything else is left to the class itself. So ``trainer.epochs=abc``,
``model.factors=2.5`` or ``+trainer.epoch=3`` fail before anything is built, with a one-paragraph
:class:`~recbench.errors.ConfigError` naming the key, the value and the expected type, instead of a
``TypeError`` from deep inside torch.
"""

from __future__ import annotations

import inspect
import os
import re
import types
import typing
from collections.abc import Iterator, Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

from hydra.errors import InstantiationException
from hydra.utils import get_object, instantiate
from omegaconf import DictConfig, ListConfig, OmegaConf

from recbench.errors import ConfigError, RecbenchError

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
    """Recursively check that every ``_target_`` below ``node`` is allowed and importable."""
    if isinstance(node, DictConfig):
        target = node.get("_target_") if "_target_" in node else None
        if target is not None:
            _check_target(str(target), where)
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


def _check_target(target: str, where: str) -> None:
    if not target.startswith(_allowed()):
        raise ConfigError(
            f"{where}._target_={target!r} is not allowed: recbench only builds classes under "
            f"{', '.join(_allowed())}. To use your own class, add its package to the environment "
            "variable RECBENCH_ALLOWED_TARGETS (comma-separated prefixes, e.g. 'mypkg.')."
        )
    try:
        get_object(target)
    except Exception as exc:  # hydra raises ImportError or its own errors here
        raise ConfigError(
            f"{where}._target_={target!r} cannot be imported ({exc}). Check the spelling of the class path."
        ) from exc


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


_SIMPLE = (int, float, bool, type(None))
_INTERPOLATION = re.compile(r"^\$\{([\w.]+)\}$")


@lru_cache(maxsize=256)
def _signature(target: str) -> tuple[tuple[str, ...] | None, dict[str, frozenset[type]]]:
    """Constructor parameter names of ``target`` (None: any keyword goes, or not a class) and, for the
    parameters with simple hints only, the set of plain types each accepts."""
    try:
        obj = get_object(target)
        params = inspect.signature(obj.__init__).parameters if inspect.isclass(obj) else None
    except Exception:  # not importable (reported by the allowlist check) or no signature: judge nothing
        return None, {}
    if params is None:
        return None, {}
    names = None
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        names = tuple(name for name in params if name != "self")
    try:
        hints = typing.get_type_hints(obj.__init__)
    except Exception:  # unresolvable forward references, odd classes: judge the key names only
        return names, {}
    out: dict[str, frozenset[type]] = {}
    for name, hint in hints.items():
        if name == "return":
            continue
        union = typing.get_origin(hint) in (typing.Union, types.UnionType)
        args = typing.get_args(hint) if union else (hint,)
        if args and all(a in _SIMPLE for a in args):
            out[name] = frozenset(args)
    return names, out


def _expected(allowed: frozenset[type]) -> str:
    if bool in allowed and not allowed & {int, float}:
        return "true or false"
    if float in allowed:
        return "a number"
    return "an integer"


def _bad(value: Any, allowed: frozenset[type]) -> bool:
    """Whether ``value`` (a resolved config scalar) cannot be what ``allowed`` declares."""
    if value is None:
        return False  # a missing value is the class's business (many accept None as "default")
    if isinstance(value, bool):
        return bool not in allowed
    if isinstance(value, int):
        return not allowed & {int, float}
    if isinstance(value, float):
        return float not in allowed
    return True  # a string (or anything else) where only numbers / booleans are accepted


def _path_of(node: DictConfig, key: str, where: str) -> str:
    """``where.key``, or the interpolated source (``trainer`` for ``model.trainer: ${trainer}``)."""
    raw = node._get_node(key)
    if raw is not None and raw._is_interpolation():
        m = _INTERPOLATION.match(str(raw._value()))
        if m:
            return m.group(1)
    return f"{where}.{key}"


def _resolvable(node: DictConfig) -> Iterator[tuple[str, Any]]:
    """``(name, value)`` of the public keys of ``node`` whose value resolves here; missing mandatory
    values and interpolations that resolve only in the full config are skipped (Hydra reports those)."""
    for key in node:
        name = str(key)
        if name.startswith("_"):
            continue
        try:
            value = node[name]
        except Exception:  # ???, broken or out-of-context interpolations
            continue
        yield name, value


def check_config_types(node: Any, where: str) -> None:
    """Raise :class:`ConfigError` when a value below ``node`` cannot have its constructor's declared type.

    Parameters
    ----------
    node: a config node (usually one with a ``_target_``), e.g. ``cfg.model``.
    where: its path in the full config, used in messages (``"model"``).
    """
    if isinstance(node, ListConfig):
        for i, child in enumerate(node):
            if isinstance(child, (DictConfig, ListConfig)):
                check_config_types(child, f"{where}[{i}]")
        return
    if not isinstance(node, DictConfig):
        return
    target = node.get("_target_") if "_target_" in node else None
    names, hints = _signature(str(target)) if target is not None else (None, {})
    if names is not None and not node.get("_partial_", False):
        unknown = [str(k) for k in node if not str(k).startswith("_") and str(k) not in names]
        if unknown:
            raise ConfigError(
                f"Unknown key(s) {', '.join(_path_of(node, k, where) for k in unknown)} for {target}. "
                f"Valid keys are: {', '.join(names)}. Fix the spelling in the YAML file or on the "
                "command line."
            )
    for name, value in _resolvable(node):
        path = _path_of(node, name, where)
        if isinstance(value, (DictConfig, ListConfig)) and name not in hints:
            check_config_types(value, path)
        elif name in hints and (isinstance(value, (DictConfig, ListConfig)) or _bad(value, hints[name])):
            raise ConfigError(
                f"{path}={value!r} is not valid: {target} expects {_expected(hints[name])} there. "
                f"Fix the value on the command line (e.g. {path}=...) or in the YAML file."
            )


def compose(overrides: Sequence[str] = ()) -> DictConfig:
    """The ``train`` config composed with ``overrides`` exactly as ``recbench train OVERRIDES`` would
    (without Hydra's runtime node), for commands that need a run's data and split without training."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir, initialize_config_module
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    root = config_dir()
    context = (
        initialize_config_module("recbench._configs", version_base="1.3")
        if root.startswith("pkg://")
        else initialize_config_dir(config_dir=root, version_base="1.3")
    )
    try:
        with context:
            return hydra_compose("train", overrides=list(overrides))
    except (HydraException, OmegaConfBaseException, ValueError) as exc:
        raise ConfigError(f"The overrides {list(overrides)} do not compose: {exc}") from exc


def load_run_config(path: str | Path, overrides: Sequence[str] = ()) -> DictConfig:
    """A saved config (a run directory's ``.hydra/config.yaml``, the directory itself, or any YAML of
    a full config) with ``key=value`` overrides applied."""
    p = Path(path).expanduser()
    if p.is_dir():
        p = p / ".hydra" / "config.yaml"
    from omegaconf.errors import OmegaConfBaseException

    try:
        cfg = OmegaConf.load(p)
        if overrides:
            cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist(list(overrides)))
    except (OSError, ValueError, OmegaConfBaseException, yaml_errors()) as exc:
        raise ConfigError(f"{p} could not be read as a recbench config ({exc}).") from exc
    if not isinstance(cfg, DictConfig) or "dataset" not in cfg:
        raise ConfigError(f"{p} is not a full recbench config (it has no 'dataset' node).")
    return cfg


def yaml_errors() -> type[Exception]:
    """The exception class of malformed YAML (PyYAML's, as used by OmegaConf)."""
    import yaml

    return yaml.YAMLError


def resolve_config_source(
    name_or_config: str, overrides: Sequence[str] = (), choices: Mapping[str, object] | None = None
) -> DictConfig:
    """The config of ``recbench data export|stats NAME_OR_CONFIG``.

    ``name_or_config`` is a dataset option (``ml-100k``), a YAML file of a dataset (a node with
    ``_target_``), or a run directory / full saved config. Group ``choices`` (``{"split": "loo"}``)
    and ``overrides`` apply as on the ``recbench train`` command line; a saved config keeps its groups
    (only ``key=value`` overrides apply), so it gives back exactly what that run used.
    """
    chosen = [f"{k}={v}" for k, v in (choices or {}).items() if v is not None]
    p = Path(name_or_config).expanduser()
    if p.is_dir() or (p.is_file() and p.suffix in (".yaml", ".yml")):
        if p.is_file():
            try:
                node = OmegaConf.load(p)
            except (OSError, ValueError, yaml_errors()) as exc:
                raise ConfigError(f"{p} could not be read as YAML ({exc}).") from exc
            if isinstance(node, DictConfig) and "_target_" in node:
                cfg = compose([*chosen, *overrides])
                cfg.dataset = node
                return cfg
        groups = [c for c in chosen if not c.startswith("seed=")]
        if groups:
            raise ConfigError(
                f"{p} is a saved run config, whose split is part of it; leave out {groups} (or override "
                "keys, e.g. split.ratios=[0.7,0.1,0.2])."
            )
        return load_run_config(p, [*(c for c in chosen if c.startswith("seed=")), *overrides])
    return compose([f"dataset={name_or_config}", *chosen, *overrides])


def to_plain(node: Any) -> Any:
    """A config node as plain, resolved Python containers (for JSON files)."""
    if isinstance(node, (DictConfig, ListConfig)):
        return OmegaConf.to_container(node, resolve=True)
    return node


def _model_config_files() -> dict[str, Any]:
    """``{name: file}`` of the shipped ``model/*.yaml`` configs (repo checkout, env override or wheel)."""
    root = config_dir()
    if root.startswith("pkg://"):
        from importlib.resources import files

        folder: Any = files("recbench._configs") / "model"
    else:
        folder = Path(root) / "model"
    return {f.name[: -len(".yaml")]: f for f in folder.iterdir() if f.name.endswith(".yaml")}


def model_config(name: str) -> DictConfig:
    """The ``model/<name>.yaml`` node as written, with the model configs its defaults list names
    merged under it (``userknn_rating`` extends ``userknn``); interpolations are left unresolved."""
    files = _model_config_files()
    if name not in files:
        raise ConfigError(f"model={name} is not a model config; choose one of {', '.join(sorted(files))}.")
    return OmegaConf.create(_model_yaml(config_dir(), name))


@lru_cache(maxsize=256)
def _model_yaml(root: str, name: str) -> str:
    """The merged ``model/<name>.yaml`` of config folder ``root`` as YAML text (read once per process)."""
    node = OmegaConf.create(_model_config_files()[name].read_text())
    assert isinstance(node, DictConfig)
    merged = OmegaConf.create()
    for entry in node.pop("defaults", []) or []:
        if isinstance(entry, str) and entry != "_self_":
            merged = OmegaConf.merge(merged, model_config(entry))
    return OmegaConf.to_yaml(OmegaConf.merge(merged, node))


def model_capabilities(node: DictConfig) -> Any:
    """The :class:`~recbench.models.base.Capabilities` the ``model`` config node declares: read from its
    ``_target_`` class and the hyperparameters the node sets, without building the model or loading data.
    Values that cannot be resolved here (``trainer: ${trainer}`` out of context) are left to their
    defaults, which no capability depends on."""
    from recbench.models.base import Capabilities, Recommender, class_capabilities

    cls = _target_class(node)
    if not (inspect.isclass(cls) and issubclass(cls, Recommender)):
        return Capabilities()
    params = {k: v for k, v in _resolvable(node) if not isinstance(v, (DictConfig, ListConfig))}
    return class_capabilities(cls, params)


def models_with(capability: str, settings: bool = False) -> list[str]:
    """The names of the shipped model configs whose declared capabilities (with the YAML's settings)
    include ``capability`` (a field of :class:`~recbench.models.base.Capabilities`), sorted.

    With ``settings``, also the models that gain it through a declared setting, written as overrides
    (``"mlp model.mode=rating"``, from the class's ``capability_settings``).
    """
    from recbench.models.base import CAPABILITIES

    if capability not in CAPABILITIES:
        raise ValueError(f"capability {capability!r} is not one of {', '.join(CAPABILITIES)}")
    out = []
    for name in sorted(_model_config_files()):
        node = model_config(name)
        if getattr(model_capabilities(node), capability):
            out.append(name)
            continue
        switch = getattr(_target_class(node), "capability_settings", {}).get(capability) if settings else None
        if switch and getattr(model_capabilities(OmegaConf.merge(node, dict(switch))), capability):
            out.append(" ".join([name, *(f"model.{k}={v}" for k, v in switch.items())]))
    return out


def _target_class(node: DictConfig) -> Any:
    try:
        return get_object(str(node.get("_target_", "")))
    except Exception:  # not importable: build() reports it
        return None
