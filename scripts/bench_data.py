"""Benchmark dataset loading (parse + preprocess + id encoding) and the cache, and write a CSV.

    python scripts/bench_data.py [--out outputs/bench_data.csv] [--repeats 3] [--data-dir PATH]

Cases: the synthetic configs (default, and 6,000 users x 4,000 items x 1M interactions), and the
real datasets found under ``--data-dir`` (default ``$RECBENCH_DATA_DIR``; missing ones are skipped):
ml-100k, ml-latest-small, lastfm-2k, Amazon Beauty. For each: a cold ``load()``, then a cache write
(``load_cached`` into an empty folder) and a cache hit. Wall-clock and process CPU time are both
written (the second is the meaningful one on a shared, busy machine); the best of ``--repeats`` runs
is kept.
"""

from __future__ import annotations

import argparse
import csv
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from recbench.data.cache import load_cached
from recbench.data.sources import LastFM, MovieLens, SequenceFile, Synthetic


def best(fn: Callable[[], object], repeats: int) -> tuple[float, float]:
    """Smallest wall-clock and CPU seconds of ``repeats`` calls."""
    wall, cpu = [], []
    for _ in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    return min(wall), min(cpu)


def measure(source: object, repeats: int) -> dict[str, float]:
    """Sizes, cold-load, cache-write and cache-hit timings of one source."""
    data, _ = source.load()
    load_wall, load_cpu = best(source.load, repeats)
    with tempfile.TemporaryDirectory() as tmp:
        fresh = (Path(tmp) / str(k) for k in range(repeats))
        write_wall, write_cpu = best(lambda: load_cached(source, next(fresh)), repeats)
        hit_wall, hit_cpu = best(lambda: load_cached(source, Path(tmp) / "0"), repeats)
    return {
        "users": data.n_users,
        "items": data.n_items,
        "interactions": len(data),
        "load_wall_s": round(load_wall, 3),
        "load_cpu_s": round(load_cpu, 3),
        "cache_write_wall_s": round(write_wall, 3),
        "cache_write_cpu_s": round(write_cpu, 3),
        "cache_hit_wall_s": round(hit_wall, 3),
        "cache_hit_cpu_s": round(hit_cpu, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="outputs/bench_data.csv")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--data-dir", default=os.environ.get("RECBENCH_DATA_DIR", "data"))
    args = parser.parse_args()
    root = Path(args.data_dir)
    cases = {
        "synthetic": Synthetic(),
        "synthetic-1m": Synthetic(n_users=6000, n_items=4000, n_interactions=1_000_000, n_clusters=20),
        "ml-100k": MovieLens(variant="ml-100k", data_dir=root, download=False),
        "ml-latest-small": MovieLens(variant="ml-latest-small", data_dir=root, download=False),
        "lastfm-2k": LastFM(data_dir=root, download=False),
        "amazon-beauty": SequenceFile(path=root / "amazon" / "Beauty.txt"),
    }
    rows = []
    for name, source in cases.items():
        if not name.startswith("synthetic") and not (
            (root / "amazon" / "Beauty.txt").is_file() if name == "amazon-beauty" else (root / name).is_dir()
        ):
            print(f"{name}: skipped (not under {root})")
            continue
        row = {"dataset": name, **measure(source, args.repeats)}
        rows.append(row)
        print(row)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
