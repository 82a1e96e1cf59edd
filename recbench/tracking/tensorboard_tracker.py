"""``logger=tensorboard``: event files for ``tensorboard --logdir <save_dir>``.

A run writes to ``<save_dir>/<sweep or "runs">/<job>``, so a sweep is one sub-folder whose runs TensorBoard
shows side by side. Metrics are scalars (tags as recbench names them, ``test/ndcg@10``); the parameters
go to the HParams dashboard (with the final metrics) and, as a table, to the Text dashboard. TensorBoard
has no file store: attached text files (JSON, CSV, YAML, under 100 kB) are shown as text, others skipped.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from recbench.tracking.base import RunInfo, Tracker, require, safe_name

_TEXT_SUFFIXES = (".json", ".csv", ".yaml", ".yml", ".txt", ".log")
_TEXT_LIMIT = 100_000


class TensorBoardTracker(Tracker):
    """Write TensorBoard event files through ``torch.utils.tensorboard``.

    Parameters
    ----------
    save_dir : str
        Root log folder (what ``tensorboard --logdir`` is pointed at).
    run_name : str or None
        The run's name in the tracker; None: the job's overrides (``model=bpr,seed=1``).
    """

    def __init__(self, *, save_dir: str = "outputs/tensorboard", run_name: str | None = None) -> None:
        require("tensorboard", "tensorboard")
        self.save_dir = save_dir
        self.run_name = run_name
        self.writer: Any = None
        self.log_dir: Path | None = None
        self._params: dict[str, Any] = {}
        self._final: dict[str, float] = {}

    def start(self, run: RunInfo) -> None:
        """Open the event file writer of the run's folder."""
        run = run.renamed(self.run_name)
        from torch.utils.tensorboard import SummaryWriter

        self.log_dir = Path(self.save_dir) / safe_name(run.group or "runs") / run.folder
        self.writer = SummaryWriter(log_dir=str(self.log_dir))
        self._params = {f"tag.{k}": v for k, v in run.tags.items()}

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Keep the parameters; they are written with the final metrics when the run finishes."""
        self._params.update(params)

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        """One scalar per metric at ``step``."""
        for name, value in metrics.items():
            self.writer.add_scalar(name, float(value), step)
            if not name.startswith("train/"):
                self._final[name] = float(value)

    def log_artifact(self, path: Path) -> None:
        """Show a small text file on the Text dashboard (as a code block); other files are skipped."""
        path = Path(path)
        if path.suffix.lower() in _TEXT_SUFFIXES and path.stat().st_size <= _TEXT_LIMIT:
            body = path.read_text(encoding="utf-8", errors="replace")
            self.writer.add_text(f"artifacts/{path.name}", "    " + body.replace("\n", "\n    "))

    def finish(self, status: str) -> None:
        """Write the HParams summary (parameters against the final metrics) and the status; close."""
        from torch.utils.tensorboard.summary import hparams

        params = {k: v for k, v in self._params.items() if isinstance(v, bool | int | float | str)}
        params["status"] = status
        final = {k: v for k, v in self._final.items() if not k.startswith("time/")}
        writer = self.writer._get_file_writer()
        for summary in hparams(params, final):
            writer.add_summary(summary)
        table = "\n".join(f"| {k} | {v} |" for k, v in sorted(self._params.items()))
        self.writer.add_text("params", "| key | value |\n|---|---|\n" + table)
        self.writer.add_text("status", status)
        self.writer.close()
