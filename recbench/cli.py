"""The ``recbench`` command: dispatches ``train``, ``tune``, ``report``, ``compare``, ``data``, ``list``.

``train`` hands everything after the word to a Hydra app, so ``-m``, ``--cfg job``, ``--help``,
overrides, launchers and sweepers behave exactly as in any Hydra application. The other commands are
plain argparse and never import torch. This module is the only reader of Hydra's runtime config.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from recbench.errors import RecbenchError
from recbench.files import atomic_write
from recbench.memory import reuse_freed_memory

log = logging.getLogger("recbench")

USAGE = """\
usage: recbench COMMAND [ARGS...]

commands:
  train [OVERRIDES...]     train and evaluate one configuration, or a sweep with -m (Hydra syntax);
                           `recbench train --help` lists the config groups and their options
  report PATH... [opts]    comparison table from the metrics.json files under PATH(s)
  compare RUN_A RUN_B      metric-by-metric comparison of two runs with paired significance tests
  tune --models A,B --trials N [--seeds 1,2,3] [OVERRIDES...]
                           equal-budget Optuna search per model on validation, then the best config
                           of each retrained on the seeds and evaluated on test (resumable)
  data list|fetch|check    the datasets recbench knows, download one, or validate a local copy
  data export NAME --split S --format recbole|csv|parquet --out DIR
                           write the train/valid/test parts a run would use (with a JSON sidecar)
  data stats NAME [--format markdown|latex|csv] [--plot FILE.png]
                           dataset statistics before and after preprocessing
  list [GROUP]             the options of every config group (or of one group)
  recommend RUN_DIR --user ID [--k 10] | --all --out recs.csv [--history test|all]
                           top-k items for a user from a trained run, excluding items they have
                           (--history test: the lists the run's test metrics were computed from)
  similar RUN_DIR --item ID [--k 10]
                           items most similar to an item ("because you watched")
  explain RUN_DIR --user ID [--item ID] [--k 10]
                           why items are recommended to a user, by a method per model family
  serve RUN_DIR [--host 127.0.0.1] [--port 8000]
                           the run as an HTTP JSON service (needs the [serve] extra; docs at /docs)

examples:
  recbench train
  recbench train model=itemknn dataset=ml-100k split=random
  recbench train -m model=pop,itemknn,bpr seed=1,2,3
  recbench report outputs/ --metric test/ndcg@10 --rows model --cols dataset
"""


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the ``recbench`` console script."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(USAGE, end="")
        sys.exit(0 if args else 2)
    command, rest = args[0], args[1:]
    reuse_freed_memory()  # per-step temporaries reuse the heap instead of new pages from the kernel
    try:
        if command == "train":
            _train(rest)
            return
        if command == "report":
            from recbench.reporting.commands import report_main

            sys.exit(report_main(rest))
        if command == "compare":
            from recbench.reporting.commands import compare_main

            sys.exit(compare_main(rest))
        if command == "tune":
            from recbench.tuning.protocol import tune_main

            sys.exit(tune_main(rest))
        if command == "data":
            sys.exit(_data(rest))
        if command == "list":
            sys.exit(_list(rest))
        if command in ("recommend", "similar"):
            sys.exit(_serve(command, rest))
        if command in ("serve", "explain"):
            from recbench.service import commands as service

            sys.exit(service.serve_main(rest) if command == "serve" else service.explain_main(rest))
    except RecbenchError as exc:
        _print_error(exc)
        sys.exit(2)
    print(f"recbench: unknown command {command!r}\n\n{USAGE}", end="", file=sys.stderr)
    sys.exit(2)


def _plain(value: object) -> object:
    """A rich table cell, title or header showing ``value`` as plain text (ids and titles may contain
    ``[...]``, see :mod:`recbench.reporting.plain`)."""
    from recbench.reporting.plain import plain

    return plain(value)


def _print_error(exc: BaseException) -> None:
    from rich.console import Console

    from recbench.reporting.plain import echo

    # the message is plain text: brackets in it (``'recbench[plot]'``) must not be read as markup
    echo(Console(stderr=True), ("error:", "bold red"), " ", str(exc))


def _train(rest: list[str]) -> None:
    import hydra

    from recbench.config import config_dir

    scratch = _other_rank_overrides(rest)  # drops rest's own run/sweep dir for ranks other than 0
    sys.argv = ["recbench train", *rest, *scratch]
    app = hydra.main(version_base="1.3", config_path=config_dir(), config_name="train")(train_app)
    app()


def _launched_rank() -> int:
    """``RANK`` of a process started by torchrun (or another launcher) with ``WORLD_SIZE`` > 1, else 0."""
    if os.environ.get("WORLD_SIZE", "1") in ("", "0", "1"):
        return 0
    rank = os.environ.get("RANK", "0")
    return int(rank) if rank.isdigit() else 0


def _other_rank_overrides(rest: list[str]) -> list[str]:
    """Under torchrun, ranks other than 0 write nothing: Hydra's folder for them is a scratch folder
    (removed at exit) and their logging is off. Rank 0's run directory is the run's (the pipeline
    shares it with the other ranks)."""
    if _launched_rank() == 0:
        return []
    import atexit
    import shutil
    import tempfile

    scratch = tempfile.mkdtemp(prefix=f"recbench-rank{_launched_rank()}-")
    atexit.register(shutil.rmtree, scratch, True)
    rest[:] = [a for a in rest if not a.startswith(("hydra.run.dir=", "hydra.sweep.dir="))]
    return [
        f"hydra.run.dir={scratch}",
        f"hydra.sweep.dir={scratch}",
        "hydra.output_subdir=null",
        "hydra/job_logging=disabled",
        "hydra/hydra_logging=disabled",
    ]


def train_app(cfg: object) -> float | None:
    """The Hydra task: run the pipeline once and return the optimised metric (for sweepers)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from recbench import pipeline

    hc = HydraConfig.get()
    choices = {k: v for k, v in hc.runtime.choices.items() if not k.startswith("hydra")}
    multirun = hc.mode == RunMode.MULTIRUN
    sweep_dir = Path(hc.sweep.dir) if multirun else None
    ctx = pipeline.RunContext(
        output_dir=Path(hc.runtime.output_dir),
        choices=choices,
        run_name=_run_name(list(hc.overrides.task)),
        group="_".join(sweep_dir.parts[-2:]) if sweep_dir else None,  # e.g. 2026-01-31_12-00-00
        group_dir=sweep_dir,
    )
    try:
        record = pipeline.run(cfg, ctx)  # type: ignore[arg-type]
    except RecbenchError as exc:
        _print_error(exc)
        if multirun:  # keep the sweep going; the job's metrics.json says status: failed
            log.error("job %s failed: %s", hc.job.num, exc)
            return None
        raise SystemExit(2) from None
    except Exception:
        if multirun:
            log.exception("job %s failed", hc.job.num)
            return None
        raise
    if not multirun and _launched_rank() == 0:
        _print_metrics(record.metrics, record.run_dir)
    metric = cfg.get("optimized_metric")  # type: ignore[attr-defined]
    if metric:
        if metric.startswith("test/"):
            log.warning("optimized_metric=%s optimises on the test set; use a val/ metric", metric)
        return float(record.metrics.get(metric, float("nan")))
    return None


def _run_name(overrides: list[str]) -> str | None:
    """What trackers call a run: its sorted overrides, without where outputs go (``logger``, ``paths``)."""
    kept = sorted(o for o in overrides if not o.lstrip("+~").startswith(("logger", "paths.", "hydra.")))
    return ",".join(kept) or None


def _print_metrics(metrics: dict[str, float], run_dir: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    sliced = [k for k in metrics if "/group/" in k or "/disparity/" in k]
    metrics = {k: v for k, v in metrics.items() if k not in set(sliced)}
    caption = (
        f"{len(sliced)} group metrics in metrics.json (recbench report --groups ATTR)" if sliced else None
    )
    table = Table(title=_plain(f"results ({run_dir})"), caption=caption)
    table.add_column("metric")
    parts = sorted({k.split("/", 1)[0] for k in metrics if "/" in k})
    for part in parts:
        table.add_column(_plain(part), justify="right")
    names = sorted({k.split("/", 1)[1] for k in metrics if "/" in k})
    for name in names:
        table.add_row(_plain(name), *(_fmt(metrics.get(f"{p}/{name}")) for p in parts))
    Console().print(table)


def _fmt(value: float | None) -> str:
    return "" if value is None else f"{value:.4f}"


def _data(rest: list[str]) -> int:
    if rest and rest[0] in ("export", "stats"):
        from recbench import interchange

        return (interchange.export_main if rest[0] == "export" else interchange.stats_main)(rest[1:])
    from recbench.data import catalog, commands

    parser = argparse.ArgumentParser(prog="recbench data", description="Datasets known to recbench.")
    parser.add_argument("action", choices=["list", "fetch", "check"])
    parser.add_argument("name", nargs="?", help="dataset name, e.g. ml-100k (for fetch and check)")
    parser.add_argument(
        "--data-dir",
        default=os.environ.get("RECBENCH_DATA_DIR", "data"),
        help="folder holding the datasets (default: $RECBENCH_DATA_DIR or ./data)",
    )
    ns = parser.parse_args(rest)
    if ns.action == "list":
        from rich.console import Console
        from rich.table import Table

        table = Table(title=_plain(f"datasets (data dir: {ns.data_dir})"))
        rows = commands.list_datasets(ns.data_dir)
        for col in rows[0] if rows else []:
            table.add_column(_plain(col))
        for row in rows:
            table.add_row(*(_plain(v) for v in row.values()))
        Console().print(table)
        return 0
    if not ns.name:
        parser.error(f"'{ns.action}' needs a dataset name; see `recbench data list`")
    if ns.action == "fetch":
        print(catalog.fetch(ns.name, ns.data_dir))
    else:
        print(commands.check(ns.name, ns.data_dir))
    return 0


def _serve(command: str, rest: list[str]) -> int:
    import numpy as np
    from rich.console import Console
    from rich.table import Table

    from recbench import serving

    parser = argparse.ArgumentParser(prog=f"recbench {command}")
    parser.add_argument("run_dir", help="folder of one finished run")
    parser.add_argument("--k", type=int, default=10, help="how many items (default 10)")
    if command == "recommend":
        who = parser.add_mutually_exclusive_group(required=True)
        who.add_argument("--user", help="raw user id, as in the dataset file")
        who.add_argument("--all", action="store_true", help="every user (use with --out)")
        parser.add_argument("--out", help="write a CSV (user, rank, item, title, score) here")
        parser.add_argument(
            "--history",
            choices=["all", "test"],
            default=None,
            help="all: exclude everything the user has (live use; the default with --user); test: rank "
            "as the test metrics did (train + validation as history), i.e. the evaluated lists (the "
            "default with --all, so that the metrics can be recomputed from the file)",
        )
    else:
        parser.add_argument("--item", required=True, help="raw item id, as in the dataset file")
    ns = parser.parse_args(rest)
    run = serving.load_run(ns.run_dir)
    try:
        if command == "similar":
            frame = serving.similar_items(run, run.ids.item_index(ns.item), ns.k)
        else:
            users = np.arange(run.data.n_users) if ns.all else np.array([run.ids.user_index(ns.user)])
            history = ns.history or ("test" if ns.all else "all")
            frame = serving.recommend(run, users, ns.k, history=history)
    except KeyError as exc:
        msg = f"{exc.args[0]} in the dataset of {ns.run_dir}; use an id from the data file."
        raise RecbenchError(msg) from None
    if getattr(ns, "out", None):
        atomic_write(ns.out, lambda fh: frame.to_csv(fh, index=False))
        print(f"wrote {len(frame)} rows to {ns.out}")
        return 0
    table = Table()
    for col in frame.columns:
        table.add_column(_plain(col))
    for row in frame.itertuples(index=False):
        table.add_row(*(_plain(f"{v:.4f}" if isinstance(v, float) else v) for v in row))
    Console().print(table)
    return 0


def _list(rest: list[str]) -> int:
    from recbench.config import config_dir

    root = config_dir()
    if root.startswith("pkg://"):
        from importlib.resources import files

        base = Path(str(files("recbench._configs")))
    else:
        base = Path(root)
    groups = sorted(p.name for p in base.iterdir() if p.is_dir() and p.name != "hydra")
    wanted = rest or groups
    for group in wanted:
        if group not in groups:
            raise RecbenchError(f"There is no config group {group!r}; groups are: {', '.join(groups)}.")
        options = sorted(p.stem for p in (base / group).glob("*.yaml"))
        print(f"{group}: {', '.join(options)}")
    return 0
