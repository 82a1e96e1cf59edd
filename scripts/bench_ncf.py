"""Benchmark the neural CF models (GMF, NCF-MLP, NeuMF, the MLP classifier, DMF) through the pipeline.

    python scripts/bench_ncf.py [--out outputs/bench_ncf.csv] [--seed 0] [--only ncf,dmf]

Every row is one ``recbench train`` run (composed and run by :mod:`benchkit`, one thread); the CSV's
``command`` column reproduces it. Models run with their defaults (hyperparameters and
``training_defaults``); every rating is a positive (DMF also reads the ratings as input values). Rows
(model, protocol, metric, value, seconds, epochs, best epoch, phase timings):

- ``ml-100k/holdout-0.8-0.2``: ``split=random split.ratios=[0.8,0.2]``, no validation, test NDCG@10.
- ``ml-100k/holdout-0.8-0.1-0.1``: ``split=random``, early stopping on validation NDCG@10 (best weights
  restored; NeuMF validates every 4 epochs with patience 2, since a full ranking through its MLP costs
  about half an epoch; DMF every epoch with patience 3), test NDCG@10; ``seconds`` = fit + evaluation.
- ``speed/holdout-0.8-0.1-0.1/20-epochs-4-negatives``: NeuMF, 20 epochs, 4 negatives per positive, no
  early stopping, plus the test evaluation; ``seconds`` = fit + evaluation.

Targets from the brief are checked and printed at the end (``PASS`` / ``MISS``); the NeuMF and DMF
time targets are a fifth of what the reference library needed (65 s and 158 s).
"""

from __future__ import annotations

import benchkit as bk

ML100K = ("dataset=ml-100k",)
HOLDOUT = "ml-100k/holdout-0.8-0.1-0.1"
SPEED = "speed/holdout-0.8-0.1-0.1/20-epochs-4-negatives"
STOPPING = {
    "ncf": ("trainer.early_stopping.patience=2", "trainer.early_stopping.every=4"),
    "dmf": ("trainer.early_stopping.patience=3", "trainer.early_stopping.every=1"),
}
#: the 0.8/0.1/0.1 split, trained without early stopping (the validation part is unused)
NO_STOPPING = (*bk.HOLDOUT_80_10_10, "trainer.early_stopping=null")
CASES = [
    *(
        bk.Case(m, "ml-100k/holdout-0.8-0.2", (*ML100K, f"model={m}", *bk.HOLDOUT_80_20, *bk.NDCG10))
        for m in ("gmf", "ncf_mlp", "ncf", "mlp", "dmf")
    ),
    *(
        bk.Case(
            m,
            HOLDOUT,
            (*ML100K, f"model={m}", *bk.HOLDOUT_80_10_10, *stop, *bk.NDCG10),
            timing="fit_s+eval_s",
        )
        for m, stop in STOPPING.items()
    ),
    bk.Case(
        "ncf",
        SPEED,
        (*ML100K, "model=ncf", "model.num_negatives=4", "trainer.epochs=20", *NO_STOPPING, *bk.NDCG10),
        timing="fit_s+eval_s",
    ),
]
#: (model, protocol, metric) -> (comparison, threshold) from the project brief
TARGETS = {
    ("ncf", "ml-100k/holdout-0.8-0.2", "test/ndcg@10"): (">=", 0.37),
    ("ncf_mlp", "ml-100k/holdout-0.8-0.2", "test/ndcg@10"): (">=", 0.37),
    ("gmf", "ml-100k/holdout-0.8-0.2", "test/ndcg@10"): (">=", 0.34),
    ("dmf", "ml-100k/holdout-0.8-0.2", "test/ndcg@10"): (">=", 0.33),
    ("mlp", "ml-100k/holdout-0.8-0.2", "test/ndcg@10"): (">=", 0.33),
    ("ncf", HOLDOUT, "test/ndcg@10"): (">=", 0.279),
    ("dmf", HOLDOUT, "test/ndcg@10"): (">=", 0.269),
}
#: (model, protocol) -> most seconds (fit + evaluation)
TIME_TARGETS = {("ncf", HOLDOUT): 65 / 5, ("dmf", HOLDOUT): 158 / 5, ("ncf", SPEED): 8.0}


def main() -> None:
    args = bk.parser(__doc__ or "", "bench_ncf").parse_args()
    rows = bk.run_all(CASES, args)
    bk.check_targets(rows, TARGETS)
    for row in rows:
        most = TIME_TARGETS.get((row["model"], row["protocol"]))
        if most is not None and row["metric"] != "error":
            verdict = "PASS" if float(row["seconds"]) <= most else "MISS"
            seconds = f"seconds = {row['seconds']:.1f} (target <= {most:.1f})"
            print(f"  {verdict}  {row['model']} {row['protocol']} {seconds}")


if __name__ == "__main__":
    main()
