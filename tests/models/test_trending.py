"""Trending / recent_pop: exact decayed counts, windows, reference times, no future leak, configs."""

from __future__ import annotations

import numpy as np
import pytest

from recbench.data.interactions import Interactions
from recbench.errors import ConfigError
from recbench.models.baselines import Popularity
from recbench.models.trending import Trending

DAY = 86_400


def _log(rows: list[tuple[int, int, float]], n_users: int = 3, n_items: int = 3) -> Interactions:
    users, items, days = zip(*rows)
    return Interactions(
        users=np.array(users),
        items=np.array(items),
        n_users=n_users,
        n_items=n_items,
        timestamps=(np.array(days) * DAY).astype(np.int64),
    )


# item 0: three old hits (day 0); item 1: two recent hits (day 29); "now" is day 30
HAND = _log([(0, 0, 0), (1, 0, 0), (2, 0, 0), (0, 1, 29), (1, 1, 29), (2, 2, 30)])


def test_decay_reorders_plain_popularity() -> None:
    pop = Popularity().fit(HAND).score(np.array([0]), HAND)[0]
    assert pop[0] > pop[1]
    scores = Trending(half_life_days=7.0).fit(HAND).score(np.array([0]), HAND)[0]
    expected = [3 * 2 ** (-30 / 7), 2 * 2 ** (-1 / 7), 1.0]
    np.testing.assert_allclose(scores, expected, rtol=1e-6)
    assert scores[1] > scores[0]


def test_window_counts_only_recent_events() -> None:
    recent = Trending(half_life_days=None, window_days=10.0).fit(HAND)
    np.testing.assert_array_equal(recent.score(np.array([0, 1]), HAND), [[0, 2, 1], [0, 2, 1]])
    edge = Trending(half_life_days=None, window_days=30.0).fit(HAND)  # exactly 30 days old still counts
    np.testing.assert_array_equal(edge.score(np.array([0]), HAND)[0], [3, 2, 1])


def _brute(data: Interactions, ref: int, half_life: float | None, window: float | None) -> np.ndarray:
    out = np.zeros(data.n_items)
    for item, t in zip(data.items, data.timestamps):
        age = ref - t
        if age < 0 or (window is not None and age > window * DAY):
            continue
        out[item] += 1.0 if half_life is None else 2.0 ** (-age / (half_life * DAY))
    return out


@pytest.mark.parametrize(("half_life", "window"), [(3.0, None), (None, 5.0), (2.0, 6.0)])
def test_per_user_reference_matches_a_direct_sum(half_life: float | None, window: float | None) -> None:
    rng = np.random.default_rng(0)
    n = 400
    data = Interactions(
        users=rng.integers(0, 30, n),
        items=rng.integers(0, 12, n),
        n_users=30,
        n_items=12,
        timestamps=rng.integers(0, 40 * DAY, n),
    )
    model = Trending(half_life_days=half_life, window_days=window, reference="user").fit(data)
    users = np.arange(30)
    scores = model.score(users, data)
    for u in users:
        ref = data.timestamps[data.users == u].max()
        np.testing.assert_allclose(scores[u], _brute(data, ref, half_life, window), rtol=1e-5, atol=1e-9)
    # batch independence
    np.testing.assert_array_equal(model.score(np.array([7, 3]), data), scores[[7, 3]])


def test_no_interaction_after_the_users_time_moves_a_score() -> None:
    model = Trending(half_life_days=7.0, reference="user").fit(HAND)
    before = model.score(np.array([0]), HAND)[0]  # user 0's latest history interaction: day 29
    later = HAND.concat(_log([(1, 0, 29.5), (2, 0, 40)]))  # other users, after day 29
    np.testing.assert_array_equal(model.score(np.array([0]), later)[0], before)
    earlier = HAND.concat(_log([(1, 0, 28)]))  # before day 29: must count
    assert model.score(np.array([0]), earlier)[0][0] > before[0]


def test_global_reference_is_the_latest_history_timestamp() -> None:
    model = Trending().fit(HAND)
    np.testing.assert_array_equal(model.reference_times(np.array([0, 2]), HAND), [30 * DAY, 30 * DAY])


def test_needs_timestamps_and_valid_settings() -> None:
    plain = Interactions(np.array([0]), np.array([0]), n_users=1, n_items=1)
    with pytest.raises(ConfigError, match="no timestamps"):
        Trending().fit(plain)
    for bad in (dict(half_life_days=0), dict(window_days=-1.0), dict(reference="later")):
        with pytest.raises(ConfigError, match="model\\."):
            Trending(**bad).fit(HAND)
