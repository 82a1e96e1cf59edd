"""Using a trained run: top-k recommendations for a user and "because you watched" similar items.

A run directory holds the composed config (``.hydra/config.yaml``) and the learned state
(``model.pt`` or ``model.npz``, see :mod:`recbench.models.persistence`). :func:`load_run` rebuilds the
dataset, the split and an unfitted model from the config, then restores the saved state. Nothing is
unpickled.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import OmegaConf

from recbench.config import build
from recbench.data.interactions import IdMaps, Interactions
from recbench.data.splits import Split
from recbench.errors import RecbenchError
from recbench.evaluation.evaluator import top_lists
from recbench.models.base import Recommender, capabilities_of
from recbench.models.persistence import NUMPY_FILE, TORCH_FILE, load_state
from recbench.pipeline import load_dataset, make_folds, with_model_features


@dataclass
class LoadedRun:
    """A fitted model with the data it was trained on."""

    model: Recommender
    data: Interactions
    ids: IdMaps
    train: Interactions
    split: Split | None = None
    exclude_seen: bool = True
    #: user-user graphs (friend recommendation): never recommend users themselves
    exclude_self: bool = False


def load_run(run_dir: str | Path) -> LoadedRun:
    """Rebuild the model of ``run_dir`` from its config and saved weights.

    Data, side features and split come from the same functions training used
    (:func:`recbench.pipeline.load_dataset`, :func:`~recbench.pipeline.with_model_features`,
    :func:`~recbench.pipeline.make_folds`), so a feature-reading model gets the network it trained.
    """
    run_dir = Path(run_dir)
    cfg_path = run_dir / ".hydra" / "config.yaml"
    if not cfg_path.is_file():
        raise RecbenchError(
            f"{run_dir} is not a recbench run directory: {cfg_path} is missing. Pass the folder of one "
            "run (it holds metrics.json and .hydra/), not a sweep folder."
        )
    if not ((run_dir / TORCH_FILE).is_file() or (run_dir / NUMPY_FILE).is_file()):
        raise RecbenchError(
            f"{run_dir} holds no saved model ({TORCH_FILE} or {NUMPY_FILE}). Re-run it with save_model=true "
            "(the default); k-fold runs do not save a model."
        )
    cfg = OmegaConf.load(cfg_path)
    model = build(cfg.model, "model")
    source, data, ids = load_dataset(cfg)
    data = with_model_features(cfg, capabilities_of(model), source, data, ids)
    split = make_folds(cfg, data, ids)[1][0]
    load_state(model, run_dir, train=split.train)
    exclude_seen = bool(cfg.get("eval", {}).get("exclude_seen", True))
    graph = bool(getattr(source, "user_graph", False))
    exclude_self = graph or bool(cfg.get("eval", {}).get("exclude_self", False))
    return LoadedRun(
        model=model,
        data=data,
        ids=ids,
        train=split.train,
        split=split,
        exclude_seen=exclude_seen,
        exclude_self=exclude_self,
    )


def _titles(ids: IdMaps, items: np.ndarray) -> list[str]:
    if ids.item_titles is None:
        return ["" for _ in items]
    return [str(t) for t in ids.item_titles[items]]


def _frame(run: LoadedRun, users: np.ndarray, items: np.ndarray, scores: np.ndarray) -> pd.DataFrame:
    k = items.shape[1]
    return pd.DataFrame(
        {
            "user": np.repeat(run.ids.users[users], k),
            "rank": np.tile(np.arange(1, k + 1), len(users)),
            "item": run.ids.items[items.ravel()],
            "title": _titles(run.ids, items.ravel()),
            "score": scores.ravel(),
        }
    )


def _top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    k = min(k, scores.shape[1])
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1, kind="stable")
    items = np.take_along_axis(part, order, axis=1)
    return items, np.take_along_axis(scores, items, axis=1)


def recommend(
    run: LoadedRun, users: np.ndarray, k: int = 10, batch_size: int = 1024, history: str = "all"
) -> pd.DataFrame:
    """Top-``k`` items for dense ``users``, ranked as evaluation ranks them (ties to the lower item id).

    ``history="all"``: the model sees the user's whole known history (train, validation and test) as
    context, and all of it is excluded. ``history="test"``: the history the test metrics were
    computed with (train + validation, masked as ``eval.exclude_seen`` says), so the lists are
    exactly those the run's ``test/...@k`` metrics were computed from.
    """
    if history not in ("all", "test"):
        raise RecbenchError(f"history={history!r} must be 'all' (live use) or 'test' (the evaluated lists).")
    if history == "test" and run.split is None:
        raise RecbenchError("history='test' needs the run's split; load the run with load_run().")
    context = run.data if history == "all" else run.split.test_history  # type: ignore[union-attr]
    exclude = True if history == "all" else run.exclude_seen
    k = min(k, run.data.n_items)
    items, top = top_lists(
        run.model,
        users,
        context,
        k,
        exclude_seen=exclude,
        exclude_self=run.exclude_self,
        batch_size=batch_size,
    )
    out = _frame(run, users, np.maximum(items, 0), top.astype(np.float64))
    # a user who already has almost every item gets fewer than k recommendations, never a seen one
    return out[np.isfinite(out["score"].to_numpy())].reset_index(drop=True)


def similar_items(run: LoadedRun, item: int, k: int = 10) -> pd.DataFrame:
    """The ``k`` items most similar to dense ``item``.

    Models that declare ``Capabilities(similar=True)`` answer with their own ``similar_items(items)``
    (item-item similarity or weights, cosine of item factors or embeddings); otherwise items are
    compared by the cosine of their score columns across all users, i.e. items the model recommends
    to the same people.
    """
    model = run.model
    if capabilities_of(model).similar:
        sims = np.asarray(model.similar_items(np.array([item])), dtype=np.float64)[0]
    else:
        users = np.arange(run.data.n_users)
        cols = np.vstack([model.score(users[s : s + 1024], run.data) for s in range(0, len(users), 1024)])
        cols = cols - cols.mean(axis=0, keepdims=True)
        norms = np.linalg.norm(cols, axis=0) + 1e-12
        sims = (cols.T @ cols[:, item]) / (norms * norms[item])
    sims[item] = -np.inf
    items, top = _top_k(sims[None, :], k)
    frame = pd.DataFrame(
        {
            "rank": np.arange(1, items.shape[1] + 1),
            "item": run.ids.items[items[0]],
            "title": _titles(run.ids, items[0]),
            "similarity": top[0],
        }
    )
    return frame
