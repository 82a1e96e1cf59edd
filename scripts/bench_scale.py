"""Large-data benchmark: MovieLens-20M- and -25M-shaped synthetic data, one ``recbench train`` per row.

    python scripts/bench_scale.py [--shapes 20m,25m] [--models pop,als,...] [--out outputs/bench_scale.csv]

Every row is the command ``python -m recbench train <overrides>`` run as a child process (so its peak RSS
is its own, read from ``wait4``), on one thread, full ranking of every user on validation and test. The
row records the pipeline's own phase timings from the run's ``metrics.json`` (data load and split from
the cache, fit, evaluation per part, total), the child's peak RSS, and the machine's load average before
and after (this benchmark is meant for shared machines: read its seconds with the load next to them).
A run that fails (a refused allocation, an error) is a row with its status and reason; a child that
grows past ``--max-rss-gb`` is stopped by the benchmark and recorded as such.

Next to the models, the **evaluation limit** of each shape is measured on the same machine: a plain
``torch.topk`` of the top ``k`` over random ``float32`` score blocks of the evaluated shape (all users x
all items, blocks of the evaluator's default size), and a 64-factor dot product followed by the same
selection, on one and on two threads (rows ``limit:topk`` and ``limit:dot64``).

The first step of each shape loads the dataset once through the pipeline, so the rows read it from
the cache (``RECBENCH_CACHE_DIR``, default ``.cache/recbench``).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]

#: The two shapes: MovieLens-20M (138,493 users x 26,744 items x 20M) and -25M (162,541 x 59,047 x 25M).
SHAPES: dict[str, tuple[int, int, int]] = {
    "1m": (6000, 4000, 1_000_000),  # synthetic-1m itself: a quick check of the benchmark
    "6m": (40000, 26744, 5_800_000),  # MovieLens-20M's catalogue and user activity, fewer users
    "20m": (138493, 26744, 20_000_000),
    "25m": (162541, 59047, 25_000_000),
}
#: Model rows: name -> extra overrides. Torch models run with an epoch cap (the 20M data has 2,000
#: batches of 8,192 per epoch); everything else runs with its defaults.
MODELS: dict[str, tuple[str, ...]] = {
    "pop": ("model=pop",),
    "als": ("model=als",),
    "puresvd": ("model=puresvd",),
    "itemknn": ("model=itemknn",),
    "ease": ("model=ease",),
    "bpr": ("model=bpr", "trainer.epochs=3"),
    "userknn": ("model=userknn",),
}
#: Rows that repeat a model with a two-thread evaluation (fit on one thread), to read the speed-up.
TWO_THREADS = ("pop", "als")
#: One thread, no progress bars or model files, always a fresh run.
COMMON = (
    "split=random",
    "trainer.num_threads=1",
    "trainer.device=cpu",
    "trainer.progress=false",
    "eval.progress=false",
    "save_model=false",
    "skip_finished=false",
)
LIMIT_K = 20  # the largest default cut-off (eval.ks=[10,20])
BLOCK_MB = 512  # the evaluator's default score-block budget (eval.memory_mb=512)


def shape_overrides(shape: str) -> tuple[str, ...]:
    """``recbench train`` overrides of the data of ``shape`` (``20m`` or ``25m``)."""
    users, items, interactions = SHAPES[shape]
    return (
        "dataset=synthetic-1m",
        f"dataset.n_users={users}",
        f"dataset.n_items={items}",
        f"dataset.n_interactions={interactions}",
    )


def one_thread_env(threads: int = 1) -> dict[str, str]:
    """The environment of a child: BLAS/OpenMP threads pinned, the checkout first on the path."""
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
        env[var] = str(threads)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    env.setdefault("MPLBACKEND", "Agg")
    return env


def _watch_rss(pid: int, limit_bytes: int, tripped: list[int], done: threading.Event) -> None:
    """Stop ``pid`` (SIGKILL) once its resident set exceeds ``limit_bytes``; note the RSS seen."""
    status = Path(f"/proc/{pid}/status")
    while not done.wait(0.5):
        try:
            line = next(x for x in status.read_text().splitlines() if x.startswith("VmRSS:"))
        except (OSError, StopIteration):
            return
        rss = int(line.split()[1]) * 1024
        if rss > limit_bytes:
            tripped.append(rss)
            os.kill(pid, signal.SIGKILL)
            return


def run_child(command: list[str], *, env: dict[str, str], limit_bytes: int, log: Path) -> dict[str, Any]:
    """Run ``command``; its wall seconds, peak RSS (bytes), exit code, and whether the RSS guard fired."""
    log.parent.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    with open(log, "w") as out:
        proc = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=os.getcwd())
        tripped: list[int] = []
        done = threading.Event()
        watcher = threading.Thread(
            target=_watch_rss, args=(proc.pid, limit_bytes, tripped, done), daemon=True
        )
        watcher.start()
        _, status, usage = os.wait4(proc.pid, 0)
        done.set()
        proc.returncode = os.waitstatus_to_exitcode(status)
    return {
        "wall_s": time.perf_counter() - start,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "peak_rss_gb": usage.ru_maxrss * 1024 / 1e9,
        "returncode": proc.returncode,
        "rss_guard": bool(tripped),
        "load_before": load_before,
        "load_after": os.getloadavg()[0],
    }


def model_row(
    shape: str, name: str, overrides: tuple[str, ...], args: argparse.Namespace, eval_threads: int | None
) -> dict[str, Any]:
    """Run one model row of ``shape`` as ``python -m recbench train`` and collect its numbers."""
    label = name if eval_threads is None else f"{name}@eval{eval_threads}threads"
    run_dir = args.out.parent / (args.out.stem + "_runs") / shape / label
    extra = () if eval_threads is None else (f"eval.num_threads={eval_threads}",)
    cli = (*shape_overrides(shape), *COMMON, *overrides, *extra, f"seed={args.seed}")
    command = [sys.executable, "-m", "recbench", "train", *cli, f"hydra.run.dir={run_dir}"]
    threads = eval_threads or 1
    child = run_child(
        command,
        env=one_thread_env(threads),
        limit_bytes=int(args.max_rss_gb * (1 << 30)),
        log=run_dir / "child.log",
    )
    row: dict[str, Any] = {"shape": shape, "model": label, **child}
    record = _read_json(run_dir / "metrics.json")
    timings = record.get("timings", {})
    for key in ("load_s", "split_s", "fit_s", "eval_val_s", "eval_test_s", "eval_s", "total_s"):
        row[key] = timings.get(key, "")
    row.update(phase_cpu(run_dir))
    row["val/ndcg@10"] = record.get("metrics", {}).get("val/ndcg@10", "")
    row["test/ndcg@10"] = record.get("metrics", {}).get("test/ndcg@10", "")
    if child["rss_guard"]:
        row["status"], row["error"] = "stopped", f"RSS above --max-rss-gb={args.max_rss_gb} (benchmark guard)"
    elif record:
        row["status"], row["error"] = record.get("status", ""), record.get("error") or ""
    else:
        row["status"], row["error"] = "failed", f"exit code {child['returncode']}, no metrics.json"
    row["command"] = "recbench train " + " ".join(map(shlex.quote, cli))
    return row


def phase_cpu(run_dir: Path) -> dict[str, float]:
    """CPU seconds per phase from the run's ``train.log`` (``phase fit: 12.0 s (CPU 11.8 s)``):
    ``cpu_load``, ``cpu_split``, ``cpu_fit``, ``cpu_eval_val``, ``cpu_eval_test``."""
    found: dict[str, float] = {}
    path = run_dir / "train.log"
    text = path.read_text() if path.is_file() else ""
    for match in re.finditer(r"phase ([\w /]+): [\d.]+ s \(CPU ([\d.]+) s\)", text):
        key = "cpu_" + match.group(1).strip().replace(" ", "_").replace("/", "_")
        found[key] = found.get(key, 0.0) + float(match.group(2))
    return found


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def prepare(shape: str, args: argparse.Namespace) -> dict[str, Any]:
    """Load ``shape`` once through the pipeline (fills the cache); the row times that first load."""
    code = (
        "import sys, time; sys.argv=['x']\n"
        f"sys.path.insert(0, {str(REPO / 'scripts')!r})\n"
        "from benchkit import compose_config\n"
        "from recbench.pipeline import load_dataset, make_folds\n"
        f"cfg = compose_config({list((*shape_overrides(shape), *COMMON))!r})\n"
        "t = time.perf_counter(); _, data, ids = load_dataset(cfg); t1 = time.perf_counter()\n"
        "make_folds(cfg, data, ids); t2 = time.perf_counter()\n"
        "print('PREPARED', len(data), t1 - t, t2 - t1)\n"
    )
    log = args.out.parent / (args.out.stem + "_runs") / shape / "prepare.log"
    child = run_child(
        [sys.executable, "-c", code],
        env=one_thread_env(),
        limit_bytes=int(args.max_rss_gb * (1 << 30)),
        log=log,
    )
    line = next((x for x in log.read_text().splitlines() if x.startswith("PREPARED")), "")
    parts = line.split()
    row = {"shape": shape, "model": "prepare (first load: generate + cache)", **child}
    if parts:
        row.update(load_s=float(parts[2]), split_s=float(parts[3]), status="ok", error="")
    else:
        row.update(status="failed", error=log.read_text()[-500:])
    return row


def limit_rows(shape: str, threads: int) -> list[dict[str, Any]]:
    """The evaluation limit of ``shape`` on ``threads`` threads: top-k over random score blocks, and a
    64-factor dot product plus top-k, over every user in blocks of the evaluator's default size."""
    import torch

    from recbench.evaluation.evaluator import block_users

    users, items, _ = SHAPES[shape]
    block = block_users(None, BLOCK_MB, items, users)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    gen = torch.Generator().manual_seed(0)
    scores = torch.rand((block, items), generator=gen)
    user_f = torch.randn((block, 64), generator=gen)
    item_f = torch.randn((items, 64), generator=gen)
    out = torch.empty_like(scores)
    rows = []
    for kind in ("topk", "dot64"):
        load = os.getloadavg()[0]
        start, cpu = time.perf_counter(), time.process_time()
        for lo in range(0, users, block):
            n = min(block, users - lo)
            if kind == "dot64":
                torch.matmul(user_f[:n], item_f.T, out=out[:n])
                torch.topk(out[:n], LIMIT_K, dim=1, sorted=True)
            else:
                torch.topk(scores[:n], LIMIT_K, dim=1, sorted=True)
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
        rows.append(
            {
                "shape": shape,
                "model": f"limit:{kind}@{threads}threads",
                "eval_test_s": seconds,
                "cpu_eval_test": cpu,
                "load_before": load,
                "load_after": os.getloadavg()[0],
                "status": "ok",
                "error": "",
                "command": f"torch.topk(k={LIMIT_K}) over {users} x {items} random float32 scores, "
                f"blocks of {block} users" + (", after a 64-factor matmul" if kind == "dot64" else ""),
            }
        )
    torch.set_num_threads(before)
    return rows


def limit_in_child(shape: str, threads: int, args: argparse.Namespace) -> list[dict[str, Any]]:
    """:func:`limit_rows` in a child process, so that this process stays small (a forked child's peak
    RSS starts from its parent's)."""
    log = args.out.parent / (args.out.stem + "_runs") / shape / f"limit{threads}.log"
    command = [sys.executable, str(Path(__file__).resolve()), "--limit-child", f"{shape}:{threads}"]
    child = run_child(
        command, env=one_thread_env(threads), limit_bytes=int(args.max_rss_gb * (1 << 30)), log=log
    )
    lines = [x for x in log.read_text().splitlines() if x.startswith("{")]
    if not lines:
        return [
            {
                "shape": shape,
                "model": f"limit:topk@{threads}threads",
                "status": "failed",
                "error": log.read_text()[-500:],
            }
        ]
    return [{**json.loads(x), "peak_rss_gb": child["peak_rss_gb"]} for x in lines]


def write_csv(rows: list[dict[str, Any]], path: Path) -> None:
    """All rows so far (floats to 4 significant digits); columns are the union, in order."""
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: (f"{v:.4g}" if isinstance(v, float) else v) for k, v in row.items()})


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shapes", default="20m,25m", help="comma-separated: 20m, 25m")
    p.add_argument("--models", default=",".join(MODELS), help="comma-separated model rows")
    p.add_argument(
        "--two-threads", default=",".join(TWO_THREADS), help="models also run with eval.num_threads=2"
    )
    p.add_argument("--no-limit", action="store_true", help="skip the evaluation-limit rows")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-rss-gb", type=float, default=10.0, help="stop a child whose RSS exceeds this (GiB)")
    p.add_argument("--out", type=Path, default=REPO / "outputs" / "bench_scale.csv")
    p.add_argument("--limit-child", default="", help=argparse.SUPPRESS)  # SHAPE:THREADS, internal
    args = p.parse_args()
    for flag, names in (("--models", args.models), ("--two-threads", args.two_threads)):
        unknown = sorted({m.strip() for m in names.split(",") if m.strip()} - set(MODELS))
        if unknown:
            p.error(f"{flag}: unknown model rows {unknown}; choose from {sorted(MODELS)} ('' for none)")
    if args.limit_child:
        shape, threads = args.limit_child.split(":")
        for row in limit_rows(shape, int(threads)):
            print(json.dumps(row), flush=True)
        return
    rows: list[dict[str, Any]] = []
    if args.out.exists():  # resume: keep rows of an earlier run of the same file, skip them here
        with open(args.out, newline="") as fh:
            rows = [r for r in csv.DictReader(fh) if r.get("status") in ("ok", "failed", "stopped")]
    done = {(r["shape"], r["model"]) for r in rows}

    def add(row: dict[str, Any]) -> None:
        rows.append(row)
        write_csv(rows, args.out)
        shown = {k: row.get(k) for k in ("fit_s", "eval_val_s", "eval_test_s", "total_s", "peak_rss_gb")}
        print(f"{row['shape']} {row['model']:32s} {row['status']} {shown} {row.get('error', '')}", flush=True)

    for shape in (s.strip() for s in args.shapes.split(",") if s.strip()):
        if (shape, "prepare (first load: generate + cache)") not in done:
            add(prepare(shape, args))
        for threads in () if args.no_limit else (1, 2):
            if (shape, f"limit:topk@{threads}threads") not in done:
                for row in limit_in_child(shape, threads, args):
                    add(row)
        for name in (m.strip() for m in args.models.split(",") if m.strip()):
            if (shape, name) not in done:
                add(model_row(shape, name, MODELS[name], args, None))
        for name in (m.strip() for m in args.two_threads.split(",") if m.strip()):
            if (shape, f"{name}@eval2threads") not in done:
                add(model_row(shape, name, MODELS[name], args, 2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
