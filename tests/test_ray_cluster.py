"""The recipe for a Ray cluster that is already running: ``hydra/launcher=ray_cluster`` joins it by address.

The test starts a one-node cluster on 127.0.0.1 with ``ray start --head --block`` (free ports, its own
temp dir, 2 CPUs), runs a two-job sweep through the launcher connecting to ``127.0.0.1:PORT``, checks
the jobs' results, and always stops the cluster it started (the process group of its ``ray start``, by
id: ``ray stop`` would also stop other Ray instances on the machine). The cluster uses Ray's token
authentication with a token made for the test (``RAY_AUTH_TOKEN``), as a real cluster's clients would.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        importlib.util.find_spec("hydra_plugins.hydra_ray_launcher") is None or shutil.which("ray") is None,
        reason="hydra-ray-launcher / ray is not installed (pip install 'recbench[ray]')",
    ),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stop(head: subprocess.Popen[bytes]) -> None:
    """Stop the cluster this test started: the process group of its ``ray start --block`` (by id)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(head.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        head.wait(timeout=60)
    deadline = time.monotonic() + 30
    while _group_alive(head.pid) and time.monotonic() < deadline:
        time.sleep(1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(head.pid, signal.SIGKILL)  # what a graceful stop left behind
    with contextlib.suppress(subprocess.TimeoutExpired):
        head.wait(timeout=10)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture
def ray_head(tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """``(address, env)`` of a Ray head node on 127.0.0.1, stopped at the end whatever happened."""
    port = free_port()
    temp = tempfile.mkdtemp(prefix="rb-ray-", dir="/tmp")  # short: Ray's socket paths must fit 107 chars
    env = {
        **os.environ,  # the cluster's workers import recbench as this process does (PYTHONPATH)
        "RECBENCH_CACHE_DIR": str(tmp_path / "cache"),
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_AUTH_MODE": "token",  # Ray's default: every client of the cluster presents its token
        "RAY_AUTH_TOKEN": secrets.token_hex(16),
    }
    worker_from = free_port()
    cmd = [
        "ray", "start", "--head", "--block", "--node-ip-address=127.0.0.1", f"--port={port}", "--num-cpus=2",
        "--include-dashboard=false", f"--temp-dir={temp}", "--object-store-memory=100000000",
        f"--ray-client-server-port={free_port()}", f"--node-manager-port={free_port()}",
        f"--object-manager-port={free_port()}", f"--dashboard-agent-listen-port={free_port()}",
        f"--dashboard-agent-grpc-port={free_port()}", f"--runtime-env-agent-port={free_port()}",
        f"--metrics-export-port={free_port()}", f"--min-worker-port={worker_from}",
        f"--max-worker-port={worker_from + 40}", "--disable-usage-stats",
    ]  # fmt: skip
    log = open(tmp_path / "ray-head.log", "wb")  # noqa: SIM115 - closed in the finally below
    head = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        address = f"127.0.0.1:{port}"
        deadline = time.monotonic() + 180
        while b"Ray runtime started" not in (tmp_path / "ray-head.log").read_bytes():
            assert head.poll() is None, f"ray start exited with {head.returncode}"
            assert time.monotonic() < deadline, "the Ray head did not start within 180 s"
            time.sleep(1)
        yield address, env
    finally:
        stop(head)
        log.close()
        shutil.rmtree(temp, ignore_errors=True)


def test_sweep_runs_on_an_existing_ray_cluster(tmp_path: Path, ray_head: tuple[str, dict[str, str]]) -> None:
    address, env = ray_head
    out = tmp_path / "sweep"
    args = [
        "-m", "model=pop,random", "dataset=tiny", "trainer=fast", "hydra/launcher=ray_cluster",
        f"hydra.launcher.ray.init.address={address}", f"hydra.sweep.dir={out}",
    ]  # fmt: skip
    proc = subprocess.run(
        [sys.executable, "-m", "recbench", "train", *args],
        cwd=tmp_path,
        env={**env, "HYDRA_FULL_ERROR": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    table = pd.read_csv(out / "summary.csv")
    assert sorted(table["model"]) == ["pop", "random"] and (table["status"] == "ok").all()
    assert (table["test/ndcg@10"] > 0).all()
    assert "Connecting to existing Ray cluster" in proc.stderr + proc.stdout
