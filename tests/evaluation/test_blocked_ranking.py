"""Blocked, threaded full ranking: torch top-k selection, memory-sized blocks, parallel ranking, progress."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch

from recbench.errors import ConfigError
from recbench.evaluation import evaluator as ev
from recbench.evaluation.evaluator import EvalSpec, evaluate
from recbench.evaluation.ranking import _top_k_exact, top_k, top_k_row
from recbench.models.base import Capabilities
from tests.evaluation.test_evaluator import ALL, FixedScorer, assert_same, random_case


@pytest.mark.parametrize("integer_scores", [True, False])
def test_top_k_matches_the_exact_selection(integer_scores: bool) -> None:
    rng = np.random.default_rng(7)
    for _ in range(60):
        n, m = int(rng.integers(1, 30)), int(rng.integers(1, 40))
        k = int(rng.integers(1, m + 1))
        if integer_scores:  # many ties, also across the cut
            scores = rng.integers(0, int(rng.integers(1, 6)), size=(n, m)).astype(np.float32)
        else:
            scores = rng.standard_normal((n, m)).astype(np.float32)
        scores[rng.random((n, m)) < 0.2] = -np.inf  # masked items tie at -inf
        items, values = top_k(scores, k)
        want_items, want_values = _top_k_exact(scores.copy(), k)
        np.testing.assert_array_equal(items, want_items)
        np.testing.assert_array_equal(values, want_values)


def test_the_single_row_selection_of_the_service_matches_top_k() -> None:
    rng = np.random.default_rng(3)
    for trial in range(300):
        m = int(rng.integers(1, 40))
        k = int(rng.integers(1, m + 3))  # k above the catalogue size gives every item
        if trial % 2:
            row = rng.integers(-2, 3, size=m).astype(np.float32)  # ties, also across the cut
        else:
            row = rng.standard_normal(m).astype(np.float32)
        row[rng.random(m) < 0.3] = -np.inf
        items, values = top_k_row(row, k)
        want_items, want_values = top_k(row[None, :], min(k, m))
        np.testing.assert_array_equal(items, want_items[0])
        np.testing.assert_array_equal(values, want_values[0])


def test_top_k_orders_ties_inside_the_list_by_id() -> None:
    scores = np.array([[1, 5, 3, 5, 0, 3, 9]], dtype=np.float32)
    items, values = top_k(scores, 4)
    np.testing.assert_array_equal(items, [[6, 1, 3, 2]])  # 5 and 5: id 1 before 3; 3 and 3: cut at 2
    np.testing.assert_array_equal(values, [[9, 5, 5, 3]])


def test_blocks_follow_the_memory_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = EvalSpec(memory_mb=1)
    per_user = ev._BYTES_PER_SCORE * 1000
    assert spec.users_per_block(1000, 10**6) == (1 << 20) // per_user
    assert spec.users_per_block(1000, 5) == 5  # never more than the users to rank
    assert EvalSpec(batch_size=7, memory_mb=1).users_per_block(1000, 10**6) == 7
    # little free memory shrinks the blocks; not even one user's row fitting is a clear error
    monkeypatch.setattr("recbench.memory.available_bytes", lambda: 10 * per_user)
    assert spec.users_per_block(1000, 10**6) == 9
    monkeypatch.setattr("recbench.memory.available_bytes", lambda: per_user // 2)
    with pytest.raises(ConfigError, match="eval.memory_mb"):
        spec.users_per_block(1000, 10**6)


def test_blocks_stay_small_enough_for_the_allocator_to_reuse() -> None:
    spec = EvalSpec(memory_mb=4096)  # the budget would allow far larger blocks
    rows = spec.users_per_block(26744, 10**6)
    assert 1 <= rows <= ev._REUSED_BLOCK_BYTES // (4 * 26744) < 1000
    assert spec.users_per_block(1682, 943) == 943  # a small catalogue still ranks in one block
    assert spec.users_per_block(10**7, 10) == 1  # one user's row above the size: one user per block


@pytest.mark.parametrize("threads", [1, 2])
def test_threads_and_block_sizes_give_identical_results(threads: int) -> None:
    model, target, history = random_case(5, n_users=60, n_items=30)
    before = torch.get_num_threads()
    base = evaluate(model, target, history, EvalSpec(metrics=ALL, ks=(1, 5, 10), batch_size=1000))
    blocked = evaluate(
        model, target, history, EvalSpec(metrics=ALL, ks=(1, 5, 10), batch_size=7, num_threads=threads)
    )
    assert_same(base, blocked)
    assert torch.get_num_threads() == before  # restored after the evaluation
    assert sum(model.calls[1:]) == len(base.users) and max(model.calls[1:]) == 7


class ThreadRecordingScorer:
    """A fixed scorer that notes the thread of every ``score`` call and how many ran at once."""

    def __init__(self, scores: np.ndarray, concurrent: bool) -> None:
        self.inner = FixedScorer(scores)
        self.capabilities = Capabilities(concurrent_score=concurrent)
        self.threads: list[int] = []
        self.running = self.most = 0
        self.lock = threading.Lock()

    def score(self, users: np.ndarray, history: object) -> np.ndarray:
        with self.lock:
            self.threads.append(threading.get_ident())
            self.running += 1
            self.most = max(self.most, self.running)
        time.sleep(0.002)  # long enough for the workers' calls to overlap
        with self.lock:
            self.running -= 1
        return self.inner.score(users, history)


@pytest.mark.parametrize("concurrent", [True, False])
def test_a_concurrent_scorer_is_scored_in_the_workers_and_any_other_in_this_thread(concurrent: bool) -> None:
    base_model, target, history = random_case(8, n_users=90, n_items=30)
    base = evaluate(base_model, target, history, EvalSpec(metrics=ALL, ks=(1, 5, 10), batch_size=1000))
    model = ThreadRecordingScorer(base_model.scores, concurrent)
    got = evaluate(model, target, history, EvalSpec(metrics=ALL, ks=(1, 5, 10), batch_size=4, num_threads=2))
    assert_same(base, got)
    me = threading.get_ident()
    if concurrent:
        assert me not in model.threads and len(set(model.threads)) == 2 and model.most == 2
    else:
        assert set(model.threads) == {me} and model.most == 1


def test_only_models_that_only_read_fitted_arrays_declare_concurrent_scoring() -> None:
    from recbench.models.als import ImplicitALS
    from recbench.models.baselines import Popularity
    from recbench.models.decomposition import EASE, PureSVD
    from recbench.models.factorization import BPR
    from recbench.models.neighborhood import ItemKNN, UserKNN

    readers = (ImplicitALS(), Popularity(), PureSVD(), EASE(), ItemKNN(), UserKNN())
    assert all(ev.concurrent_score(m) for m in readers)
    assert not any(ev.concurrent_score(m) for m in (BPR(), object()))  # torch models switch modes


def test_scoring_errors_surface_when_several_threads_rank() -> None:
    model, target, history = random_case(6)
    model.scores[5:, 3] = np.nan
    with pytest.raises(Exception, match="non-finite"):
        evaluate(model, target, history, EvalSpec(batch_size=3, num_threads=2))


def test_spec_checks_the_new_settings() -> None:
    for bad in (dict(memory_mb=0), dict(num_threads=0), dict(batch_size=0), dict(memory_mb=1.5)):
        with pytest.raises(ConfigError, match="eval."):
            EvalSpec(**bad)
    assert EvalSpec().batch_size is None and EvalSpec(progress=0).progress is False
