"""The one place the pipeline and the Trainer talk to trackers; a failing tracker never fails the run."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from recbench.tracking.base import RunInfo, Tracker, text_value

log = logging.getLogger(__name__)

#: Names of the columns of a Trainer epoch row as trackers see them (other columns keep their name).
EPOCH_NAMES = {
    "loss": "train/loss",
    "seconds": "train/epoch_s",
    "train_seconds": "train/batches_s",
    "train_cpu_seconds": "train/batches_cpu_s",
}


class TrackingHook:
    """Fans every call out to the configured trackers, each one guarded.

    A tracker that raises is named in a warning (with the error) and not called again for this run;
    the run goes on and its files are written as usual.

    Parameters
    ----------
    trackers : mapping of name to Tracker
        The built ``logger`` config entries (empty: every call does nothing).
    """

    def __init__(self, trackers: Mapping[str, Tracker]) -> None:
        self.trackers = dict(trackers)
        self.failed: dict[str, str] = {}
        self._step = 0
        self._offset = 0
        self._last_epoch = 0

    def __bool__(self) -> bool:
        return bool(self.trackers)

    def _call(self, method: str, *args: Any) -> None:
        for name, tracker in list(self.trackers.items()):
            try:
                getattr(tracker, method)(*args)
            except Exception as exc:
                self.failed[name] = f"{type(exc).__name__}: {exc}"
                del self.trackers[name]
                log.warning(
                    "logger %s failed in %s (%s); the run goes on without it and its results are still "
                    "written to the run folder",
                    name,
                    method,
                    self.failed[name],
                )

    def start(self, run: RunInfo, params: Mapping[str, Any]) -> None:
        """Open the tracked run and record the configured parameters."""
        self._call("start", run)
        self.log_params(params)

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Record more parameters (e.g. training settings that came from the model's defaults)."""
        if params:
            self._call("log_params", {str(k): text_value(v) for k, v in params.items()})

    def epoch(self, row: Mapping[str, float]) -> None:
        """One Trainer epoch row (``epoch``, ``loss``, ``val/ndcg@10``, ``seconds``), logged at its epoch.

        Epoch numbers restart with every fold of a k-fold run; steps keep counting up across folds.
        """
        epoch = int(row.get("epoch", self._last_epoch + 1))
        if epoch <= self._last_epoch:
            self._offset = self._step
        self._last_epoch = epoch
        self._step = self._offset + epoch
        values = {EPOCH_NAMES.get(k, k): float(v) for k, v in row.items() if k != "epoch"}
        self._call("log_metrics", values, self._step)

    def finish(
        self,
        status: str,
        metrics: Mapping[str, float],
        timings: Mapping[str, float],
        artifacts: Sequence[Path] = (),
    ) -> None:
        """Log the final metrics and timings (at the last epoch's step), attach files, close the run."""
        values = {k: float(v) for k, v in metrics.items() if isinstance(v, int | float)}
        values.update({f"time/{k}": float(v) for k, v in timings.items()})
        if values:
            self._call("log_metrics", values, self._step)
        for path in artifacts:
            if Path(path).is_file():
                self._call("log_artifact", Path(path))
        self._call("finish", status)
