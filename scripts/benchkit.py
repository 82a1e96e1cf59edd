"""The shared harness of ``scripts/bench_*.py``: every benchmark row is one ``recbench train`` run.

A benchmark lists :class:`Case` rows (a name, a protocol label and ``recbench train`` overrides).
:func:`run_case` composes the primary config with Hydra's compose API (exactly what ``recbench train
<overrides>`` composes), runs :func:`recbench.pipeline.run` into a run directory of its own, and adds only
what a benchmark needs on top: wall-clock and CPU seconds, repetition (the fastest of ``repeats``) and rows
for a CSV (:func:`write_csv`). The pipeline's own phase timings (``load_s``, ``split_s``, ``fit_s``,
``eval_s``) come with every row, and so does the command that reproduces it.

Everything runs on one thread: this module sets the BLAS thread variables before numpy is imported (import it
first), and :data:`ONE_THREAD` holds the overrides that pin torch to one CPU thread without a progress bar.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import csv  # noqa: E402
import logging  # noqa: E402
import shlex  # noqa: E402
import time  # noqa: E402
from collections.abc import Iterable, Sequence  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

from hydra import compose, initialize_config_dir  # noqa: E402

from recbench.config import config_dir  # noqa: E402
from recbench.pipeline import RunContext, run  # noqa: E402
from recbench.reporting.records import RunRecord  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
#: One CPU thread, no progress bar, no model files (benchmarks keep numbers, not models), always a fresh run.
ONE_THREAD = (
    "trainer.num_threads=1",
    "trainer.device=cpu",
    "trainer.progress=false",
    "save_model=false",
    "skip_finished=false",
)
#: The two per-user random holdouts of the README's single-model table.
HOLDOUT_80_10_10 = ("split=random",)
HOLDOUT_80_20 = ("split=random", "split.ratios=[0.8,0.2]")
#: 5-fold cross-validated rating prediction: each run fits and tests all five folds (test/rmse: their mean).
KFOLD_RATING = ("split=kfold", "split.folds=5", "eval=rating")
#: The top-k metrics the quality rows need (fewer metrics evaluate faster).
NDCG10 = ("eval.metrics=[ndcg]", "eval.ks=[10]")


@dataclass(frozen=True)
class Case:
    """One benchmark row: ``recbench train`` with ``overrides``, reported as (``name``, ``protocol``)."""

    name: str
    protocol: str
    overrides: tuple[str, ...]
    metrics: tuple[str, ...] = ("test/ndcg@10",)
    timing: str = (
        "total_s"  # the row's seconds: pipeline timings joined by "+" (e.g. "fit_s+eval_s"), or "wall"
    )
    repeat: bool = False  # a speed row: run it --repeats times and keep the fastest
    extra: dict[str, Any] = field(default_factory=dict)


def compose_config(overrides: Sequence[str]) -> Any:
    """The config ``recbench train <overrides>`` would run (primary config ``train``, shipped config dir)."""
    folder = config_dir()
    if folder.startswith("pkg://"):
        raise SystemExit("benchmarks run from a source checkout (configs/ next to recbench/)")
    with initialize_config_dir(version_base="1.3", config_dir=folder):
        return compose("train", overrides=list(overrides))


def run_once(overrides: Sequence[str], run_dir: Path) -> tuple[RunRecord, float, float]:
    """One pipeline run into ``run_dir``: ``(record, wall seconds, process CPU seconds)``."""
    cfg = compose_config(overrides)
    choices = {k: v for k, v in (o.split("=", 1) for o in overrides if "=" in o) if "." not in k}
    wall, cpu = time.perf_counter(), time.process_time()
    record = run(cfg, RunContext(run_dir, choices))
    return record, time.perf_counter() - wall, time.process_time() - cpu


def epochs_of(run_dir: Path) -> dict[str, Any]:
    """From a run's ``history.csv``: ``epochs`` run, ``best_epoch`` (by the first validation metric),
    ``epoch_s`` (the fastest epoch after the first, which pays for one-time set-up) and ``to_best_s``
    (training seconds up to the end of the best epoch)."""
    path = run_dir / "history.csv"
    rows: list[dict[str, str]] = []
    if path.is_file():
        with open(path, newline="") as fh:
            rows = list(csv.DictReader(fh))
    if not rows:
        return {"epochs": "", "best_epoch": "", "epoch_s": "", "to_best_s": ""}
    val = next((k for k in rows[0] if k.startswith("val/")), None)
    scored = [r for r in rows if val and r.get(val) not in ("", None)]
    lower = val is not None and val.split("/", 1)[1].split("@")[0] in ("rmse", "mae", "logloss")
    best = (min if lower else max)(scored, key=lambda r: float(r[val]))["epoch"] if scored else ""
    times = [float(r["seconds"]) for r in rows[1:] if r.get("seconds")] or [
        float(rows[0].get("seconds") or "nan")
    ]
    return {"epochs": rows[-1]["epoch"], "best_epoch": best, "epoch_s": min(times)}


def run_case(case: Case, *, seed: int, common: Sequence[str], out_dir: Path, repeats: int = 1) -> list[dict]:
    """Run ``case`` ``repeats`` times (the fastest run is kept) and return its CSV rows, one per metric.

    The run directories stay under ``out_dir`` (``<protocol>/<name>/seed<seed>-<repeat>``), so that
    ``recbench report`` can read them too.
    """
    overrides = (*common, *case.overrides, f"seed={seed}")
    best: tuple[RunRecord, float, float] | None = None
    epochs: dict[str, Any] = {}
    for rep in range(max(1, repeats)):
        run_dir = out_dir / case.protocol.replace("/", "_") / case.name / f"seed{seed}-{rep}"
        try:
            result = run_once(overrides, run_dir)
        except Exception as exc:  # the pipeline wrote a failed record; the benchmark goes on
            print(f"FAILED {case.name} {case.protocol}: {type(exc).__name__}: {exc}", flush=True)
            command = "recbench train " + " ".join(map(shlex.quote, overrides))
            return [
                {
                    "model": case.name,
                    "protocol": case.protocol,
                    "seed": seed,
                    "metric": "error",
                    "value": float("nan"),
                    "error": f"{type(exc).__name__}: {exc}",
                    "command": command,
                }
            ]
        stats = epochs_of(run_dir)
        if best is None or _seconds(case, result, stats) < _seconds(case, best, epochs):
            best, epochs = result, stats
    assert best is not None
    rows = [_row(case, seed, overrides, m, _value(best[0], m), best, epochs) for m in case.metrics]
    shown = ", ".join(f"{r['metric']}={r['value']:.4f}" for r in rows)
    print(f"{case.protocol:34s} {case.name:28s} {shown}  {rows[0]['seconds']:.2f}s", flush=True)
    return rows


def _value(record: RunRecord, metric: str) -> float:
    """A metric of the run, or with ``time/<phase>`` one of its pipeline timings (``time/load_s``)."""
    if metric.startswith("time/"):
        return float(record.timings.get(metric[len("time/") :], float("nan")))
    return float(record.metrics.get(metric, float("nan")))


def _seconds(case: Case, result: tuple[RunRecord, float, float], epochs: dict[str, Any]) -> float:
    """The row's seconds: the wall time, or the sum of the named pipeline timings (and ``epoch_s``)."""
    record, wall, _ = result
    if case.timing == "wall":
        return wall
    phases = {**record.timings, **{k: v for k, v in epochs.items() if isinstance(v, float)}}
    return float(sum(phases.get(key, 0.0) for key in case.timing.split("+")))


def _row(
    case: Case,
    seed: int,
    overrides: Sequence[str],
    metric: str,
    value: float,
    result: tuple[RunRecord, float, float],
    epochs: dict[str, Any],
) -> dict:
    record, wall, cpu = result
    timings = {k: round(float(v), 4) for k, v in record.timings.items()}
    return {
        "model": case.name,
        "protocol": case.protocol,
        "seed": seed,
        "metric": metric,
        "value": value,
        "seconds": _seconds(case, result, epochs),
        "wall_seconds": wall,
        "cpu_seconds": cpu,
        **epochs,
        **{k: timings.get(k, "") for k in ("load_s", "split_s", "fit_s", "eval_s", "total_s")},
        **{k: v for k, v in record.extra.get("dataset", {}).items() if k.startswith("n_")},
        **case.extra,
        "error": "",
        "command": "recbench train " + " ".join(map(shlex.quote, overrides)),
    }


def write_csv(rows: Iterable[dict], path: Path) -> None:
    """Write ``rows`` to ``path`` (floats with 6 significant digits); columns are the union, in order."""
    rows = list(rows)
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
    print(f"wrote {path}")


def check_targets(rows: Iterable[dict], targets: dict[tuple[str, str, str], tuple[str, float]]) -> None:
    """Print ``PASS``/``MISS`` for each row with a target ``(model, protocol, metric) -> (op, bound)``."""
    ops = {">=": float.__ge__, "<=": float.__le__, "<": float.__lt__}
    print("\ntargets:")
    for row in rows:
        key = (row["model"], row["protocol"], row["metric"])
        if key in targets:
            op, bound = targets[key]
            ok = ops[op](float(row["value"]), bound)
            print(f"  {'PASS' if ok else 'MISS'}  {' '.join(key)} = {row['value']:.4f} (target {op} {bound})")


def parser(doc: str, name: str) -> argparse.ArgumentParser:
    """Options of every benchmark: --out, --seeds, --repeats, --only, --dry-run and --data-dir."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=REPO / "outputs" / f"{name}.csv", help="the CSV written")
    p.add_argument(
        "--seeds", default="0", help="comma-separated seeds (split, models); every row runs per seed"
    )
    p.add_argument("--repeats", type=int, default=3, help="runs per speed row; the fastest is kept")
    p.add_argument(
        "--only", default="", help="comma-separated model names or protocols to run (default: all)"
    )
    p.add_argument("--dry-run", action="store_true", help="print each row's command, run nothing")
    p.add_argument("--data-dir", default=None, help="folder holding the datasets (default: paths.data_dir)")
    return p


def selected(cases: Iterable[Case], only: str) -> list[Case]:
    """The cases whose name or protocol is listed in ``only`` (all when it is empty)."""
    wanted = {w.strip() for w in only.split(",") if w.strip()}
    return [c for c in cases if not wanted or c.name in wanted or c.protocol in wanted]


def run_all(cases: Iterable[Case], args: argparse.Namespace, common: Sequence[str] = ()) -> list[dict]:
    """Run every selected case with the common overrides (one thread, the data dir); returns all rows."""
    logging.getLogger("recbench").setLevel(logging.WARNING)
    out_dir = args.out.parent / (args.out.stem + "_runs")
    out_dir.mkdir(parents=True, exist_ok=True)
    data_dir = () if args.data_dir is None else (f"paths.data_dir={args.data_dir}",)
    base = (*ONE_THREAD, *data_dir, *common)
    rows: list[dict] = []
    for seed in (int(s) for s in str(args.seeds).split(",")):
        for case in selected(cases, args.only):
            if args.dry_run:
                print(
                    "recbench train " + " ".join(map(shlex.quote, (*base, *case.overrides, f"seed={seed}")))
                )
                continue
            repeats = args.repeats if case.repeat else 1
            rows += run_case(case, seed=seed, common=base, out_dir=out_dir, repeats=repeats)
            write_csv(rows, args.out)  # after every row, so an interrupted benchmark keeps what it measured
    return rows
