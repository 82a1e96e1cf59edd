"""Cost of differential privacy: training time with DP-SGD (``privacy=dp``) against the same training without
it (``privacy=none``), for the same models, data and epochs, through ``recbench.pipeline.run``.

    python scripts/bench_privacy.py [--out outputs/bench_privacy.csv] [--repeats 2] [--epochs 5]
                                    [--models gmf,ncf,mf] [--epsilon 1]

Every row is one ``recbench train`` run (composed and run by :mod:`benchkit`, one thread) on ml-100k with a
per-user random 0.8/0.1/0.1 split, a fixed number of epochs and no early stopping, so both cases do the same
number of passes over the data. The private case adds Poisson sampling, the per-example loss view, ghost
clipping (two backward passes), the noise and the accountant's noise-multiplier search. The measures are
``fit_s`` (the pipeline's wall-clock fit time) and ``fit_cpu_s``, the process CPU time spent inside the
model's ``fit`` (a thin wrapper; far less sensitive than wall time to other processes on a shared machine).
Opacus is imported once before the first run, so its import time (paid once per process) is not in
``fit``; the CSV records it as ``opacus_import_s``. The cases alternate (off, on, off, on, ...) so that load
from other processes hits both alike; the CSV keeps every repeat plus, per model, the ratio of the medians.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import benchkit as bk  # pins BLAS to one thread; before anything imports numpy

from recbench.models.base import TorchRecommender

COMMON = ("dataset=ml-100k", *bk.HOLDOUT_80_10_10, *bk.NDCG10, "trainer.early_stopping=null", *bk.ONE_THREAD)


#: Settings of the models that are trained privately only in a particular way: the sequential models on
#: their leave-one-out protocol, with the user as the privacy unit (one training row is one user's sequence).
SEQUENTIAL = (("split=loo",), ("trainer.privacy.unit=user",))
MODEL_SETTINGS = {"gru4rec": SEQUENTIAL, "nextitnet": SEQUENTIAL}


def cases(models: list[str], epochs: int, epsilon: float) -> list[tuple[str, str, tuple[str, ...]]]:
    """``(model, privacy, overrides)`` of every run of one repeat, private and plain alternating."""
    out = []
    for model in models:
        both, private = MODEL_SETTINGS.get(model, ((), ()))
        base = (*COMMON, f"model={model}", f"trainer.epochs={epochs}", *both)
        out.append((model, "none", (*base, "privacy=none")))
        dp = ("privacy=dp", f"trainer.privacy.target_epsilon={epsilon}", *private)
        out.append((model, "dp", (*base, *dp)))
    return out


class FitClock:
    """Adds up the process CPU time spent in :meth:`TorchRecommender.fit` while installed."""

    def __init__(self) -> None:
        self.cpu = 0.0
        self._fit = TorchRecommender.fit

    def __enter__(self) -> FitClock:
        fit = self._fit

        def timed(model, *args, **kwargs):
            start = time.process_time()
            try:
                return fit(model, *args, **kwargs)
            finally:
                self.cpu += time.process_time() - start

        TorchRecommender.fit = timed  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: object) -> None:
        TorchRecommender.fit = self._fit  # type: ignore[method-assign]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=bk.REPO / "outputs" / "bench_privacy.csv")
    parser.add_argument("--runs", type=Path, default=bk.REPO / "outputs" / "bench_privacy_runs")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--models", default="gmf,ncf,mf")
    parser.add_argument("--epsilon", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    start = time.perf_counter()
    import opacus  # noqa: F401  (imported once, outside the timed fits)

    import_s = time.perf_counter() - start
    rows: list[dict] = []
    for rep in range(args.repeats):
        for model, privacy, overrides in cases(args.models.split(","), args.epochs, args.epsilon):
            run_dir = args.runs / model / f"{privacy}-{rep}"
            with FitClock() as clock:
                record, wall, cpu = bk.run_once((*overrides, f"seed={args.seed}"), run_dir)
            extra = record.extra
            rows.append(
                {
                    "model": model,
                    "privacy": privacy,
                    "repeat": rep,
                    "epochs": args.epochs,
                    "fit_s": record.timings["fit_s"],
                    "fit_cpu_s": clock.cpu,
                    "wall_seconds": wall,
                    "cpu_seconds": cpu,
                    "test/ndcg@10": record.metrics.get("test/ndcg@10"),
                    "epsilon": extra.get("privacy.epsilon", ""),
                    "noise_multiplier": extra.get("privacy.noise_multiplier", ""),
                    "steps": extra.get("privacy.steps", ""),
                    "opacus_import_s": import_s,
                    "command": "recbench train " + " ".join((*overrides, f"seed={args.seed}")),
                }
            )
            print(
                f"{model:5s} {privacy:4s} rep {rep}: fit {rows[-1]['fit_s']:.2f}s, cpu {clock.cpu:.2f}s",
                flush=True,
            )
    for model in args.models.split(","):
        med = {
            (p, key): statistics.median(r[key] for r in rows if r["model"] == model and r["privacy"] == p)
            for p in ("none", "dp")
            for key in ("fit_s", "fit_cpu_s")
        }
        rows.append(
            {
                "model": model,
                "privacy": "ratio dp/none (medians)",
                "epochs": args.epochs,
                "fit_s": med["dp", "fit_s"] / med["none", "fit_s"],
                "fit_cpu_s": med["dp", "fit_cpu_s"] / med["none", "fit_cpu_s"],
            }
        )
        print(
            f"{model}: dp/none fit {rows[-1]['fit_s']:.2f}x wall, {rows[-1]['fit_cpu_s']:.2f}x CPU",
            flush=True,
        )
    bk.write_csv(rows, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
