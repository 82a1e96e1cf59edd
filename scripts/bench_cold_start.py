"""Cold-start and warm benchmark of the feature-aware models against id-only models on MovieLens 100K.

Protocols (same seed for every model):

* ``cold``: :class:`~recbench.data.cold.ColdItems` (20% of the items only in test). Scored twice:
  ``candidates=cold`` ranks the cold items among themselves (the usual item cold-start measure,
  :class:`~recbench.data.cold.CandidateScorer`), ``candidates=all`` ranks the whole catalogue.
* ``warm``: per-user random holdout 0.8/0.1/0.1 (:class:`~recbench.data.splits.RandomHoldout`), test
  scored with train + validation as history.

Torch models train on the train part for their tuned default number of epochs (no early stopping),
with side features from :func:`recbench.data.features.load_features` (ml-100k: age, gender,
occupation, zip | genre, year). ``ncf+features`` / ``mlp+features`` are NeuMF and the MLP classifier
with ``use_features=True`` (feature embeddings concatenated with the id embeddings), against the
id-only ``ncf`` / ``mlp``. Example::

    python scripts/bench_cold_start.py --out outputs/bench_cold_start.csv --seeds 0,1,2
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import pandas as pd
import torch

from recbench.data.cold import ColdItems, cold_items
from recbench.data.features import load_features
from recbench.data.interactions import Interactions
from recbench.data.sources import MovieLens
from recbench.data.splits import RandomHoldout
from recbench.evaluation.candidates import CandidateScorer
from recbench.evaluation.evaluator import EvalSpec, evaluate
from recbench.models.baselines import Popularity
from recbench.models.factorization import BPR
from recbench.models.feature_models import FM, DeepFM, WideDeep
from recbench.models.mlp import MLPClassifier
from recbench.models.ncf import NeuMF
from recbench.models.neighborhood import ItemKNN
from recbench.training.trainer import Trainer

REPO = Path(__file__).resolve().parents[1]
SPEC = EvalSpec(metrics=("ndcg", "recall"), ks=(10, 20))


def models(seed: int) -> dict[str, object]:
    """Name -> unfitted model, every torch model on its tuned defaults."""
    trainer = Trainer(progress=False, device="cpu")
    return {
        "pop": Popularity(),
        "itemknn": ItemKNN(),
        "bpr": BPR(trainer=trainer, seed=seed),
        "fm": FM(trainer=trainer, seed=seed),
        "widedeep": WideDeep(trainer=trainer, seed=seed),
        "deepfm": DeepFM(trainer=trainer, seed=seed),
        "ncf": NeuMF(trainer=trainer, seed=seed),
        "ncf+features": NeuMF(use_features=True, trainer=trainer, seed=seed),
        "mlp": MLPClassifier(trainer=trainer, seed=seed),
        "mlp+features": MLPClassifier(use_features=True, trainer=trainer, seed=seed),
    }


def run_protocol(data: Interactions, protocol: str, names: list[str], seed: int) -> list[dict]:
    """Fit and evaluate every model of ``names`` on one protocol; one row per (model, candidates)."""
    if protocol == "cold":
        split = ColdItems(fraction=0.2)(data, seed=seed)
    else:
        split = RandomHoldout(ratios=(0.8, 0.1, 0.1))(data, seed=seed)
    cold = cold_items(split)
    rows = []
    for name in names:
        model = models(seed)[name]
        start = time.perf_counter()
        model.fit(split.train)
        fit_s = time.perf_counter() - start
        views = {"cold": CandidateScorer(model, cold), "all": model} if protocol == "cold" else {"all": model}
        for candidates, scorer in views.items():
            result = evaluate(scorer, split.test, split.test_history, SPEC)
            row = {"protocol": protocol, "model": name, "candidates": candidates, **result.metrics}
            row.update(fit_s=round(fit_s, 1), users=len(result.users), seed=seed)
            rows.append(row)
            print(
                ", ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()),
                flush=True,
            )
    return rows


def default_data() -> Path:
    env = os.environ.get("RECBENCH_DATA_DIR")
    root = Path(env) if env else REPO.parent / "shared" / "datasets"
    return root / "ml-100k"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=REPO / "outputs" / "bench_cold_start.csv")
    parser.add_argument(
        "--data", type=Path, default=default_data(), help="folder holding u.data, u.user, u.item"
    )
    parser.add_argument("--seeds", default="0", help="comma-separated seeds (split and models)")
    parser.add_argument(
        "--models", default="pop,itemknn,bpr,fm,widedeep,deepfm,ncf,ncf+features,mlp,mlp+features"
    )
    parser.add_argument("--protocols", default="cold,warm")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the machine may be shared)")
    args = parser.parse_args()
    if not (args.data / "u.data").is_file():
        sys.exit(f"MovieLens 100K not found in {args.data}; pass --data or set RECBENCH_DATA_DIR.")
    torch.set_num_threads(args.threads)

    data, ids = MovieLens(variant="ml-100k", path=args.data, download=False).load()
    user_features, item_features = load_features(args.data, ids)
    data = data.with_features(user_features, item_features)
    rows: list[dict] = []
    for seed in (int(x) for x in args.seeds.split(",")):
        for protocol in args.protocols.split(","):
            rows += run_protocol(data, protocol, args.models.split(","), seed)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            pd.DataFrame(rows).to_csv(args.out, index=False, float_format="%.4f")
    table = pd.DataFrame(rows).groupby(["protocol", "candidates", "model"], sort=False)
    print(table[["ndcg@10", "recall@20"]].mean().round(4).to_string())
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
