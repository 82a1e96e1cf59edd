"""Cost of the beyond-accuracy audit: evaluation time with every beyond metric and group slice against the
default metrics alone, on the 6,000 x 4,000 x 1M synthetic set, through ``recbench.pipeline.run``.

    python scripts/bench_beyond.py [--out outputs/bench_beyond.csv] [--repeats 3] [--model pop]

Both cases run the same composed config (``dataset=synthetic-1m``, random 0.8/0.1/0.1 split, seed 0)
and differ only in ``eval``: ``default`` (precision, recall, ndcg, mrr, hit, map, coverage, novelty at
10 and 20) against ``beyond`` (the same plus gini, entropy, arp, aplt, pop_rsp, pop_reo, epc, ild,
miscalibration, sliced by activity and by a user attribute, and by item popularity and genre).
Synthetic data has no side files, so the script writes seeded ones (1-3 of 18 genres per item, a
two-valued attribute per user) and passes them as ``features.item_file`` / ``features.user_file``.
The measures are the run's ``eval_s`` (wall clock of the validation and test evaluation, all users)
and ``eval_cpu_s``, the process CPU time spent inside the pipeline's ``evaluate`` calls (timed by a thin
wrapper; far less sensitive than wall time to other processes on a shared machine). The cases
alternate (A, B, A, B, ...) so that load from other processes hits both alike; the CSV keeps every
repeat plus the ratios of the medians.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from hydra import compose, initialize_config_dir

from recbench import pipeline
from recbench.config import build
from recbench.data.cache import load_cached
from recbench.pipeline import RunContext, run

REPO = Path(__file__).resolve().parents[1]
GENRES = [f"g{j:02d}" for j in range(18)]


def side_files(folder: Path, cache_dir: str) -> tuple[Path, Path]:
    """Seeded genre and attribute CSV files for the synthetic-1m ids."""
    with initialize_config_dir(version_base="1.3", config_dir=str(REPO / "configs")):
        cfg = compose("train", overrides=["dataset=synthetic-1m", f"paths.cache_dir={cache_dir}"])
    _, ids = load_cached(build(cfg.dataset, "dataset"), cache_dir)
    rng = np.random.default_rng(0)
    genres = ["|".join(rng.choice(GENRES, size=rng.integers(1, 4), replace=False)) for _ in ids.items]
    items, users = folder / "items.csv", folder / "users.csv"
    pd.DataFrame({"id": ids.items, "genre": genres}).to_csv(items, index=False)
    pd.DataFrame({"id": ids.users, "segment": rng.choice(["a", "b"], size=len(ids.users))}).to_csv(
        users, index=False
    )
    return items, users


def config(eval_name: str, model: str, items: Path, users: Path, cache_dir: str) -> object:
    overrides = [
        "dataset=synthetic-1m",
        f"model={model}",
        f"eval={eval_name}",
        "seed=0",
        "save_model=false",
        "skip_finished=false",
        "features=default",
        f"features.item_file={items}",
        f"features.user_file={users}",
        "features.item_fields=[genre:multi]",
        "features.user_fields=[segment]",
        f"paths.cache_dir={cache_dir}",
    ]
    if eval_name == "beyond":
        overrides += ["eval.user_groups=[activity,segment]", "eval.item_groups=[popularity,genre]"]
    with initialize_config_dir(version_base="1.3", config_dir=str(REPO / "configs")):
        return compose("train", overrides=overrides)


class CpuTimer:
    """Wraps a function and adds the process CPU seconds of its calls to :attr:`seconds`."""

    def __init__(self, fn):
        self.fn, self.seconds = fn, 0.0

    def __call__(self, *args, **kwargs):
        start = time.process_time()
        try:
            return self.fn(*args, **kwargs)
        finally:
            self.seconds += time.process_time() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("outputs/bench_beyond.csv"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--model", default="pop", help="model config (pop: scoring is nearly free)")
    parser.add_argument("--cache-dir", default=str(REPO / ".cache" / "recbench"))
    args = parser.parse_args()
    rows = []
    evaluate = pipeline.evaluate
    with tempfile.TemporaryDirectory() as tmp:
        items, users = side_files(Path(tmp), args.cache_dir)
        for rep in range(args.repeats):
            for case in ("default", "beyond"):
                cfg = config(case, args.model, items, users, args.cache_dir)
                timer = CpuTimer(evaluate)
                pipeline.evaluate = timer
                record = run(cfg, RunContext(Path(tmp) / f"{case}{rep}", {"eval": case}))  # type: ignore[arg-type]
                unable = {k: v for k, v in record.extra.items() if str(v).startswith("unable")}
                if unable:
                    raise SystemExit(f"{case}: {unable}")
                rows.append(
                    {
                        "case": case,
                        "repeat": rep,
                        "model": args.model,
                        "eval_s": round(record.timings["eval_s"], 3),
                        "eval_cpu_s": round(timer.seconds, 3),
                        "metric_keys": len(record.metrics),
                    }
                )
                print(rows[-1], flush=True)
    ratios = {}
    for key in ("eval_s", "eval_cpu_s"):
        median = {c: statistics.median(r[key] for r in rows if r["case"] == c) for c in ("default", "beyond")}
        ratios[key] = median["beyond"] / median["default"]
        print(
            f"median {key}: default {median['default']:.2f}, beyond {median['beyond']:.2f}, "
            f"ratio {ratios[key]:.2f}"
        )
    for row in rows:
        row["wall_ratio_of_medians"] = round(ratios["eval_s"], 3)
        row["cpu_ratio_of_medians"] = round(ratios["eval_cpu_s"], 3)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
