"""Cross-cutting input checks: config values against constructor types, and usable splits.

:func:`check_config_types` walks a config node (following interpolations such as a model's
``trainer: ${trainer}``) and compares every scalar handed to a ``_target_`` class with the type hint of
the matching constructor parameter; it also refuses keys the constructor does not take, below
interpolated nodes too (which the checks in :mod:`recbench.config` do not enter). Only plain numeric
and boolean hints are judged (``int``, ``float``, ``bool`` and their unions with ``None``); anything
else is left to the class itself. So ``trainer.epochs=abc``, ``model.factors=2.5`` or
``+trainer.epoch=3`` fail before anything is built, with a one-paragraph
:class:`~recbench.errors.ConfigError` naming the key, the value and the expected type, instead of a
``TypeError`` from deep inside torch.

:func:`check_splits` refuses a split with an empty training or test part (a run on it could only report
NaN) and logs how many test users have no training data.
"""

from __future__ import annotations

import inspect
import logging
import re
import types
import typing
from collections.abc import Sequence
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import numpy as np
from omegaconf import DictConfig, ListConfig

from recbench.errors import ConfigError, DataError

if TYPE_CHECKING:
    from recbench.data.splits import Split

log = logging.getLogger(__name__)

_SIMPLE = (int, float, bool, type(None))
_INTERPOLATION = re.compile(r"^\$\{([\w.]+)\}$")


@lru_cache(maxsize=256)
def _signature(target: str) -> tuple[tuple[str, ...] | None, dict[str, frozenset[type]]]:
    """Constructor parameter names of ``target`` (None: any keyword goes, or not a class) and, for the
    parameters with simple hints only, the set of plain types each accepts."""
    from hydra.utils import get_object

    try:
        obj = get_object(target)
        if not inspect.isclass(obj):
            return None, {}
        params = inspect.signature(obj.__init__).parameters
        hints = typing.get_type_hints(obj.__init__)
    except Exception:  # unresolvable forward references, odd classes: judge nothing
        return None, {}
    names = None
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        names = tuple(name for name in params if name != "self")
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
    for key in node:
        name = str(key)
        if name.startswith("_"):
            continue
        try:
            value = node[name]
        except Exception:  # missing mandatory values, broken interpolations: Hydra reports those
            continue
        path = _path_of(node, name, where)
        if isinstance(value, (DictConfig, ListConfig)) and name not in hints:
            check_config_types(value, path)
        elif name in hints and (isinstance(value, (DictConfig, ListConfig)) or _bad(value, hints[name])):
            raise ConfigError(
                f"{path}={value!r} is not valid: {target} expects {_expected(hints[name])} there. "
                f"Fix the value on the command line (e.g. {path}=...) or in the YAML file."
            )


def check_splits(folds: Sequence[Split], splitter: object) -> None:
    """Refuse splits that leave nothing to train on or to test; log test users without training data.

    Raises :class:`DataError` when a fold's training or test part is empty (every user has too few
    interactions for the protocol, or a time cut leaves nothing after it). Test users with no training
    interaction (possible with ``kfold``, ``temporal`` with ``drop_cold: false`` and the cold-start
    splits, never with ``random`` or ``loo``) are kept and evaluated on what the model scores for an
    unseen user; their number is logged.
    """
    name = type(splitter).__name__
    for j, split in enumerate(folds):
        where = f"split {name}" + (f" (fold {j})" if len(folds) > 1 else "")
        for part in ("train", "test"):
            if len(getattr(split, part)) == 0:
                raise DataError(
                    f"{where} left the {part} part empty ({len(split.train)} train, {len(split.test)} "
                    f"test interactions): users have too few interactions for {splitter!r}. Use another "
                    "split (e.g. split=loo), other split ratios, or filter the data with "
                    "dataset.preprocess.user_core."
                )
        known = split.train.user_counts() > 0
        test_users = np.flatnonzero(split.test.user_counts() > 0)
        cold = int(np.count_nonzero(~known[test_users]))
        if cold:
            log.info(
                "%s: %d of %d test users have no training interaction; they are evaluated on the "
                "model's scores for unseen users",
                where,
                cold,
                len(test_users),
            )
