"""Nothing recbench reads is unpickled: a source scan, and tampered files that would run code if it were.

The scan parses every module of the package and refuses pickle-like imports (pickle, dill, joblib, ...),
``torch.load`` without ``weights_only=True``, ``np.load`` without ``allow_pickle=False``, any
``allow_pickle=True`` and ``read_pickle``. The tampered files hold a pickled object whose unpickling
would create a marker file: every reader must refuse them and the marker must never appear.
"""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest
import torch

import recbench
from recbench.data.cache import cache_path, load_cached, params_key
from recbench.data.interactions import IdMaps, Interactions
from recbench.errors import ConfigError, RecbenchError
from recbench.models.baselines import Popularity
from recbench.models.factorization import BPR
from recbench.models.persistence import NUMPY_FILE, TORCH_FILE, load_state
from recbench.reporting.records import PER_USER_FILE, read_per_user
from recbench.training import Trainer
from recbench.training.checkpoint import CHECKPOINT_FILE, load_checkpoint

PACKAGE = Path(recbench.__file__).resolve().parent
PICKLERS = {
    "pickle",
    "cPickle",
    "_pickle",
    "dill",
    "cloudpickle",
    "joblib",
    "shelve",
    "marshal",
    "jsonpickle",
}


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return "?"


def _keyword(call: ast.Call, name: str) -> object:
    for kw in call.keywords:
        if kw.arg == name:
            return kw.value.value if isinstance(kw.value, ast.Constant) else "<not a constant>"
    return "<missing>"


def unpickling_problems(source: str, where: str) -> list[str]:
    """Places in ``source`` that could unpickle data."""
    problems = []
    for node in ast.walk(ast.parse(source)):
        line = f"{where}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.Import):
            problems += [f"{line} imports {a.name}" for a in node.names if a.name.split(".")[0] in PICKLERS]
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if module.split(".")[0] in PICKLERS:
                problems.append(f"{line} imports from {module}")
            if module in ("torch", "numpy") and any(a.name == "load" for a in node.names):
                problems.append(f"{line} imports load from {module} (call it as {module}.load)")
        elif isinstance(node, ast.Call):
            name = _dotted(node.func)
            if name in ("torch.load",) and _keyword(node, "weights_only") is not True:
                problems.append(f"{line} torch.load without weights_only=True")
            if name in ("np.load", "numpy.load") and _keyword(node, "allow_pickle") is not False:
                problems.append(f"{line} {name} without allow_pickle=False")
            if _keyword(node, "allow_pickle") is True:
                problems.append(f"{line} allow_pickle=True")
            if name.endswith("read_pickle") or name.endswith("to_pickle"):
                problems.append(f"{line} {name}")
    return problems


def test_the_scanner_finds_what_it_looks_for() -> None:
    bad = (
        "import pickle\nfrom joblib import load\nimport numpy as np, torch\nimport pandas as pd\n"
        "torch.load(p)\ntorch.load(p, weights_only=False)\nnp.load(p)\nnp.savez(p, allow_pickle=True)\n"
        "pd.read_pickle(p)\nfrom torch import load\n"
        "torch.load(p, weights_only=True)\nnp.load(p, allow_pickle=False)\n"
    )
    found = unpickling_problems(bad, "x.py")
    assert sorted(int(f.split(" ", 1)[0].split(":")[1]) for f in found) == [1, 2, 5, 6, 7, 8, 9, 10]


def test_package_source_never_unpickles() -> None:
    files = sorted(PACKAGE.rglob("*.py"))
    assert len(files) > 20
    problems = [
        p for f in files for p in unpickling_problems(f.read_text(), str(f.relative_to(PACKAGE.parent)))
    ]
    assert problems == []


# -- tampered files -----------------------------------------------------------------------------------------


class Payload:
    """Unpickling this object creates ``marker`` (a stand-in for running any code)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (open, (str(self.marker), "w"))


@pytest.fixture
def marker(tmp_path: Path) -> Path:
    path = tmp_path / "CODE-WAS-RUN"
    yield path
    assert not path.exists(), "a tampered file was unpickled"


def object_npz(path: Path, marker: Path) -> None:
    arr = np.empty(1, dtype=object)
    arr[0] = Payload(marker)
    with open(path, "wb") as fh:
        np.savez(fh, users=arr, shape=arr, id_users=arr, id_items=arr, items=arr)


def test_tampered_torch_model_is_refused(tmp_path: Path, marker: Path) -> None:
    torch.save({"user.weight": Payload(marker)}, tmp_path / TORCH_FILE)
    train = Interactions([0, 1], [0, 1], 2, 2)
    with pytest.raises(RecbenchError, match=rf"{TORCH_FILE} is not a readable recbench model file"):
        load_state(BPR(factors=2, trainer=Trainer(device="cpu")), tmp_path, train=train)


def test_tampered_numpy_model_is_refused(tmp_path: Path, marker: Path) -> None:
    object_npz(tmp_path / NUMPY_FILE, marker)
    with pytest.raises(RecbenchError, match=rf"{NUMPY_FILE} is not a readable recbench model file"):
        load_state(Popularity(), tmp_path)


def test_tampered_checkpoint_is_refused(tmp_path: Path, marker: Path) -> None:
    torch.save({"epoch": 3, "network": Payload(marker)}, tmp_path / CHECKPOINT_FILE)
    with pytest.raises(ConfigError, match="not a readable recbench checkpoint"):
        load_checkpoint(tmp_path)


def test_tampered_per_user_metrics_are_refused(tmp_path: Path, marker: Path) -> None:
    object_npz(tmp_path / PER_USER_FILE, marker)
    with pytest.raises(RecbenchError, match="Cannot read per-user metrics"):
        read_per_user(tmp_path)


class Source:
    name = "tampered"

    def cache_key(self) -> dict:
        return params_key(self)

    def load(self) -> tuple[Interactions, IdMaps]:
        return Interactions([0, 1], [1, 0], 2, 2), IdMaps(users=np.array([5, 6]), items=np.array([7, 8]))


def test_tampered_cache_file_is_rebuilt_not_loaded(tmp_path: Path, marker: Path) -> None:
    path = cache_path(Source(), tmp_path)
    object_npz(path, marker)
    data, ids = load_cached(Source(), tmp_path)
    assert data.users.tolist() == [0, 1] and ids.users.tolist() == [5, 6]
