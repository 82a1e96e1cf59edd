"""Benchmark dataset loading (parse + preprocess + id encoding) and the cache through the pipeline.

    python scripts/bench_data.py [--out outputs/bench_data.csv] [--repeats 3] [--only ml-100k]

Every row is one ``recbench train`` run with ``model=pop`` (composed and run by :mod:`benchkit`, one
thread) whose value is the pipeline's ``load_s`` phase; the CSV's ``command`` column reproduces it.
Datasets: ``synthetic``, ``synthetic-1m`` (6,000 users x 4,000 items x 1M interactions) and the real ones
found under the data directory (``paths.data_dir``; missing ones fail their row and the rest go on):
``ml-100k``, ``ml-latest-small``, ``lastfm``, ``amazon-beauty``. Per dataset:

- ``cold``: ``paths.cache_dir=null``, parsing from the raw files (fastest of ``--repeats``);
- ``cache-write``: a first run into an empty cache folder (load plus writing the cache file, once);
- ``cache-hit``: the same folder again (fastest of ``--repeats``).

``cpu_seconds`` (the whole run's process CPU time) is the steadier number on a shared, busy machine.
"""

from __future__ import annotations

import shutil

import benchkit as bk

DATASETS = ("synthetic", "synthetic-1m", "ml-100k", "ml-latest-small", "lastfm", "amazon-beauty")
RUN = ("model=pop", *bk.HOLDOUT_80_10_10, *bk.NDCG10)
LOAD = ("time/load_s",)


def cases(cache_root: str) -> list[bk.Case]:
    """Cold load, cache write and cache hit of every dataset."""
    out = []
    for name in DATASETS:
        data = (f"dataset={name}", *RUN)
        cache = f"paths.cache_dir={cache_root}/{name}"
        out += [
            bk.Case(name, "cold", (*data, "paths.cache_dir=null"), LOAD, timing="load_s", repeat=True),
            bk.Case(name, "cache-write", (*data, cache), LOAD, timing="load_s"),
            bk.Case(name, "cache-hit", (*data, cache), LOAD, timing="load_s", repeat=True),
        ]
    return out


def main() -> None:
    args = bk.parser(__doc__ or "", "bench_data").parse_args()
    cache_root = args.out.parent / (args.out.stem + "_cache")
    if not args.dry_run:
        shutil.rmtree(cache_root, ignore_errors=True)  # cache-write rows start from an empty folder
    bk.run_all(cases(str(cache_root.resolve())), args)


if __name__ == "__main__":
    main()
