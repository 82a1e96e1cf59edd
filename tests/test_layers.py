"""The import rules that keep recbench's layers one-way, checked on the source (AST, nothing imported).

* Layers: ``data <- evaluation <- training <- models <- pipeline/serving <- cli``; a module never imports
  a layer above its own. ``errors``, ``files`` and ``serialization`` are shared by every layer and import
  no layer; ``reporting`` reads files and may use ``evaluation`` names, nothing above.
* Hydra and OmegaConf stay at the edges: ``cli``, ``pipeline``, ``config``, ``serving`` and the sweep
  callback ``reporting.callbacks``.
* ``recbench.data`` never imports the CLI or a ``commands`` module.
* A model file (the module of a ``_target_`` in ``configs/model/``) holds one model family: no other
  module under ``recbench.models`` imports it, so shared blocks live in shared modules.
* No module imports another module's private (``_``-prefixed) names.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]

#: Rank of each package (a module may import only equal or lower ranks).
LAYERS = {
    "data": 0,
    "evaluation": 1,
    "training": 2,
    "models": 3,
    "pipeline": 4,
    "serving": 4,
    "explanations": 4,
    "service": 4,
    "cli": 5,
    "interchange": 5,  # `recbench data export|stats`: command code beside cli
}
#: Top-level modules every layer may use; they import no layer.
SHARED = {"errors", "files", "serialization"}
HYDRA_EDGE = {"recbench.cli", "recbench.pipeline", "recbench.config", "recbench.serving"}
HYDRA_EDGE_PACKAGES = ("recbench.reporting.callbacks", "recbench.serving.")


def _imports(source: str) -> Iterable[tuple[str, str | None]]:
    """``(module, name or None)`` of every absolute import in ``source`` (function-level ones too)."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, None
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                yield node.module, alias.name


def _layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "recbench" else None


def violations(sources: Mapping[str, str], model_files: set[str]) -> list[str]:
    """Every broken rule in ``sources`` (module name -> source text), one line each."""
    found = []
    for module, source in sources.items():
        own = _layer(module)
        for target, name in _imports(source):
            full = f"{target}.{name}" if name else target
            where = f"{module} imports {full}"
            if target.split(".")[0] in ("hydra", "omegaconf"):
                if module not in HYDRA_EDGE and not module.startswith(HYDRA_EDGE_PACKAGES):
                    found.append(f"{where}: Hydra/OmegaConf belong to cli, pipeline, config, serving")
                continue
            if not target.startswith("recbench"):
                continue
            # `from recbench import x` names a module; `from recbench.a import b` may too
            imported = full if target == "recbench" or full in sources else target
            theirs = _layer(imported)
            if own in SHARED and theirs in LAYERS:
                found.append(f"{where}: {own} is shared by every layer and imports none")
            if own in LAYERS and theirs in LAYERS and LAYERS[theirs] > LAYERS[own]:
                found.append(f"{where}: {own} may not import the layer above it ({theirs})")
            if own == "reporting" and theirs in LAYERS and theirs != "evaluation":
                found.append(f"{where}: reporting reads run files and may use evaluation only")
            if own == "data" and (theirs == "cli" or imported.endswith(".commands")):
                found.append(f"{where}: the data layer never imports a CLI or commands module")
            if module.startswith("recbench.models.") and imported in model_files and imported != module:
                found.append(f"{where}: a model file is no library; shared blocks get their own module")
            if name and name.startswith("_") and not name.startswith("__"):
                found.append(f"{where}: {name} is private to {target}")
    return found


def _sources() -> dict[str, str]:
    out = {}
    for file in sorted((ROOT / "recbench").rglob("*.py")):
        parts = list(file.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = file.read_text(encoding="utf-8")
    return out


def _model_files() -> set[str]:
    out = set()
    for file in (ROOT / "configs" / "model").glob("*.yaml"):
        target = (yaml.safe_load(file.read_text(encoding="utf-8")) or {}).get("_target_")
        if target:
            out.add(str(target).rsplit(".", 1)[0])
    return out


def test_the_source_tree_keeps_every_import_rule() -> None:
    model_files = _model_files()
    assert {"recbench.models.ncf", "recbench.models.mlp", "recbench.models.neighborhood"} <= model_files
    assert violations(_sources(), model_files) == []


def test_each_rule_catches_its_violation() -> None:
    models = {"recbench.models.mlp", "recbench.models.ncf"}
    bad = {
        "recbench.data.sources": "from recbench.data.commands import DATASETS\nfrom recbench import cli\n",
        "recbench.data.commands": "",
        "recbench.cli": "",
        "recbench.models.ncf": "from recbench.models.mlp import MLPBranch\n",
        "recbench.models.mlp": "",
        "recbench.validation": "from omegaconf import DictConfig\n",
        "recbench.evaluation.evaluator": "def f():\n    from recbench.models.base import Recommender\n",
        "recbench.reporting.tables": "from recbench.models import base\n",
        "recbench.files": "from recbench.data.interactions import Interactions\n",
        "recbench.training.trainer": "from recbench.evaluation.ctr import _private\n",
    }
    found = violations(bad, models)
    expected = [
        "recbench.data.sources imports recbench.data.commands.DATASETS: the data layer",
        "recbench.data.sources imports recbench.cli: the data layer",
        "recbench.models.ncf imports recbench.models.mlp.MLPBranch: a model file",
        "recbench.validation imports omegaconf.DictConfig: Hydra",
        "recbench.evaluation.evaluator imports recbench.models.base.Recommender: evaluation may not",
        "recbench.reporting.tables imports recbench.models.base: reporting",
        "recbench.files imports recbench.data.interactions.Interactions: files is shared",
        "recbench.training.trainer imports recbench.evaluation.ctr._private: _private is private",
    ]
    for start in expected:
        assert any(line.startswith(start) for line in found), (start, found)
    assert len(found) == len(expected) + 1  # `from recbench import cli` also climbs from data to cli
