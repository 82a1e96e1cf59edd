"""Hydra callback that gathers the jobs of a sweep into one ``summary.csv``.

Registered in ``configs/hydra/default.yaml`` under ``hydra.callbacks.aggregate``. It reads the jobs'
``metrics.json`` files with :func:`recbench.reporting.records.read_runs` (the same reader as
``recbench report``), so it works the same for every launcher and sweeper. Hydra's basic sweeper skips
``on_multirun_end`` when a job raises; ``recbench report <sweep_dir> --out summary.csv`` rebuilds the file.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from recbench.reporting.records import atomic_write_text, read_runs

log = logging.getLogger(__name__)


class AggregateSweep(Callback):
    """Write ``<sweep dir>/<filename>`` with one row per job (failed jobs included, with their error).

    Parameters
    ----------
    filename : str
        Name of the summary file inside the sweep folder.
    """

    def __init__(self, filename: str = "summary.csv") -> None:
        self.filename = filename

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        """Read every job's ``metrics.json`` under ``config.hydra.sweep.dir`` and write the summary."""
        sweep_dir = Path(str(config.hydra.sweep.dir))
        runs = read_runs([sweep_dir])
        if runs.empty:
            log.warning("no metrics.json under %s; %s not written", sweep_dir, self.filename)
            return
        out = sweep_dir / self.filename
        atomic_write_text(out, runs.to_csv(index=False))
        n_failed = int((runs["status"] != "ok").sum())
        log.info("wrote %s (%d runs, %d failed)", out, len(runs), n_failed)
