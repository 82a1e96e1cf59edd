"""The reporting package stays light: no torch anywhere, hydra only in the sweep callback."""

from __future__ import annotations

import subprocess
import sys

CODE = """
import sys
import recbench.reporting.commands, recbench.reporting.plots, recbench.reporting.stats
assert "torch" not in sys.modules and "hydra" not in sys.modules, "heavy import"
import recbench.reporting.callbacks
assert "torch" not in sys.modules, "callbacks import torch"
"""


def test_reporting_imports_neither_torch_nor_hydra_outside_callbacks() -> None:
    result = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
