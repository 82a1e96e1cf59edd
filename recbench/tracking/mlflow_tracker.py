"""``logger=mlflow``: runs in an MLflow tracking store (default: a local SQLite file).

Each run is an MLflow run in ``experiment_name``. A sweep gets one parent run (named after the sweep,
created by its first job, found by the others through a small file in the sweep folder) under which
every job is a nested child, and each job carries the tag ``sweep``; so ``mlflow ui`` shows a sweep as
one expandable group. Names are mapped by :func:`mlflow_key` (MLflow refuses ``@``).
"""

from __future__ import annotations

import hashlib
import os
import re
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from filelock import FileLock

from recbench.tracking.base import RunInfo, Tracker, require

_NOT_ALLOWED = re.compile(r"[^\w\-. /]")
_BATCH = 100  # MLflow's limit of parameters per log_batch call
_PARAM_LIMIT = 6000  # longest parameter value MLflow stores


def mlflow_key(name: str) -> str:
    """The MLflow name of a recbench metric or parameter name.

    MLflow allows letters, digits, ``_``, ``-``, ``.``, space and ``/`` in names. ``@k`` becomes ``_at_k``
    (``test/ndcg@10`` -> ``test/ndcg_at_10``, ``val/recall@20_sampled100`` ->
    ``val/recall_at_20_sampled100``); any other character outside that set becomes ``_``. Names are
    otherwise kept, so ``/`` still groups them (``train/``, ``val/``, ``test/``, ``time/``).
    """
    return _NOT_ALLOWED.sub("_", name.replace("@", "_at_"))


class MLflowTracker(Tracker):
    """Log to MLflow through ``MlflowClient`` (no global active-run state).

    Parameters
    ----------
    tracking_uri : str
        Store URI: ``sqlite:///mlruns/mlflow.db`` (default, relative to the working directory; kept out
        of ``outputs/``, where the stored copies of ``metrics.json`` would be read as runs by
        ``recbench report``), a folder, or a server ``http://host:5000``.
    experiment_name : str
        Experiment the runs go to (created when missing).
    artifact_location : str or None
        Where a new experiment keeps its files; None: ``artifacts/`` next to a SQLite store (MLflow's
        own default otherwise).
    tags : mapping, optional
        Extra tags on every run.
    http_timeout, http_retries : int
        Seconds per request and retries for a server store (``MLFLOW_HTTP_REQUEST_TIMEOUT`` /
        ``MLFLOW_HTTP_REQUEST_MAX_RETRIES`` in the environment win): an unreachable server costs at most
        about ``(retries + 1) * timeout`` seconds per call before the tracker is switched off.
    run_name : str or None
        The run's name in the tracker; None: the job's overrides (``model=bpr,seed=1``).
    """

    def __init__(
        self,
        *,
        tracking_uri: str = "sqlite:///mlruns/mlflow.db",
        experiment_name: str = "recbench",
        artifact_location: str | None = None,
        tags: Mapping[str, str] | None = None,
        http_timeout: int = 10,
        http_retries: int = 1,
        run_name: str | None = None,
    ) -> None:
        require("mlflow", "mlflow")
        self.tracking_uri = tracking_uri
        self.experiment_name = experiment_name
        self.artifact_location = artifact_location
        self.tags = dict(tags or {})
        self.http_timeout = http_timeout
        self.http_retries = http_retries
        self.run_name = run_name
        self.client: Any = None
        self.run_id: str | None = None

    def start(self, run: RunInfo) -> None:
        """Connect, find or create the experiment (and the sweep's parent run), create the run."""
        run = run.renamed(self.run_name)
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(self.http_timeout))
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", str(self.http_retries))
        from mlflow.tracking import MlflowClient

        self.client = MlflowClient(tracking_uri=self._prepared_uri())
        experiment_id = self._experiment_id()
        tags = {**self.tags, **run.tags}
        if run.group is not None:
            tags["sweep"] = run.group
            if run.group_dir is not None:
                tags["mlflow.parentRunId"] = self._parent_run(experiment_id, run)
        created = self.client.create_run(experiment_id, run_name=run.name, tags=tags)
        self.run_id = created.info.run_id

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Log parameters in batches (names through :func:`mlflow_key`, long values cut)."""
        from mlflow.entities import Param

        items = [Param(mlflow_key(k), str(v)[:_PARAM_LIMIT]) for k, v in params.items()]
        for i in range(0, len(items), _BATCH):
            self.client.log_batch(self.run_id, params=items[i : i + _BATCH])

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        """Log metric values at ``step`` in one batch."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(mlflow_key(k), float(v), now, step) for k, v in metrics.items()]
        for i in range(0, len(items), 1000):
            self.client.log_batch(self.run_id, metrics=items[i : i + 1000])

    def log_artifact(self, path: Path) -> None:
        """Upload ``path`` to the run's artifact store."""
        self.client.log_artifact(self.run_id, str(path))

    def finish(self, status: str) -> None:
        """Mark the run FINISHED (status ok) or FAILED."""
        self.client.set_terminated(self.run_id, status="FINISHED" if status == "ok" else "FAILED")

    def _prepared_uri(self) -> str:
        """The tracking URI, with the folder of a SQLite file created first."""
        uri = self.tracking_uri
        if uri.startswith("sqlite:///"):
            Path(uri[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
        return uri

    def _experiment_id(self) -> str:
        found = self.client.get_experiment_by_name(self.experiment_name)
        if found is not None:
            return str(found.experiment_id)
        location = self.artifact_location
        if location is None and self.tracking_uri.startswith("sqlite:///"):
            db = Path(self.tracking_uri[len("sqlite:///") :]).resolve()
            location = (db.parent / "artifacts").as_uri()
        try:
            return str(self.client.create_experiment(self.experiment_name, artifact_location=location))
        except Exception:  # another job of a parallel sweep created it first
            found = self.client.get_experiment_by_name(self.experiment_name)
            if found is None:
                raise
            return str(found.experiment_id)

    def _parent_run(self, experiment_id: str, run: RunInfo) -> str:
        """The id of the sweep's parent run; the first job creates it, under a lock in the sweep folder."""
        assert run.group_dir is not None
        ident = hashlib.sha256(f"{self.tracking_uri}|{experiment_id}".encode()).hexdigest()[:12]
        id_file = Path(run.group_dir) / f".mlflow_parent_{ident}"
        with FileLock(str(id_file) + ".lock", timeout=60):
            if id_file.is_file():
                return id_file.read_text(encoding="utf-8").strip()
            parent = self.client.create_run(
                experiment_id, run_name=run.group, tags={**self.tags, "sweep": str(run.group)}
            )
            parent_id = str(parent.info.run_id)
            self.client.set_terminated(parent_id, status="FINISHED")
            id_file.write_text(parent_id + "\n", encoding="utf-8")
            return parent_id
