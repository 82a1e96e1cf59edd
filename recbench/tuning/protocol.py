"""``recbench tune``: the same trial budget for every model, validation selects, test is touched once.

For each model ``M`` of ``--models``:

1. **Search.** ``recbench train search=M_optuna`` (the Hydra Optuna sweeper with the search space
   shipped in ``configs/search/M_optuna.yaml``) runs until the study holds ``--trials`` used trials
   (finished or failed), with ``evaluate_test=false``: a trial fits on train, is scored on
   validation, and its test set is never scored. Every study lives in ``<out>/optuna.db``
   (SQLite); a rerun of the same command continues each study where it stopped (trials an
   interruption left running are marked failed and drawn again), in a new ``search/<k>/`` folder.
2. **Final runs.** The best trial (by the search config's ``optimized_metric``) is rerun with its
   exact overrides, once per ``--seeds`` value, with ``split_seed`` fixed to the search's seed, so
   every final run sees the same train/validation/test split as the search and only the model's
   randomness changes; these runs evaluate test. Finished final runs are skipped on a rerun.
3. **Report.** ``<out>/tuned.csv`` and ``tuned.md``: per model the trials used, the best
   validation value, the test metrics (mean and standard deviation over the seeds) and the chosen
   hyperparameters.

Each step is a ``python -m recbench train`` subprocess; this module only orders them and reads
their files (``metrics.json``, ``.hydra/overrides.yaml``) and the Optuna storage.
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from recbench.errors import ConfigError, RecbenchError
from recbench.files import atomic_write
from recbench.reporting.records import read_record
from recbench.tuning.storage import StudyState, sqlite_url, study_state

log = logging.getLogger(__name__)

#: Overrides of a trial that the final runs replace.
_REPLACED = ("seed", "evaluate_test", "split_seed")


def search_configs() -> dict[str, Path]:
    """``{model: configs/search/<model>_optuna.yaml}`` for every shipped search space."""
    from recbench.config import config_dir

    root = config_dir()
    if root.startswith("pkg://"):
        from importlib.resources import files

        base = Path(str(files("recbench._configs")))
    else:
        base = Path(root)
    return {p.stem[: -len("_optuna")]: p for p in sorted((base / "search").glob("*_optuna.yaml"))}


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """Options of ``recbench tune``; everything else is Hydra overrides for every run."""
    parser = argparse.ArgumentParser(
        prog="recbench tune",
        description="Equal-budget tuning: Optuna trials on validation per model, then the best config "
        "of each retrained on several seeds and evaluated on test once.",
        epilog="example: recbench tune --models bpr,ease,lightgcn --trials 20 dataset=ml-100k",
    )
    parser.add_argument(
        "--models", required=True, help="comma-separated model options, e.g. bpr,ease,lightgcn"
    )
    parser.add_argument("--trials", type=int, default=20, help="trials per model (default 20)")
    parser.add_argument("--seeds", default="1,2,3", help="seeds of the final runs (default 1,2,3)")
    parser.add_argument(
        "--split-seed", type=int, default=42, help="seed of the split and of the search (default 42)"
    )
    parser.add_argument(
        "--out", default="outputs/tune", help="folder of the studies and runs (default outputs/tune)"
    )
    parser.add_argument(
        "--metric",
        action="append",
        default=None,
        help="extra test metric for the report (repeatable; the optimised one is always shown)",
    )
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for every run, e.g. dataset=ml-100k")
    ns = parser.parse_args(list(argv))
    if ns.trials < 1:
        parser.error("--trials must be >= 1")
    try:
        ns.seed_list = [int(s) for s in ns.seeds.split(",") if s.strip()]
    except ValueError:
        parser.error(f"--seeds {ns.seeds!r} must be comma-separated integers, e.g. 1,2,3")
    if not ns.seed_list:
        parser.error("--seeds needs at least one seed")
    ns.model_list = [m.strip() for m in ns.models.split(",") if m.strip()]
    for item in ns.overrides:
        key = item.lstrip("+~").split("=", 1)[0]
        if "=" not in item or key in ("model", "search", *_REPLACED):
            parser.error(
                f"override {item!r}: give key=value overrides other than model, search, seed, split_seed "
                "and evaluate_test (use --models, --seeds and --split-seed)"
            )
    return ns


def tune_main(argv: Sequence[str]) -> int:
    """Entry point of ``recbench tune``; returns the exit status."""
    ns = parse_args(argv)
    available = search_configs()
    missing = [m for m in ns.model_list if m not in available]
    if missing:
        raise ConfigError(
            f"recbench tune: no search space for {', '.join(missing)} (configs/search/<model>_optuna.yaml). "
            f"Models with one: {', '.join(available)}. Add a search config for the model (copy one of "
            "those) or leave it out of --models."
        )
    out = Path(ns.out)
    out.mkdir(parents=True, exist_ok=True)
    url = sqlite_url(out.resolve() / "optuna.db")
    rows = []
    for model in ns.model_list:
        state = run_search(model, ns.trials, ns.split_seed, ns.overrides, out, url)
        trial_dir = best_trial_dir(out / model / "search", state)
        finals = run_finals(model, trial_dir, ns.seed_list, ns.split_seed, out)
        rows.append(summarise(model, state, trial_dir, finals, ns.trials, ns.metric or []))
    frame = pd.DataFrame(rows)
    atomic_write(out / "tuned.csv", lambda fh: frame.to_csv(fh, index=False))
    markdown = to_markdown(frame)
    atomic_write(out / "tuned.md", lambda fh: fh.write(markdown.encode()))
    print(markdown, end="")
    print(f"\nwrote {out / 'tuned.csv'} and {out / 'tuned.md'}")
    return 0


def _train(args: list[str]) -> None:
    """``python -m recbench train <args>`` in a subprocess; a failure names the command."""
    cmd = [sys.executable, "-m", "recbench", "train", *args]
    log.info("running %s", " ".join(cmd))
    proc = subprocess.run(cmd, check=False)
    if proc.returncode != 0:
        raise RecbenchError(
            f"recbench tune: the step `recbench train {' '.join(args)}` exited with status "
            f"{proc.returncode} (its output is above). Fix the cause and rerun the same tune command: "
            "finished trials and runs are kept."
        )


def run_search(
    model: str, trials: int, split_seed: int, overrides: list[str], out: Path, url: str
) -> StudyState:
    """Bring the model's study to ``trials`` used trials (resuming it if stored); its final state."""
    state = study_state(url, model, close_running=True)
    remaining = trials - state.used
    if remaining > 0:
        root = out / model / "search"
        attempt = sum(1 for p in root.glob("*") if p.is_dir()) if root.is_dir() else 0
        log.info("%s: %d of %d trials used; searching %d more", model, state.used, trials, remaining)
        _train(
            [
                f"search={model}_optuna",
                f"seed={split_seed}",
                "evaluate_test=false",
                f"hydra.sweeper.n_trials={remaining}",
                f"hydra.sweeper.storage={url}",
                f"hydra.sweeper.study_name={model}",
                f"hydra.sweep.dir={root / str(attempt)}",
                *overrides,
            ]
        )
        state = study_state(url, model)
    if state.best_number is None:
        raise RecbenchError(
            f"recbench tune: no trial of {model} finished ({state.failed} failed); see the trial folders "
            f"under {out / model / 'search'} (metrics.json says why) and rerun."
        )
    return state


def job_overrides(run_dir: Path) -> list[str]:
    """The task overrides Hydra recorded for a job (``.hydra/overrides.yaml``)."""
    path = run_dir / ".hydra" / "overrides.yaml"
    return [str(o) for o in yaml.safe_load(path.read_text()) or []]


def optimized_metric(run_dir: Path) -> str:
    """The ``optimized_metric`` of a job's config (``.hydra/config.yaml``)."""
    cfg = yaml.safe_load((run_dir / ".hydra" / "config.yaml").read_text()) or {}
    return str(cfg.get("optimized_metric") or "")


def best_trial_dir(search_root: Path, state: StudyState) -> Path:
    """The job folder of the study's best trial: a finished job whose overrides set its parameters.

    The sweeper writes each parameter as ``name=value`` with ``str(value)``; the trial is matched on
    those strings and on the value of its optimised metric.
    """
    wanted = {f"{k}={v}" for k, v in state.best_params.items()}
    for metrics in sorted(search_root.glob("*/*/metrics.json")):
        run_dir = metrics.parent
        if not (run_dir / ".hydra" / "overrides.yaml").is_file() or not wanted <= set(job_overrides(run_dir)):
            continue
        record = read_record(metrics)
        if record.status == "ok" and record.metrics.get(optimized_metric(run_dir)) == state.best_value:
            return run_dir
    raise RecbenchError(
        f"recbench tune: the best trial (#{state.best_number}, {sorted(wanted)}) has no job folder under "
        f"{search_root}; the study and the folders disagree (was the folder moved?). Delete the model's "
        "study or use a fresh --out."
    )


def run_finals(model: str, trial_dir: Path, seeds: list[int], split_seed: int, out: Path) -> list[Path]:
    """Rerun the trial's exact overrides once per seed (same split, test evaluated); the run folders."""
    keep = [o for o in job_overrides(trial_dir) if o.lstrip("+~").split("=", 1)[0] not in _REPLACED]
    dirs = []
    for seed in seeds:
        run_dir = out / model / "final" / f"seed{seed}"
        args = [*keep, f"seed={seed}", f"split_seed={split_seed}", "evaluate_test=true"]
        if not _finished(run_dir, args):
            _train([*args, "hydra.mode=RUN", f"hydra.run.dir={run_dir}"])
        dirs.append(run_dir)
    return dirs


def _finished(run_dir: Path, args: list[str]) -> bool:
    """Whether ``run_dir`` already holds an ok run made with exactly these overrides (a rerun skips it)."""
    try:
        return read_record(run_dir / "metrics.json").status == "ok" and job_overrides(run_dir) == args
    except (OSError, ValueError, RecbenchError):
        return False


def summarise(
    model: str, state: StudyState, trial_dir: Path, finals: list[Path], budget: int, extra: list[str]
) -> dict[str, Any]:
    """One report row: budget, best validation value, test metrics over the seeds, chosen parameters."""
    records = [read_record(d / "metrics.json") for d in finals]
    val_metric = optimized_metric(trial_dir)
    test_metrics = [val_metric.replace("val/", "test/", 1), *extra]
    row: dict[str, Any] = {
        "model": model,
        "trials": f"{state.used}/{budget}",
        "failed": state.failed,
        val_metric: state.best_value,
    }
    for name in test_metrics:
        values = pd.Series([r.metrics.get(name, float("nan")) for r in records], dtype=float)
        row[name] = values.mean()
        row[f"{name}_std"] = values.std(ddof=1) if len(values) > 1 else 0.0
    row["seeds"] = len(records)
    row["params"] = json.dumps(state.best_params, sort_keys=True)
    return row


def to_markdown(frame: pd.DataFrame) -> str:
    """The report as a Markdown table (mean ± std for the test metrics)."""
    metrics = [c for c in frame.columns if c.startswith("test/") and not c.endswith("_std")]
    vals = [c for c in frame.columns if c.startswith("val/")]
    header = ["model", "trials", "failed", *(f"best {v}" for v in vals), *metrics, "params"]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    for _, row in frame.iterrows():
        cells = [str(row["model"]), str(row["trials"]), str(row["failed"])]
        cells += [_num(row[v]) for v in vals]
        cells += [f"{_num(row[m])} ± {_num(row[m + '_std'])}" for m in metrics]
        params = json.loads(row["params"])
        cells.append(", ".join(f"{k}={_short(v)}" for k, v in params.items()))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _num(value: Any) -> str:
    return "" if value is None or pd.isna(value) else f"{float(value):.4f}"


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
