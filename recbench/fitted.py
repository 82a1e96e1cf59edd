"""The fitted model, saved before evaluation, so a run killed while evaluating never trains again.

At the size of MovieLens-20M a fit may take minutes and evaluation as long again. :class:`FitCheckpoint`
saves the fitted model into the run directory (``model.pt`` / ``model.npz`` through
:func:`~recbench.models.persistence.save_model`) and then writes ``fitted.json``, which names the
settings that decided the fit (a digest of the config without evaluation and bookkeeping keys) and,
for torch models, the training history. A run restarted with ``trainer.resume=<run dir>`` whose
digest matches loads that model and goes straight to evaluation: same weights, same metrics. The
marker is written last (atomically), so its presence means the model files are complete.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from recbench.data.interactions import Interactions
from recbench.files import atomic_write
from recbench.models.base import Recommender, TorchRecommender
from recbench.models.persistence import load_state, save_model

log = logging.getLogger(__name__)

FITTED_FILE = "fitted.json"


def _history_fields(model: Recommender) -> dict[str, Any]:
    history = getattr(model, "history_", None)
    if history is None:
        return {}
    return {
        "rows": history.rows,
        "best_epoch": history.best_epoch,
        "best_value": history.best_value,
        "stopped_early": history.stopped_early,
    }


def read_marker(run_dir: Path) -> dict[str, Any] | None:
    """The ``fitted.json`` of ``run_dir``, or ``None`` when it is absent or unreadable."""
    try:
        data = json.loads((Path(run_dir) / FITTED_FILE).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


@dataclass(frozen=True)
class FitCheckpoint:
    """Fit a model, or load the one an interrupted run with the same settings already fitted.

    Parameters
    ----------
    out: this run's directory: the fitted model and ``fitted.json`` are written there.
    key: digest of the settings that decide the fitted model (data, split, model, trainer, seed).
    resume: the run directory of an interrupted run (``trainer.resume``), or ``None``.
    write: whether this process writes the files (in a multi-process run only rank 0 does; every
        rank may load).
    """

    out: Path
    key: str
    resume: Path | None = None
    write: bool = True

    def fit(self, model: Recommender, train: Interactions, val: Interactions | None) -> bool:
        """Fit ``model`` and save it, unless ``resume`` holds a fitted model of the same settings, which
        is loaded instead. Returns whether it was loaded (no training happened)."""
        if self.resume is not None and self._load(model, train):
            log.info(
                "resuming: %s holds this run's fitted model; evaluating it without training", self.resume
            )
            if Path(self.resume).resolve() != Path(self.out).resolve():
                self._save(model)
            return True
        model.fit(train, val)
        self._save(model)
        return False

    def _save(self, model: Recommender) -> None:
        if not self.write:
            return
        save_model(model, self.out)
        marker = {"key": self.key, "model": type(model).__name__, "history": _history_fields(model)}
        atomic_write(self.out / FITTED_FILE, lambda fh: fh.write(json.dumps(marker).encode()))

    def _load(self, model: Recommender, train: Interactions) -> bool:
        assert self.resume is not None
        marker = read_marker(self.resume)
        if marker is None or marker.get("key") != self.key or marker.get("model") != type(model).__name__:
            return False
        load_state(model, self.resume, train)
        if marker.get("history"):
            from recbench.training.trainer import TrainHistory

            model.history_ = TrainHistory(**marker["history"])  # type: ignore[attr-defined]
        if isinstance(model, TorchRecommender):  # the settings the fit used
            model.trainer_ = model.effective_trainer()
            model.n_users_, model.n_items_ = train.n_users, train.n_items
        return True

    def clear(self) -> None:
        """Remove ``fitted.json`` (only needed to resume an unfinished run)."""
        if self.write:
            (self.out / FITTED_FILE).unlink(missing_ok=True)
