"""Is training cost linear in the interactions? One training epoch per torch model at 1M and 20M.

    python scripts/bench_epoch_ratio.py [--sizes 1m,20m] [--only mf,gmf] [--fraction 0.25]
        [--measured earlier.csv,...] [--out outputs/bench_epoch_ratio.csv] [--cache-dir DIR]

For every model, one ``recbench train`` run (composed and run by :mod:`benchkit`, one thread) per size:

- ``1m``: ``dataset=synthetic-1m`` (6,000 users x 4,000 items x 1M);
- ``20m``: the same generator shaped like MovieLens-20M (``dataset.n_users=138493 dataset.n_items=26744
  dataset.n_interactions=20000000``).

Runs use ``split=random split.ratios=[0.8,0.2]``, no early stopping, ``evaluate_test=false`` (no part is
evaluated: only training is timed) and the model's default hyperparameters and batch size. The epoch
time is the trainer's own record of an epoch's training batches (without validation), read from the
run's ``history.csv``: ``train_cpu_seconds`` (process CPU time, one thread: what the ratio uses, since
the wall time of a shared machine swings with the load) and ``train_seconds`` (wall, also reported).
At 1M (and 1m-wide) two epochs run and the second is kept (the first pays one-time set-up such as compiling
kernels); at 20M one epoch (its set-up is counted, so the ratio errs high).

With ``--fraction F`` the 20M runs stop each epoch after about that share of its batches
(``trainer.limit_batches``), and the epoch time is **extrapolated**: the measured seconds per batch
times the batches of a whole 20M epoch (the 1M epoch's batches times the ratio of interactions). Such
rows say ``extrapolated=True``; work done once per epoch (shuffling, drawing the epoch's negatives) is
then scaled up with the batches, so the extrapolation errs high.

``--sizes 1m,1m-wide`` instead times an epoch of 1M interactions on the 20M-shaped tables (138,493 x
26,744), whose per-batch cost is that of the large tables; 20 times it **estimates** the 20M epoch of
a model whose batch cost does not grow with the data itself (not ``dmf`` or ``lightgcn``: their
batches read whole matrix rows and columns, or the whole graph).

``--measured a.csv,b.csv`` reuses the rows of earlier runs of this benchmark (``--sizes ""`` then only
prints the ratios). The ratio to the 1M epoch is printed per model with the target (<= 25).

``fm``, ``widedeep`` and ``deepfm`` need side features, which synthetic data lacks: the benchmark writes
one categorical feature per user and per item (``id % 16``) into CSV files under the output folder and
passes them as ``features.user_file`` / ``features.item_file``.
"""

from __future__ import annotations

import argparse
import csv
import math
from pathlib import Path

import benchkit as bk  # it pins BLAS threads before numpy loads

SIZES = {
    "1m": ("dataset=synthetic-1m",),
    "20m": (
        "dataset=synthetic-1m",
        "dataset.n_users=138493",
        "dataset.n_items=26744",
        "dataset.n_interactions=20000000",
    ),
}
#: 1M interactions on the 20M-shaped user and item tables: the per-batch cost at the large tables
#: without the large data (an epoch there times 20 estimates the 20M epoch of a model whose batch
#: cost does not grow with the data itself)
SIZES["1m-wide"] = (*SIZES["20m"][:3], "dataset.n_interactions=1000000")
SHAPES = {
    "1m": (6000, 4000, 1_000_000),
    "20m": (138493, 26744, 20_000_000),
    "1m-wide": (138493, 26744, 1_000_000),
}
MODELS = ("bpr", "mf", "pmf", "gmf", "ncf_mlp", "ncf", "mlp", "dmf", "fm", "widedeep", "deepfm", "lightgcn")
FEATURED = ("fm", "widedeep", "deepfm")
#: epochs per size (at 1M the second epoch is the one timed)
EPOCHS = {"1m": 2, "20m": 1, "1m-wide": 2}
COMMON = (
    *bk.ONE_THREAD,
    "split=random",
    "split.ratios=[0.8,0.2]",
    "evaluate_test=false",
    "trainer.early_stopping=null",
)
TARGET_RATIO = 25.0


def feature_paths(folder: Path, size: str) -> tuple[Path, Path]:
    """The users' and items' feature CSVs of ``size`` under ``folder``."""
    return folder / f"users-{size}.csv", folder / f"items-{size}.csv"


def write_feature_files(folder: Path, size: str) -> None:
    """Write (once) one categorical ``group`` feature (``id % 16``) per user and item of ``size``."""
    for path, n in zip(feature_paths(folder, size), SHAPES[size][:2]):
        if path.is_file():
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["id", "group"])
            writer.writerows((i, f"g{i % 16}") for i in range(1, n + 1))


def cases(
    features: Path, sizes: list[str], only: list[str], limits: dict[tuple[str, str], int]
) -> list[bk.Case]:
    """One case per (model, size); ``limits[(model, size)]``: batches per epoch of that run."""
    out = []
    for size in sizes:
        for model in only:
            users, items = (p.resolve() for p in feature_paths(features, size))
            files = ("features=default", f"features.user_file={users}", f"features.item_file={items}")
            extra = files if model in FEATURED else ()
            limit = (f"trainer.limit_batches={limits[model, size]}",) if (model, size) in limits else ()
            overrides = (*SIZES[size], f"model={model}", f"trainer.epochs={EPOCHS[size]}", *extra, *limit)
            out.append(bk.Case(model, size, overrides, metrics=("time/fit_s",), timing="fit_s"))
    return out


def epoch_row(run_dir: Path) -> dict[str, float]:
    """Wall and CPU seconds and batches of the timed (last) epoch of a run (its ``history.csv``)."""
    with open(run_dir / "history.csv", newline="") as fh:
        row = list(csv.DictReader(fh))[-1]
    return {
        "epoch_s": float(row["train_seconds"]),
        "epoch_cpu_s": float(row["train_cpu_seconds"]),
        "batches": float(row["batches"]),
    }


def read_measured(paths: str) -> dict[tuple[str, str], dict[str, float]]:
    """The epochs measured by earlier runs of this benchmark (their CSVs, comma-separated)."""
    out = {}
    for path in filter(None, paths.split(",")):
        with open(path, newline="") as fh:
            for r in csv.DictReader(fh):
                if r.get("epoch_cpu_s"):
                    epoch = {k: float(r[k]) for k in ("epoch_s", "epoch_cpu_s", "batches")}
                    out[r["model"], r["protocol"]] = {**epoch, "extrapolated": r["extrapolated"] == "True"}
    return out


def whole_20m(small: dict[str, float]) -> int:
    """Batches of a whole 20M epoch: the 1M epoch's, times the ratio of interactions."""
    return math.ceil(small["batches"] * SHAPES["20m"][2] / SHAPES["1m"][2])


def estimated_batches(model: str, size: str) -> int:
    """Batches of a whole epoch of ``model`` at ``size`` with a 0.8 training share, from the model's
    effective batch size (its config and ``training_defaults``)."""
    from recbench.config import build

    cfg = bk.compose_config((*SIZES[size], f"model={model}"))
    batch_size = int(build(cfg.model, "model").effective_trainer().batch_size)
    return math.ceil(0.8 * SHAPES[size][2] / batch_size)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", default="outputs/bench_epoch_ratio.csv")
    parser.add_argument("--sizes", default="1m,20m")
    parser.add_argument("--only", default=",".join(MODELS))
    parser.add_argument("--fraction", type=float, default=None, help="time this share of each 20M epoch")
    parser.add_argument("--measured", default="", help="CSVs of earlier runs (comma-separated) to reuse")
    parser.add_argument("--cache-dir", default=None, help="processed-dataset cache (paths.cache_dir)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    out = Path(args.out)
    sizes = [s for s in args.sizes.split(",") if s]
    only = [m for m in args.only.split(",") if m]
    common = (*COMMON, *((f"paths.cache_dir={args.cache_dir}",) if args.cache_dir else ()))
    runs = out.with_suffix("")
    measured = read_measured(args.measured)
    rows: list[dict] = []
    limits: dict[tuple[str, str], int] = {}
    for size in sizes:
        write_feature_files(runs / "features", size)
        if size == "20m" and args.fraction is not None:
            limits = {(m, size): math.ceil(args.fraction * estimated_batches(m, size)) for m in only}
        for case in cases(runs / "features", [size], only, limits):
            result = bk.run_case(case, seed=args.seed, common=common, out_dir=runs)
            row = result[0]
            run_dir = runs / case.protocol / case.name / f"seed{args.seed}-0"
            if row["metric"] != "error":
                epoch = {**epoch_row(run_dir), "extrapolated": (case.name, size) in limits}
                row.update(epoch, n_interactions=SHAPES[size][2])
                measured[(case.name, size)] = epoch
            rows.append(row)
            bk.write_csv(rows, out)
    summary = []
    for model in only:
        small, large = measured.get((model, "1m")), measured.get((model, "20m"))
        wide = measured.get((model, "1m-wide"))
        if small is None or (large is None and wide is None):
            continue
        if large is not None:
            label, scale = "measured", 1.0
            if large["extrapolated"]:  # the measured share of a whole 20M epoch, scaled up
                label, scale = "extrapolated", whole_20m(small) / large["batches"]
        else:  # 20 epochs of 1M interactions on the 20M-shaped tables
            assert wide is not None
            label, scale, large = "estimated from 1m-wide x 20", SHAPES["20m"][2] / SHAPES["1m-wide"][2], wide
        entry: dict[str, object] = {"model": model, "20m": label}
        for key in ("epoch_s", "epoch_cpu_s"):
            entry[f"1m_{key}"], entry[f"20m_{key}"] = small[key], large[key] * scale
        entry["ratio"] = float(entry["20m_epoch_cpu_s"]) / small["epoch_cpu_s"]  # type: ignore[arg-type]
        entry["wall_ratio"] = float(entry["20m_epoch_s"]) / small["epoch_s"]  # type: ignore[arg-type]
        entry["verdict"] = "PASS" if entry["ratio"] <= TARGET_RATIO else "MISS"  # type: ignore[operator]
        print(
            f"{model:10s} CPU s per epoch: 1M {small['epoch_cpu_s']:8.2f}"
            f"  20M {entry['20m_epoch_cpu_s']:9.1f}"
            f" ({label})  ratio {entry['ratio']:6.1f} (wall {entry['wall_ratio']:6.1f})"
            f"  target <= {TARGET_RATIO:g}: {entry['verdict']}",
            flush=True,
        )
        summary.append(entry)
    if summary:
        bk.write_csv(summary, out.with_name(out.stem + "_summary.csv"))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
