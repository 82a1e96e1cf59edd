"""The live state of a served run: loaded model, interaction log, and each user's current history.

A user's history is what the dataset holds for them (oldest first) followed by the events posted
since, in log order. Recommendations read it as follows:

* a user with no new events: ``model.score`` over the dataset, as ``recbench recommend``;
* a user with new events, for models that score ad-hoc histories (``score_history``: item-item and
  projection models, fold-in factor models, sequence models, popularity): the whole current history
  as a session, so the events count at once (fold-in models re-solve the user's factor);
* otherwise ``model.score`` over the dataset plus the events (models that read neighbours' or the
  user's own history from it, e.g. UserKNN, Caser), or a refusal for users the model has no state for.

All mutation happens under one lock, after the event is durably in the log, so the in-memory order
of events is the log order and a restart (which replays the log) rebuilds the same state.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from recbench.data.events import LOG_FILE, Event, EventLog, read_events
from recbench.data.interactions import Interactions
from recbench.evaluation.ranking import top_k_row
from recbench.explanations import ExplainInput, explain
from recbench.models.adhoc import session_interactions
from recbench.models.base import capabilities_of
from recbench.serving import LoadedRun, similar_items


class ServiceError(Exception):
    """A request the service refuses: ``status`` is the HTTP code, the message one line."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Limits:
    """Configurable request limits of the service (``recbench serve --max-...``)."""

    max_k: int = 100
    max_history: int = 500
    max_exclude: int = 1000
    max_body_bytes: int = 65536


@functools.cache
def models_that(capability: str) -> tuple[str, ...]:
    """Names of the shipped model configs that declare ``capability`` (read once per process)."""
    from recbench.config import models_with

    return tuple(models_with(capability))


@dataclass
class _UserEvents:
    items: list[int] = field(default_factory=list)
    ratings: list[float | None] = field(default_factory=list)


class LiveRun:
    """A loaded run plus its interaction log (``run_dir/interactions.jsonl``), replayed on creation.

    ``writable=False`` only reads the log (``recbench explain``); :meth:`add_event` then refuses.
    """

    def __init__(
        self, run: LoadedRun, run_dir: str | Path, limits: Limits | None = None, *, writable: bool = True
    ) -> None:
        self.run = run
        self.run_dir = Path(run_dir)
        self.limits = limits or Limits()
        self.model = run.model
        self.n_items = run.data.n_items
        self.users = {str(raw): u for u, raw in enumerate(run.ids.users)}
        self.items = {str(raw): i for i, raw in enumerate(run.ids.items)}
        self.capabilities = capabilities_of(self.model)
        # per-item answer fields, built once (a request reads k of them)
        self._item_json = [_json_id(raw) for raw in run.ids.items]
        titles = run.ids.item_titles
        self._titles = None if titles is None else [str(t) for t in titles]
        data = run.data
        order = data.chronological_order()
        self._hist_items = data.items[order]
        self._hist_ratings = None if data.ratings is None else data.ratings[order]
        self._hist_ptr = np.concatenate([[0], np.cumsum(np.bincount(data.users, minlength=data.n_users))])
        self._seen = data.binary_csr
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._events: dict[str, _UserEvents] = {}
        self._merged: Interactions | None = None
        path = self.run_dir / LOG_FILE
        self.log = EventLog(path) if writable else None
        replayed = self.log.replayed if self.log else (read_events(path) if path.exists() else [])
        for event in replayed:
            self._apply(event)
        self.n_replayed = len(replayed)

    @property
    def can_score_history(self) -> bool:
        """Whether the model scores ad-hoc histories (sessions, new users): its ``history`` capability."""
        return self.capabilities.history

    def require(self, capability: str, doing: str) -> None:
        """A 422 naming the models that can, unless the model declares ``capability`` (checked before any
        work: the answer depends only on the declaration)."""
        if not getattr(self.capabilities, capability):
            raise ServiceError(
                422,
                f"model {type(self.model).__name__} cannot {doing}; models that can: "
                f"{', '.join(models_that(capability))}",
            )

    # ---- ids ----------------------------------------------------------------------------------
    def item_id(self, raw: object) -> int:
        """Dense id of a raw item id; a 404 naming it when the dataset has no such item."""
        dense = self.items.get(str(raw))
        if dense is None:
            raise ServiceError(404, f"unknown item id {raw!r}: use an item id of the run's dataset")
        return dense

    def item_ids(self, raws: list[Any], what: str) -> list[int]:
        """Dense ids of raw item ids; one 404 listing every unknown one."""
        dense = [self.items.get(str(r)) for r in raws]
        if None in dense:
            unknown = [r for r, d in zip(raws, dense) if d is None]
            shown = ", ".join(repr(r) for r in unknown[:5]) + (" ..." if len(unknown) > 5 else "")
            raise ServiceError(404, f"unknown item id(s) in {what}: {shown}")
        return dense  # type: ignore[return-value]

    # ---- events -------------------------------------------------------------------------------
    def _apply(self, event: Event) -> None:
        item = self.items.get(event.item)
        if item is None:  # the log was written by this run's service, which checks items first
            return
        entry = self._events.setdefault(event.user, _UserEvents())
        entry.items.append(item)
        entry.ratings.append(event.rating)
        self._merged = None

    def add_event(self, user: str, item: object, timestamp: int, rating: float | None) -> Event:
        """Log one interaction durably, then make it part of the user's history."""
        self.item_id(item)
        if self.log is None:
            raise ServiceError(405, "this run was opened read-only; events go through recbench serve")
        with self._write_lock:  # log order = apply order; readers only wait for the apply, not the fsync
            event = self.log.append(str(user), str(item), timestamp, rating)
            with self._lock:
                self._apply(event)
        return event

    def history(self, user: str) -> tuple[int | None, np.ndarray, np.ndarray | None]:
        """``(dense user or None, items oldest first, ratings or None)``: dataset history + new events."""
        dense = self.users.get(user)
        if dense is not None:
            lo, hi = self._hist_ptr[dense], self._hist_ptr[dense + 1]
            items = self._hist_items[lo:hi]
            ratings = None if self._hist_ratings is None else self._hist_ratings[lo:hi]
        else:
            items, ratings = np.zeros(0, dtype=np.int64), None
        with self._lock:
            entry = self._events.get(user)
            new_items = list(entry.items) if entry else []
            new_ratings = list(entry.ratings) if entry else []
        if dense is None and not new_items:
            raise ServiceError(404, f"unknown user id {user!r}: use a user id of the run's dataset")
        if new_items:
            items = np.concatenate([items, np.asarray(new_items, dtype=np.int64)])
            if ratings is not None or any(r is not None for r in new_ratings):
                top = float(self._hist_ratings.max()) if self._hist_ratings is not None else 1.0
                old = ratings if ratings is not None else np.full(len(items) - len(new_items), top)
                fresh = [top if r is None else r for r in new_ratings]
                ratings = np.concatenate([old, np.asarray(fresh)]).astype(np.float32)
        return dense, items, ratings

    def has_events(self, user: str) -> bool:
        """Whether events were posted for ``user`` (since training)."""
        with self._lock:
            return user in self._events

    def _merged_history(self) -> Interactions:
        """The dataset plus the events of its known users (rebuilt after new events)."""
        with self._lock:
            if self._merged is None:
                known = [(self.users[u], e) for u, e in self._events.items() if u in self.users]
                rows = [(dense, i) for dense, e in known for i in e.items]
                data = self.run.data
                if rows:
                    users, items = (np.asarray(c, dtype=np.int64) for c in zip(*rows))
                    extra = Interactions(
                        users,
                        items,
                        data.n_users,
                        data.n_items,
                        ratings=None if data.ratings is None else np.full(len(users), data.ratings.max()),
                        timestamps=None
                        if data.timestamps is None
                        else np.full(len(users), data.timestamps.max() + 1),
                    )
                    data = data.concat(extra)
                self._merged = data
            return self._merged

    # ---- recommendations ----------------------------------------------------------------------
    def check_k(self, k: int) -> int:
        """``k`` within ``[1, max_k]``, else a 422."""
        if not 1 <= k <= self.limits.max_k:
            raise ServiceError(422, f"k={k} is out of range: use 1 <= k <= {self.limits.max_k}")
        return k

    def user_scores(self, user: str) -> tuple[np.ndarray, np.ndarray]:
        """``(scores[n_items], history items)`` of a known or event-only user."""
        dense, items, ratings = self.history(user)
        if self.has_events(user) and self.can_score_history:
            session = session_interactions([items], self.n_items, None if ratings is None else [ratings])
            return np.asarray(self.model.score_history(session))[0], items
        if dense is None:
            self.require("history", f"score an ad-hoc history (user {user!r} is not in the training data)")
        history = self._merged_history() if self.has_events(user) else self.run.data
        return np.asarray(self.model.score(np.array([dense]), history))[0], items

    def session_scores(self, items: list[int], ratings: list[float] | None) -> np.ndarray:
        """Scores of an ad-hoc session (dense items, oldest first); a 422 for models that cannot."""
        self.require("history", "score an ad-hoc history without retraining")
        session = session_interactions([items], self.n_items, None if ratings is None else [ratings])
        return np.asarray(self.model.score_history(session))[0]

    def top(self, scores: np.ndarray, k: int, exclude: np.ndarray) -> list[dict[str, Any]]:
        """The ``k`` best items not in ``exclude``, as JSON-ready rows (rank, item, title, score)."""
        scores = np.array(scores, dtype=np.float32)
        scores[np.asarray(exclude, dtype=np.int64)] = -np.inf
        items, values = top_k_row(scores, k)
        ids, titles = self._item_json, self._titles
        out = []
        for rank, (item, value) in enumerate(zip(items.tolist(), values.tolist()), 1):
            if not math.isfinite(value):
                break
            row: dict[str, Any] = {"rank": rank, "item": ids[item]}
            if titles is not None:
                row["title"] = titles[item]
            row["score"] = value
            out.append(row)
        return out

    def recommend_user(self, user: str, k: int) -> list[dict[str, Any]]:
        """Top-``k`` for a user, excluding everything in their current history."""
        self.check_k(k)
        scores, items = self.user_scores(user)
        return self.top(scores, k, items)

    def check_session(self, history: list[Any], exclude: list[Any], ratings: list[float] | None) -> None:
        """A 422 for an empty or over-long history, an over-long exclude list, or mismatched ratings."""
        lim = self.limits
        if not history:
            raise ServiceError(422, "history is empty: give at least one item id")
        caps = (("history", history, lim.max_history), ("exclude", exclude, lim.max_exclude))
        for name, values, cap in caps:
            if len(values) > cap:
                raise ServiceError(422, f"{name} has {len(values)} items, more than max_{name}={cap}")
        if ratings is not None and len(ratings) != len(history):
            raise ServiceError(422, f"ratings has {len(ratings)} values but history has {len(history)} items")

    def recommend_session(
        self, history: list[Any], k: int, exclude: list[Any], ratings: list[float] | None
    ) -> list[dict[str, Any]]:
        """Top-``k`` for an ad-hoc history of raw item ids, excluding it and ``exclude``."""
        self.require("history", "score an ad-hoc history without retraining")
        self.check_k(k)
        self.check_session(history, exclude, ratings)
        items = self.item_ids(history, "history")
        skip = self.item_ids(exclude, "exclude")
        scores = self.session_scores(items, ratings)
        return self.top(scores, k, np.asarray(items + skip, dtype=np.int64))

    def explain(self, user: str, item: object | None, k: int = 10) -> dict[str, Any]:
        """Why ``item`` (default: the user's top recommendation) is recommended, ``k`` contributions."""
        self.require("explain", "explain its recommendations")
        self.check_k(k)
        dense, items, ratings = self.history(user)
        if item is None:
            scores, _ = self.user_scores(user)
            best = self.top(scores, 1, items)
            if not best:
                raise ServiceError(422, f"user {user!r} has no item left to recommend")
            item = best[0]["item"]
        history = self._merged_history() if self.has_events(user) else self.run.data
        return {"user": user, **self._explained(ExplainInput(items, ratings, dense, history), item, k)}

    def explain_session(
        self, history: list[Any], item: object | None, k: int, ratings: list[float] | None
    ) -> dict[str, Any]:
        """Why ``item`` (default: the session's top recommendation) is recommended for an ad-hoc history."""
        self.require("explain", "explain its recommendations")
        self.check_session(history, [], ratings)
        self.check_k(k)
        items = np.asarray(self.item_ids(history, "history"), dtype=np.int64)
        if item is None:
            best = self.top(self.session_scores(items.tolist(), ratings), 1, items)
            if not best:
                raise ServiceError(422, "the history leaves no item to recommend")
            item = best[0]["item"]
        values = None if ratings is None else np.asarray(ratings, dtype=np.float32)
        return self._explained(ExplainInput(items, values, None, self.run.data), item, k)

    def _explained(self, ctx: ExplainInput, item: object, k: int) -> dict[str, Any]:
        """The explanation of ``item`` for ``ctx`` as JSON-ready fields (raw ids, titles)."""
        target = self.item_id(item)
        out = explain(self.model, ctx, target, top=k)
        ids, titles = self.run.ids.items, self.run.ids.item_titles
        rows = []
        for row in out.contributions:
            row = dict(row)
            if "item" in row:
                if titles is not None:
                    row["title"] = str(titles[row["item"]])
                row["item"] = _json_id(ids[row["item"]])
            rows.append(row)
        answer: dict[str, Any] = {"item": _json_id(ids[target])}
        if titles is not None:
            answer["title"] = str(titles[target])
        answer.update(
            method=out.method,
            exact=out.exact,
            score=out.score,
            baseline=out.baseline,
            rest=out.rest,
            contributions=rows,
        )
        return answer

    def similar(self, item: object, k: int) -> list[dict[str, Any]]:
        """The ``k`` items most similar to ``item``."""
        self.check_k(k)
        frame = similar_items(self.run, self.item_id(item), k)
        return [
            {key: (_json_id(v) if key == "item" else v) for key, v in row.items()}
            for row in frame.to_dict(orient="records")
        ]

    def metadata(self) -> dict[str, Any]:
        """Model, dataset, training metrics and sizes of the run."""
        record: dict[str, Any] = {}
        with contextlib.suppress(OSError, ValueError):
            record = json.loads((self.run_dir / "metrics.json").read_text())
        return {
            "run_dir": str(self.run_dir),
            "model": type(self.model).__name__,
            "choices": record.get("choices", {}),
            "metrics": record.get("metrics", {}),
            "n_users": self.run.data.n_users,
            "n_items": self.n_items,
            "n_interactions": len(self.run.data),
            "n_logged_events": self.log.count if self.log else self.n_replayed,
            "scores_history": self.can_score_history,
            "limits": self.limits.__dict__,
        }


def _json_id(raw: Any) -> Any:
    """A raw id as JSON: ints stay ints, everything else becomes a string."""
    if isinstance(raw, (int, np.integer)):
        return int(raw)
    return str(raw)
