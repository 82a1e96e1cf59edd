"""The interaction log of a served run: append-only JSON lines, durable before acknowledgement.

``recbench serve`` appends each new event (``POST /interactions``) to ``interactions.jsonl`` in the run
directory as one line ``{"seq": n, "user": "...", "item": "...", "timestamp": t[, "rating": r]}``
(raw ids, as in the dataset file), written, flushed and fsynced before the reply. A line is complete
or absent: a crash in the middle of a write leaves at most a torn last line, which was never
acknowledged; opening the log cuts it off. Opening also reads every complete line back (the replay
at start-up), and ``seq`` numbers go on from the last one.

:func:`add_events` folds a log into a dataset for the next offline training (``recbench train ...
extra_interactions=PATH``): events of known users are added to their history, unknown users get new
dense ids after the existing ones, and unknown items are an error (a model cannot score them).
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from recbench.data.interactions import IdMaps, Interactions
from recbench.errors import DataError

LOG_FILE = "interactions.jsonl"


@dataclass(frozen=True)
class Event:
    """One logged interaction (raw ids)."""

    seq: int
    user: str
    item: str
    timestamp: int
    rating: float | None = None

    def to_json(self) -> str:
        """The log line (without the newline)."""
        record: dict[str, Any] = {
            "seq": self.seq,
            "user": self.user,
            "item": self.item,
            "timestamp": self.timestamp,
        }
        if self.rating is not None:
            record["rating"] = self.rating
        return json.dumps(record, separators=(",", ":"))


def _parse(line: bytes, path: Path, number: int) -> Event:
    try:
        rec = json.loads(line)
        return Event(
            seq=int(rec["seq"]),
            user=str(rec["user"]),
            item=str(rec["item"]),
            timestamp=int(rec["timestamp"]),
            rating=None if rec.get("rating") is None else float(rec["rating"]),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise DataError(
            f"{path}, line {number}, is not an interaction event ({type(exc).__name__}: {exc}); each line "
            'must be {"seq": n, "user": id, "item": id, "timestamp": t}. Remove or fix that line.'
        ) from None


def read_events(path: str | Path) -> list[Event]:
    """Every complete event of the log at ``path`` (a torn last line, never acknowledged, is skipped)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(
            f"cannot read the interaction log {path} ({exc.strerror or exc}); pass the interactions.jsonl "
            "of a served run directory."
        ) from None
    complete = raw[: raw.rfind(b"\n") + 1]
    lines = complete.splitlines()
    return [_parse(line, path, n) for n, line in enumerate(lines, 1) if line.strip()]


class EventLog:
    """The append-only log at ``path``: replayed on opening, then appended to by :meth:`append`.

    Thread-safe: each append writes one whole line under a lock, then flushes and fsyncs, so every
    acknowledged event is in the file exactly once, in ``seq`` order.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists():
            size = self.path.stat().st_size
            keep = self.path.read_bytes().rfind(b"\n") + 1
            if keep < size:  # torn last line of a crashed write: never acknowledged
                with open(self.path, "r+b") as fh:
                    fh.truncate(keep)
                    os.fsync(fh.fileno())
        self.replayed: list[Event] = read_events(self.path) if self.path.exists() else []
        self._next = self.replayed[-1].seq + 1 if self.replayed else 1
        #: events in the file (replayed plus appended since opening)
        self.count = len(self.replayed)
        self._fh = open(self.path, "ab")  # noqa: SIM115 - held open for the server's lifetime
        _fsync_dir(self.path.parent)

    def append(self, user: str, item: str, timestamp: int, rating: float | None = None) -> Event:
        """Write one event durably (flushed and fsynced) and return it with its ``seq``."""
        with self._lock:
            event = Event(self._next, str(user), str(item), int(timestamp), rating)
            self._fh.write(event.to_json().encode() + b"\n")
            self._fh.flush()
            os.fsync(self._fh.fileno())
            self._next += 1
            self.count += 1
            return event

    def close(self) -> None:
        """Close the file (appends after this fail)."""
        with self._lock:
            self._fh.close()


def _fsync_dir(folder: Path) -> None:
    """Make a newly created log file's directory entry durable (a no-op where unsupported)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def add_events(data: Interactions, ids: IdMaps, events: list[Event]) -> tuple[Interactions, IdMaps]:
    """``data`` with ``events`` appended; new users get dense ids ``n_users, n_users + 1, ...``.

    Ratings: an event without one counts as the highest rating of ``data`` (a positive interaction).
    Timestamps are kept where ``data`` has them. As datasets hold one row per (user, item), an event
    repeating a pair replaces the older row.
    """
    if not events:
        return data, ids
    raw_items = ids.items.astype(str)
    item_index = {raw: j for j, raw in enumerate(raw_items)}
    missing = sorted({e.item for e in events if e.item not in item_index})
    if missing:
        raise DataError(
            f"the interaction log names item ids the dataset does not have: {', '.join(missing[:5])}"
            f"{' ...' if len(missing) > 5 else ''}. Remove those lines, or train on the dataset that has "
            "them."
        )
    user_index = {raw: u for u, raw in enumerate(ids.users.astype(str))}
    new_users: list[str] = []
    for e in events:
        if e.user not in user_index:
            user_index[e.user] = len(user_index)
            new_users.append(e.user)
    users = np.array([user_index[e.user] for e in events], dtype=np.int64)
    items = np.array([item_index[e.item] for e in events], dtype=np.int64)
    ratings = None
    if data.ratings is not None:
        top = float(data.ratings.max()) if len(data) else 1.0
        ratings = np.array([top if e.rating is None else e.rating for e in events], dtype=np.float32)
    stamps = None if data.timestamps is None else np.array([e.timestamp for e in events], dtype=np.int64)
    n_users = data.n_users + len(new_users)
    grown = replace(data, n_users=n_users) if new_users else data
    extra = Interactions(users, items, n_users, data.n_items, ratings=ratings, timestamps=stamps)
    if new_users:
        ids = replace(
            ids, users=np.concatenate([ids.users.astype(object), np.array(new_users, dtype=object)])
        )
    both = grown.concat(extra)
    # one row per (user, item), the latest: an event repeating a pair replaces the older row
    key = both.users * both.n_items + both.items
    _, last = np.unique(key[::-1], return_index=True)
    return both.select(np.sort(len(key) - 1 - last)), ids


def with_logged_events(
    data: Interactions, ids: IdMaps, path: str | Path | None
) -> tuple[Interactions, IdMaps]:
    """``data`` with the events of the log at ``path`` added (:func:`add_events`); unchanged for ``None``.

    The config key ``extra_interactions`` of ``recbench train`` (and the run loader, which rebuilds what
    training used) goes through here.
    """
    if path is None or str(path) == "":
        return data, ids
    return add_events(data, ids, read_events(path))
