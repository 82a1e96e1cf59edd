"""Load benchmark of ``recbench serve``: latency percentiles and throughput of a bounded request stream.

Each row trains one run exactly as ``recbench train <overrides> save_model=true`` would (the pipeline, via
:mod:`benchkit`; a finished run of the same config in ``--runs`` is reused), starts ``recbench serve`` on it
in a subprocess on a free 127.0.0.1 port (one worker, one torch thread), then sends ``--requests`` requests
at ``--concurrency`` (after ``--warmup`` unmeasured ones) and stops by itself. ``GET /recommend`` rows ask
for a random known user's top 10; ``POST /recommend`` rows send a random 50-item history (a made-up
session). A request counts as an error unless it answers 200 with 10 items.

The client is a plain asyncio HTTP/1.1 keep-alive client (one connection per request in flight, requests
encoded before the clock starts, on uvloop when installed): it shares the machine with the server, and
an HTTP library's own per-request CPU (httpx's is larger than a served recommendation's) would be
measured as server latency on a 2-core machine. Rows: p50 / p99 / mean latency (ms, measured by the
client, so they include HTTP and the event loop), throughput (requests/s), errors, the server's and the
client's CPU milliseconds per request (from ``/proc``; unlike latency, barely moved by other load on the
machine), the server's peak memory, the machine's 1-minute load average before and after the row, the
target of the issue and PASS/MISS.

    python scripts/bench_serve.py                      # every ml-100k row (trains what is missing first)
    python scripts/bench_serve.py --only itemknn:ml-100k,ease --requests 2000
    python scripts/bench_serve.py --only ml-20m-shape   # large: trains ~20M interactions

The ``ml-20m-shape`` rows (MovieLens-20M's users, items and interactions on seeded synthetic data) run only
when named in ``--only``: their training and the server each need several GiB.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shlex
import socket
import subprocess
import sys
import time
import urllib.request
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
#: MovieLens-20M's shape (138,493 users, 26,744 items, 20M interactions) on seeded synthetic data. The
#: servable run is trained with a cheaper evaluation (no validation split, NDCG@10 only): the serving
#: latency is what these rows measure, and full ranking of 138k users dominates the training run.
ML20M_SHAPE = (
    "dataset=synthetic-1m",
    "dataset.n_users=138493",
    "dataset.n_items=26744",
    "dataset.n_interactions=20000000",
    "split=loo",
    "split.validation=false",
    "eval.metrics=[ndcg]",
    "eval.ks=[10]",
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
    Row("itemknn", "ml-20m-shape", (*ML20M_SHAPE, "model=itemknn"), "get", None, 100.0),
    Row("als", "ml-20m-shape", (*ML20M_SHAPE, "model=als"), "get", None, 100.0),
]
#: Rows that run only when named in ``--only`` (several GiB each).
LARGE = {"ml-20m-shape"}


def trained(row: Row, runs: Path, data_dir: str | None, reuse: bool = False) -> Path:
    """The run directory of ``row``: trained now unless a finished run of the same config is there.

    With ``reuse``, a finished run of the row found there is served even when its config digest
    differs from today's composition (config keys added since it was trained): it keeps its own
    ``.hydra/config.yaml``, which is what the run loader rebuilds it from.
    """
    overrides = (*TRAIN, *(() if data_dir is None else (f"paths.data_dir={data_dir}",)), *row.overrides)
    run_dir = runs / f"{row.name}_{row.data}"
    cfg = benchkit.compose_config(overrides)
    has_model = any(run_dir.glob("model.*"))
    if reuse and has_model and (run_dir / ".hydra" / "config.yaml").is_file() and _finished(run_dir):
        print(f"serving the finished run {run_dir} as trained", flush=True)
    else:
        if finished_record(run_dir, config_digest(cfg)) is None or not has_model:
            print(f"training: recbench train {' '.join(map(shlex.quote, overrides))}", flush=True)
            benchkit.run_once(overrides, run_dir)
        (run_dir / ".hydra").mkdir(exist_ok=True)
        OmegaConf.save(cfg, run_dir / ".hydra" / "config.yaml")  # what the run loader reads
    (run_dir / "interactions.jsonl").unlink(missing_ok=True)  # a fresh log: only reads are measured
    return run_dir


def _finished(run_dir: Path) -> bool:
    """Whether ``run_dir/metrics.json`` records a run that finished with status ok."""
    try:
        return json.loads((run_dir / "metrics.json").read_text()).get("status") == "ok"
    except (OSError, ValueError):
        return False


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (Linux ``/proc``; NaN elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mib(pid: int) -> float:
    """Peak resident memory (MiB) of process ``pid`` so far (Linux ``/proc``; NaN elsewhere)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(run_dir: Path, port: int) -> subprocess.Popen:
    """``recbench serve run_dir`` (one BLAS and torch thread), once ``/health`` answers."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "recbench", "serve", str(run_dir), "--port", str(port), "--threads", "1"],
        env=env,
    )
    deadline = time.monotonic() + 1800  # a 20M-interaction run rebuilds its data and split first
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server of {run_dir} exited with status {proc.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as resp:
                if resp.status == 200:
                    return proc
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise SystemExit(f"the server of {run_dir} did not start within 1800 s")


def encode_request(method: str, payload: dict) -> bytes:
    """One HTTP/1.1 request to ``/recommend`` (``get``: query parameters, ``post``: a JSON body)."""
    if method == "get":
        query = "&".join(f"{k}={v}" for k, v in payload.items())
        return f"GET /recommend?{query} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
    body = json.dumps(payload).encode()
    head = (
        "POST /recommend HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def load(port: int, requests: list[bytes], concurrency: int) -> tuple[np.ndarray, int, float]:
    """Send ``requests`` over ``concurrency`` keep-alive connections: (latencies s, errors, wall s).

    Each connection sends its next request when the previous answer is complete; an answer is read
    by its ``Content-Length``, and counts as an error unless it is a 200 with 10 items.
    """
    latencies = np.full(len(requests), np.nan)
    errors = 0
    cursor = 0

    async def exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> bool:
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        body = await reader.readexactly(length)
        return head.startswith(b"HTTP/1.1 200") and len(json.loads(body)["items"]) == 10

    async def connection() -> None:
        nonlocal cursor, errors
        streams = None
        while cursor < len(requests):
            j = cursor
            cursor += 1
            start = time.perf_counter()
            try:
                streams = streams or await asyncio.open_connection("127.0.0.1", port)
                ok = await exchange(*streams, requests[j])
            except (OSError, ValueError, KeyError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
                ok, streams = False, None  # a failed exchange: the next request opens a new connection
            latencies[j] = time.perf_counter() - start
            errors += not ok
        if streams is not None:
            streams[1].close()

    wall = time.perf_counter()
    await asyncio.gather(*(connection() for _ in range(concurrency)))
    return latencies, errors, time.perf_counter() - wall


def run_loop(coro: object) -> object:
    """Run ``coro`` on uvloop when installed (a lighter client), else on asyncio's loop."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)  # type: ignore[arg-type]
    return uvloop.run(coro)  # type: ignore[arg-type]


def make_requests(row: Row, run_dir: Path, n: int, seed: int) -> list[bytes]:
    """``n`` random encoded requests of the row's kind over the run's dataset ids."""
    cfg = OmegaConf.load(run_dir / ".hydra" / "config.yaml")
    _, ids = load_cached(build(cfg.dataset, "dataset"), cfg.paths.get("cache_dir"))
    rng = np.random.default_rng(seed)
    if row.request == "get":
        users = rng.choice(ids.users.astype(str), size=n)
        return [encode_request("get", {"user": str(u), "k": 10}) for u in users]
    items = ids.items.astype(str)
    return [
        encode_request("post", {"history": rng.choice(items, 50, replace=False).tolist(), "k": 10})
        for _ in range(n)
    ]


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
    p.add_argument(
        "--runs", type=Path, default=None, help="folder of the trained runs (default: beside --out)"
    )
    p.add_argument(
        "--reuse",
        action="store_true",
        help="serve finished runs found in --runs as they are, even if the config has gained keys since",
    )
    args = p.parse_args()
    wanted = {w.strip() for w in args.only.split(",") if w.strip()}
    runs = args.runs or args.out.parent / (args.out.stem + "_runs")
    results = []
    for row in ROWS:
        names = {row.name, row.data, f"{row.name}:{row.data}"}
        if (wanted and not wanted & names) or (row.data in LARGE and not wanted & {row.data, *names}):
            continue
        run_dir = trained(row, runs, args.data_dir, args.reuse)
        requests = make_requests(row, run_dir, args.warmup + args.requests, args.seed)
        port = free_port()
        server = start_server(run_dir, port)
        try:
            run_loop(load(port, requests[: args.warmup], args.concurrency))
            load_before = os.getloadavg()[0]
            cpu = cpu_seconds(server.pid), time.process_time()
            lat, errors, wall = run_loop(load(port, requests[args.warmup :], args.concurrency))
            server_cpu = (cpu_seconds(server.pid) - cpu[0]) / args.requests * 1000
            client_cpu = (time.process_time() - cpu[1]) / args.requests * 1000
            server_rss = peak_rss_mib(server.pid)
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
                "server_peak_rss_mib": server_rss,
                "target": target,
                "result": "PASS" if ok else "MISS",
                "load_avg_before": load_before,
                "load_avg_after": os.getloadavg()[0],
                "cpu_count": os.cpu_count(),
                "command": "recbench train " + " ".join(map(shlex.quote, (*TRAIN, *row.overrides))),
            }
        )
        r = results[-1]
        print(
            f"{row.name:8s} {row.data:17s} {endpoint:34s} p50 {p50:6.2f} ms  p99 {p99:6.2f} ms  "
            f"{r['throughput_rps']:7.1f} req/s  errors {errors}  server CPU {server_cpu:.2f} ms/req  "
            f"load {load_before:.1f}-{r['load_avg_after']:.1f}  "
            f"{r['result']} ({target})",
            flush=True,
        )
        benchkit.write_csv(results, args.out)


if __name__ == "__main__":
    main()
