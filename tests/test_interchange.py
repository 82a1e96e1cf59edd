"""`recbench data export` and `recbench data stats`: exported splits read back give identical metrics."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from recbench.config import compose
from recbench.data.export import export_split
from recbench.data.interactions import IdMaps, Interactions
from recbench.data.splits import Split
from recbench.data.stats import dataset_stats, gini, short_head_share, tie_share
from recbench.errors import ConfigError, DataError
from recbench.interchange import export_main, stats_main
from recbench.pipeline import RunContext, run


def run_metrics(tmp_path: Path, name: str, *overrides: str) -> dict[str, float]:
    cfg = compose([f"paths.cache_dir={tmp_path / 'cache'}", "trainer=fast", "save_model=false", *overrides])
    record = run(cfg, RunContext(tmp_path / "runs" / name))
    assert record.status == "ok"
    return {k: v for k, v in record.metrics.items() if k.startswith(("val/", "test/"))}


@pytest.mark.parametrize(
    ("fmt", "split", "model"),
    [("recbole", "loo", "bpr"), ("csv", "random", "itemknn"), ("parquet", "random", "ease")],
)
def test_export_then_split_files_gives_identical_metrics(
    tmp_path: Path, fmt: str, split: str, model: str
) -> None:
    common = ("dataset=tiny", f"model={model}", "seed=7")
    original = run_metrics(tmp_path, "original", *common, f"split={split}")
    out = tmp_path / f"tiny-{split}"
    cache = f"paths.cache_dir={tmp_path / 'cache'}"
    assert (
        export_main(["tiny", "--split", split, "--seed", "7", "--format", fmt, "--out", str(out), cache]) == 0
    )
    sidecar = json.loads((out / "export.json").read_text())
    assert (
        sidecar["format"] == fmt
        and sidecar["seed"] == 7
        and sidecar["split"]["_target_"].endswith({"loo": "LeaveOneOut", "random": "RandomHoldout"}[split])
    )
    (entry,) = sidecar["folds"]
    assert sum(p["rows"] for p in entry["parts"].values()) == sidecar["n_interactions"]
    again = run_metrics(tmp_path, "reimported", *common, *entry["reimport"])
    assert again == original and any(k.startswith("val/") for k in original)
    if fmt == "recbole":
        header = (out / f"{out.name}.train.inter").read_text().splitlines()[0]
        assert header == "user_id:token\titem_id:token\trating:float\ttimestamp:float"
        assert entry["recbole"] == {
            "data_path": str(tmp_path),
            "dataset": out.name,
            "benchmark_filename": ["train", "valid", "test"],
        }


def test_kfold_export_writes_every_fold(tmp_path: Path) -> None:
    out = tmp_path / "folds"
    cache = f"paths.cache_dir={tmp_path / 'cache'}"
    export_main(["tiny", "--split", "kfold", "--format", "csv", "--out", str(out), "split.folds=3", cache])
    sidecar = json.loads((out / "export.json").read_text())
    assert [Path(e["folder"]).name for e in sidecar["folds"]] == ["fold0", "fold1", "fold2"]
    tests = [
        set(map(tuple, np.loadtxt(out / f"fold{j}" / "test.csv", delimiter=",", skiprows=1)[:, :2]))
        for j in range(3)
    ]
    assert not (tests[0] & tests[1]) and sum(map(len, tests)) == sidecar["n_interactions"]


def test_export_refuses_what_recbole_cannot_carry_and_saved_configs_keep_their_split(tmp_path: Path) -> None:
    data = Interactions(users=np.array([0, 1]), items=np.array([0, 0]), n_users=2, n_items=1)
    ids = IdMaps(users=np.array(["a\tb", "c"]), items=np.array(["i"]))
    split = Split(train=data.select(np.array([0])), val=None, test=data.select(np.array([1])))
    with pytest.raises(DataError, match="tab or line break.*--format csv"):
        export_split([split], ids, data, tmp_path / "x", fmt="recbole")
    export_split([split], ids, data, tmp_path / "x", fmt="parquet")  # any id goes in Parquet
    run_dir = tmp_path / "run" / ".hydra"
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text("dataset: {_target_: recbench.data.sources.Synthetic}\n")
    with pytest.raises(ConfigError, match="saved run config, whose split is part of it"):
        export_main([str(tmp_path / "run"), "--split", "loo", "--out", str(tmp_path / "y")])


def test_stats_definitions() -> None:
    assert gini(np.array([5, 5, 5, 5])) == 0.0
    assert gini(np.array([0, 0, 0, 10])) == pytest.approx(0.75)
    assert short_head_share(np.array([70, 10, 10, 5, 5])) == pytest.approx(0.7)
    data = Interactions(
        users=np.array([0, 0, 0, 1, 1]),
        items=np.array([0, 1, 2, 0, 1]),
        n_users=2,
        n_items=4,
        ratings=np.array([5, 4, 4, 1, 5], dtype=np.float32),
        timestamps=np.array([10, 10, 20, 5, 6]),
    )
    assert tie_share(data) == pytest.approx(1 / 3)  # (10,10) of user 0; (10,20) and (5,6) differ
    stats = dataset_stats(data)
    assert stats["users"] == 2 and stats["items"] == 3 and stats["density"] == pytest.approx(5 / 6)
    assert stats["rating distribution"] == "1: 20.0%, 4: 40.0%, 5: 40.0%"
    assert stats["interactions per user (min / median / mean / max)"] == "2 / 2.5 / 2.5 / 3"


def test_stats_command_before_and_after_preprocessing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    csv = tmp_path / "r.csv"
    rows = [(u, i, 1 + (u + i) % 5, 100 * u + i) for u in range(12) for i in range(u % 6 + 1)]
    csv.write_text("user,item,rating,ts\n" + "\n".join(",".join(map(str, r)) for r in rows) + "\n1,0,4,5\n")
    args = [
        "csv",
        f"dataset.path={csv}",
        "dataset.columns.rating=rating",
        "dataset.columns.timestamp=ts",
        "dataset.preprocess.user_core=3",
        f"paths.cache_dir={tmp_path / 'cache'}",
    ]
    assert stats_main([*args, "--format", "csv"]) == 0
    lines = dict(line.split(",", 1) for line in capsys.readouterr().out.splitlines()[1:4])
    assert (
        lines["users"] == "12,8" and lines["interactions"] == f"{len(rows) + 1},{len(rows) - 6}"
    )  # the repeat goes, 4 users fall below the 3-core
    stats_main([*args, "--format", "latex", "--out", str(tmp_path / "t.tex")])
    assert "\\toprule" in (tmp_path / "t.tex").read_text()
    pytest.importorskip("matplotlib")
    stats_main([*args, "--plot", str(tmp_path / "s.png")])
    assert (tmp_path / "s.png").stat().st_size > 1000


def test_recbole_reads_the_exported_benchmark_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """RecBole's own loader accepts the export (skipped where RecBole is not installed: its pin
    ray<=2.6.3 clashes with the [ray] extra, so CI does not install it)."""
    for old, new in (("float_", np.float64), ("complex_", np.complex128), ("unicode_", np.str_)):
        monkeypatch.setattr(np, old, new, raising=False)  # RecBole 1.2.1 still names NumPy 1 aliases
    recbole_config = pytest.importorskip("recbole.config")
    from recbole.data import create_dataset, data_preparation

    out = tmp_path / "tinyexp"
    export_main(
        ["tiny", "--split", "loo", "--format", "recbole", "--out", str(out), f"paths.cache_dir={tmp_path}"]
    )
    sidecar = json.loads((out / "export.json").read_text())
    config = recbole_config.Config(
        model="Pop",
        dataset=out.name,
        config_dict={
            "data_path": str(tmp_path),
            "benchmark_filename": ["train", "valid", "test"],
            "load_col": {"inter": ["user_id", "item_id", "rating", "timestamp"]},
            "use_gpu": False,
            "show_progress": False,
            "checkpoint_dir": str(tmp_path / "saved"),
        },
    )
    dataset = create_dataset(config)
    train, valid, test = data_preparation(config, dataset)
    parts = sidecar["folds"][0]["parts"]
    got = [len(train.dataset), len(valid.dataset), len(test.dataset)]
    assert got == [parts["train"]["rows"], parts["valid"]["rows"], parts["test"]["rows"]]


def test_cli_dispatch_and_one_paragraph_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from recbench.cli import main

    with pytest.raises(SystemExit) as done:
        main(["data", "stats", "tiny", "--format", "csv", f"paths.cache_dir={tmp_path}"])
    assert done.value.code == 0 and capsys.readouterr().out.startswith("statistic,before preprocessing,after")
    with pytest.raises(SystemExit) as failed:
        main(["data", "export", "no-such-dataset", "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err
    assert failed.value.code == 2 and "no-such-dataset" in err and "Traceback" not in err
