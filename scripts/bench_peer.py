"""Side by side with the ``implicit`` library on the same data, split and threads, in one run.

    pip install -e ".[peer]"
    python scripts/bench_peer.py [--shape 20m] [--threads 1] [--out outputs/bench_peer.csv]

The data is the split a ``recbench train`` run uses (composed config, loaded and split through the
pipeline, read from the cache); implicit is given the same training matrix (binary users x items CSR).
Tasks, each as an implicit row next to a recbench row (measured one after the other, so that both see
about the same machine load; the load average is recorded with every row):

- ALS, 64 factors, 15 iterations: implicit's ``AlternatingLeastSquares`` fit against ``model=als`` (its
  defaults: 64 factors, 15 iterations) through :func:`recbench.pipeline.run`.
- top-10 for every user with a history (history filtered): implicit's ``recommend`` on its ALS model
  against the evaluation of one part by recbench (full ranking, every default metric at k = 10, 20).
- BPR, seconds per epoch: implicit's ``BayesianPersonalizedRanking`` (64 factors) against ``model=bpr``
  with its default settings (batch 8,192, lazy row-wise Adam in its compiled CPU step), both for
  ``--bpr-epochs`` epochs (with ``--fit-only`` the CSV also gives recbench's mean epoch without its set-up).

``--repeats N`` measures every task N times, implicit and recbench in turn, so that a changing machine
load affects both about equally (each row records its repeat).
- item-item cosine KNN fit, K = 100: implicit's ``CosineRecommender`` against ``model=itemknn`` (k = 100).
"""

from __future__ import annotations

import os
import sys

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import logging  # noqa: E402
import re  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_scale import COMMON, shape_overrides, write_csv  # noqa: E402
from benchkit import compose_config, run_once  # noqa: E402

from recbench.config import build  # noqa: E402
from recbench.pipeline import load_dataset, make_folds  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def _row(task: str, library: str, seconds: float, cpu: float, per: str, **extra: Any) -> dict[str, Any]:
    row = {"task": task, "library": library, "seconds": seconds, "cpu_seconds": cpu, "per": per}
    row.update(load=os.getloadavg()[0], **extra)
    print(f"{task:36s} {library:9s} {seconds:9.2f} s (CPU {cpu:8.2f} s) {per}", flush=True)
    return row


class _Clock:
    """Wall and process CPU seconds of a ``with`` block (``.wall``, ``.cpu``)."""

    def __enter__(self) -> _Clock:
        self.start, self.start_cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self.start
        self.cpu = time.process_time() - self.start_cpu


class _PhaseCPU(logging.Handler):
    """Collects the pipeline's phase lines (``phase fit: 12.0 s (CPU 11.8 s)``): phase -> CPU s."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.cpu: dict[str, float] = {}

    def emit(self, record: logging.LogRecord) -> None:
        match = re.match(r"phase ([\w /]+): [\d.]+ s \(CPU ([\d.]+) s\)", record.getMessage())
        if match:
            self.cpu[match.group(1)] = float(match.group(2))


def implicit_rows(
    train: Any, threads: int, bpr_epochs: int, task: str, with_eval: bool
) -> list[dict[str, Any]]:
    """implicit's numbers for ``task`` (``als``, ``bpr`` or ``knn``) on the users x items matrix ``train``."""
    from implicit.cpu.als import AlternatingLeastSquares
    from implicit.cpu.bpr import BayesianPersonalizedRanking
    from implicit.nearest_neighbours import CosineRecommender

    rows = []
    if task == "als":
        model = AlternatingLeastSquares(factors=64, iterations=15, num_threads=threads, random_state=0)
        with _Clock() as c:
            model.fit(train, show_progress=False)
        rows.append(_row("ALS fit (64 factors, 15 iterations)", "implicit", c.wall, c.cpu, "fit"))
        if with_eval:
            users = np.flatnonzero(np.diff(train.indptr) > 0)
            with _Clock() as c:
                model.recommend(users, train[users], N=10, filter_already_liked_items=True)
            per = f"{len(users)} users (recommend, history filtered)"
            rows.append(_row("ALS top-10 for all users", "implicit", c.wall, c.cpu, per))
    elif task == "bpr":
        model = BayesianPersonalizedRanking(
            factors=64, iterations=bpr_epochs, num_threads=threads, random_state=0
        )
        with _Clock() as c:
            model.fit(train, show_progress=False)
        rows.append(_row("BPR epoch", "implicit", c.wall / bpr_epochs, c.cpu / bpr_epochs, "epoch"))
    else:
        model = CosineRecommender(K=100, num_threads=threads)
        with _Clock() as c:
            model.fit(train, show_progress=False)
        rows.append(_row("item-item cosine KNN fit (K=100)", "implicit", c.wall, c.cpu, "fit"))
    return rows


TASK_NAMES = {
    "als": "ALS fit (64 factors, 15 iterations)",
    "bpr": "BPR epoch",
    "knn": "item-item cosine KNN fit (K=100)",
}


def recbench_rows(
    base: tuple[str, ...], out_dir: Path, task: str, bpr_epochs: int, split: Any | None
) -> list[dict[str, Any]]:
    """recbench's numbers for ``task`` with the model's defaults: one :func:`recbench.pipeline.run`
    (fit and evaluation), or with ``split`` given only the model's ``fit`` on ``split.train`` (the
    model the pipeline builds, fitted as the pipeline fits it, without the evaluation)."""
    model = {"als": "als", "bpr": "bpr", "knn": "itemknn"}[task]
    extra = (f"trainer.epochs={bpr_epochs}",) if task == "bpr" else ()
    overrides = (*base, f"model={model}", *extra)
    command = "recbench train " + " ".join(overrides)
    per_epoch = bpr_epochs if task == "bpr" else 1
    unit = "epoch" if task == "bpr" else "fit"
    if split is not None:
        fitted = build(compose_config(overrides).model, "model")
        with _Clock() as c:
            fitted.fit(split.train)
        extra: dict[str, Any] = {"command": command}
        epochs = getattr(getattr(fitted, "history_", None), "rows", [])
        if task == "bpr" and epochs:  # the epochs alone, without the fit's set-up
            extra["epoch_seconds"] = float(np.mean([r["train_seconds"] for r in epochs]))
            extra["epoch_cpu_seconds"] = float(np.mean([r["train_cpu_seconds"] for r in epochs]))
        return [_row(TASK_NAMES[task], "recbench", c.wall / per_epoch, c.cpu / per_epoch, unit, **extra)]
    phases = _PhaseCPU()
    logger = logging.getLogger("recbench.pipeline")
    logger.addHandler(phases)
    logger.setLevel(logging.INFO)
    try:
        record, _, _ = run_once(overrides, out_dir / model)
    finally:
        logger.removeHandler(phases)
    t = record.timings
    ndcg = record.metrics.get("test/ndcg@10", float("nan"))
    fit = t["fit_s"] / per_epoch, phases.cpu.get("fit", float("nan")) / per_epoch
    if task == "bpr":
        unit = f"epoch (fit_s / {bpr_epochs}; no validation within {bpr_epochs} epochs)"
    rows = [_row(TASK_NAMES[task], "recbench", *fit, unit, command=command, ndcg=ndcg)]
    if task == "als":
        test = t["eval_test_s"], phases.cpu.get("eval test", float("nan"))
        per = "evaluation of one part (test: full ranking, all default metrics)"
        rows.append(_row("ALS top-10 for all users", "recbench", *test, per, command=command, ndcg=ndcg))
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shape", default="20m", help="data shape of scripts/bench_scale.py: 1m, 20m, 25m")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--bpr-epochs", type=int, default=3)
    p.add_argument("--tasks", default="als,bpr,knn")
    p.add_argument(
        "--fit-only", action="store_true", help="time the fits alone (no evaluation, no top-10 row)"
    )
    p.add_argument(
        "--repeats", type=int, default=1, help="measure each task N times, implicit and recbench in turn"
    )
    p.add_argument("--out", type=Path, default=REPO / "outputs" / "bench_peer.csv")
    args = p.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    base = (
        *shape_overrides(args.shape),
        *(c.replace("num_threads=1", f"num_threads={args.threads}") for c in COMMON),
        "seed=0",
    )
    cfg = compose_config(base)
    _, data, ids = load_dataset(cfg)
    _, folds = make_folds(cfg, data, ids)
    train = folds[0].train.binary_csr.astype(np.float32).tocsr()
    out_dir = args.out.parent / (args.out.stem + "_runs") / args.shape
    rows: list[dict[str, Any]] = []
    for repeat in range(1, args.repeats + 1):
        for task in args.tasks.split(","):
            rows += [
                {**r, "repeat": repeat}
                for r in implicit_rows(train, args.threads, args.bpr_epochs, task, not args.fit_only)
            ]
            write_csv(rows, args.out)
            split = folds[0] if args.fit_only else None
            rows += [
                {**r, "repeat": repeat} for r in recbench_rows(base, out_dir, task, args.bpr_epochs, split)
            ]
            write_csv(rows, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
