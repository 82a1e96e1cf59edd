"""Every fix an error message suggests is a command that works (issue 14).

Error messages write each fix as a command-line override in backticks. Each case below triggers one
such error on tiny data, takes the suggested override from the message (the one that keeps the chosen
model where there is one, else the first) and runs the pipeline with it: the run must finish.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from recbench.errors import RecbenchError
from recbench.pipeline import RunContext, load_dataset, run

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"
FEATURE_FILES = "features=default features.item_file=items.csv features.user_file=users.csv"

#: (overrides that trigger the error, the fix the message must suggest)
CASES = {
    "fm-without-features": (["model=fm"], FEATURE_FILES),
    "mlp-use-features": (["model=mlp", "model.use_features=true"], FEATURE_FILES),
    "ncf-use-features": (["model=ncf", "model.use_features=true"], FEATURE_FILES),
    "content-knn-no-item-features": (
        ["model=content_knn", "features=default", "features.user_file=users.csv"],
        "features=default features.item_file=items.csv",
    ),
    "fm-no-ids-no-user-features": (
        ["model=fm", "model.use_ids=false", "features=default", "features.item_file=items.csv"],
        "features=default features.user_file=users.csv",
    ),
    "mlp-ratings": (["model=mlp", "eval=rating"], "model=mlp model.mode=rating"),
    "pop-probabilities": (["model=pop", "eval=ctr"], "'eval.metrics=[auc]'"),
    "mf-implicit": (["model=mf", "dataset.preprocess.implicit=true"], "dataset.preprocess.implicit=false"),
    "rating-metrics-implicit": (
        ["model=itemknn", "eval=rating", "dataset.preprocess.implicit=true"],
        "eval=default",
    ),
    "ctr-threshold-implicit": (
        ["model=gmf", "eval=ctr", "eval.ctr_threshold=4", "dataset.preprocess.implicit=true"],
        "eval.ctr_threshold=null",
    ),
}


def configure(overrides: list[str], cache: Path):
    base = ["dataset=tiny", "trainer=fast", "trainer.epochs=1", f"paths.cache_dir={cache}"]
    with initialize_config_dir(version_base="1.3", config_dir=str(CONFIG_DIR)):
        return compose("train", overrides=[*base, *overrides])


def suggested(message: str, overrides: list[str]) -> str:
    """The fix to run: the backticked suggestion that keeps the chosen model, else the first one."""
    fixes = re.findall(r"`([^`]+)`", message)
    assert fixes, f"the message suggests no command: {message}"
    model = next((o for o in overrides if o.startswith("model=")), None)
    return next((f for f in fixes if model and model in shlex.split(f)), fixes[0])


def applied(overrides: list[str], fix: str) -> list[str]:
    """``overrides`` with those the fix sets replaced by the fix's own."""
    new = shlex.split(fix)
    keys = {o.split("=", 1)[0] for o in new}
    return [o for o in overrides if o.split("=", 1)[0] not in keys] + new


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """users.csv and items.csv (an id column and one field) for the tiny data, and a data cache."""
    folder = tmp_path_factory.mktemp("fixes")
    ids = load_dataset(configure([], folder / "cache"))[2]
    (folder / "items.csv").write_text(
        "id,kind\n" + "".join(f"{r},k{j % 3}\n" for j, r in enumerate(ids.items))
    )
    (folder / "users.csv").write_text(
        "id,group\n" + "".join(f"{r},g{j % 2}\n" for j, r in enumerate(ids.users))
    )
    return folder


@pytest.fixture
def feature_files(shared: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The working folder holds users.csv and items.csv, as the suggested overrides name them."""
    monkeypatch.chdir(shared)
    return shared


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_suggested_fix_works(case: str, feature_files: Path, tmp_path: Path) -> None:
    overrides, expected = CASES[case]
    cache = feature_files / "cache"
    with pytest.raises(RecbenchError) as caught:
        run(configure(overrides, cache), RunContext(tmp_path / "bad", {"model": "?"}))
    fix = suggested(str(caught.value), overrides)
    assert fix == expected, str(caught.value)
    record = run(configure(applied(overrides, fix), cache), RunContext(tmp_path / "fixed", {}))
    assert record.status == "ok" and record.metrics
