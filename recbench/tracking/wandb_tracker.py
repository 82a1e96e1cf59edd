"""``logger=wandb``: Weights & Biases, offline by default (nothing leaves the machine).

An offline run is a folder ``<save_dir>/wandb/offline-run-<time>-<id>/`` (config, summary, the attached
files and the binary history) that ``wandb sync`` uploads later if the user wishes. A sweep is a W&B
``group``; each job is one run named by its overrides.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from recbench.tracking.base import RunInfo, Tracker, require


class WandbTracker(Tracker):
    """Log to W&B through ``wandb.init`` (one run object per tracker, never the global run).

    Parameters
    ----------
    project : str
        W&B project name.
    save_dir : str
        Folder that receives ``wandb/`` (the offline run folders); the default ``.`` keeps them out of
        ``outputs/``, where their copies of ``metrics.json`` would be read as runs by ``recbench report``.
    mode : str
        ``offline`` (default), ``online`` (needs ``wandb login`` or ``WANDB_API_KEY``) or ``disabled``.
    entity : str or None
        Team or user for online runs.
    tags : sequence of str, optional
        Extra tags on every run.
    run_name : str or None
        The run's name in the tracker; None: the job's overrides (``model=bpr,seed=1``).
    """

    def __init__(
        self,
        *,
        project: str = "recbench",
        save_dir: str = ".",
        mode: str = "offline",
        entity: str | None = None,
        tags: Sequence[str] | None = None,
        run_name: str | None = None,
    ) -> None:
        require("wandb", "wandb")
        self.project = project
        self.save_dir = save_dir
        self.mode = mode
        self.entity = entity
        self.tags = list(tags or [])
        self.run_name = run_name
        self.run: Any = None

    def start(self, run: RunInfo) -> None:
        """Create the (offline) run, grouped by the sweep."""
        run = run.renamed(self.run_name)
        import wandb

        Path(self.save_dir).mkdir(parents=True, exist_ok=True)
        self.run = wandb.init(
            project=self.project,
            entity=self.entity,
            dir=self.save_dir,
            mode=self.mode,
            group=run.group,
            name=run.name,
            job_type="train",
            tags=[*self.tags, *(f"{k}={v}" for k, v in run.tags.items())][:64],
            config={f"tag.{k}": v for k, v in run.tags.items()},
            reinit="create_new",
            settings=wandb.Settings(console="off", silent=True),
        )

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Add parameters to the run's config."""
        self.run.config.update(dict(params), allow_val_change=True)

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        """Log the values at ``step`` (the latest value of each also lands in the run summary)."""
        self.run.log(dict(metrics), step=step)

    def log_artifact(self, path: Path) -> None:
        """Keep a copy of the file with the run (``files/`` of the run folder)."""
        target = Path(self.run.dir) / Path(path).name
        shutil.copy2(path, target)
        self.run.save(str(target), base_path=str(self.run.dir), policy="now")

    def finish(self, status: str) -> None:
        """Close the run with exit code 0 (ok) or 1 (failed)."""
        self.run.finish(exit_code=0 if status == "ok" else 1)
