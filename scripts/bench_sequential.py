"""Benchmark the sequential recommenders (leave-one-out) through the pipeline and write one CSV.

    python scripts/bench_sequential.py [--out outputs/bench_sequential.csv] [--seeds 0,1,2]
                                       [--only sasrec,ml-100k/loo] [--beauty-epochs 12]

Every row is one ``recbench train`` run (composed and run by :mod:`benchkit`, one thread); the CSV's
``command`` column reproduces it. ``split=loo`` (last item test, second-to-last validation), every model
with its defaults (its ``training_defaults``, including its early-stopping patience) and early stopping on
validation NDCG@10; full ranking with the history's items masked, test history = train + validation.

Rows: ``test/ndcg@10`` and ``test/hit@10`` with ``seconds`` = fit + test evaluation on ml-100k and, for
Amazon Beauty (``dataset=amazon-beauty``), also loading and splitting (the whole run). ``best_epoch``,
``epochs`` and ``to_best_s`` (training seconds up to the end of the best epoch) come from the run's
``history.csv``. The Beauty run adds an epoch budget (``--beauty-epochs``, 0 = the model's own) so that it
fits in 10 minutes on one CPU thread (Beauty has no timestamps, so ``shuffle_ties`` changes nothing there).
Targets are printed at the end (``PASS`` / ``MISS``); with several ``--seeds`` they judge the means.
"""

from __future__ import annotations

import benchkit as bk

MODELS = ("pop", "gru4rec", "caser", "nextitnet", "sasrec", "bert4rec")
EVAL = ("split=loo", "eval.metrics=[ndcg,hit]", "eval.ks=[10]")
METRICS = ("test/ndcg@10", "test/hit@10")


def cases(beauty_epochs: int) -> list[bk.Case]:
    """Every model on ml-100k, and SASRec on Amazon Beauty."""
    budget = (f"trainer.epochs={beauty_epochs}",) if beauty_epochs else ()
    return [
        *(
            bk.Case(
                m, "ml-100k/loo", ("dataset=ml-100k", f"model={m}", *EVAL), METRICS, timing="fit_s+eval_s"
            )
            for m in MODELS
        ),
        bk.Case(
            "sasrec", "amazon-beauty/loo", ("dataset=amazon-beauty", "model=sasrec", *EVAL, *budget), METRICS
        ),
    ]


def mean(rows: list[dict], model: str, protocol: str, key: str, metric: str = "test/ndcg@10") -> float | None:
    """Mean of ``key`` over the seeds of one (model, protocol, metric), or None when it did not run."""
    found = [
        float(r[key]) for r in rows if (r["model"], r["protocol"], r["metric"]) == (model, protocol, metric)
    ]
    return sum(found) / len(found) if found else None


def check_targets(rows: list[dict]) -> None:
    """The brief's targets: every model beats 1.5x pop, SASRec beats GRU4Rec and Caser, time limits."""
    print("\ntargets:")
    ml = "ml-100k/loo"
    pop = mean(rows, "pop", ml, "value")
    sas = mean(rows, "sasrec", ml, "value")
    for model in MODELS[1:]:
        value = mean(rows, model, ml, "value")
        if value is not None and pop is not None:
            verdict = "PASS" if value > 1.5 * pop else "MISS"
            print(f"  {verdict}  {model} ndcg@10 {value:.4f} > 1.5 x pop {pop:.4f}")
    for other in ("gru4rec", "caser"):
        value = mean(rows, other, ml, "value")
        if sas is not None and value is not None:
            verdict = "PASS" if sas > value else "MISS"
            print(f"  {verdict}  sasrec {sas:.4f} > {other} {value:.4f} (mean over seeds)")
    for model in ("sasrec", "gru4rec"):
        to_best = mean(rows, model, ml, "to_best_s")
        if to_best is not None:
            print(f"  {'PASS' if to_best < 60 else 'MISS'}  {model} seconds to best epoch {to_best:.1f} < 60")
    beauty = mean(rows, "sasrec", "amazon-beauty/loo", "seconds")
    if beauty is not None:
        print(f"  {'PASS' if beauty < 600 else 'MISS'}  beauty sasrec end to end {beauty:.1f} s < 600")


def main() -> None:
    parser = bk.parser(__doc__ or "", "bench_sequential")
    parser.add_argument(
        "--beauty-epochs", type=int, default=12, help="epoch budget of the Beauty run (0: none)"
    )
    args = parser.parse_args()
    check_targets(bk.run_all(cases(args.beauty_epochs), args))


if __name__ == "__main__":
    main()
