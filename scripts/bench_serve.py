"""Load benchmark of ``recbench serve``: latency percentiles and throughput of a bounded request stream.

Each row trains one run exactly as ``recbench train <overrides> save_model=true`` would (the pipeline, via
:mod:`benchkit`), starts ``recbench serve`` on it in a subprocess on a free 127.0.0.1 port (one worker,
one torch thread), then sends ``--requests`` requests at ``--concurrency`` from an async httpx client
(after ``--warmup`` unmeasured ones) and stops by itself. ``GET /recommend`` rows ask for a random known
user's top 10; the ``POST /recommend`` row sends a random 50-item history (a made-up session). A request
counts as an error unless it answers 200 with 10 items. Rows: p50 / p99 / mean latency (ms, measured by
the client, so they include HTTP and the event loop), throughput (requests/s), errors, the server's and
the client's CPU milliseconds per request (from ``/proc``; unlike latency, barely moved by other load on
the machine), the target of the issue and PASS/MISS.

The client and the server share the machine: on a 2-core machine the client's own CPU time is part of
what is measured, and so is any other load (say so next to the numbers).

    python scripts/bench_serve.py                      # every row (trains what is missing first)
    python scripts/bench_serve.py --only itemknn:ml-100k,ease --requests 2000
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shlex
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import benchkit
import numpy as np
from omegaconf import OmegaConf

from recbench.config import build
from recbench.data.cache import load_cached
from recbench.pipeline import config_digest, finished_record

REPO = Path(__file__).resolve().parents[1]
TRAIN = ("trainer.num_threads=1", "trainer.device=cpu", "trainer.progress=false", "save_model=true")
ML100K = ("dataset=ml-100k", "split=loo")
#: MovieLens-20M's catalogue (27,278 movies) on seeded synthetic data with fewer users and interactions,
#: so that the per-request cost of a catalogue that size is measured without a 20M-row training run.
ML20M_CATALOGUE = (
    "dataset=synthetic",
    "dataset.n_users=20000",
    "dataset.n_items=27278",
    "dataset.n_interactions=2000000",
    "dataset.n_clusters=50",
    "split=loo",
)


@dataclass(frozen=True)
class Row:
    """One benchmark row: a trained run and the request it is loaded with."""

    name: str
    data: str
    overrides: tuple[str, ...]
    request: str  # "get" (known user) or "post50" (50-item session)
    p50_ms: float | None
    p99_ms: float


ROWS = [
    Row("itemknn", "ml-100k", (*ML100K, "model=itemknn"), "get", 5.0, 25.0),
    Row("ease", "ml-100k", (*ML100K, "model=ease"), "get", 5.0, 25.0),
    Row("als", "ml-100k", (*ML100K, "model=als"), "get", 5.0, 25.0),
    Row("bpr", "ml-100k", (*ML100K, "model=bpr"), "get", 5.0, 25.0),
    Row("sasrec", "ml-100k", (*ML100K, "model=sasrec"), "post50", None, 50.0),
    Row("itemknn", "ml-20m-catalogue", (*ML20M_CATALOGUE, "model=itemknn"), "get", None, 100.0),
    Row("als", "ml-20m-catalogue", (*ML20M_CATALOGUE, "model=als"), "get", None, 100.0),
]


def trained(row: Row, runs: Path, data_dir: str | None) -> Path:
    """The run directory of ``row`` (trained now unless a finished run of the same config is there)."""
    overrides = (*TRAIN, *(() if data_dir is None else (f"paths.data_dir={data_dir}",)), *row.overrides)
    run_dir = runs / f"{row.name}_{row.data}"
    cfg = benchkit.compose_config(overrides)
    if finished_record(run_dir, config_digest(cfg)) is None or not any(run_dir.glob("model.*")):
        print(f"training: recbench train {' '.join(map(shlex.quote, overrides))}", flush=True)
        benchkit.run_once(overrides, run_dir)
    (run_dir / ".hydra").mkdir(exist_ok=True)
    OmegaConf.save(cfg, run_dir / ".hydra" / "config.yaml")  # what the run loader reads
    (run_dir / "interactions.jsonl").unlink(missing_ok=True)  # a fresh log: only reads are measured
    return run_dir


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (Linux ``/proc``; NaN elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(run_dir: Path, port: int) -> subprocess.Popen:
    """``recbench serve run_dir`` (one BLAS and torch thread), once ``/health`` answers."""
    import httpx

    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "recbench", "serve", str(run_dir), "--port", str(port), "--threads", "1"],
        env=env,
    )
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server of {run_dir} exited with status {proc.returncode}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            time.sleep(0.5)
    proc.kill()
    raise SystemExit(f"the server of {run_dir} did not start within 600 s")


async def load(url: str, requests: list[tuple[str, dict]], concurrency: int) -> tuple[np.ndarray, int, float]:
    """Send ``requests`` (method, params/body) with ``concurrency`` workers: (latencies s, errors, wall s)."""
    import httpx

    latencies = np.empty(len(requests))
    errors = 0
    cursor = 0
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as client:

        async def worker() -> None:
            nonlocal cursor, errors
            while cursor < len(requests):
                j = cursor
                cursor += 1
                method, payload = requests[j]
                start = time.perf_counter()
                try:
                    if method == "get":
                        resp = await client.get("/recommend", params=payload)
                    else:
                        resp = await client.post("/recommend", json=payload)
                    ok = resp.status_code == 200 and len(resp.json()["items"]) == 10
                except httpx.HTTPError:
                    ok = False
                latencies[j] = time.perf_counter() - start
                errors += not ok

        wall = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - wall
    return latencies, errors, wall


def make_requests(row: Row, run_dir: Path, n: int, seed: int) -> list[tuple[str, dict]]:
    """``n`` random requests of the row's kind over the run's dataset ids."""
    cfg = OmegaConf.load(run_dir / ".hydra" / "config.yaml")
    _, ids = load_cached(build(cfg.dataset, "dataset"), cfg.paths.get("cache_dir"))
    rng = np.random.default_rng(seed)
    if row.request == "get":
        users = rng.choice(ids.users.astype(str), size=n)
        return [("get", {"user": str(u), "k": 10}) for u in users]
    items = ids.items.astype(str)
    return [("post", {"history": rng.choice(items, 50, replace=False).tolist(), "k": 10}) for _ in range(n)]


def main() -> None:
    """Run the selected rows and write the CSV."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=REPO / "outputs" / "bench_serve.csv", help="the CSV written")
    p.add_argument("--requests", type=int, default=5000, help="measured requests per row")
    p.add_argument("--warmup", type=int, default=200, help="unmeasured requests first")
    p.add_argument("--concurrency", type=int, default=8, help="requests in flight")
    p.add_argument(
        "--only", default="", help="comma-separated models, datasets or model:dataset rows (default: all)"
    )
    p.add_argument("--data-dir", default=None, help="folder holding the datasets (default: paths.data_dir)")
    p.add_argument("--seed", type=int, default=0, help="seed of the request stream")
    args = p.parse_args()
    wanted = {w.strip() for w in args.only.split(",") if w.strip()}
    runs = args.out.parent / (args.out.stem + "_runs")
    results = []
    for row in ROWS:
        if wanted and not wanted & {row.name, row.data, f"{row.name}:{row.data}"}:
            continue
        run_dir = trained(row, runs, args.data_dir)
        requests = make_requests(row, run_dir, args.warmup + args.requests, args.seed)
        port = free_port()
        server = start_server(run_dir, port)
        try:
            url = f"http://127.0.0.1:{port}"
            asyncio.run(load(url, requests[: args.warmup], args.concurrency))
            cpu = cpu_seconds(server.pid), time.process_time()
            lat, errors, wall = asyncio.run(load(url, requests[args.warmup :], args.concurrency))
            server_cpu = (cpu_seconds(server.pid) - cpu[0]) / args.requests * 1000
            client_cpu = (time.process_time() - cpu[1]) / args.requests * 1000
        finally:
            server.terminate()
            server.wait(timeout=60)
        p50, p99 = (float(np.percentile(lat, q)) * 1000 for q in (50, 99))
        ok = errors == 0 and p99 <= row.p99_ms and (row.p50_ms is None or p50 <= row.p50_ms)
        endpoint = "GET /recommend" if row.request == "get" else "POST /recommend (50-item history)"
        target = f"p99 <= {row.p99_ms:g} ms" + ("" if row.p50_ms is None else f", p50 <= {row.p50_ms:g} ms")
        results.append(
            {
                "model": row.name,
                "dataset": row.data,
                "endpoint": endpoint,
                "requests": args.requests,
                "concurrency": args.concurrency,
                "errors": errors,
                "p50_ms": p50,
                "p99_ms": p99,
                "mean_ms": float(lat.mean()) * 1000,
                "throughput_rps": args.requests / wall,
                "server_cpu_ms_per_request": server_cpu,
                "client_cpu_ms_per_request": client_cpu,
                "target": target,
                "result": "PASS" if ok else "MISS",
                "cpu_count": os.cpu_count(),
                "command": "recbench train " + " ".join(map(shlex.quote, (*TRAIN, *row.overrides))),
            }
        )
        r = results[-1]
        print(
            f"{row.name:8s} {row.data:17s} {endpoint:34s} p50 {p50:6.2f} ms  p99 {p99:6.2f} ms  "
            f"{r['throughput_rps']:7.1f} req/s  errors {errors}  server CPU {server_cpu:.2f} ms/req  "
            f"{r['result']} ({target})",
            flush=True,
        )
        benchkit.write_csv(results, args.out)


if __name__ == "__main__":
    main()
