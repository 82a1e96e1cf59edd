"""Golden numbers on the shared MovieLens 100K (skipped when it is absent).

Numpy models are deterministic, so their metrics are pinned tightly; a change here is a change in results
and must be explained in the commit that updates these numbers.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from recbench.pipeline import RunContext, run

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"

# test/ndcg@10 and test/recall@20 on ml-100k, split=random (0.8/0.1/0.1 per user), seed 1, full ranking
GOLDEN = {
    "pop": (0.13952, 0.17060),
    "itemknn": (0.30123, 0.36136),
}


@pytest.mark.parametrize("model", sorted(GOLDEN))
def test_ml100k_golden(model: str, ml100k_dir: Path, tmp_path: Path) -> None:
    with initialize_config_dir(version_base="1.3", config_dir=str(CONFIG_DIR)):
        cfg = compose(
            "train",
            overrides=[
                f"model={model}",
                "dataset=ml-100k",
                f"dataset.path={ml100k_dir}",
                "split=random",
                "seed=1",
                f"paths.cache_dir={tmp_path / 'cache'}",
            ],
        )
    record = run(cfg, RunContext(tmp_path / "run", {"model": model}))
    ndcg, recall = GOLDEN[model]
    assert record.metrics["test/ndcg@10"] == pytest.approx(ndcg, abs=1e-5)
    assert record.metrics["test/recall@20"] == pytest.approx(recall, abs=1e-5)
