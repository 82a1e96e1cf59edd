"""Cold-start and warm benchmark of the feature-aware models against id-only models on MovieLens 100K.

    python scripts/bench_cold_start.py [--out outputs/bench_cold_start.csv] [--seeds 0,1,2] [--only fm,cold]

Every row is one ``recbench train`` run (composed and run by :mod:`benchkit`, one thread); the CSV's
``command`` column reproduces it. Protocols (same seed for every model):

* ``cold``: ``split=cold_items`` (20% of the items only in test). The pipeline scores it twice:
  ``test/cold/ndcg@10`` ranks the cold items among themselves (the usual item cold-start measure,
  :class:`~recbench.evaluation.candidates.CandidateScorer`; id-only models are reported unable there),
  ``test/ndcg@10`` ranks the whole catalogue.
* ``warm``: ``split=random`` (per-user 0.8/0.1/0.1), test scored with train + validation as history.

Torch models train for their tuned default number of epochs without early stopping
(``trainer.early_stopping=null``). Feature-aware models read the dataset's default side features (ml-100k:
age, gender, occupation, zip | genre, year); ``ncf+features`` / ``mlp+features`` are NeuMF and the MLP
classifier with ``model.use_features=true``, against the id-only ``ncf`` / ``mlp``.
"""

from __future__ import annotations

import benchkit as bk

MODELS = {
    "pop": ("model=pop",),
    "itemknn": ("model=itemknn",),
    "bpr": ("model=bpr",),
    "fm": ("model=fm",),
    "widedeep": ("model=widedeep",),
    "deepfm": ("model=deepfm",),
    "ncf": ("model=ncf",),
    "ncf+features": ("model=ncf", "model.use_features=true"),
    "mlp": ("model=mlp",),
    "mlp+features": ("model=mlp", "model.use_features=true"),
}
PROTOCOLS = {
    "cold": (("split=cold_items",), ("test/cold/ndcg@10", "test/cold/recall@20", "test/ndcg@10")),
    "warm": (bk.HOLDOUT_80_10_10, ("test/ndcg@10", "test/recall@20")),
}
COMMON = ("dataset=ml-100k", "trainer.early_stopping=null", "eval.metrics=[ndcg,recall]", "eval.ks=[10,20]")
CASES = [
    bk.Case(name, protocol, (*COMMON, *model, *split), metrics)
    for protocol, (split, metrics) in PROTOCOLS.items()
    for name, model in MODELS.items()
]


def main() -> None:
    args = bk.parser(__doc__ or "", "bench_cold_start").parse_args()
    bk.run_all(CASES, args)


if __name__ == "__main__":
    main()
