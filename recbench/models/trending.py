"""Time-aware popularity: :class:`Trending` (exponentially decayed counts, optional window).

On data split by time, "what is popular right now" is the baseline to beat, and plain popularity
(:class:`~recbench.models.baselines.Popularity`) counts a hit from years ago as much as one from
yesterday. :class:`Trending` weighs each interaction by ``2 ** (-age / half_life)``, where ``age`` is
how long before the scoring time it happened, and can ignore everything older than a window.
``half_life_days=null`` with a window is "recent popularity": plain counts over the last N days.

The scoring time is never later than what the model is allowed to see, so no interaction from the
future of a user's test time can move a score:

* ``reference="global"``: the latest timestamp in the history the model is given (train for
  validation, train + validation for test). With ``split=temporal`` every history ends before every
  test interaction, so this is "now" at the start of the test period.
* ``reference="user"``: each user's own latest history interaction; only interactions up to that
  moment count. This is leak-free under every protocol (``loo``, ``random``), at the price of
  a per-user computation (one decayed count vector per distinct reference time in a batch).
"""

from __future__ import annotations

import math

import numpy as np

from recbench.data.interactions import Interactions
from recbench.errors import ConfigError
from recbench.models.base import Capabilities, Recommender

_DAY = 86_400
REFERENCES = ("global", "user")


class Trending(Recommender):
    """Popularity with exponential time decay, scored at a leak-free reference time.

    Parameters
    ----------
    half_life_days:
        Age (days) at which an interaction counts half; ``None`` = no decay (plain counts).
    window_days:
        Only interactions at most this many days before the reference time count; ``None`` = all.
    reference:
        ``"global"`` (the latest history timestamp) or ``"user"`` (the user's own latest history
        interaction); see the module docstring.
    """

    capabilities = Capabilities(needs_timestamps=True)

    def __init__(
        self,
        *,
        half_life_days: float | None = 7.0,
        window_days: float | None = None,
        reference: str = "global",
    ) -> None:
        self.half_life_days = half_life_days
        self.window_days = window_days
        self.reference = reference

    def _check(self) -> None:
        for key in ("half_life_days", "window_days"):
            value = getattr(self, key)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0
            ):
                raise ConfigError(f"model.{key}={value!r} must be a positive number of days or null.")
        if self.reference not in REFERENCES:
            raise ConfigError(f"model.reference={self.reference!r} must be one of {list(REFERENCES)}.")

    def fit(self, train: Interactions, val: Interactions | None = None) -> Trending:
        """Validate the settings and remember the catalogue size (all counting happens at scoring time,
        on the history the evaluator passes, so validation and test each see only their own past)."""
        self._check()
        if train.timestamps is None:
            raise ConfigError(
                "model=trending weighs interactions by their age, but this dataset has no timestamps. "
                "Use model=pop, or a dataset with a timestamp column (MovieLens, csv with "
                "dataset.columns.timestamp)."
            )
        self.n_items_ = train.n_items
        return self

    def _events(self, history: Interactions) -> tuple[np.ndarray, np.ndarray]:
        """History timestamps and items in time order (kept for the last history object seen)."""
        cache = getattr(self, "_events_cache", None)
        if cache is not None and cache[0] is history:
            return cache[1]
        if history.timestamps is None:
            raise ConfigError("model=trending needs a history with timestamps at scoring time.")
        order = np.argsort(history.timestamps, kind="stable")
        events = (history.timestamps[order], history.items[order])
        self._events_cache = (history, events)  # not learned state: never saved
        return events

    def reference_times(self, users: np.ndarray, history: Interactions) -> np.ndarray:
        """``int64[len(users)]``: the scoring time of each user (see ``reference``)."""
        times, _ = self._events(history)
        now = int(times[-1]) if len(times) else 0
        if self.reference == "global":
            return np.full(len(users), now, dtype=np.int64)
        last = np.full(history.n_users, now, dtype=np.int64)
        if len(history):
            has = np.zeros(history.n_users, dtype=bool)
            has[history.users] = True
            latest = np.zeros(history.n_users, dtype=np.int64)
            np.maximum.at(latest, history.users, history.timestamps)
            last[has] = latest[has]
        return last[np.asarray(users, dtype=np.int64)]

    def score(self, users: np.ndarray, history: Interactions) -> np.ndarray:
        """``float32[len(users), n_items]``: decayed counts at each user's reference time."""
        users = np.asarray(users, dtype=np.int64)
        refs = self.reference_times(users, history)
        distinct, inverse = np.unique(refs, return_inverse=True)
        table = self._counts_at(distinct, *self._events(history))
        return table[inverse].astype(np.float32)

    def _counts_at(self, refs: np.ndarray, times: np.ndarray, items: np.ndarray) -> np.ndarray:
        """``float64[len(refs), n_items]`` decayed, windowed counts at each (ascending) time in ``refs``.

        One sweep through the time-ordered events: the running vector is decayed from one reference
        time to the next, the events up to the new time are added and those that left the window are
        subtracted, so the cost is one pass over the events plus one vector per distinct time.
        """
        rate = 0.0 if self.half_life_days is None else math.log(2.0) / (self.half_life_days * _DAY)
        window = None if self.window_days is None else self.window_days * _DAY
        out = np.zeros((len(refs), self.n_items_), dtype=np.float64)
        current = np.zeros(self.n_items_, dtype=np.float64)
        inside = np.zeros(self.n_items_, dtype=np.int64)  # events per item in the window, exact
        added = removed = 0
        at = int(refs[0]) if len(refs) else 0
        for row, ref in enumerate(refs.tolist()):
            current *= math.exp(-rate * (ref - at))
            at = ref
            end = int(np.searchsorted(times, ref, side="right"))
            if end > added:
                age = ref - times[added:end]
                current += np.bincount(items[added:end], np.exp(-rate * age), minlength=self.n_items_)
                inside += np.bincount(items[added:end], minlength=self.n_items_)
                added = end
            if window is not None:
                # events at least `window` old have left it (an event exactly `window` old still counts)
                gone = int(np.searchsorted(times, ref - window, side="left"))
                gone = min(gone, added)
                if gone > removed:
                    age = ref - times[removed:gone]
                    current -= np.bincount(items[removed:gone], np.exp(-rate * age), minlength=self.n_items_)
                    inside -= np.bincount(items[removed:gone], minlength=self.n_items_)
                    removed = gone
                # the subtraction may leave rounding residue: an item with no event inside scores exactly 0
                current[inside == 0] = 0.0
                np.maximum(current, 0.0, out=current)
            out[row] = current
        return out
