"""Benchmark the classic (non-torch) recommenders and write one CSV of quality and speed numbers.

    python scripts/bench_classic.py [--out outputs/bench_classic.csv] [--ml100k PATH] [--seed 0]
                                    [--skip-quality] [--skip-speed] [--repeats 3]

Everything runs on one thread (the BLAS thread variables are set before numpy is imported) with
project code only: ``MovieLens`` loads the shared ml-100k copy, ``RandomHoldout`` / ``KFold`` split
it, ``evaluate`` scores full rankings with seen items masked.

Protocols (rows of the CSV: model, protocol, metric, value, seconds, cpu_seconds):

- ``ml-100k/holdout-0.8-0.1-0.1``: every rating an implicit positive, test NDCG@10 (history =
  train + validation); ``seconds`` = fit + evaluation.
- ``ml-100k/holdout-0.8-0.2``: per-user random 80/20, test NDCG@10.
- ``ml-100k/kfold-5``: rating prediction, RMSE of ``predict`` averaged over the 5 folds.
- ``speed/...``: wall-clock ``seconds`` of the named task (best of ``--repeats``), value = seconds.

Targets are checked and printed at the end (``PASS`` / ``MISS``); the CSV holds raw numbers only.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import csv  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from recbench.data.interactions import Interactions  # noqa: E402
from recbench.data.sources import MovieLens  # noqa: E402
from recbench.data.splits import KFold, RandomHoldout  # noqa: E402
from recbench.data.synthetic import Synthetic  # noqa: E402
from recbench.evaluation.evaluator import EvalSpec, evaluate  # noqa: E402
from recbench.evaluation.ranking import top_k  # noqa: E402
from recbench.models.als import ImplicitALS  # noqa: E402
from recbench.models.base import Recommender  # noqa: E402
from recbench.models.baselines import Popularity, Random  # noqa: E402
from recbench.models.decomposition import EASE, NMF, PureSVD  # noqa: E402
from recbench.models.neighborhood import ItemKNN, UserKNN  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
NDCG = EvalSpec(metrics=("ndcg",), ks=(10,))
RANKERS: dict[str, Callable[[int], Recommender]] = {
    "pop": lambda seed: Popularity(),
    "random": lambda seed: Random(seed=seed),
    "itemknn": lambda seed: ItemKNN(),
    "userknn": lambda seed: UserKNN(),
    "puresvd": lambda seed: PureSVD(seed=seed),
    "ease": lambda seed: EASE(),
    "als": lambda seed: ImplicitALS(seed=seed),
}
RATERS: dict[str, Callable[[int], Recommender]] = {
    "itemknn": lambda seed: ItemKNN(),
    "userknn": lambda seed: UserKNN(),
    # configs/model/userknn_rating.yaml, the rating-prediction preset of userknn
    "userknn_rating": lambda seed: UserKNN(implicit=False, similarity="pearson", shrink=100.0, k=200),
    "nmf": lambda seed: NMF(seed=seed),
}
#: (model, protocol, metric) -> (comparison, threshold) from the project brief
TARGETS = {
    ("itemknn", "ml-100k/holdout-0.8-0.1-0.1", "ndcg@10"): (">=", 0.29),
    ("ease", "ml-100k/holdout-0.8-0.2", "ndcg@10"): (">=", 0.43),
    ("userknn", "ml-100k/holdout-0.8-0.2", "ndcg@10"): (">=", 0.38),
    ("itemknn", "ml-100k/holdout-0.8-0.2", "ndcg@10"): (">=", 0.36),
    ("als", "ml-100k/holdout-0.8-0.2", "ndcg@10"): (">=", 0.33),
    ("puresvd", "ml-100k/holdout-0.8-0.2", "ndcg@10"): (">=", 0.33),
    ("itemknn", "ml-100k/kfold-5", "rmse"): ("<=", 0.940),
    ("userknn_rating", "ml-100k/kfold-5", "rmse"): ("<=", 0.940),
    ("nmf", "ml-100k/kfold-5", "rmse"): ("<=", 0.960),
    ("itemknn", "speed/ml-100k/fit+eval-all-users", "seconds"): ("<", 0.5),
    ("itemknn", "speed/synthetic-6000x4000x1M/fit+top10-all-users", "seconds"): ("<=", 2.0),
    ("als", "speed/synthetic-6000x4000x1M/fit", "seconds"): ("<=", 3.0),
    ("ease", "speed/ml-100k/fit", "seconds"): ("<", 2.0),
    ("puresvd", "speed/ml-100k/fit", "seconds"): ("<", 2.0),
}


def timed(fn: Callable[[], object]) -> tuple[object, float, float]:
    """``(result, wall seconds, process CPU seconds)`` of ``fn()``."""
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - wall, time.process_time() - cpu


def best_of(repeats: int, fn: Callable[[], object]) -> tuple[float, float]:
    """Smallest wall and CPU seconds over ``repeats`` runs of ``fn``."""
    runs = [timed(fn)[1:] for _ in range(repeats)]
    return min(r[0] for r in runs), min(r[1] for r in runs)


def quality(data: Interactions, seed: int, rows: list[dict]) -> None:
    for ratios in ((0.8, 0.1, 0.1), (0.8, 0.2)):
        split = RandomHoldout(ratios=ratios)(data, seed=seed)
        protocol = "ml-100k/holdout-" + "-".join(str(r) for r in ratios)
        for name, make in RANKERS.items():
            model = make(seed)

            def run(model: Recommender = model, split=split) -> float:
                model.fit(split.train, split.val)
                return evaluate(model, split.test, split.test_history, NDCG).metrics["ndcg@10"]

            value, wall, cpu = timed(run)
            rows.append(
                dict(
                    model=name,
                    protocol=protocol,
                    metric="ndcg@10",
                    value=value,
                    seconds=wall,
                    cpu_seconds=cpu,
                )
            )
            print(f"{protocol:32s} {name:24s} ndcg@10={value:.4f}  {wall:.2f}s", flush=True)
    folds = KFold(folds=5).folds(data, seed=seed)
    for name, make in RATERS.items():

        def cv(make: Callable[[int], Recommender] = make) -> float:
            errors = []
            for split in folds:
                model = make(seed).fit(split.train)
                pred = model.predict(split.test.users, split.test.items)  # type: ignore[attr-defined]
                errors.append(float(np.sqrt(np.mean((pred - split.test.ratings) ** 2))))
            return float(np.mean(errors))

        value, wall, cpu = timed(cv)
        rows.append(
            dict(
                model=name,
                protocol="ml-100k/kfold-5",
                metric="rmse",
                value=value,
                seconds=wall,
                cpu_seconds=cpu,
            )
        )
        print(f"{'ml-100k/kfold-5':32s} {name:24s} rmse={value:.4f}  {wall:.2f}s", flush=True)


def top10_all_users(model: Recommender, data: Interactions, batch: int = 1024) -> None:
    """Top-10 unseen items for every user, in batches (what a full-ranking evaluation does)."""
    seen = data.binary_csr
    users = np.arange(data.n_users)
    for start in range(0, len(users), batch):
        chunk = users[start : start + batch]
        scores = model.score(chunk, data)
        sub = seen[chunk]
        scores[np.repeat(np.arange(len(chunk)), np.diff(sub.indptr)), sub.indices] = -np.inf
        top_k(scores, 10)


def speed(data: Interactions, seed: int, repeats: int, rows: list[dict]) -> None:
    def add(model: str, protocol: str, wall: float, cpu: float) -> None:
        rows.append(
            dict(model=model, protocol=protocol, metric="seconds", value=wall, seconds=wall, cpu_seconds=cpu)
        )
        print(f"{protocol:52s} {model:8s} {wall:.3f}s wall  {cpu:.3f}s cpu", flush=True)

    split = RandomHoldout(ratios=(0.8, 0.1, 0.1))(data, seed=seed)
    spec = EvalSpec(metrics=("ndcg",), ks=(10,))
    add(
        "itemknn",
        "speed/ml-100k/fit+eval-all-users",
        *best_of(repeats, lambda: evaluate(ItemKNN().fit(split.train), split.test, split.test_history, spec)),
    )
    for name, make in (("ease", EASE), ("puresvd", PureSVD)):
        add(name, "speed/ml-100k/fit", *best_of(repeats, lambda make=make: make().fit(split.train)))
    synthetic, _ = Synthetic(n_users=6000, n_items=4000, n_interactions=1_000_000, seed=seed).load()
    protocol = "speed/synthetic-6000x4000x1M"
    add(
        "itemknn",
        f"{protocol}/fit+top10-all-users",
        *best_of(repeats, lambda: top10_all_users(ItemKNN().fit(synthetic), synthetic)),
    )
    add("als", f"{protocol}/fit", *best_of(repeats, lambda: ImplicitALS(seed=seed).fit(synthetic)))


def check_targets(rows: list[dict]) -> None:
    print("\ntargets:")
    for row in rows:
        key = (row["model"], row["protocol"], row["metric"])
        if key in TARGETS:
            op, bound = TARGETS[key]
            ok = {">=": row["value"] >= bound, "<=": row["value"] <= bound, "<": row["value"] < bound}[op]
            print(f"  {'PASS' if ok else 'MISS'}  {' '.join(key)} = {row['value']:.4f} (target {op} {bound})")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=REPO / "outputs" / "bench_classic.csv")
    parser.add_argument(
        "--ml100k", type=Path, default=None, help="folder holding u.data (default: shared copy)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3, help="speed rows keep the best of this many runs")
    parser.add_argument("--skip-quality", action="store_true")
    parser.add_argument("--skip-speed", action="store_true")
    args = parser.parse_args()
    root = os.environ.get("RECBENCH_DATA_DIR")
    path = args.ml100k or (
        Path(root) / "ml-100k" if root else REPO.parent / "shared" / "datasets" / "ml-100k"
    )
    data, _ = MovieLens(variant="ml-100k", path=path, download=False).load()
    rows: list[dict] = []
    if not args.skip_quality:
        quality(data, args.seed, rows)
    if not args.skip_speed:
        speed(data, args.seed, args.repeats, rows)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w", newline="") as fh:
        writer = csv.DictWriter(
            fh, fieldnames=["model", "protocol", "metric", "value", "seconds", "cpu_seconds"]
        )
        writer.writeheader()
        for row in rows:
            writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
    check_targets(rows)
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
