"""Explanations: exact decompositions sum to the score; occlusion recomputes it; others state their method."""

from __future__ import annotations

import numpy as np
import pytest

from recbench.data.features import multi_hot, one_hot
from recbench.data.interactions import FeatureTable, Interactions
from recbench.explanations import ExplainError, ExplainInput, explain
from recbench.models.adhoc import session_interactions
from recbench.models.als import ImplicitALS
from recbench.models.baselines import Popularity
from recbench.models.decomposition import EASE, PureSVD
from recbench.models.factorization import BPR, MF
from recbench.models.feature_models import FM, DeepFM
from recbench.models.ncf import GMF
from recbench.models.neighborhood import ItemKNN, UserKNN
from recbench.models.sequential.bert4rec import BERT4Rec
from recbench.models.sequential.caser import Caser
from recbench.models.sequential.gru4rec import GRU4Rec
from recbench.models.sequential.sasrec import SASRec
from recbench.training.trainer import Trainer


def _trainer() -> Trainer:
    return Trainer(epochs=2, batch_size=64, device="cpu", progress=False)


def _input(data: Interactions, user: int) -> ExplainInput:
    rows = data.select(data.users == user)
    order = np.argsort(rows.timestamps, kind="stable")
    return ExplainInput(rows.items[order], rows.ratings[order], user, data)


@pytest.mark.parametrize(
    "model",
    [
        ItemKNN(k=5),
        ItemKNN(k=5, implicit=False),
        EASE(l2=10.0),
        PureSVD(factors=4),
        ImplicitALS(factors=4, iterations=2),
        BPR(factors=4, trainer=_trainer()),
        MF(factors=4, trainer=_trainer()),
    ],
    ids=lambda m: type(m).__name__,
)
def test_exact_contributions_sum_to_the_session_score(blocks: Interactions, model: object) -> None:
    model.fit(blocks)
    ctx = _input(blocks, 3)
    session = session_interactions([ctx.items], blocks.n_items, [ctx.ratings])
    scores = model.score_history(session)[0]
    for item in (0, 5, 20):
        out = explain(model, ctx, item, top=1000)
        assert out.exact and out.method
        total = out.baseline + sum(c["weight"] for c in out.contributions)
        assert out.score == pytest.approx(float(scores[item]), rel=1e-5, abs=1e-6)
        assert total == pytest.approx(out.score, rel=1e-4, abs=1e-5)


def test_userknn_neighbour_counts_sum_to_the_score(blocks: Interactions) -> None:
    model = UserKNN(k=6).fit(blocks)
    ctx = _input(blocks, 0)
    out = explain(model, ctx, 4)
    assert out.score == pytest.approx(float(model.score(np.array([0]), blocks)[0, 4]), rel=1e-5)
    assert sum(c["weight"] for c in out.contributions) == pytest.approx(out.score, rel=1e-5)
    assert all("users" in c and "item" not in c for c in out.contributions)  # counts, not ids


@pytest.mark.parametrize(
    "model",
    [
        GRU4Rec(max_len=8, hidden_dim=8, trainer=_trainer()),
        Caser(window=3, embedding_dim=8, trainer=_trainer()),
    ],
    ids=lambda m: type(m).__name__,
)
def test_occlusion_recomputes_the_score(blocks: Interactions, model: object) -> None:
    model.fit(blocks)
    ctx = _input(blocks, 5)
    item = 2
    out = explain(model, ctx, item, top=1000)
    assert not out.exact and "occlusion" in out.method
    assert out.score == pytest.approx(float(model.score(np.array([5]), blocks)[0, item]), rel=1e-4, abs=1e-5)
    n = len(ctx.items)
    for row in out.contributions:
        dropped = np.delete(ctx.items, n + row["position"])
        hist = Interactions(
            np.full(len(dropped), 5),
            dropped,
            blocks.n_users,
            blocks.n_items,
            timestamps=np.arange(len(dropped)),
        )
        again = float(model.score(np.array([5]), hist)[0, item])
        assert row["weight"] == pytest.approx(out.score - again, rel=1e-4, abs=1e-5)


@pytest.mark.parametrize(
    "model",
    [
        SASRec(max_len=8, hidden_dim=8, n_heads=2, n_layers=2, trainer=_trainer()),
        BERT4Rec(max_len=8, hidden_dim=8, n_heads=2, n_layers=1, trainer=_trainer()),
    ],
    ids=lambda m: type(m).__name__,
)
def test_attention_weights_cover_the_recent_history(blocks: Interactions, model: object) -> None:
    model.fit(blocks)
    ctx = _input(blocks, 7)
    out = explain(model, ctx, 1, top=1000)
    assert "attention" in out.method and not out.exact
    weights = np.array([c["weight"] for c in out.contributions])
    window = model.max_len - (1 if isinstance(model, BERT4Rec) else 0)
    assert len(weights) == min(len(ctx.items), window)
    assert (weights >= 0).all() and weights.sum() <= 1.0 + 1e-5
    recent = set(ctx.items[-window:].tolist())
    assert {c["item"] for c in out.contributions} <= recent


def test_popularity_and_refusals(blocks: Interactions) -> None:
    pop = Popularity().fit(blocks)
    out = explain(pop, _input(blocks, 0), 3)
    assert out.exact and out.score == blocks.item_counts()[3]
    gmf = GMF(trainer=_trainer()).fit(blocks)
    with pytest.raises(ExplainError, match="models that explain"):
        explain(gmf, _input(blocks, 0), 3)


def _with_features(data: Interactions) -> Interactions:
    """Users get an 'age' field, items a multi-valued 'tag' field."""
    rng = np.random.default_rng(0)
    users, ucols = one_hot(rng.integers(0, 3, data.n_users), "age")
    tags = [[f"b{i // 8}", f"t{t}"] for i, t in enumerate(rng.integers(0, 4, data.n_items))]
    items, icols = multi_hot(tags, "tag")

    def table(mat: object, cols: list[str], name: str) -> FeatureTable:
        return FeatureTable(
            mat.astype(np.float32).tocsr(), np.zeros(len(cols), dtype=np.int64), (name,), tuple(cols)
        )

    return data.with_features(table(users, ucols, "age"), table(items, icols, "tag"))


@pytest.mark.parametrize("cls", [FM, DeepFM], ids=lambda c: c.__name__)
def test_feature_fields_fm_exact_and_deepfm_occlusion(blocks: Interactions, cls: type) -> None:
    data = _with_features(blocks)
    kw = {} if cls is FM else {"hidden": (8,)}
    model = cls(factors=4, trainer=_trainer(), **kw).fit(data)
    ctx = ExplainInput(np.zeros(0, dtype=np.int64), None, 2, data)
    score = float(model.score(np.array([2]), data)[0, 6])
    out = explain(model, ctx, 6, top=1000)
    assert out.score == pytest.approx(score, rel=1e-4, abs=1e-5)
    labels = {c["fields"] for c in out.contributions}
    if cls is FM:
        assert out.exact and {"user.age x item.tag", "user.id x item.id", "item.tag"} <= labels
        total = out.baseline + sum(c["weight"] for c in out.contributions)
        assert total == pytest.approx(score, rel=1e-4, abs=1e-5)
    else:
        assert not out.exact and labels == {"user.id", "user.age", "item.id", "item.tag"}
        assert all(np.isfinite(c["weight"]) for c in out.contributions)
