"""`recbench recommend --all --out recs.csv` writes the very lists the test metrics were
computed from: the metrics recomputed from the CSV alone (numpy/pandas) equal those in metrics.json."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from recbench import cli, serving
from recbench.pipeline import RunContext, run

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"


@pytest.mark.parametrize("model", ["itemknn", "pop"])
def test_recommend_writes_the_evaluated_lists(tmp_path: Path, model: str) -> None:
    with initialize_config_dir(version_base="1.3", config_dir=str(CONFIG_DIR)):
        cfg = compose(
            "train",
            overrides=["dataset=tiny", f"model={model}", "eval=beyond", f"paths.cache_dir={tmp_path / 'c'}"],
        )
    run_dir = tmp_path / "run"
    run(cfg, RunContext(run_dir, {"model": model}))
    (run_dir / ".hydra").mkdir()
    OmegaConf.save(cfg, run_dir / ".hydra" / "config.yaml")
    out = tmp_path / "recs.csv"
    with pytest.raises(SystemExit) as done:
        # --all writes the evaluated lists by default (--history test)
        cli.main(["recommend", str(run_dir), "--all", "--k", "10", "--out", str(out)])
    assert done.value.code == 0
    metrics = json.loads((run_dir / "metrics.json").read_text())["metrics"]
    recs = pd.read_csv(out, dtype={"user": str, "item": str})

    loaded = serving.load_run(run_dir)
    split, ids = loaded.split, loaded.ids
    hist = {
        (str(ids.users[u]), str(ids.items[i]))
        for u, i in zip(split.test_history.users, split.test_history.items)
    }
    targets = pd.DataFrame(
        {"user": ids.users[split.test.users].astype(str), "item": ids.items[split.test.items].astype(str)}
    )
    targets = targets[[pair not in hist for pair in zip(targets["user"], targets["item"])]].drop_duplicates()
    rel = targets.groupby("user")["item"].agg(set)
    assert not any(pair in hist for pair in zip(recs["user"], recs["item"]))  # masked as evaluated
    lists = recs.sort_values(["user", "rank"]).groupby("user")["item"].agg(list)
    disc = 1 / np.log2(np.arange(2, 12))
    ndcg = [
        sum(d for d, i in zip(disc, lists.get(u, [])) if i in r) / disc[: min(len(r), 10)].sum()
        for u, r in rel.items()
    ]
    assert np.mean(ndcg) == pytest.approx(metrics["test/ndcg@10"], abs=1e-9)
    evaluated = recs[recs["user"].isin(rel.index)]
    counts = evaluated["item"].value_counts().to_numpy(dtype=float)
    n = loaded.data.n_items
    c = np.sort(np.concatenate([counts, np.zeros(n - len(counts))]))
    gini = ((2 * np.arange(1, n + 1) - n - 1) * c).sum() / (n * c.sum())
    assert gini == pytest.approx(metrics["test/gini@10"], abs=1e-9)
    assert evaluated["item"].nunique() / n == pytest.approx(metrics["test/coverage@10"], abs=1e-12)
    pop = pd.Series([i for _, i in hist]).value_counts()
    arp = evaluated.assign(pop=evaluated["item"].map(pop).fillna(0)).groupby("user")["pop"].mean().mean()
    assert arp == pytest.approx(metrics["test/arp@10"], abs=1e-9)
