"""Benchmark the sequential recommenders and write one CSV of quality and speed numbers.

    python scripts/bench_sequential.py [--out outputs/bench_sequential.csv] [--models sasrec,gru4rec,...]
                                       [--datasets ml-100k,beauty] [--patience N] [--seeds 0,1,2]
                                       [--update]

Everything runs on one thread with project code only: ``MovieLens`` / ``SequenceFile`` load the shared
copies, ``LeaveOneOut`` splits them (last item test, second-to-last validation), every model uses its
defaults (its ``training_defaults``, including its early-stopping patience unless ``--patience`` is
given) with early stopping on validation NDCG@10, and ``evaluate`` ranks
all items with the history's items masked. Test scoring uses train + validation as history.

Rows of the CSV: ``model, dataset, seed, metric, value, seconds, cpu_seconds`` where

- ``ndcg@10``, ``hit@10`` (test) and ``val_ndcg@10`` (best validation value) carry the whole run's
  wall-clock ``seconds`` (fit + test evaluation; for ``beauty`` also loading and splitting);
- ``seconds_to_best`` is the training time up to the end of the best epoch (value = seconds);
- ``best_epoch`` / ``epochs`` are counts.

The Beauty run uses the same defaults plus an epoch budget (``--beauty-epochs``, default 12) as a safety
net, so that loading, training and full-ranking evaluation fit in 10 minutes on one CPU thread (about
20-30 s per SASRec epoch, depending on the machine); with SASRec's defaults it peaks around epoch 7-11
and the budget ends the run at epoch 12 (Beauty has no timestamps, so ``shuffle_ties`` changes nothing
there). On ml-100k the models' own epoch limits apply.

``cpu_seconds`` is process CPU time: on one thread it is what the wall time would be on an idle core,
which matters on shared machines. With several ``--seeds`` every ml-100k run is repeated per seed (the
Beauty run only for the first); targets are then judged on the mean over seeds, and the per-seed
SASRec-vs-Caser wins are printed too. Targets are printed at the end (``PASS`` / ``MISS``).
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import csv  # noqa: E402
import logging  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402

from recbench.data.sources import MovieLens, SequenceFile  # noqa: E402
from recbench.data.splits import LeaveOneOut, Split  # noqa: E402
from recbench.evaluation.evaluator import EvalSpec, evaluate  # noqa: E402
from recbench.models.base import Recommender  # noqa: E402
from recbench.models.baselines import Popularity  # noqa: E402
from recbench.models.sequential.bert4rec import BERT4Rec  # noqa: E402
from recbench.models.sequential.caser import Caser  # noqa: E402
from recbench.models.sequential.gru4rec import GRU4Rec  # noqa: E402
from recbench.models.sequential.nextitnet import NextItNet  # noqa: E402
from recbench.models.sequential.sasrec import SASRec  # noqa: E402
from recbench.training.trainer import EarlyStopping, Trainer  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "datasets"
SPEC = EvalSpec(metrics=("ndcg", "hit"), ks=(10,))
MODELS: dict[str, Callable[[Trainer, int], Recommender]] = {
    "pop": lambda trainer, seed: Popularity(),
    "gru4rec": lambda trainer, seed: GRU4Rec(trainer=trainer, seed=seed),
    "caser": lambda trainer, seed: Caser(trainer=trainer, seed=seed),
    "nextitnet": lambda trainer, seed: NextItNet(trainer=trainer, seed=seed),
    "sasrec": lambda trainer, seed: SASRec(trainer=trainer, seed=seed),
    "bert4rec": lambda trainer, seed: BERT4Rec(trainer=trainer, seed=seed),
}
DATASETS: dict[str, Callable[[Path], MovieLens | SequenceFile]] = {
    "ml-100k": lambda root: MovieLens(variant="ml-100k", path=root / "ml-100k", download=False),
    "beauty": lambda root: SequenceFile(path=root / "amazon" / "Beauty.txt"),
}
#: (dataset, model) pairs measured by default: all models on ml-100k, SASRec on Beauty.
DEFAULT_RUNS = [("ml-100k", m) for m in MODELS] + [("beauty", "sasrec")]


class Clock:
    """Wall and process CPU time since creation."""

    def __init__(self) -> None:
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def read(self) -> tuple[float, float]:
        return time.perf_counter() - self.wall, time.process_time() - self.cpu


def load_split(name: str, root: Path, seed: int) -> tuple[Split, float, float]:
    clock = Clock()
    data, _ = DATASETS[name](root).load()
    split = LeaveOneOut()(data, seed=seed)
    return (split, *clock.read())


def run_one(
    model_name: str,
    dataset: str,
    split: Split,
    patience: int | None,
    seed: int,
    setup: tuple[float, float],
    epochs: int | None = None,
) -> list[dict[str, object]]:
    trainer = Trainer(
        epochs=epochs,
        early_stopping=EarlyStopping(metric="ndcg@10", patience=patience),
        num_threads=1,
        progress=False,
    )
    model = MODELS[model_name](trainer, seed)
    clock = Clock()
    model.fit(split.train, split.val)
    fit_wall, fit_cpu = clock.read()
    test = evaluate(model, split.test, split.test_history, SPEC).metrics
    wall, cpu = clock.read()
    wall, cpu = wall + setup[0], cpu + setup[1]
    rows: list[dict[str, object]] = [
        {"metric": "ndcg@10", "value": test["ndcg@10"], "seconds": wall, "cpu_seconds": cpu},
        {"metric": "hit@10", "value": test["hit@10"], "seconds": wall, "cpu_seconds": cpu},
    ]
    history = getattr(model, "history_", None)
    if history is not None and history.best_epoch is not None:
        best = history.rows[: history.best_epoch]
        to_best = sum(r["seconds"] for r in best)
        share = to_best / max(sum(r["seconds"] for r in history.rows), 1e-9)
        rows += [
            {"metric": "val_ndcg@10", "value": history.best_value, "seconds": wall, "cpu_seconds": cpu},
            {
                "metric": "seconds_to_best",
                "value": to_best,
                "seconds": to_best,
                "cpu_seconds": fit_cpu * share,
            },
            {
                "metric": "best_epoch",
                "value": history.best_epoch,
                "seconds": fit_wall,
                "cpu_seconds": fit_cpu,
            },
            {"metric": "epochs", "value": len(history.rows), "seconds": fit_wall, "cpu_seconds": fit_cpu},
        ]
    for row in rows:
        row.update(model=model_name, dataset=dataset, seed=seed)
    return rows


def check_targets(rows: list[dict[str, object]]) -> list[str]:
    def values(model: str, dataset: str, metric: str, key: str = "value") -> dict[int, float]:
        return {
            int(r.get("seed") or 0): float(r[key])  # type: ignore[arg-type]
            for r in rows
            if (r["model"], r["dataset"], r["metric"]) == (model, dataset, metric)
        }

    def get(model: str, dataset: str, metric: str, key: str = "value") -> float | None:
        found = values(model, dataset, metric, key)
        return sum(found.values()) / len(found) if found else None

    lines = []
    pop = get("pop", "ml-100k", "ndcg@10")
    for model in ("gru4rec", "caser", "nextitnet", "sasrec", "bert4rec"):
        value = get(model, "ml-100k", "ndcg@10")
        if value is not None and pop is not None:
            ok = value > 1.5 * pop
            lines.append(
                f"{'PASS' if ok else 'MISS'} ml-100k {model} ndcg@10 {value:.4f} > 1.5 x pop {pop:.4f}"
            )
    sas = get("sasrec", "ml-100k", "ndcg@10")
    per_seed = values("sasrec", "ml-100k", "ndcg@10")
    for other in ("gru4rec", "caser"):
        value = get(other, "ml-100k", "ndcg@10")
        if sas is not None and value is not None:
            theirs = values(other, "ml-100k", "ndcg@10")
            wins = sum(per_seed[s] > theirs[s] for s in per_seed.keys() & theirs.keys())
            lines.append(
                f"{'PASS' if sas > value else 'MISS'} ml-100k sasrec {sas:.4f} > {other} {value:.4f}"
                f" (mean over seeds; sasrec ahead on {wins} of {len(per_seed.keys() & theirs.keys())})"
            )
    for model in ("sasrec", "gru4rec"):
        wall = get(model, "ml-100k", "seconds_to_best")
        cpu = get(model, "ml-100k", "seconds_to_best", "cpu_seconds")
        if wall is not None and cpu is not None:
            verdict = "PASS" if wall < 60 else ("PASS (cpu)" if cpu < 60 else "MISS")
            lines.append(f"{verdict} ml-100k {model} to best epoch: {wall:.1f} s wall, {cpu:.1f} s cpu < 60")
    beauty = get("sasrec", "beauty", "ndcg@10", "seconds")
    if beauty is not None:
        cpu = get("sasrec", "beauty", "ndcg@10", "cpu_seconds") or 0.0
        verdict = "PASS" if beauty < 600 else ("PASS (cpu)" if cpu < 600 else "MISS")
        lines.append(f"{verdict} beauty sasrec end to end: {beauty:.1f} s wall, {cpu:.1f} s cpu < 600")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", default=str(REPO / "outputs" / "bench_sequential.csv"))
    parser.add_argument("--data-dir", default=os.environ.get("RECBENCH_DATA_DIR", str(SHARED)))
    parser.add_argument(
        "--models", default=",".join(MODELS), help="comma-separated subset of " + ",".join(MODELS)
    )
    parser.add_argument(
        "--datasets", default=",".join(DATASETS), help="comma-separated subset of ml-100k,beauty"
    )
    parser.add_argument(
        "--patience",
        type=int,
        default=None,
        help="early-stopping patience in evaluations (default: each model's own, 3 unless it declares one)",
    )
    parser.add_argument(
        "--seeds", default="0", help="comma-separated seeds; ml-100k runs are repeated for each"
    )
    parser.add_argument(
        "--beauty-epochs",
        type=int,
        default=12,
        help="epoch budget of the Beauty run (0 = the model's default); 12 keeps it within 10 minutes",
    )
    parser.add_argument(
        "--update", action="store_true", help="keep the rows of --out for (model, dataset) pairs not run now"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(1)
    models, datasets = args.models.split(","), args.datasets.split(",")
    runs = [(d, m) for d, m in DEFAULT_RUNS if d in datasets and m in models]
    root = Path(args.data_dir)
    out = Path(args.out)
    rows: list[dict[str, object]] = []
    if args.update and out.is_file():
        with open(out, newline="") as fh:
            rows = [r for r in csv.DictReader(fh) if (r["dataset"], r["model"]) not in runs]
    seeds = [int(s) for s in args.seeds.split(",")]
    splits: dict[tuple[str, int], tuple[Split, float, float]] = {}
    out.parent.mkdir(parents=True, exist_ok=True)
    for seed, (dataset, model) in ((s, run) for s in seeds for run in runs):
        if dataset == "beauty" and seed != seeds[0]:
            continue  # one Beauty run: it answers a time limit, and takes minutes
        if (dataset, seed) not in splits:
            splits[dataset, seed] = load_split(dataset, root, seed)
        split, load_wall, load_cpu = splits[dataset, seed]
        # ml-100k times count training and evaluation; beauty's also count loading and splitting
        setup = (load_wall, load_cpu) if dataset == "beauty" else (0.0, 0.0)
        epochs = (args.beauty_epochs or None) if dataset == "beauty" else None
        new = run_one(model, dataset, split, args.patience, seed, setup, epochs)
        rows += new
        print(
            ", ".join(f"{r['metric']}={float(r['value']):.4g}" for r in new),
            f"[{model} {dataset} seed {seed}]",
            flush=True,
        )
        with open(out, "w", newline="") as fh:  # rewritten after every model: partial results survive
            writer = csv.DictWriter(
                fh, fieldnames=["model", "dataset", "seed", "metric", "value", "seconds", "cpu_seconds"]
            )
            writer.writeheader()
            writer.writerows(rows)
    for line in check_targets(rows):
        print(line)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
