"""Bad configs: one clear message naming the key and value, before any data is loaded or model trained.

Option names that do not exist are refused by Hydra itself (its message lists the options); values,
types, ranges and model/data mismatches are refused by recbench with a ConfigError. On the command
line every such error exits with status 2 and prints one paragraph, no traceback.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path

import pytest
from hydra.errors import ConfigCompositionException, MissingConfigException

from recbench.errors import ConfigError
from recbench.pipeline import RunContext, run


@pytest.mark.parametrize(
    ("override", "listed"), [("model=nope", "bpr"), ("dataset=nope", "tiny"), ("split=nope", "loo")]
)
def test_unknown_option_lists_the_available_ones(make_cfg: Callable, override: str, listed: str) -> None:
    with pytest.raises(
        MissingConfigException, match=rf"(?s)Could not find '{override.split('=')[0]}/nope'.*{listed}"
    ):
        make_cfg(override)


def test_unknown_key(tmp_path: Path, make_cfg: Callable) -> None:
    with pytest.raises(ConfigCompositionException, match=r"Could not override 'model\.factorz'"):
        make_cfg("model=bpr", "model.factorz=3")
    with pytest.raises(
        ConfigError, match=r"Unknown key\(s\) model\.factorz for .*BPR\. Valid keys are: factors"
    ):
        run(make_cfg("model=bpr", "+model.factorz=3"), RunContext(tmp_path / "a"))
    with pytest.raises(
        ConfigError, match=r"Unknown key\(s\) trainer\.epoch for .*Trainer\. Valid keys are: epochs"
    ):
        run(make_cfg("model=bpr", "+trainer.epoch=3"), RunContext(tmp_path / "b"))


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("trainer.epochs=abc", r"trainer\.epochs='abc' is not valid: .*Trainer expects an integer"),
        ("trainer.epochs=2.5", r"trainer\.epochs=2\.5 is not valid: .*expects an integer"),
        ("trainer.lr=fast", r"trainer\.lr='fast' is not valid: .*expects a number"),
        ("model.factors=[8]", r"model\.factors=\[8\] is not valid: .*BPR expects an integer"),
        ("model.item_bias=maybe", r"model\.item_bias='maybe' is not valid: .*expects true or false"),
        ("trainer.progress=3", r"trainer\.progress=3 is not valid: .*expects true or false"),
    ],
)
def test_wrong_type(tmp_path: Path, make_cfg: Callable, override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        run(make_cfg("model=bpr", override), RunContext(tmp_path))
    assert json.loads((tmp_path / "metrics.json").read_text())["status"] == "failed"


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("trainer.lr=0", r"trainer\.lr=0 must be a positive number"),
        ("trainer.lr=-1e-3", r"trainer\.lr=-0\.001 must be a positive number"),
        ("trainer.epochs=0", r"trainer\.epochs=0 must be >= 1"),
        ("trainer.batch_size=-5", r"trainer\.batch_size=-5 must be >= 1"),
        ("eval.ks=[10,0]", r"eval\.ks=\[10, 0\] must be a non-empty list of positive integers"),
        ("eval.ks=[]", r"eval\.ks=\[\] must be a non-empty list"),
        ("eval.sampled_negatives=-1", r"eval\.sampled_negatives=-1 must be >= 0"),
        (
            "split.ratios=[0.8,0.1,0.2]",
            r"split\.ratios=\[0\.8, 0\.1, 0\.2\] must sum to 1 \(they sum to 1\.1\)",
        ),
        ("split.ratios=[0.9,0.2,-0.1]", r"split\.ratios=.*every ratio must be a positive number"),
        (
            "trainer.early_stopping={_target_:recbench.training.EarlyStopping,patience:0}",
            r"trainer\.early_stopping\.patience and \.every must be >= 1",
        ),
    ],
)
def test_out_of_range(tmp_path: Path, make_cfg: Callable, override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        run(make_cfg("model=bpr", override), RunContext(tmp_path))


def test_cutoff_larger_than_the_catalogue_runs_and_is_logged(
    tmp_path: Path, make_cfg: Callable, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="recbench.evaluation"):
        record = run(make_cfg("model=pop", "eval.ks=[10,100]"), RunContext(tmp_path))
    assert record.status == "ok" and record.metrics["test/recall@100"] == pytest.approx(1.0)
    assert "k=100 exceeds the catalogue (40 items)" in caplog.text


def no_timestamps_csv(tmp_path: Path) -> Path:
    path = tmp_path / "plain.csv"
    path.write_text(
        "user,item,rating\n" + "".join(f"{u},{i},{1 + (u + i) % 5}\n" for u in range(12) for i in range(8))
    )
    return path


def test_sequential_model_on_data_without_timestamps(tmp_path: Path, make_cfg: Callable) -> None:
    cfg = make_cfg(
        "model=sasrec",
        "dataset=csv",
        f"dataset.path={no_timestamps_csv(tmp_path)}",
        "dataset.columns.rating=rating",
    )
    with pytest.raises(
        ConfigError,
        match=r"model=SASRec reads time-ordered histories, but dataset .*CsvSource has no timestamps",
    ):
        run(cfg, RunContext(tmp_path / "r"))


def test_rating_model_on_implicit_data(tmp_path: Path, make_cfg: Callable) -> None:
    with pytest.raises(ConfigError, match=r"model=MF learns explicit ratings, but the data is implicit"):
        run(make_cfg("model=mf", "dataset.preprocess.implicit=true"), RunContext(tmp_path))


def test_rating_metrics_with_a_ranking_model(tmp_path: Path, make_cfg: Callable) -> None:
    with pytest.raises(
        ConfigError, match=r"eval\.metrics asks for rmse, mae \(predicted ratings\), but model=BPR does not"
    ):
        run(make_cfg("model=bpr", "eval=rating"), RunContext(tmp_path))


def test_time_split_on_data_without_timestamps(tmp_path: Path, make_cfg: Callable) -> None:
    cfg = make_cfg("model=pop", "split=loo", "dataset=csv", f"dataset.path={no_timestamps_csv(tmp_path)}")
    with pytest.raises(
        ConfigError, match=r"split=loo orders interactions by time, but this dataset has no timestamps"
    ):
        run(cfg, RunContext(tmp_path / "r"))


@pytest.mark.slow
@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        (["model=bpr", "trainer.epochs=abc"], "trainer.epochs='abc'"),
        (["dataset=csv", "dataset.path=missing.csv"], "missing.csv does not exist"),
        (["model=bpr", "+model.factorz=3"], "model.factorz"),
    ],
    ids=["wrong-type", "missing-file", "unknown-key"],
)
def test_cli_exits_2_with_one_paragraph(
    tmp_path: Path, cli: Callable, overrides: list[str], named: str
) -> None:
    proc = cli("train", "dataset=tiny", *overrides, f"hydra.run.dir={tmp_path / 'r'}")
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert named in " ".join(proc.stderr.split())  # rich may wrap the paragraph
    assert json.loads((tmp_path / "r" / "metrics.json").read_text())["status"] == "failed"
