"""The tracker interface, the identity of a tracked run, and the dependency check every adapter uses."""

from __future__ import annotations

import importlib.util
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from recbench.errors import ConfigError

#: The install command printed when a tracker's library is missing.
INSTALL_HINT = "pip install 'recbench[track]'"


@dataclass(frozen=True)
class RunInfo:
    """Who a tracked run is: what the trackers name it and how they group it.

    Parameters
    ----------
    name : str
        Display name, e.g. the job's overrides ``model=bpr,seed=1``.
    key : str
        A name unique among the runs of its group, safe as a folder name (the sweep job number, or the
        run folder's name for single runs).
    run_dir : Path
        The run's output folder (``metrics.json`` and friends).
    group : str or None
        The sweep the run belongs to (None for a single run): an MLflow parent run and ``sweep`` tag, a
        W&B group, a TensorBoard sub-folder.
    group_dir : Path or None
        The sweep folder, where trackers may keep what all jobs of the sweep share.
    tags : dict of str to str
        Labels for every tracker: the config group choices (``model``, ``dataset``...), the seed, tags.
    """

    name: str
    key: str
    run_dir: Path
    group: str | None = None
    group_dir: Path | None = None
    tags: dict[str, str] = field(default_factory=dict)

    def renamed(self, name: str | None) -> RunInfo:
        """This run under another display name (a tracker's ``run_name`` setting); None keeps the name."""
        return self if not name else replace(self, name=name)

    @property
    def folder(self) -> str:
        """``<key>_<name>`` shortened to a safe folder name (used by the file-based trackers)."""
        text = self.key if self.name in ("", self.key) else f"{self.key}_{self.name}"
        return safe_name(text)[:120]


class Tracker(ABC):
    """One experiment tracker. The pipeline calls, in this order: :meth:`start`, :meth:`log_params`
    (once or more), :meth:`log_metrics` (per epoch, then the final metrics), :meth:`log_artifact` (per
    file) and :meth:`finish`. Implementations may raise anything: the hook catches it, warns, and stops
    calling that tracker, so the run itself never fails because of a tracker.
    """

    @abstractmethod
    def start(self, run: RunInfo) -> None:
        """Open the tracked run (create folders, connect to the store)."""

    @abstractmethod
    def log_params(self, params: Mapping[str, Any]) -> None:
        """Record flat ``key -> value`` parameters (``trainer.lr``); values are scalars or strings."""

    @abstractmethod
    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        """Record metric values (``train/loss``, ``val/ndcg@10``, ``test/ndcg@10``) at ``step`` (epoch)."""

    @abstractmethod
    def log_artifact(self, path: Path) -> None:
        """Attach a file of the run (``metrics.json``, ``history.csv``, a plot)."""

    @abstractmethod
    def finish(self, status: str) -> None:
        """Close the run as ``"ok"`` or ``"failed"``."""


def safe_name(text: str) -> str:
    """``text`` with every character other than letters, digits and ``=,._-+@`` replaced by ``_``."""
    return "".join(c if c.isalnum() or c in "=,._-+@" else "_" for c in text)


def require(module: str, logger: str) -> None:
    """Raise :class:`ConfigError` with the install command when ``module`` is not importable.

    Called from the adapters' constructors, so that ``logger=NAME`` without its library fails when the
    config is built, before any data is loaded or any model trained.
    """
    if importlib.util.find_spec(module) is None:
        raise ConfigError(
            f"logger={logger} needs the Python package '{module}', which is not installed. Install the "
            f"tracking extra with `{INSTALL_HINT}` (or `pip install {module}`), or choose another logger "
            "(logger=csv needs nothing extra; logger=none turns tracking off)."
        )


def text_value(value: Any) -> Any:
    """A parameter value as trackers store it: numbers and booleans as-is, None and the rest as text."""
    if isinstance(value, bool | int | float | str):
        return value
    return "None" if value is None else str(value)
