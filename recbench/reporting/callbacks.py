"""Hydra callback that gathers the jobs of a sweep into one ``summary.csv`` (and ``best.json``).

Registered in ``configs/hydra/default.yaml`` under ``hydra.callbacks.aggregate``. It reads the jobs'
``metrics.json`` files with :func:`recbench.reporting.records.read_runs` (the same reader as
``recbench report``), so it works the same for every launcher and sweeper. Hydra's basic sweeper skips
``on_multirun_end`` when a job raises; ``recbench report <sweep_dir> --out summary.csv`` rebuilds the file.

When the sweep config sets ``optimized_metric`` (a search such as ``search=bpr_optuna``, or any
``-m ... optimized_metric=val/ndcg@10``), the callback also writes ``best.json``: the best finished job by
that metric, its overrides, parameters and test metrics.
"""

from __future__ import annotations

import json
import logging
import math
import re
from pathlib import Path
from typing import Any

import pandas as pd
import yaml
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from recbench.evaluation.metrics import LOWER_IS_BETTER
from recbench.reporting.records import METRICS_FILE, atomic_write_text, read_record, read_runs
from recbench.serialization import jsonable

log = logging.getLogger(__name__)


class AggregateSweep(Callback):
    """Write ``<sweep dir>/<filename>`` with one row per job (failed jobs included, with their error).

    Parameters
    ----------
    filename : str
        Name of the summary file inside the sweep folder.
    best_filename : str
        Name of the best-job file written when the sweep config sets ``optimized_metric``.
    """

    def __init__(self, filename: str = "summary.csv", best_filename: str = "best.json") -> None:
        self.filename = filename
        self.best_filename = best_filename

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
        metric = OmegaConf.select(config, "optimized_metric", default=None)
        if metric:
            direction = sweep_direction(config, str(metric))
            best = best_run(runs, str(metric), direction)
            if best is None:
                log.warning("no finished job reports %s; %s not written", metric, self.best_filename)
                return
            atomic_write_text(sweep_dir / self.best_filename, json.dumps(best, indent=2) + "\n")
            log.info("best job by %s (%s): %s = %.6g", metric, direction, best["run_dir"], best["value"])


class PrepareOptunaStorage(Callback):
    """Before a sweep starts, make a ``sqlite:///`` ``hydra.sweeper.storage`` ready for Optuna 2.x.

    See :func:`recbench.tuning.storage.prepare_sqlite` (Optuna 2.10 cannot create the file under
    SQLAlchemy 2). Other storages, and sweeps without one, are left alone.
    """

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        """Prepare the sweeper's SQLite storage, if it has one."""
        url = OmegaConf.select(config, "hydra.sweeper.storage", default=None)
        if isinstance(url, str) and url.startswith("sqlite:///"):
            from recbench.tuning.storage import prepare_sqlite

            prepare_sqlite(url)


def infer_direction(metric: str) -> str:
    """``"minimize"`` for error metrics (``val/rmse``, ``test/mae``, ``fold0/val/rmse``), else ``"maximize"``.

    The name is the part after the last ``/`` and before ``@k`` or a ``_`` suffix (``ndcg@10_sampled100``).
    """
    name = metric.rsplit("/", 1)[-1]
    base = re.split(r"[@_]", name, maxsplit=1)[0].lower()
    return "minimize" if base in LOWER_IS_BETTER else "maximize"


def sweep_direction(config: DictConfig, metric: str) -> str:
    """The sweeper's ``direction`` (Optuna) when it names one, else :func:`infer_direction`.

    A disagreement between the two is logged: the sweeper then optimised the metric the wrong way.
    """
    inferred = infer_direction(metric)
    raw = OmegaConf.select(config, "hydra.sweeper.direction", default=None)
    if raw is None or OmegaConf.is_list(raw) or isinstance(raw, (list, tuple)):
        return inferred
    direction = str(getattr(raw, "name", raw)).rsplit(".", 1)[-1].lower()
    if direction not in ("minimize", "maximize"):
        return inferred
    if direction != inferred:
        log.warning(
            "hydra.sweeper.direction=%s for optimized_metric=%s, which usually wants %s; "
            "check the search config",
            direction,
            metric,
            inferred,
        )
    return direction


def best_run(runs: pd.DataFrame, metric: str, direction: str) -> dict[str, Any] | None:
    """The best finished run of a :func:`read_runs` frame by ``metric``, as a JSON-ready dict.

    Runs that failed or lack a finite value of ``metric`` are ignored; ties go to the first job in
    natural folder order. Returns None when no run qualifies.

    The dict holds ``metric``, ``direction``, ``value``, ``run_dir``, ``job`` (the folder name),
    ``overrides`` (the job's ``.hydra/overrides.yaml``, empty when absent), ``choices``, ``params``,
    ``seed``, ``test_metrics`` (every ``test/...`` key), ``val_metrics``, and ``n_runs``/``n_ranked``.
    """
    if metric not in runs.columns:
        return None
    values = pd.to_numeric(runs[metric], errors="coerce")
    ok = (runs["status"] == "ok") & values.notna() & values.map(lambda v: math.isfinite(v))
    if not ok.any():
        return None
    ranked = values[ok]
    pos = ranked.idxmin() if direction == "minimize" else ranked.idxmax()
    run_dir = Path(str(runs.loc[pos, "run_dir"]))
    record = read_record(run_dir / METRICS_FILE)
    return jsonable(
        {
            "metric": metric,
            "direction": direction,
            "value": float(ranked[pos]),
            "run_dir": str(run_dir),
            "job": run_dir.name,
            "overrides": _job_overrides(run_dir),
            "choices": record.choices,
            "params": record.params,
            "seed": record.seed,
            "test_metrics": {k: v for k, v in record.metrics.items() if k.startswith("test/")},
            "val_metrics": {k: v for k, v in record.metrics.items() if k.startswith("val/")},
            "n_runs": len(runs),
            "n_ranked": int(ok.sum()),
        }
    )


def _job_overrides(run_dir: Path) -> list[str]:
    """The command-line overrides Hydra recorded for a job (``.hydra/overrides.yaml``)."""
    path = run_dir / ".hydra" / "overrides.yaml"
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return []
    return [str(o) for o in data] if isinstance(data, list) else []
