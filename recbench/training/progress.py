"""Progress inside a training epoch: a batch bar on a terminal and a periodic log line.

On large data one epoch can take many minutes; :func:`epoch_progress` wraps the epoch's batches so
that the user sees how far it got. On a terminal a bar counts batches (with their rate); in any
case a log line (terminal and ``train.log``) reports the batches done, their rate and the time left
every :data:`LOG_EVERY_S` seconds, so short epochs stay silent.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

from tqdm.auto import tqdm

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Seconds between two progress lines of one epoch in the log.
LOG_EVERY_S = 30.0


def batch_total(model: Any, train: Any, batch_size: int) -> int | None:
    """The number of batches of ``model``'s epoch if the model can tell (``batch_count``), else ``None``."""
    count = getattr(model, "batch_count", None)
    return None if count is None else int(count(train, batch_size))


def _clock(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def progress_line(epoch: int, done: int, total: int | None, elapsed: float) -> str:
    """``epoch 1: 2,048/8,656 batches (24%), 12.3 batches/s, 2:46 elapsed, about 8:57 left``."""
    rate = done / elapsed if elapsed > 0 else 0.0
    line = f"epoch {epoch}: {done:,}"
    if total:
        line += f"/{total:,} batches ({100 * done / total:.0f}%)"
    else:
        line += " batches"
    line += f", {rate:.1f} batches/s, {_clock(elapsed)} elapsed"
    if total and rate > 0 and done < total:
        line += f", about {_clock((total - done) / rate)} left"
    return line


def epoch_progress(
    batches: Iterable[T],
    epoch: int,
    *,
    total: int | None = None,
    bar: bool = False,
    every_s: float | None = None,
) -> Iterator[T]:
    """Yield ``batches`` unchanged while reporting progress (see the module docstring).

    ``total`` (batches in the epoch, if known) adds a percentage and the time left; ``bar`` shows a
    tqdm bar (the caller decides, e.g. only on a terminal); ``every_s`` defaults to :data:`LOG_EVERY_S`.
    """
    every_s = LOG_EVERY_S if every_s is None else every_s
    start = last = time.perf_counter()
    done = 0
    with tqdm(batches, total=total, desc=f"epoch {epoch}", unit="batch", disable=not bar, leave=False) as it:
        for batch in it:
            yield batch
            done += 1
            now = time.perf_counter()
            if now - last >= every_s:
                last = now
                log.info(progress_line(epoch, done, total, now - start))
