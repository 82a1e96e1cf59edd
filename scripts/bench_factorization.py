"""Benchmark the torch factorisation models (BPR, MF, PMF) through the pipeline and write one CSV.

    python scripts/bench_factorization.py [--out outputs/bench_factorization.csv] [--seed 0] [--repeats 3]
                                          [--skip-quality] [--skip-speed] [--only bpr,mf]

Every row is one ``recbench train`` run (composed and run by :mod:`benchkit`, one thread); the CSV's
``command`` column reproduces it. Models run with their tuned defaults (``training_defaults``) unless
the row's overrides say otherwise. Rows (model, protocol, metric, value, seconds, phase timings):

- ``ml-100k/holdout-0.8-0.1-0.1``: ``split=random``, BPR with early stopping on validation NDCG@10
  (validated every 10 epochs, patience 3, best weights restored), test NDCG@10.
- ``ml-100k/holdout-0.8-0.2``: ``split=random split.ratios=[0.8,0.2]``, no validation, test NDCG@10.
- ``ml-100k/kfold-5``: ``split=kfold eval=rating``, test RMSE averaged over the 5 folds.
- ``synthetic-1m/holdout-0.8-0.2``: ``dataset=synthetic-1m``, BPR with 64 factors, 20 epochs, reg 0.05,
  large batches (131,072 at lr 0.01) against small ones (1,024 at lr 0.001): test NDCG@10. The large-batch
  row is also the speed row of the fit (``seconds`` = ``fit_s``, fastest of ``--repeats``; its ``eval_s``
  is the scoring and evaluation of the top 10 of all users).
- ``speed/ml-100k/one-epoch``: BPR, 6 epochs without validation, ``seconds`` = the fastest epoch after
  the first (``epoch_s`` of the run's ``history.csv``).

Targets from the brief are checked and printed at the end (``PASS`` / ``MISS``).
"""

from __future__ import annotations

import benchkit as bk

ML100K = ("dataset=ml-100k",)
STOPPING = ("trainer.early_stopping.patience=3", "trainer.early_stopping.every=10")
SYNTHETIC = ("dataset=synthetic-1m", "model=bpr", "model.factors=64", "model.reg=0.05", "trainer.epochs=20")
FAST = "bpr[batch_size=131072,lr=0.01]"
SMALL = "bpr[batch_size=1024,lr=0.001]"
QUALITY = [
    bk.Case(
        "bpr",
        "ml-100k/holdout-0.8-0.1-0.1",
        (*ML100K, "model=bpr", *bk.HOLDOUT_80_10_10, *STOPPING, *bk.NDCG10),
    ),
    bk.Case("bpr", "ml-100k/holdout-0.8-0.2", (*ML100K, "model=bpr", *bk.HOLDOUT_80_20, *bk.NDCG10)),
    *(
        bk.Case(
            m,
            "ml-100k/kfold-5",
            (*ML100K, f"model={m}", *bk.KFOLD_RATING, "eval.metrics=[rmse]"),
            ("test/rmse",),
        )
        for m in ("mf", "pmf")
    ),
    bk.Case(
        SMALL,
        "synthetic-1m/holdout-0.8-0.2",
        (*SYNTHETIC, "trainer.batch_size=1024", "trainer.lr=0.001", *bk.HOLDOUT_80_20, *bk.NDCG10),
    ),
]
SPEED = [
    bk.Case(
        FAST,
        "synthetic-1m/holdout-0.8-0.2",
        (*SYNTHETIC, "trainer.batch_size=131072", "trainer.lr=0.01", *bk.HOLDOUT_80_20, *bk.NDCG10),
        timing="fit_s",
        repeat=True,
    ),
    bk.Case(
        "bpr",
        "speed/ml-100k/one-epoch",
        (*ML100K, "model=bpr", *bk.HOLDOUT_80_20, "trainer.epochs=6", *bk.NDCG10),
        timing="epoch_s",
        repeat=True,
    ),
]
#: (model, protocol, metric) -> (comparison, threshold) from the project brief
TARGETS = {
    ("bpr", "ml-100k/holdout-0.8-0.1-0.1", "test/ndcg@10"): (">=", 0.30),
    ("bpr", "ml-100k/holdout-0.8-0.2", "test/ndcg@10"): (">=", 0.38),
    ("mf", "ml-100k/kfold-5", "test/rmse"): ("<=", 0.925),
    ("pmf", "ml-100k/kfold-5", "test/rmse"): ("<=", 0.935),
}


def main() -> None:
    parser = bk.parser(__doc__ or "", "bench_factorization")
    parser.add_argument("--skip-quality", action="store_true")
    parser.add_argument("--skip-speed", action="store_true")
    args = parser.parse_args()
    cases = ([] if args.skip_quality else QUALITY) + ([] if args.skip_speed else SPEED)
    rows = bk.run_all(cases, args)
    bk.check_targets(rows, TARGETS)
    found = {r["model"]: float(r["value"]) for r in rows if r["protocol"].startswith("synthetic-1m")}
    if FAST in found and SMALL in found:
        verdict = "PASS" if found[FAST] >= found[SMALL] else "MISS"
        print(f"  {verdict}  synthetic ndcg@10: large batches {found[FAST]:.4f} >= small {found[SMALL]:.4f}")


if __name__ == "__main__":
    main()
