"""Benchmark DDP training: one process against two (``trainer.strategy=ddp trainer.devices=2``).

    python scripts/bench_ddp.py [--out outputs/bench_ddp.csv] [--seeds 0] [--repeats 3] [--only bpr]
                                [--dataset ml-100k|tiny]

Every row is one ``recbench train`` run through :mod:`benchkit` (each process on one torch thread, so two
processes use two cores); the CSV's ``command`` column reproduces it. The one- and two-process runs of a
model alternate within each repetition (A/B/A/B), so that load from other work on the machine hits both
alike, and the fastest repetition of each is kept. Rows: ``model``, ``protocol`` (``1-process`` /
``2-processes``), ``test/ndcg@10`` and the phase timings (``fit_s`` is the training, ``eval_s`` the
validation and test ranking, both sharded over the processes in the DDP rows; ``seconds`` = fit + eval).

Models: ``bpr`` (sparse row gradients, all-gathered) and ``ncf`` (NeuMF, a dense network under
DistributedDataParallel), on ml-100k (``split=random``; ``--dataset tiny`` for the tiny synthetic data) for 10
epochs without early stopping.
"""

from __future__ import annotations

import benchkit as bk

EPOCHS = ("trainer.early_stopping=null", "trainer.epochs=10")
MODELS = {"bpr": ("model=bpr",), "ncf": ("model=ncf",)}
PROCESSES = {
    "1-process": ("trainer.strategy=auto",),
    "2-processes": ("trainer.strategy=ddp", "trainer.devices=2"),
}


def cases(dataset: str = "ml-100k") -> list[bk.Case]:
    """One case per (model, process count) on ``dataset``."""
    return [
        bk.Case(
            name,
            protocol,
            (f"dataset={dataset}", "split=random", *model, *EPOCHS, *bk.NDCG10, *procs),
            timing="fit_s+eval_s",
            repeat=True,
        )
        for name, model in MODELS.items()
        for protocol, procs in PROCESSES.items()
    ]


def main() -> None:
    """Run the selected cases alternately ``--repeats`` times; the fastest run of each goes to the CSV."""
    parser = bk.parser(__doc__, "bench_ddp")
    parser.add_argument("--dataset", default="ml-100k", help="dataset of every row (e.g. tiny)")
    args = parser.parse_args()
    chosen = bk.selected(cases(args.dataset), args.only)
    out_dir = args.out.parent / (args.out.stem + "_runs")
    data_dir = () if args.data_dir is None else (f"paths.data_dir={args.data_dir}",)
    best: dict[tuple[str, str, int], list[dict]] = {}
    if args.dry_run:
        for case in chosen:
            print("recbench train " + " ".join((*bk.ONE_THREAD, *data_dir, *case.overrides)))
        return
    for seed in (int(s) for s in str(args.seeds).split(",")):
        for rep in range(max(1, args.repeats)):
            for case in chosen:
                where = out_dir / f"repeat{rep}"
                rows = bk.run_case(case, seed=seed, common=(*bk.ONE_THREAD, *data_dir), out_dir=where)
                key = (case.name, case.protocol, seed)
                if key not in best or rows[0].get("seconds", 1e18) < best[key][0].get("seconds", 1e18):
                    best[key] = rows
                bk.write_csv([r for kept in best.values() for r in kept], args.out)


if __name__ == "__main__":
    main()
