"""Sequential models at scale: sampled against full softmax, Amazon Beauty, and one epoch at 20M.

    python scripts/bench_seq_scale.py --seeds 1,2,3 --only ml-100k/loo      # quality: ce against sampled
    python scripts/bench_seq_scale.py --seeds 42 --only amazon-beauty/loo    # SASRec's defaults end to end
    python scripts/bench_seq_scale.py --seeds 42 --only 20m/loo-1-epoch   # up to ~8 GB

Every row is one ``recbench train`` run (composed and run by :mod:`benchkit`, one thread); the CSV's
``command`` column reproduces it and ``cpu_seconds`` gives the process CPU time beside the wall time (on a
shared machine the CPU time is what one quiet thread would take). Rows:

- ``ml-100k/loo``: ``sasrec`` and ``gru4rec`` with ``model.loss_type=ce`` (the full softmax, what ``auto``
  picks at 1,682 items) and ``model.loss_type=sampled`` (the default 256 negatives): test NDCG@10.
- ``amazon-beauty/loo``: ``recbench train model=sasrec dataset=amazon-beauty split=loo`` as a user runs it;
  ``seconds`` is the whole run (load, split, training with early stopping, evaluation).
- ``20m/loo-1-epoch``: one training epoch of ``sasrec`` and ``gru4rec`` (``model.max_len=200``, the
  objective ``auto`` picks: sampled at 26,744 items) on data shaped like MovieLens-20M; ``seconds`` is the
  epoch (``epoch_s`` of ``history.csv``, no validation inside it), and ``peak_rss_gb`` the process's peak.
"""

from __future__ import annotations

import resource

import benchkit as bk

LOO = ("split=loo", "eval.metrics=[ndcg,hit]", "eval.ks=[10]")
ML20M = (
    "dataset=synthetic-1m",
    "dataset.n_users=138493",
    "dataset.n_items=26744",
    "dataset.n_interactions=20000000",
    "split=loo",
    "model.max_len=200",
)


def cases() -> list[bk.Case]:
    """The rows of the module docstring."""
    quality = [
        bk.Case(
            f"{model}-{loss}",
            "ml-100k/loo",
            ("dataset=ml-100k", f"model={model}", f"model.loss_type={loss}", *LOO),
            ("test/ndcg@10", "test/hit@10"),
            timing="fit_s+eval_s",
        )
        for model in ("sasrec", "gru4rec")
        for loss in ("ce", "sampled")
    ]
    beauty = bk.Case("sasrec", "amazon-beauty/loo", ("dataset=amazon-beauty", "model=sasrec", "split=loo"))
    epoch = [
        bk.Case(
            model,
            "20m/loo-1-epoch",
            (*ML20M, f"model={model}", "trainer.epochs=1", "trainer.early_stopping=null"),
            ("time/fit_s", "time/eval_s"),
            timing="epoch_s",
        )
        for model in ("sasrec", "gru4rec")
    ]
    return [*quality, beauty, *epoch]


CASES = cases()


def main() -> None:
    """Run the selected rows, add the peak memory, write the CSV and print the targets."""
    args = bk.parser(__doc__ or "", "bench_seq_scale").parse_args()
    args.repeats = 1
    rows = bk.run_all(CASES, args)
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux
    for row in rows:
        row["peak_rss_gb"] = round(peak_gb, 2)
    bk.write_csv(rows, args.out)
    bk.check_targets(
        rows,
        {
            ("sasrec", "amazon-beauty/loo", "test/ndcg@10"): (">=", 0.045),
            ("sasrec", "20m/loo-1-epoch", "time/fit_s"): ("<=", 600.0),
            ("gru4rec", "20m/loo-1-epoch", "time/fit_s"): ("<=", 600.0),
        },
    )


if __name__ == "__main__":
    main()
