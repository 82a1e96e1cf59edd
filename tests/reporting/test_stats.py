"""Paired tests against scipy, Holm against a hand computation, bootstrap CIs, baseline comparisons."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as sps

from recbench.errors import RecbenchError
from recbench.reporting import stats
from recbench.reporting.records import read_runs


@pytest.fixture
def samples() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    a = rng.random(60)
    return a, np.clip(a + rng.normal(0.05, 0.1, 60), 0, 1)


def test_paired_test_matches_scipy(samples: tuple[np.ndarray, np.ndarray]) -> None:
    a, b = samples
    res = stats.paired_test(a, b)
    t = sps.ttest_rel(b, a)
    w = sps.wilcoxon(b - a)
    assert res.n == 60 and res.mean_diff == pytest.approx(np.mean(b - a))
    assert res.t_stat == pytest.approx(t.statistic) and res.t_p == pytest.approx(t.pvalue)
    assert res.wilcoxon_stat == pytest.approx(w.statistic) and res.wilcoxon_p == pytest.approx(w.pvalue)


def test_paired_test_degenerate_cases() -> None:
    same = stats.paired_test(np.ones(5), np.ones(5))
    assert same.t_p == 1.0 and same.wilcoxon_p == 1.0
    shifted = stats.paired_test(np.zeros(5), np.full(5, 0.1))
    assert shifted.t_p == 0.0 and shifted.t_stat == np.inf
    assert np.isnan(stats.paired_test(np.ones(1), np.zeros(1)).t_p)


def test_align_pairs_users_by_id() -> None:
    users, a, b = stats.align(
        np.array([5, 1, 9]), np.array([0.5, 0.1, 0.9]), np.array([9, 5, 7]), np.array([9.0, 5.0, 7.0])
    )
    assert users.tolist() == [5, 9] and a.tolist() == [0.5, 0.9] and b.tolist() == [5.0, 9.0]


def test_holm_against_hand_computation() -> None:
    p = [0.01, 0.04, 0.03, 0.005, np.nan]
    # sorted: 0.005*4=0.02, 0.01*3=0.03, 0.03*2=0.06, 0.04*1=0.04 -> running max 0.02, 0.03, 0.06, 0.06
    expected = [0.03, 0.06, 0.06, 0.02]
    adjusted = stats.holm(p)
    np.testing.assert_allclose(adjusted[:4], expected)
    assert np.isnan(adjusted[4])
    assert stats.holm([0.6, 0.7]).tolist() == [1.0, 1.0]


def test_bootstrap_ci_contains_mean_and_is_reproducible(samples: tuple[np.ndarray, np.ndarray]) -> None:
    a, _ = samples
    lo, hi = stats.bootstrap_ci(a, seed=3)
    assert lo < a.mean() < hi
    assert (lo, hi) == stats.bootstrap_ci(a, seed=3)
    assert (lo, hi) != stats.bootstrap_ci(a, seed=4)
    wide = stats.bootstrap_ci(a, confidence=0.99, seed=3)
    assert wide[0] < lo and wide[1] > hi
    assert hi - lo == pytest.approx(2 * 1.96 * a.std(ddof=1) / np.sqrt(len(a)), rel=0.15)


def test_baseline_comparison_pairs_by_seed_and_applies_holm(
    tmp_path: Path, make_run: Callable[..., object]
) -> None:
    rng = np.random.default_rng(0)
    base_vals = {seed: rng.random(40) for seed in range(3)}
    better = {seed: np.clip(v + 0.2, 0, 1) for seed, v in base_vals.items()}
    noisy = {seed: np.clip(v + rng.normal(0, 0.05, 40), 0, 1) for seed, v in base_vals.items()}
    for seed in range(3):
        for model, vals in (("pop", base_vals), ("bpr", better), ("knn", noisy)):
            metrics = {"test/ndcg@10": float(vals[seed].mean())}
            make_run(
                tmp_path / f"{model}{seed}",
                model=model,
                seed=seed,
                per_user_values=vals[seed],
                metrics=metrics,
            )
    runs = read_runs([tmp_path])
    table = stats.baseline_comparison(runs, "test/ndcg@10", ["model"], {"model": "pop"}).set_index("model")
    assert list(table.index) == ["bpr", "knn"]
    pooled_a = np.concatenate([base_vals[s] for s in range(3)])
    for model, vals in (("bpr", better), ("knn", noisy)):
        pooled_b = np.concatenate([vals[s] for s in range(3)])
        raw = sps.ttest_rel(pooled_b, pooled_a).pvalue
        assert (
            table.at[model, "n"] == 120
            and table.at[model, "n_runs"] == 3
            and table.at[model, "unit"] == "user"
        )
        assert table.at[model, "diff"] == pytest.approx(np.mean(pooled_b - pooled_a))
        assert table.at[model, "t_p_raw"] == pytest.approx(raw)
    np.testing.assert_allclose(table["t_p"], stats.holm(table["t_p_raw"].to_numpy()))


def test_baseline_comparison_falls_back_to_run_level(tmp_path: Path, make_run: Callable[..., object]) -> None:
    for seed in range(3):
        make_run(tmp_path / f"pop{seed}", model="pop", seed=seed, metrics={"test/ndcg@10": 0.1 + 0.01 * seed})
        make_run(tmp_path / f"bpr{seed}", model="bpr", seed=seed, metrics={"test/ndcg@10": 0.3 + 0.02 * seed})
    table = stats.baseline_comparison(read_runs([tmp_path]), "test/ndcg@10", ["model"], {"model": "pop"})
    assert table.loc[0, "unit"] == "run" and table.loc[0, "n"] == 3
    assert table.loc[0, "t_p"] == pytest.approx(sps.ttest_rel([0.3, 0.32, 0.34], [0.1, 0.11, 0.12]).pvalue)
    with pytest.raises(RecbenchError, match="baseline model=svd"):
        stats.baseline_comparison(read_runs([tmp_path]), "test/ndcg@10", ["model"], {"model": "svd"})


def test_kfold_per_user_files_are_pooled_fold_by_fold(tmp_path: Path) -> None:
    arrays = {
        "fold0/test/users": np.array([0, 1]),
        "fold0/test/rmse": np.array([1.0, 2.0]),
        "fold1/test/users": np.array([0, 2]),
        "fold1/test/rmse": np.array([3.0, 4.0]),
    }
    users, values = stats.select_per_user(arrays, "test/rmse")
    assert users.tolist() == [0, 1, 2**32, 2**32 + 2] and values.tolist() == [1.0, 2.0, 3.0, 4.0]
    with pytest.raises(RecbenchError, match="coverage"):
        stats.select_per_user(arrays, "test/coverage@10")
