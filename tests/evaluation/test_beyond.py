"""Beyond-accuracy metrics: hand-computed cases and an independent per-user loop reference (1e-9)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp

from recbench.evaluation import beyond as B

SQ = 1 / math.sqrt(2)


def _ctx(
    history: list[list[int]],
    n_items: int,
    top: np.ndarray,
    relevant: list[list[int]] | None = None,
    categories: np.ndarray | None = None,
) -> B.ListContext:
    """Context of lists ``top`` for users 0..n-1 with the given histories and relevant items."""
    n = len(history)
    rows = [u for u, items in enumerate(history) for _ in items]
    cols = [i for items in history for i in items]
    hist = sp.csr_matrix((np.ones(len(cols)), (rows, cols)), shape=(n, n_items))
    relevant = relevant if relevant is not None else [[] for _ in range(n)]
    r_rows = [u for u, items in enumerate(relevant) for _ in items]
    r_cols = [i for items in relevant for i in items]
    rel = sp.csr_matrix((np.ones(len(r_cols)), (r_rows, r_cols)), shape=(n, n_items))
    hits = np.array(
        [[i >= 0 and i in set(relevant[u]) for i in row] for u, row in enumerate(top)], dtype=bool
    )
    cats = None if categories is None else sp.csr_matrix(categories)
    return B.ListContext.build(hist, np.arange(n), rel, hits.reshape(top.shape), cats)


def test_short_head_covers_80_percent_ties_by_item_id() -> None:
    # 10 interactions; the two most popular hold 8 = 80%
    assert B.short_head(np.array([5, 3, 1, 1, 0])).tolist() == [True, True, False, False, False]
    # all tied: four items (lowest ids) are needed to reach 8 of 10
    assert B.short_head(np.array([2, 2, 2, 2, 2])).tolist() == [True, True, True, True, False]
    # ties at the boundary broken by item id: items 3 and 1 both have 2, only the lower one is needed
    assert B.short_head(np.array([0, 2, 6, 2])).tolist() == [False, True, True, False]
    assert not B.short_head(np.zeros(3, dtype=np.int64)).any()


def test_gini_and_entropy_hand_computed() -> None:
    top = np.array([[0, 1], [0, 2]])
    ctx = _ctx([[3], [3]], 4, top)
    # counts [2, 1, 1, 0] sorted [0, 1, 1, 2]: (-3*0 - 1*1 + 1*1 + 3*2) / (4 * 4)
    assert B.gini(top, 2, ctx) == pytest.approx(6 / 16, abs=1e-12)
    assert B.entropy(top, 2, ctx) == pytest.approx(1.5, abs=1e-12)  # p = 1/2, 1/4, 1/4
    # k = 1: counts [2, 0, 0, 0] -> (3 * 2) / (4 * 2) = 3/4 = (n - 1) / n, entropy 0
    assert B.gini(top, 1, ctx) == pytest.approx(0.75, abs=1e-12)
    assert B.entropy(top, 1, ctx) == 0.0
    # every item equally often: gini 0, entropy log2(4)
    even = np.array([[0, 1], [2, 3]])
    assert B.gini(even, 2, ctx) == pytest.approx(0.0, abs=1e-12)
    assert B.entropy(even, 2, ctx) == pytest.approx(2.0, abs=1e-12)
    # nothing recommended (all slots empty): undefined
    empty = np.full((2, 2), -1)
    assert math.isnan(B.gini(empty, 2, ctx)) and math.isnan(B.entropy(empty, 2, ctx))


def test_arp_aplt_with_empty_lists_and_k_beyond_the_catalogue() -> None:
    # pop = [2, 1, 1, 0] (distinct users); head = {0, 1} (3 of 4 interactions, needs >= 3.2 -> 0,1,2)
    history = [[0, 1], [0, 2], []]
    top = np.array([[2, 3, -1, -1], [1, 3, -1, -1], [-1, -1, -1, -1]])  # K = 4 = catalogue, padded
    ctx = _ctx(history, 4, top)
    assert ctx.pop.tolist() == [2, 1, 1, 0]
    assert ctx.head.tolist() == [True, True, True, False]  # 2 + 1 + 1 = 4 >= 3.2 only with item 2
    arp = B.arp(top, 10, ctx)  # k = 10 > K: only the filled slots count
    assert arp[:2] == pytest.approx([0.5, 0.5]) and math.isnan(arp[2])
    aplt = B.aplt(top, 10, ctx)
    assert aplt[:2] == pytest.approx([0.5, 0.5]) and math.isnan(aplt[2])
    assert B.aplt(top, 1, ctx)[:2] == pytest.approx([0.0, 0.0])


def test_epc_hand_computed() -> None:
    history = [[0], [0, 1], [2]]  # pop = [2, 1, 1, 0], 3 history users
    top = np.array([[1, 3, 2], [3, 2, -1], [0, 1, 3]])
    relevant = [[3, 2], [2], []]
    ctx = _ctx(history, 4, top, relevant)
    d = 1 / np.log2(np.arange(2, 5))
    # user 0: hits at ranks 2 (item 3, pop 0) and 3 (item 2, pop 1)
    u0 = (d[1] * 1.0 + d[2] * (1 - 1 / 3)) / d.sum()
    # user 1: hit at rank 2 (item 2); the list has 2 filled ranks
    u1 = (d[1] * (1 - 1 / 3)) / d[:2].sum()
    got = B.epc(top, 3, ctx)
    assert got[:2] == pytest.approx([u0, u1], abs=1e-12)
    assert math.isnan(got[2])  # no relevant item


def test_ild_hand_computed_items_without_features() -> None:
    cats = np.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5], [0.0, 0.0]])  # item 3 has no features
    top = np.array([[0, 1, 2], [0, 3, -1], [0, 1, 3], [2, 2, 3]])
    ctx = _ctx([[], [], [], []], 4, top, categories=cats)
    got = B.ild(top, 3, ctx)
    # pairs (0,1): distance 1; (0,2), (1,2): 1 - 1/sqrt(2)
    assert got[0] == pytest.approx((1 + 2 * (1 - SQ)) / 3, abs=1e-12)
    assert math.isnan(got[1])  # one item with features: no pair
    assert got[2] == pytest.approx(1.0, abs=1e-12)  # only the pair (0, 1)
    assert got[3] == pytest.approx(0.0, abs=1e-12)  # identical items
    with pytest.raises(ValueError, match="categories"):
        B.ild(top, 3, _ctx([[], [], [], []], 4, top))


def test_miscalibration_hand_computed() -> None:
    cats = np.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5], [0.0, 0.0]])
    top = np.array([[1, 2], [0, 3], [3, -1], [0, 1]])
    history = [[0], [0, 1], [1], [3]]
    got = B.miscalibration(top, 2, _ctx(history, 4, top, categories=cats))
    # user 0: p = (1, 0); q = mean((0, 1), (.5, .5)) = (.25, .75); q~ = .99 q + .01 p
    assert got[0] == pytest.approx(math.log(1 / (0.99 * 0.25 + 0.01)), abs=1e-12)
    # user 1: p = (.5, .5); q = (1, 0) (item 3 has no features); q~ = (.995, .005)
    assert got[1] == pytest.approx(0.5 * math.log(0.5 / 0.995) + 0.5 * math.log(0.5 / 0.005), abs=1e-12)
    assert math.isnan(got[2])  # the list has no item with features
    assert math.isnan(got[3])  # the history has no item with features
    # a list that reproduces the history's mix is perfectly calibrated
    same = np.array([[0, 1]])
    assert B.miscalibration(same, 2, _ctx([[0, 1]], 4, same, categories=cats))[0] == pytest.approx(
        0.0, abs=1e-12
    )


def test_pop_rsp_and_reo_hand_computed() -> None:
    # pop = [3, 2, 1, 0, 0]: 6 interactions, head needs >= 4.8 -> items {0, 1}; tail {2, 3, 4}
    history = [[0, 1, 2], [0, 1], [0]]
    top = np.array([[3, 4], [2, 3], [1, 3]])
    relevant = [[3], [2, 4], [1, 2]]
    ctx = _ctx(history, 5, top, relevant)
    assert ctx.head.tolist() == [True, True, False, False, False]
    # RSP: head recommended 1 (user 2), tail 5; unseen head items: 0 + 0 + 1 = 1; unseen tail: 2 + 3 + 3 = 8
    rates = np.array([1 / 1, 5 / 8])
    assert B.pop_rsp(top, 2, ctx) == pytest.approx(rates.std() / rates.mean(), abs=1e-12)
    # REO: relevant head {u2: 1}, recommended 1 of 1;
    # relevant tail {u0: 3, u1: 2, 4, u2: 2}, recommended 3 and 2: 2 of 4
    rates = np.array([1 / 1, 2 / 4])
    assert B.pop_reo(top, 2, ctx) == pytest.approx(rates.std() / rates.mean(), abs=1e-12)
    # two equal rates: parity
    assert B._parity(np.array([1.0, 2.0]), np.array([2.0, 4.0])) == 0.0
    assert math.isnan(B._parity(np.array([0.0, 0.0]), np.array([1.0, 1.0])))


def _reference(top: np.ndarray, k: int, hist: list[set[int]], rel: list[set[int]], cats: np.ndarray) -> dict:
    """Plain per-user loops over Python sets, written from the definitions (not from beyond.py)."""
    n_items = cats.shape[0]
    pop = np.zeros(n_items)
    for h in hist:
        for i in h:
            pop[i] += 1
    order = sorted(range(n_items), key=lambda i: (-pop[i], i))
    head, covered = set(), 0.0
    for i in order:
        if covered >= 0.8 * pop.sum():
            break
        head.add(i)
        covered += pop[i]
    n_hist_users = sum(1 for h in hist if h)
    lists = [[i for i in row[:k] if i >= 0] for row in top]
    out: dict[str, list[float]] = {"arp": [], "aplt": [], "epc": [], "ild": [], "miscalibration": []}
    for u, items in enumerate(lists):
        out["arp"].append(np.mean([pop[i] for i in items]) if items else np.nan)
        out["aplt"].append(np.mean([i not in head for i in items]) if items else np.nan)
        disc = [1 / math.log2(r + 2) for r in range(len(items))]
        gain = sum(d * (1 - pop[i] / n_hist_users) for d, i in zip(disc, items) if i in rel[u])
        out["epc"].append(gain / sum(disc) if items and rel[u] else np.nan)
        feat = [i for i in items if cats[i].sum() > 0]
        dists = []
        for a in range(len(feat)):
            for b in range(a + 1, len(feat)):
                x, y = cats[feat[a]], cats[feat[b]]
                dists.append(1 - x @ y / (np.linalg.norm(x) * np.linalg.norm(y)))
        out["ild"].append(np.mean(dists) if dists else np.nan)
        hist_feat = [i for i in hist[u] if cats[i].sum() > 0]
        if hist_feat and feat:
            p = np.mean([cats[i] for i in hist_feat], axis=0)
            q = 0.99 * np.mean([cats[i] for i in feat], axis=0) + 0.01 * p
            out["miscalibration"].append(sum(p[g] * math.log(p[g] / q[g]) for g in range(len(p)) if p[g] > 0))
        else:
            out["miscalibration"].append(np.nan)
    counts = np.sort(np.bincount([i for items in lists for i in items], minlength=n_items)).astype(float)
    n = n_items
    ref: dict = {name: np.array(v, dtype=float) for name, v in out.items()}
    ref["gini"] = sum((2 * (j + 1) - n - 1) * c for j, c in enumerate(counts)) / (n * counts.sum())
    p = counts[counts > 0] / counts.sum()
    ref["entropy"] = -sum(x * math.log2(x) for x in p)
    rsp_num, rsp_den, reo_num, reo_den = np.zeros(2), np.zeros(2), np.zeros(2), np.zeros(2)
    for u, items in enumerate(lists):
        for g, members in enumerate((head, set(range(n_items)) - head)):
            rsp_num[g] += len(set(items) & members)
            rsp_den[g] += len(members - hist[u])
            reo_num[g] += len(set(items) & members & rel[u])
            reo_den[g] += len((members & rel[u]) - hist[u])
    for name, num, den in (("pop_rsp", rsp_num, rsp_den), ("pop_reo", reo_num, reo_den)):
        rates = num / den
        ref[name] = rates.std() / rates.mean()
    return ref


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_an_independent_loop_reference(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n_users, n_items, big_k = 60, 25, 8
    weights = 1.0 / np.arange(1, n_items + 1)  # popularity skew
    hist = [
        set(rng.choice(n_items, rng.integers(0, 10), replace=False, p=weights / weights.sum()).tolist())
        for _ in range(n_users)
    ]
    rel = [set(rng.choice(n_items, rng.integers(1, 5), replace=False).tolist()) - h for h in hist]
    rel = [r if r else {int(np.setdiff1d(np.arange(n_items), list(h))[0])} for r, h in zip(rel, hist)]
    top = np.full((n_users, big_k), -1)
    for u in range(n_users):
        allowed = np.setdiff1d(np.arange(n_items), list(hist[u]))
        length = int(rng.integers(0, big_k + 1))  # some short or empty lists
        top[u, :length] = rng.permutation(allowed)[:length]
    cats = (rng.random((n_items, 4)) < 0.4) * rng.random((n_items, 4))
    cats[rng.random(n_items) < 0.2] = 0.0  # items without features
    cats = cats / np.maximum(cats.sum(axis=1, keepdims=True), 1e-300)
    ctx = _ctx([sorted(h) for h in hist], n_items, top, [sorted(r) for r in rel], cats)
    for k in (1, 3, big_k, 20):
        ref = _reference(top, k, hist, rel, cats)
        for name, fn in B.USER_LIST_METRICS.items():
            np.testing.assert_allclose(fn(top, k, ctx), ref[name], rtol=0, atol=1e-9, err_msg=f"{name}@{k}")
        for name, fn in B.LIST_SET_METRICS.items():
            assert fn(top, k, ctx) == pytest.approx(ref[name], abs=1e-9), f"{name}@{k}"
