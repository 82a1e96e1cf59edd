"""Helpers of the reliability suite: composed configs for in-process runs and the CLI in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"


@pytest.fixture
def make_cfg(tmp_path: Path) -> Callable[..., DictConfig]:
    """``make_cfg(*overrides)``: the train config on tiny data, fast CPU trainer, cache under tmp_path."""

    def make(*overrides: str) -> DictConfig:
        with initialize_config_dir(version_base="1.3", config_dir=str(CONFIG_DIR)):
            return compose(
                "train",
                overrides=[
                    "dataset=tiny",
                    "trainer=fast",
                    f"paths.cache_dir={tmp_path / 'cache'}",
                    *overrides,
                ],
            )

    return make


def cli_env(cwd: Path) -> dict[str, str]:
    """Environment of a CLI subprocess: its own cache folder, one thread, short Hydra errors."""
    return {
        **os.environ,
        "RECBENCH_CACHE_DIR": str(cwd / "cache"),
        "HYDRA_FULL_ERROR": "0",
        "OMP_NUM_THREADS": "1",
    }


def cli_command(*args: str) -> list[str]:
    """``python -m recbench ARGS``."""
    return [sys.executable, "-m", "recbench", *args]


@pytest.fixture
def cli(tmp_path: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    """``cli(*args)``: run ``python -m recbench`` in tmp_path and return the finished process."""

    def run(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            cli_command(*args),
            cwd=tmp_path,
            env=cli_env(tmp_path),
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    return run


@pytest.fixture
def cli_spawn(tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen[str]]]:
    """``cli_spawn(*args, log=path, code=None)``: start ``python -m recbench`` in tmp_path without waiting.

    With ``code``, the child runs ``python -c code ARGS`` instead (a harness that patches something and then
    calls ``recbench.cli.main``). Processes still running when the test ends are killed.
    """
    started: list[subprocess.Popen[str]] = []

    def spawn(*args: str, log: Path, code: str | None = None) -> subprocess.Popen[str]:
        command = cli_command(*args) if code is None else [sys.executable, "-c", code, *args]
        with open(log, "w") as fh:  # the child keeps its own copy of the descriptor
            proc = subprocess.Popen(
                command,
                cwd=tmp_path,
                env=cli_env(tmp_path),
                stdout=fh,
                stderr=subprocess.STDOUT,
                text=True,
            )
        started.append(proc)
        return proc

    yield spawn
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
