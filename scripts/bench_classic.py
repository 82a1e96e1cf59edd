"""Benchmark the classic (non-torch) recommenders through the pipeline and write one CSV.

    python scripts/bench_classic.py [--out outputs/bench_classic.csv] [--seed 0] [--repeats 3]
                                    [--skip-quality] [--skip-speed] [--only itemknn,ease]

Every row is one ``recbench train`` run (composed and run by :mod:`benchkit`, one thread); the CSV's
``command`` column is the command that reproduces it. Protocols (rows: model, protocol, metric, value,
seconds, the pipeline's phase timings):

- ``ml-100k/holdout-0.8-0.1-0.1``: ``split=random``, test NDCG@10 (history = train + validation).
- ``ml-100k/holdout-0.8-0.2``: ``split=random split.ratios=[0.8,0.2]``, test NDCG@10.
- ``ml-100k/kfold-5``: ``split=kfold eval=rating``, test RMSE averaged over the 5 folds.
- ``speed/...``: the named pipeline phases (``fit_s``, ``eval_s``), fastest of ``--repeats`` runs.

Targets from the project brief are checked and printed at the end (``PASS`` / ``MISS``).
"""

from __future__ import annotations

import benchkit as bk

RANKERS = ("pop", "random", "itemknn", "userknn", "puresvd", "ease", "als")
RATERS = ("itemknn", "userknn", "userknn_rating", "nmf")
ML100K = ("dataset=ml-100k",)
SYNTHETIC = "speed/synthetic-1m"  # configs/dataset/synthetic-1m.yaml: 6,000 users x 4,000 items x 1M
QUALITY = [
    bk.Case(model, protocol, (*ML100K, f"model={model}", *split, *bk.NDCG10))
    for protocol, split in (
        ("ml-100k/holdout-0.8-0.1-0.1", bk.HOLDOUT_80_10_10),
        ("ml-100k/holdout-0.8-0.2", bk.HOLDOUT_80_20),
    )
    for model in RANKERS
] + [
    bk.Case(
        model,
        "ml-100k/kfold-5",
        (*ML100K, f"model={model}", *bk.KFOLD_RATING, "eval.metrics=[rmse]"),
        ("test/rmse",),
    )
    for model in RATERS
]
SPEED = [
    bk.Case(
        "itemknn",
        "speed/ml-100k/fit+eval-all-users",
        (*ML100K, "model=itemknn", *bk.HOLDOUT_80_10_10, *bk.NDCG10),
        timing="fit_s+eval_s",
        repeat=True,
    ),
    *(
        bk.Case(
            model,
            "speed/ml-100k/fit",
            (*ML100K, f"model={model}", *bk.HOLDOUT_80_10_10, *bk.NDCG10),
            timing="fit_s",
            repeat=True,
        )
        for model in ("ease", "puresvd")
    ),
    bk.Case(
        "itemknn",
        f"{SYNTHETIC}/fit+top10-all-users",
        ("dataset=synthetic-1m", "model=itemknn", *bk.HOLDOUT_80_20, *bk.NDCG10),
        timing="fit_s+eval_s",
        repeat=True,
    ),
    bk.Case(
        "als",
        f"{SYNTHETIC}/fit",
        ("dataset=synthetic-1m", "model=als", *bk.HOLDOUT_80_20, *bk.NDCG10),
        timing="fit_s",
        repeat=True,
    ),
]
#: (model, protocol, metric) -> (comparison, threshold) from the project brief
TARGETS = {
    ("itemknn", "ml-100k/holdout-0.8-0.1-0.1", "test/ndcg@10"): (">=", 0.29),
    ("ease", "ml-100k/holdout-0.8-0.2", "test/ndcg@10"): (">=", 0.43),
    ("userknn", "ml-100k/holdout-0.8-0.2", "test/ndcg@10"): (">=", 0.38),
    ("itemknn", "ml-100k/holdout-0.8-0.2", "test/ndcg@10"): (">=", 0.36),
    ("als", "ml-100k/holdout-0.8-0.2", "test/ndcg@10"): (">=", 0.33),
    ("puresvd", "ml-100k/holdout-0.8-0.2", "test/ndcg@10"): (">=", 0.33),
    ("itemknn", "ml-100k/kfold-5", "test/rmse"): ("<=", 0.940),
    ("userknn_rating", "ml-100k/kfold-5", "test/rmse"): ("<=", 0.940),
    ("nmf", "ml-100k/kfold-5", "test/rmse"): ("<=", 0.960),
}


def main() -> None:
    parser = bk.parser(__doc__ or "", "bench_classic")
    parser.add_argument("--skip-quality", action="store_true")
    parser.add_argument("--skip-speed", action="store_true")
    args = parser.parse_args()
    cases = ([] if args.skip_quality else QUALITY) + ([] if args.skip_speed else SPEED)
    rows = bk.run_all(cases, args)
    bk.check_targets(rows, TARGETS)


if __name__ == "__main__":
    main()
