"""``logger=csv``: plain files, no dependency. One folder per run:

- ``params.csv`` (``key,value``), rewritten whenever parameters are added;
- ``metrics.csv`` in long form (``step,name,value,time``), appended and flushed per call;
- ``artifacts.csv``: the attached files (path, bytes, sha256). They are listed, not copied: they already
  lie in the run folder, and a second ``metrics.json`` below it would be a second run to ``recbench report``;
- ``status.json`` once the run is closed.
"""

from __future__ import annotations

import csv
import hashlib
import json
import time
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from recbench.tracking.base import RunInfo, Tracker, safe_name


class CSVTracker(Tracker):
    """Write parameters and metrics as CSV files.

    Parameters
    ----------
    save_dir : str or None
        Root folder; a run writes into ``<save_dir>/<sweep or "runs">/<job>``. None (default): into the
        run's own folder, under ``csv/``.
    run_name : str or None
        The run's name in the tracker; None: the job's overrides (``model=bpr,seed=1``).
    """

    def __init__(self, *, save_dir: str | None = None, run_name: str | None = None) -> None:
        self.save_dir = save_dir
        self.run_name = run_name
        self.dir: Path | None = None
        self._params: dict[str, Any] = {}

    def start(self, run: RunInfo) -> None:
        """Create the run's folder and the header of ``metrics.csv``."""
        run = run.renamed(self.run_name)
        if self.save_dir is None:
            self.dir = Path(run.run_dir) / "csv"
        else:
            self.dir = Path(self.save_dir) / safe_name(run.group or "runs") / run.folder
        self.dir.mkdir(parents=True, exist_ok=True)
        with open(self.dir / "metrics.csv", "w", newline="", encoding="utf-8") as fh:
            csv.writer(fh).writerow(["step", "name", "value", "time"])
        self._params = {f"tag.{k}": v for k, v in run.tags.items()}
        self._write_params()

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Merge ``params`` into ``params.csv``."""
        self._params.update(params)
        self._write_params()

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        """Append one row per metric to ``metrics.csv``."""
        now = time.time()
        with open(self._folder() / "metrics.csv", "a", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            for name, value in metrics.items():
                writer.writerow([step, name, repr(float(value)), f"{now:.3f}"])

    def log_artifact(self, path: Path) -> None:
        """Add ``path`` (absolute), its size and SHA-256 to ``artifacts.csv``."""
        path = Path(path).resolve()
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        manifest = self._folder() / "artifacts.csv"
        new = not manifest.exists()
        with open(manifest, "a", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            if new:
                writer.writerow(["path", "bytes", "sha256"])
            writer.writerow([str(path), path.stat().st_size, digest])

    def finish(self, status: str) -> None:
        """Write ``status.json`` with the status and the finishing time."""
        finished = datetime.now(timezone.utc).isoformat(timespec="seconds")
        text = json.dumps({"status": status, "finished_at": finished}) + "\n"
        (self._folder() / "status.json").write_text(text, encoding="utf-8")

    def _folder(self) -> Path:
        if self.dir is None:
            raise RuntimeError("CSVTracker used before start()")
        return self.dir

    def _write_params(self) -> None:
        with open(self._folder() / "params.csv", "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(["key", "value"])
            for key in sorted(self._params):
                writer.writerow([key, self._params[key]])
