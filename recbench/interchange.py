"""``recbench data export`` and ``recbench data stats``: a run's data and split, for other tools and papers.

Both commands take ``NAME_OR_CONFIG`` (a dataset option such as ``ml-100k``, a dataset YAML file, or a
run directory / saved full config) and ``key=value`` overrides, compose the config as ``recbench
train`` does (:func:`recbench.config.resolve_config_source`), and read the data and split through the
pipeline's own :func:`~recbench.pipeline.load_dataset` and :func:`~recbench.pipeline.make_folds`, so
they see exactly what a run with the same settings sees. The work itself lives in
:mod:`recbench.data.export` and :mod:`recbench.data.stats`.
"""

from __future__ import annotations

import argparse
import copy
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

import recbench
from recbench.config import resolve_config_source, to_plain
from recbench.data.cache import load_cached
from recbench.data.export import FORMATS, export_split
from recbench.data.features import FeatureSpec
from recbench.data.filters import Preprocess
from recbench.data.interactions import IdMaps, Interactions
from recbench.data.stats import dataset_stats, stats_csv, stats_table
from recbench.errors import RecbenchError
from recbench.files import atomic_write

log = logging.getLogger(__name__)

#: What "before preprocessing" means: every parsed row that has its values (missing ones cannot be
#: id-encoded), repeats kept, no thresholds, no k-core.
RAW = Preprocess(dropna=True, dedupe=False)


def _parser(prog: str, description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"recbench data {prog}", description=description)
    parser.add_argument(
        "source",
        metavar="NAME_OR_CONFIG",
        help="a dataset option (ml-100k, csv, atomic, ...), a dataset YAML file, or a run directory",
    )
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="KEY=VALUE",
        help="config overrides as for `recbench train`, e.g. dataset.path=/data/x.inter",
    )
    return parser


def export_main(argv: Sequence[str]) -> int:
    """``recbench data export NAME_OR_CONFIG --split S --seed N --format F --out DIR [KEY=VALUE...]``."""
    parser = _parser("export", "Write the train/valid/test parts a run would use, with a JSON sidecar.")
    parser.add_argument(
        "--split", help="split option (random, loo, temporal, kfold, ...); default: the config's"
    )
    parser.add_argument("--seed", type=int, help="seed of the split (default: the config's seed)")
    parser.add_argument("--format", choices=FORMATS, default="recbole", help="file layout (default recbole)")
    parser.add_argument("--out", required=True, help="output folder (its name names RecBole's files)")
    ns = parser.parse_intermixed_args(list(argv))
    from recbench import pipeline

    cfg = resolve_config_source(ns.source, ns.overrides, {"split": ns.split, "seed": ns.seed})
    _, data, ids = pipeline.load_dataset(cfg)
    _, folds = pipeline.make_folds(cfg, data, ids)
    info = {
        "recbench": recbench.__version__,
        "source": ns.source,
        "overrides": list(ns.overrides),
        "seed": int(cfg.seed),
        "dataset": to_plain(cfg.dataset),
        "split": to_plain(cfg.split),
    }
    sidecar = export_split(folds, ids, data, ns.out, fmt=ns.format, info=info)
    for entry in sidecar["folds"]:
        rows = ", ".join(f"{label} {part['rows']:,}" for label, part in entry["parts"].items())
        print(f"wrote {entry['folder']} ({ns.format}: {rows})")
        print("  read back with: recbench train " + " ".join(entry["reimport"]))
        if "recbole" in entry:
            rb = entry["recbole"]
            print(
                f"  RecBole: data_path: {rb['data_path']}, dataset: {rb['dataset']}, "
                f"benchmark_filename: {rb['benchmark_filename']}"
            )
    print(f"sidecar: {Path(ns.out) / 'export.json'}")
    return 0


def _with_features(
    source: object, data: Interactions, ids: IdMaps, spec: FeatureSpec, required: bool
) -> Interactions:
    """``data`` with the side features ``spec`` asks for; when not ``required`` (no ``features``
    config), those the dataset has, if any."""
    try:
        tables = spec.for_source(source, ids)
    except RecbenchError as exc:
        if required:
            raise
        log.info("no side features for the statistics: %s", exc)
        return data
    return data.with_features(*tables)


def stats_main(argv: Sequence[str]) -> int:
    """``recbench data stats NAME_OR_CONFIG [--format markdown|latex|csv] [--plot FILE] [KEY=VALUE...]``."""
    parser = _parser("stats", "Dataset statistics before and after preprocessing (the table of papers).")
    parser.add_argument("--format", choices=("markdown", "latex", "csv"), default="markdown")
    parser.add_argument("--out", help="write the table to this file instead of printing it")
    parser.add_argument(
        "--plot", metavar="FILE.png", help="draw the long-tail curve and history-length histogram"
    )
    ns = parser.parse_intermixed_args(list(argv))
    from recbench import pipeline
    from recbench.config import build

    cfg = resolve_config_source(ns.source, ns.overrides)
    source, after, ids_after = pipeline.load_dataset(cfg)
    raw_source = copy.copy(source)
    if not hasattr(raw_source, "preprocess"):
        raise RecbenchError(f"dataset {ns.source} has no preprocess option, so it has no 'before' state.")
    raw_source.preprocess = RAW
    before, ids_before = load_cached(raw_source, cfg.paths.get("cache_dir"))
    required = bool(cfg.get("features")) and "_target_" in cfg.features
    spec = build(cfg.features, "features") if required else FeatureSpec(cache_dir=cfg.paths.get("cache_dir"))
    columns = {
        label: dataset_stats(_with_features(source, data, ids, spec, required))
        for label, data, ids in (("before preprocessing", before, ids_before), ("after", after, ids_after))
    }
    if ns.format == "csv":
        text = stats_csv(columns)
    else:
        from recbench.reporting.tables import frame_to_latex, frame_to_markdown

        frame = stats_table(columns)
        text = (frame_to_latex if ns.format == "latex" else frame_to_markdown)(frame)
    if ns.out:
        atomic_write(ns.out, lambda fh: fh.write(text.encode()))
        print(f"wrote {ns.out}")
    else:
        print(text)
    if ns.plot:
        from recbench.reporting.plots import dataset_plot

        counts = {
            label: (np.bincount(d.items, minlength=d.n_items), np.bincount(d.users, minlength=d.n_users))
            for label, d in (("before preprocessing", before), ("after", after))
        }
        print(f"wrote {dataset_plot(counts, ns.plot)}")
    return 0
