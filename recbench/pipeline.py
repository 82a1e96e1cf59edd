"""One run, start to finish: config -> data -> split -> model -> evaluation -> results.

:func:`run` is the only place that turns a composed config into objects (through
:func:`recbench.config.build`) and the only library code that seeds global RNGs. It never reads
Hydra's runtime state: the CLI passes the output directory and the group choices in a
:class:`RunContext`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import platform
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf, open_dict

import recbench
from recbench.config import build, flatten, models_with
from recbench.data.cache import load_cached
from recbench.data.events import with_logged_events
from recbench.data.features import FeatureSpec, has_side_features, source_folder
from recbench.data.interactions import IdMaps, Interactions
from recbench.data.splits import Split
from recbench.errors import ConfigError, RecbenchError
from recbench.evaluation.candidates import CandidateScorer
from recbench.evaluation.evaluator import EvalResult, EvalSpec, evaluate
from recbench.evaluation.metrics import PROBABILITY_METRICS
from recbench.evaluation.side import SideInfo, side_for_spec
from recbench.fitted import FitCheckpoint
from recbench.models.base import Capabilities, Recommender, TorchRecommender, capabilities_of
from recbench.reporting.records import SCHEMA_VERSION, RunRecord, write_run
from recbench.tracking.base import RunInfo
from recbench.tracking.hook import TrackingHook
from recbench.training import distributed
from recbench.training.checkpoint import CHECKPOINT_FILE
from recbench.training.seeding import seed_everything
from recbench.training.trainer import epoch_listener
from recbench.validation import check_splits

log = logging.getLogger(__name__)

#: Config groups whose chosen option names are recorded (and become report columns).
RECORDED_GROUPS = ("dataset", "split", "model", "features", "text", "trainer", "eval", "experiment", "search")
RATING_METRICS = ("rmse", "mae")


@dataclass
class RunContext:
    """What the CLI knows about the run that the config does not: where to write, what was chosen."""

    output_dir: Path
    choices: dict[str, str] = field(default_factory=dict)
    #: Trackers' name for the run (the CLI passes the job's overrides); None: the output folder's name.
    run_name: str | None = None
    #: The sweep this run is a job of (a name, and its folder), None for a single run.
    group: str | None = None
    group_dir: Path | None = None


def run(cfg: DictConfig, ctx: RunContext) -> RunRecord:
    """Train and evaluate one configuration; write ``metrics.json`` and friends into ``ctx.output_dir``.

    On failure a record with ``status: failed`` and the error text is written, then the error is re-raised.
    A torch model with ``trainer.strategy=ddp trainer.devices=N`` (or under torchrun) trains in N
    processes; only rank 0 writes files (see :mod:`recbench.training.distributed`).
    """
    launch = _launch(cfg, ctx)
    main = distributed.is_main()
    out = Path(distributed.from_rank0(str(ctx.output_dir)))  # under torchrun: rank 0's run directory
    if main:
        out.mkdir(parents=True, exist_ok=True)
    training = _configured_training(cfg)
    digest = config_digest(cfg, training)
    if cfg.get("skip_finished", True):
        done = distributed.from_rank0(finished_record(out, digest) if main else None)
        if done is not None:
            log.info("%s already holds a finished run of this config; skipping it", out)
            return done
    _cap_threads()
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    timings: dict[str, float] = {}
    extra: dict[str, Any] = {"config_digest": digest}
    base = dict(
        schema=SCHEMA_VERSION,
        run_dir=str(out),
        started_at=started,
        choices={k: str(v) for k, v in ctx.choices.items() if k in RECORDED_GROUPS and v is not None},
        params={**_params(cfg), **training},  # the trainer settings the model really trains with
        seed=int(cfg.seed),
        versions=_versions(),
        git_rev=_git_rev(),
        tags=[str(t) for t in cfg.get("tags", [])],
    )
    t_all = time.perf_counter()
    tracking = TrackingHook({})
    try:
        if launch.spawn:  # this process only starts the N training processes and waits for rank 0's record
            done = distributed.spawn(
                _run_dict, (_portable(cfg), ctx), launch.world_size, threads=_threads(cfg)
            )
            return RunRecord.from_dict(done)
        if main:
            tracking = _open_tracking(cfg, ctx, base)
        seed_everything(int(cfg.seed))
        if "trainer" in cfg and cfg.trainer.get("checkpoint_dir", "unset") is None:
            with open_dict(cfg):
                cfg.trainer.checkpoint_dir = str(out)
        model: Recommender = build(cfg.model, "model")
        spec: EvalSpec = _eval_threads(build(cfg.eval, "eval"), cfg)
        name = str(ctx.choices.get("model") or type(model).__name__)
        caps = capabilities_of(model)
        check_request(name, caps, spec)  # before any data is loaded
        check_privacy(name, caps, cfg)
        with _timer(timings, "load_s"):
            source, data, ids = load_dataset(cfg)
            if getattr(source, "user_graph", False) and not spec.exclude_self:
                spec = dataclasses.replace(spec, exclude_self=True)  # never recommend users themselves
            check_data(name, caps, data, spec, cfg)
            data = with_model_features(cfg, caps, source, data, ids)
            cache = cfg.paths.get("cache_dir")
            spec, side, unable = side_for_spec(spec, source, ids, cache, files=_feature_spec(cfg, None))
        for key, why in unable.items():
            extra[f"test/{key}"] = why
            log.warning("%s: %s", key, why)
        extra["dataset"] = _data_stats(data)
        with _timer(timings, "split_s"):
            splitter, folds = make_folds(cfg, data, ids)
        cold = getattr(splitter, "cold_candidates", None)
        saves = cfg.get("save_model", True) and len(folds) == 1
        fitting = _fit_checkpoint(cfg, out, training, write=main) if saves else None
        with epoch_listener(tracking.epoch):
            test = bool(cfg.get("evaluate_test", True))
            metrics, per_user, history = _run_folds(
                model, folds, spec, timings, extra, cold, side, test=test, fitting=fitting
            )
        tracking.log_params(_effective_training(model))
        timings["total_s"] = time.perf_counter() - t_all
        record = RunRecord(**base, metrics=metrics, timings=timings, status="ok", extra=extra)
        if not main:
            return record
        write_run(record, out, history=history, per_user=per_user)
        if fitting is not None:
            fitting.clear()  # the model files stay; the marker only serves a resume
        (out / CHECKPOINT_FILE).unlink(missing_ok=True)  # only needed to resume an unfinished run
        tracking.finish("ok", metrics, timings, _tracked_files(out, history) if tracking else [])
        return record
    except BaseException as exc:
        timings["total_s"] = time.perf_counter() - t_all
        error = f"{type(exc).__name__}: {exc}"
        record = RunRecord(**base, metrics={}, timings=timings, status="failed", error=error, extra=extra)
        if not main:
            raise
        write_run(record, out)
        tracking.log_params({"error": error})
        tracking.finish("failed", {}, timings, _tracked_files(out, None) if tracking else [])
        raise


def _launch(cfg: DictConfig, ctx: RunContext) -> distributed.Launch:
    """How many processes train the run (``trainer.strategy`` / ``trainer.devices``, or torchrun's
    ``WORLD_SIZE``); a :class:`ConfigError` for impossible settings. A process started by a launcher
    joins its process group here."""
    node = cfg.get("trainer") or {}
    devices = node.get("devices")
    launch = distributed.plan(
        str(node.get("strategy", "auto")),
        int(devices) if isinstance(devices, int) and not isinstance(devices, bool) else devices,
        str(node.get("device", "auto")),
        torch_model="trainer" in (cfg.get("model") or {}),
        model=str(ctx.choices.get("model") or cfg.get("model", {}).get("_target_", "?")),
    )
    if launch.spawn and "trainer" in cfg:
        build(cfg.trainer, "trainer")  # refused trainer settings (privacy with ddp) fail before the spawn
    if launch.distributed and not launch.spawn:
        distributed.init_from_env(str(node.get("device", "auto")))
    return launch


def _run_dict(cfg: DictConfig, ctx: RunContext) -> dict[str, Any]:
    """:func:`run` in a spawned training process; its record as plain JSON-ready data."""
    return run(cfg, ctx).to_dict()


def _portable(cfg: DictConfig) -> DictConfig:
    """``cfg`` with every interpolation resolved (so that a new process reads the same values)."""
    return OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))


def _threads(cfg: DictConfig) -> int | None:
    """``trainer.num_threads`` when set (each training process then uses that many)."""
    threads = cfg.trainer.get("num_threads") if "trainer" in cfg else None
    return int(threads) if threads else None


def load_dataset(cfg: DictConfig) -> tuple[Any, Interactions, IdMaps]:
    """The run's dataset: ``(source, data, ids)``, read through the cache (plus the logged events of
    ``extra_interactions``) exactly as every run reads it."""
    source = build(cfg.dataset, "dataset")
    data, ids = load_cached(source, cfg.paths.get("cache_dir"))
    data, ids = with_logged_events(data, ids, cfg.get("extra_interactions"))
    return source, data, ids


def with_model_features(
    cfg: DictConfig, caps: Capabilities, source: Any, data: Interactions, ids: IdMaps
) -> Interactions:
    """``data`` with the side features the run reads: the ``features`` config, else the dataset's
    defaults when the model needs features (``caps.needs_features``). Training and the run loader
    (:func:`recbench.serving.load_run`) both call it, so a served model sees what it trained on."""
    features = _feature_spec(cfg, caps)
    if features is None:
        return data
    return data.with_features(*features.for_source(source, ids))


def make_folds(cfg: DictConfig, data: Interactions, ids: IdMaps) -> tuple[Any, list[Split]]:
    """The run's splitter and its checked folds (one split, or k for k-fold) of ``data``."""
    splitter = build(cfg.split, "split")
    split_seed = cfg.get("split_seed")  # null: the run's seed draws the split too
    folds = splitter.folds(data, seed=int(cfg.seed if split_seed is None else split_seed), ids=ids)
    check_splits(folds, splitter)
    if cfg.get("text") and "_target_" in cfg.text:
        # item text: vocabulary and IDF fitted on each split's training items only
        text = build(cfg.text, "text")
        texts = text.item_texts(source_folder(build(cfg.dataset, "dataset")), ids)
        folds = [text.apply(split, texts) for split in folds]
    return splitter, folds


def config_digest(cfg: DictConfig, training: dict[str, Any] | None = None) -> str:
    """A stable hash of the resolved run config (what decides the results), without Hydra's own node.

    The effective training settings (``training``, default :func:`_configured_training`) are part of
    it, so a run whose model's ``training_defaults`` changed since is trained again, not skipped.
    """
    node = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(node, dict)
    node.pop("hydra", None)
    node.pop("logger", None)  # where results are also sent does not change them
    training = _configured_training(cfg) if training is None else training
    if training:
        node["effective_training"] = training
    text = json.dumps(node, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _fit_checkpoint(cfg: DictConfig, out: Path, training: dict[str, Any], *, write: bool) -> FitCheckpoint:
    """Where this run saves its fitted model before evaluation (``write``: rank 0 only), keyed by the
    settings that decide the fit (the effective ``training`` ones included; not evaluation, output or
    bookkeeping keys), and the interrupted run it may resume from."""
    node = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(node, dict)
    node["effective_training"] = training
    for key in (
        "hydra",
        "logger",
        "eval",
        "evaluate_test",
        "skip_finished",
        "save_model",
        "tags",
        "optimized_metric",
    ):
        node.pop(key, None)
    trainer = node.get("trainer")
    resume = trainer.get("resume") if isinstance(trainer, dict) else None
    for owner in (node, node.get("model")):  # the model node holds a copy of the trainer (${trainer})
        if isinstance(owner, dict) and isinstance(owner.get("trainer"), dict):
            for key in ("resume", "checkpoint_dir", "checkpoint_every", "progress"):
                owner["trainer"].pop(key, None)
    digest = hashlib.sha256(json.dumps(node, sort_keys=True, default=str).encode()).hexdigest()[:16]
    return FitCheckpoint(out=out, key=digest, resume=Path(resume) if resume else None, write=write)


def finished_record(run_dir: Path, digest: str) -> RunRecord | None:
    """The record in ``run_dir`` if it finished with status ok for the same config digest, else None.

    This is what lets an interrupted sweep be re-run into the same sweep directory: finished jobs are
    skipped, failed or missing ones are run again.
    """
    path = Path(run_dir) / "metrics.json"
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if data.get("status") != "ok" or data.get("extra", {}).get("config_digest") != digest:
        return None
    names = {f.name for f in dataclasses.fields(RunRecord)}
    try:
        return RunRecord(**{k: v for k, v in data.items() if k in names})
    except TypeError:
        return None


def _open_tracking(cfg: DictConfig, ctx: RunContext, base: dict[str, Any]) -> TrackingHook:
    """Build the ``logger`` entries (a missing library fails here, before training) and start them."""
    node = cfg.get("logger")
    trackers = {str(name): build(sub, f"logger.{name}") for name, sub in (node or {}).items()}
    hook = TrackingHook(trackers)
    if hook:
        out = Path(ctx.output_dir)
        tags = {**base["choices"], "seed": str(base["seed"])}
        tags.update({f"tag.{t}": "true" for t in base["tags"]})
        info = RunInfo(
            name=ctx.run_name or out.name,
            key=out.name,
            run_dir=out,
            group=ctx.group,
            group_dir=ctx.group_dir,
            tags=tags,
        )
        hook.start(info, base["params"])
    return hook


#: Trainer settings that a model's ``training_defaults`` (or the global defaults) fill when unset.
_DEFAULTED = ("epochs", "batch_size", "lr", "weight_decay")
_DEFAULTED_STOPPING = ("patience", "every")


def effective_training(model: Recommender) -> dict[str, Any]:
    """``{"trainer.epochs": ..., "trainer.lr": ..., ...}``: the settings a torch model trains with
    (:meth:`~recbench.models.base.TorchRecommender.effective_trainer`: the config's values, the
    unset ones filled from the model's defaults), under the config's keys; ``{}`` for other models."""
    if not isinstance(model, TorchRecommender):
        return {}
    trainer = model.effective_trainer()
    out = {f"trainer.{name}": getattr(trainer, name) for name in _DEFAULTED}
    if trainer.early_stopping is not None:
        stop = trainer.early_stopping
        out.update({f"trainer.early_stopping.{name}": getattr(stop, name) for name in _DEFAULTED_STOPPING})
    return out


def _configured_training(cfg: DictConfig) -> dict[str, Any]:
    """:func:`effective_training` of the model ``cfg`` configures, ``{}`` when it cannot be built (the
    run itself then fails on building it, and records why)."""
    try:
        return effective_training(build(cfg.model, "model"))
    except Exception:  # raised again, with a failed record, where the run builds the model
        return {}


def _effective_training(model: Recommender) -> dict[str, Any]:
    """The training settings a torch model actually used (config values filled from its defaults)."""
    trainer = getattr(model, "trainer_", None)
    if trainer is None or not dataclasses.is_dataclass(trainer):
        return {}
    settings = {f.name: getattr(trainer, f.name) for f in dataclasses.fields(trainer)}
    stopper = settings.pop("early_stopping", None)
    if dataclasses.is_dataclass(stopper):
        settings.update(
            {f"early_stopping.{f.name}": getattr(stopper, f.name) for f in dataclasses.fields(stopper)}
        )
    return {f"effective.trainer.{k}": v for k, v in settings.items() if k not in ("checkpoint_dir", "resume")}


def _tracked_files(out: Path, history: list[dict[str, float]] | None) -> list[Path]:
    """The run's files that trackers attach; with a history (and matplotlib), its learning curves too."""
    files = [out / name for name in ("metrics.json", "results.csv", "history.csv", ".hydra/config.yaml")]
    if history:
        try:
            from recbench.reporting.plots import learning_curves

            files.append(learning_curves([out], out / "learning_curves.png"))
        except RecbenchError as exc:
            log.info("no learning-curve plot for the trackers: %s", exc)
    return files


def _cap_threads() -> None:
    """Follow ``OMP_NUM_THREADS`` in torch too (set per job by the parallel launcher configs)."""
    n = os.environ.get("OMP_NUM_THREADS", "")
    if n.isdigit() and int(n) > 0:
        import torch

        torch.set_num_threads(int(n))


def _run_folds(
    model: Recommender,
    folds: list[Split],
    spec: EvalSpec,
    timings: dict[str, float],
    extra: dict[str, Any],
    cold: Callable[[Split], np.ndarray] | None = None,
    side: SideInfo | None = None,
    *,
    test: bool = True,
    fitting: FitCheckpoint | None = None,
) -> tuple[dict[str, float], dict[str, dict[str, np.ndarray]], list[dict[str, float]] | None]:
    """Fit and evaluate on every fold; k-fold runs get ``foldJ/`` keys plus mean and std.

    With a cold-start splitter (``cold`` gives the cold items of a split), the test set is also
    evaluated ranking only the cold items among themselves, under ``test/cold/...`` keys: the usual
    cold-start measure, since id-only models cannot rank unseen items against known ones. Only
    models that read side features get these keys; for the others the cold items have no trained
    parameters (random embeddings, zero counts), so ``extra["test/cold"]`` says they are unable
    rather than reporting a number that would only measure initialisation or tie-breaking.
    With ``test=False`` (``evaluate_test: false``, set by ``recbench tune`` during its search) only
    the validation set is evaluated: the test set is never scored. ``fitting`` (single-fold runs that
    save their model): the fitted model is saved before evaluation, or loaded from the interrupted run
    being resumed instead of fitted (:class:`~recbench.fitted.FitCheckpoint`).
    """
    metrics: dict[str, float] = {}
    per_user: dict[str, dict[str, np.ndarray]] = {}
    history: list[dict[str, float]] | None = None
    val_spec = dataclasses.replace(spec, user_groups=(), item_groups=())  # group slices: test part only
    for j, split in enumerate(folds):
        fold_model = model if j == 0 else model.clone()
        prefix = f"fold{j}/" if len(folds) > 1 else ""
        with _timer(timings, "fit_s"):
            if fitting is not None:
                extra["fit_loaded"] = fitting.fit(fold_model, split.train, split.val)
            else:
                fold_model.fit(split.train, split.val)
        with _timer(timings, "eval_s"):
            parts: list[tuple[Any, ...]] = [("test", split.test, split.test_history)] if test else []
            if split.val is not None and len(split.val):
                parts.insert(0, ("val", split.val, split.train))
            if test and cold is not None and _uses_features(fold_model):
                items = cold(split)
                target = split.test.select(np.isin(split.test.items, items))
                parts.append(("test/cold", target, split.test_history, CandidateScorer(fold_model, items)))
            elif test and cold is not None and j == 0:
                extra["test/cold"] = _COLD_UNABLE.format(model=type(fold_model).__name__)
                log.warning(extra["test/cold"])
            for part, target, seen, *scorer in parts:
                part_spec = val_spec if part == "val" else spec
                with _timer(timings, f"eval_{part.replace('/', '_')}_s", f"{prefix}eval {part}"):
                    scorer_ = scorer[0] if scorer else fold_model
                    result = evaluate(scorer_, target, seen, part_spec, side, label=part)
                metrics.update({f"{prefix}{part}/{k}": v for k, v in result.metrics.items()})
                per_user[f"{prefix}{part}"] = _per_user(result)
                extra[f"{prefix}{part}_skipped_users"] = result.n_skipped_users
        if j == 0 and hasattr(fold_model, "history_"):
            history = list(fold_model.history_.rows)
        privacy = getattr(getattr(fold_model, "history_", None), "privacy", None) or {}
        extra.update({f"{prefix}privacy.{k}": v for k, v in privacy.items()})  # the DP accountant's numbers
    if len(folds) > 1:
        metrics.update(_fold_summary(metrics, len(folds)))
    return metrics, per_user, history


_COLD_UNABLE = (
    "unable: {model} scores items by id only and the cold items have no training interactions, so "
    "there are no test/cold/... metrics (the test/... metrics rank the cold items among all items). "
    "Feature-aware models (fm, widedeep, deepfm, ncf/mlp with model.use_features=true) rank cold items."
)


def _eval_threads(spec: EvalSpec, cfg: DictConfig) -> EvalSpec:
    """``spec`` with ``num_threads`` from the trainer's setting when ``eval.num_threads`` is unset."""
    trainer_threads = cfg.trainer.get("num_threads") if "trainer" in cfg else None
    if spec.num_threads is None and trainer_threads:
        return dataclasses.replace(spec, num_threads=int(trainer_threads))
    return spec


def _uses_features(model: Recommender) -> bool:
    """Whether ``model`` scores items from side features (and so can rank items it never trained on)."""
    return capabilities_of(model).needs_features


def _fold_summary(metrics: dict[str, float], n_folds: int) -> dict[str, float]:
    names = {k.split("/", 1)[1] for k in metrics if k.startswith("fold")}
    out: dict[str, float] = {}
    for name in sorted(names):
        values = [metrics[f"fold{j}/{name}"] for j in range(n_folds) if f"fold{j}/{name}" in metrics]
        out[name] = float(np.mean(values))
        out[f"{name}_std"] = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
    return out


def _per_user(result: EvalResult) -> dict[str, np.ndarray]:
    groups = {f"group:{attr}": labels for attr, labels in result.user_groups.items()}
    return {"users": result.users, **result.per_user, **groups}


def _feature_spec(cfg: DictConfig, caps: Capabilities | None) -> FeatureSpec | None:
    """The side features to load: the ``features`` config, else the defaults for models that need them
    (``caps=None``: the ``features`` config only). The run loader calls it too, so a served run gets
    the features training read."""
    if cfg.get("features") and "_target_" in cfg.features:
        return build(cfg.features, "features")
    if caps is not None and caps.needs_features:
        text = bool(cfg.get("text")) and "_target_" in cfg.text
        if text and not has_side_features(build(cfg.dataset, "dataset")):
            return None  # the item text (added per split) is the model's features
        return FeatureSpec(cache_dir=cfg.paths.get("cache_dir"))
    return None


def _unable(name: str, request: str, capability: str, fix: str) -> ConfigError:
    """The one error for "model ``name`` cannot do ``request``", naming the models that can."""
    able = [f"`model={m}`" for m in models_with(capability, settings=True)]
    return ConfigError(
        f"{request}, but model={name} {fix}. Models that can: {', '.join(able) or 'none shipped'}. "
        "Choose one of them (with the settings shown), or change the request."
    )


def check_request(name: str, caps: Capabilities, spec: EvalSpec) -> None:
    """Refuse, before any data is loaded, what model ``name`` (with capabilities ``caps``) cannot do for
    the evaluation ``spec``: rating metrics without ``ratings``, probability metrics without
    ``probabilities``. One :class:`ConfigError` names the model, the request and the models that can."""
    wants_rating = [m for m in spec.metrics if m in RATING_METRICS]
    if wants_rating and not caps.ratings:
        raise _unable(
            name,
            f"eval.metrics asks for {', '.join(wants_rating)} (predicted ratings)",
            "ratings",
            "does not predict ratings with these settings (use `eval=default` for ranking metrics)",
        )
    wants_probs = [m for m in spec.metrics if m in PROBABILITY_METRICS]
    if wants_probs and not caps.probabilities:
        raise _unable(
            name,
            f"eval.metrics asks for {', '.join(wants_probs)}, which need click probabilities",
            "probabilities",
            "does not predict probabilities with these settings (auc needs only scores: keep only auc, "
            "`'eval.metrics=[auc]'`)",
        )


def check_privacy(name: str, caps: Capabilities, cfg: DictConfig) -> None:
    """Refuse, before any data is loaded, bad ``trainer.privacy`` settings and private training of a model
    that cannot be trained privately (non-torch models, compiled kernels, side-feature or
    popularity-sampled variants)."""
    node = cfg.trainer.get("privacy") if "trainer" in cfg else None
    settings = build(node, "trainer.privacy") if node is not None else None
    if settings is not None and settings.active and not caps.private:
        raise _unable(
            name,
            "trainer.privacy.enabled=true asks for differentially private training (DP-SGD)",
            "private",
            "cannot be trained privately with these settings (a non-torch model, compiled kernels, side "
            "features or popularity-sampled negatives); or set privacy=none",
        )
    if settings is not None and settings.active and caps.needs_sequences and settings.unit != "user":
        from recbench.training.privacy import sequence_unit_error

        raise ConfigError(sequence_unit_error(name))


def check_data(name: str, caps: Capabilities, data: Interactions, spec: EvalSpec, cfg: DictConfig) -> None:
    """Refuse, right after loading and before splitting or training, data that lacks what model
    ``name`` needs (timestamps, sequences, ratings) or what the evaluation ``spec`` reads (ratings)."""
    dataset = cfg.dataset.get("_target_", "?")
    if (caps.needs_sequences or caps.needs_timestamps) and not data.has_timestamps:
        what = "time-ordered histories" if caps.needs_sequences else "interaction timestamps"
        raise ConfigError(
            f"model={name} reads {what}, but dataset {dataset} has no timestamps. Choose a dataset with "
            "timestamps (`dataset=synthetic`, `dataset=ml-100k`, or a file of yours with a timestamp "
            "column, dataset.columns.timestamp=...) or another model."
        )
    if caps.needs_ratings and not data.has_ratings:
        raise ConfigError(
            f"model={name} learns explicit ratings, but the data is implicit (no ratings; dataset "
            f"{dataset}). Keep the ratings (`dataset.preprocess.implicit=false`) or use a ranking model "
            "such as `model=bpr`."
        )
    if caps.needs_user_graph and data.n_users != data.n_items:
        raise ConfigError(
            f"model={name} ranks friends on a user-user graph, but dataset {dataset} has {data.n_users} "
            f"users and {data.n_items} items. Use `dataset=lastfm-friends split=link`, or another model."
        )
    wants_rating = [m for m in spec.metrics if m in RATING_METRICS]
    if wants_rating and not data.has_ratings:
        raise ConfigError(
            f"eval.metrics asks for {', '.join(wants_rating)}, but the data has no ratings (dataset "
            f"{dataset}). Use `eval=default`, or keep ratings (`dataset.preprocess.implicit=false`)."
        )
    if spec.ctr_metrics and spec.ctr_threshold is not None and not data.has_ratings:
        raise ConfigError(
            f"eval.ctr_threshold={spec.ctr_threshold:g} labels the test interactions by their ratings for "
            f"{', '.join(spec.ctr_metrics)}, but the dataset has no ratings. Set `eval.ctr_threshold=null` "
            "(label by sampled negatives) or keep ratings (`dataset.preprocess.implicit=false`)."
        )


def _params(cfg: DictConfig) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for group in ("dataset", "split", "model", "features", "trainer", "eval"):
        node = cfg.get(group)
        if node is None:
            continue
        resolved = OmegaConf.to_container(node, resolve=True)
        if isinstance(resolved, dict) and group == "model":
            resolved.pop("trainer", None)  # recorded once, under trainer.*
        params.update(flatten(resolved, f"{group}."))
    return params


def _data_stats(data: Interactions) -> dict[str, Any]:
    return {
        "n_users": data.n_users,
        "n_items": data.n_items,
        "n_interactions": len(data),
        "has_ratings": data.has_ratings,
        "has_timestamps": data.has_timestamps,
    }


def _versions() -> dict[str, str]:
    import hydra
    import pandas
    import scipy
    import torch

    return {
        "python": platform.python_version(),
        "recbench": recbench.__version__,
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "pandas": pandas.__version__,
        "torch": torch.__version__,
        "hydra": hydra.__version__,
    }


def _git_rev() -> str | None:
    """The commit of the recbench source tree, with ``+dirty`` when it has local changes."""
    src = Path(recbench.__file__).resolve().parent
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=src, capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=src,
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{rev}+dirty" if dirty else rev


class _timer:
    """Adds the elapsed seconds of a ``with`` block to ``timings[key]`` and logs the phase's duration.

    The log line (``phase load: 1.7 s (CPU 1.6 s)``, with the process's CPU seconds, which tell on a
    busy machine how much of the wall time was work) goes to the terminal and to ``train.log``;
    ``phase`` defaults to the key without its ``_s`` suffix.
    """

    def __init__(self, timings: dict[str, float], key: str, phase: str | None = None) -> None:
        self.timings, self.key = timings, key
        self.phase = phase or key.removesuffix("_s")

    def __enter__(self) -> None:
        self.start, self.cpu = time.perf_counter(), time.process_time()

    def __exit__(self, exc_type: object, *exc: object) -> None:
        elapsed = time.perf_counter() - self.start
        self.timings[self.key] = self.timings.get(self.key, 0.0) + elapsed
        if exc_type is None:
            log.info("phase %s: %.1f s (CPU %.1f s)", self.phase, elapsed, time.process_time() - self.cpu)
