"""Ad-hoc session scoring (``score_history``) and the exact fold-in decomposition."""

from __future__ import annotations

import numpy as np
import pytest

from recbench.data.interactions import Interactions
from recbench.models.adhoc import fold_in, session_interactions
from recbench.models.als import ImplicitALS
from recbench.models.baselines import Popularity
from recbench.models.decomposition import EASE, PureSVD
from recbench.models.factorization import BPR, MF
from recbench.models.neighborhood import ItemKNN
from recbench.models.sequential.bert4rec import BERT4Rec
from recbench.models.sequential.gru4rec import GRU4Rec
from recbench.models.sequential.sasrec import SASRec
from recbench.training.trainer import Trainer


def _trainer() -> Trainer:
    return Trainer(epochs=2, batch_size=64, device="cpu", progress=False)


def _user_session(data: Interactions, user: int) -> list[int]:
    rows = data.select(data.users == user)
    return [int(i) for i in rows.items[np.argsort(rows.timestamps, kind="stable")]]


@pytest.mark.parametrize(
    "model",
    [
        ItemKNN(k=5),
        EASE(l2=10.0),
        PureSVD(factors=4),
        Popularity(),
        SASRec(max_len=8, hidden_dim=8, n_heads=1, n_layers=1, trainer=_trainer()),
        GRU4Rec(max_len=8, hidden_dim=8, trainer=_trainer()),
        BERT4Rec(max_len=8, hidden_dim=8, n_heads=1, n_layers=1, trainer=_trainer()),
    ],
    ids=lambda m: type(m).__name__,
)
def test_session_of_a_known_user_scores_like_the_user(blocks: Interactions, model: object) -> None:
    """For history-reading models a session equal to a user's history gives that user's scores."""
    model.fit(blocks)
    users = [0, 13, 27]
    sessions = [_user_session(blocks, u) for u in users]
    got = model.score_history(session_interactions(sessions, blocks.n_items))
    want = model.score(np.array(users), blocks)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def _weighted_ridge(y: np.ndarray, w_all: np.ndarray, t_all: np.ndarray, reg: float) -> np.ndarray:
    """Brute force: minimise sum_i w_i (t_i - y_i.p)^2 + reg |p|^2 over every item."""
    sw = np.sqrt(w_all)[:, None]
    a = np.vstack([sw * y, np.sqrt(reg) * np.eye(y.shape[1])])
    b = np.concatenate([np.sqrt(w_all) * t_all, np.zeros(y.shape[1])])
    return np.linalg.lstsq(a, b, rcond=None)[0]


def test_als_fold_in_is_the_weighted_least_squares_solution(blocks: Interactions) -> None:
    model = ImplicitALS(factors=6, iterations=3, reg=0.5, alpha=4.0).fit(blocks)
    session = [3, 1, 5, 6]
    got = model.score_history(session_interactions([session], blocks.n_items))[0]
    y = model.item_factors_.astype(np.float64)
    pref = np.zeros(blocks.n_items)
    pref[session] = 1.0
    conf = 1.0 + 4.0 * pref
    p = _weighted_ridge(y, conf, pref, 0.5)
    np.testing.assert_allclose(got, y @ p, rtol=1e-4, atol=1e-5)


def test_bpr_projection_and_mf_fold_in_solve_their_objectives(blocks: Interactions) -> None:
    bpr = BPR(factors=4, reg=0.1, trainer=_trainer()).fit(blocks)
    spec = bpr.fold_in_spec()
    x = np.zeros(blocks.n_items)
    x[[2, 4]] = 1.0
    p = _weighted_ridge(spec.factors.astype(np.float64), np.ones(blocks.n_items), x, 0.1)
    got = bpr.score_history(session_interactions([[2, 4]], blocks.n_items))[0]
    np.testing.assert_allclose(got, spec.factors @ p + spec.offset, rtol=1e-4, atol=1e-5)

    mf = MF(factors=4, reg=0.2, trainer=_trainer()).fit(blocks)
    spec = mf.fold_in_spec()
    items, ratings = np.array([1, 5, 7]), np.array([5.0, 1.0, 4.0])
    resid = ratings - spec.offset[items]
    p = _weighted_ridge(spec.factors[items].astype(np.float64), np.ones(3), resid, 0.2 * 3)
    hist = session_interactions([items.tolist()], blocks.n_items, ratings=[ratings.tolist()])
    np.testing.assert_allclose(
        mf.score_history(hist)[0], spec.factors @ p + spec.offset, rtol=1e-4, atol=1e-4
    )


def test_fold_in_contributions_sum_to_the_score(blocks: Interactions) -> None:
    model = ImplicitALS(factors=5, iterations=2, reg=1.0).fit(blocks)
    spec = model.fold_in_spec()
    session = np.array([0, 2, 3])
    scores = model.score_history(session_interactions([session.tolist()], blocks.n_items))[0]
    for item in (1, 9, 30):
        parts = spec.contributions(session, np.ones(3), item)
        assert parts.sum() == pytest.approx(scores[item], rel=1e-4, abs=1e-5)


def test_empty_row_folds_in_to_zero() -> None:
    import scipy.sparse as sp

    rows = sp.csr_matrix((2, 4), dtype=np.float32)
    assert not fold_in(np.ones((4, 2), np.float32), rows, reg=1.0).any()
