"""The application scenarios through pipeline.run: trending on a time split, text for cold items."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from hydra import compose, initialize_config_dir

from recbench.pipeline import RunContext, run

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"


def _cfg(tmp_path: Path, *overrides: str):
    with initialize_config_dir(version_base="1.3", config_dir=str(CONFIG_DIR)):
        return compose("train", overrides=[f"paths.cache_dir={tmp_path / 'cache'}", *overrides])


def test_trending_runs_leak_free_on_leave_one_out(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, "dataset=tiny", "split=loo", "model=trending", "model.reference=user")
    record = run(cfg, RunContext(tmp_path / "r", {"model": "trending"}))
    assert record.status == "ok" and np.isfinite(record.metrics["test/ndcg@10"])


def test_text_features_reach_a_cold_item_model(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    words = ["space", "war", "robots", "love", "story", "magic", "dragons", "crime", "city", "night"]
    topic = {f"i{j}": j % 5 for j in range(40)}
    rows = ["user,item"]
    for u in range(60):
        liked = rng.integers(0, 5)
        for item in rng.choice([i for i, t in topic.items() if t == liked], 6, replace=False):
            rows.append(f"u{u},{item}")
    (tmp_path / "data.csv").write_text("\n".join(rows) + "\n")
    texts = ["id,text"] + [f"{i},{words[2 * t]} {words[2 * t + 1]} film" for i, t in topic.items()]
    (tmp_path / "items.csv").write_text("\n".join(texts) + "\n")
    cfg = _cfg(
        tmp_path,
        "dataset=csv",
        f"dataset.path={tmp_path / 'data.csv'}",
        "split=cold_items",
        "model=content_knn",
        "text=tfidf",
        f"text.text_file={tmp_path / 'items.csv'}",
        "text.min_df=1",
    )
    record = run(cfg, RunContext(tmp_path / "r", {"model": "content_knn", "text": "tfidf"}))
    assert record.status == "ok" and record.choices["text"] == "tfidf"
    assert record.metrics["test/cold/ndcg@10"] > 0.5  # the topic words find the cold items
