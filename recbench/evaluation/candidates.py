"""Ranking among a candidate set: the cold-start protocol's view of a model.

:class:`CandidateScorer` wraps a model so that only the ``candidates`` (e.g. the cold items of a
split, :func:`recbench.data.cold.cold_items`) compete for the top of each ranking.
"""

from __future__ import annotations

import numpy as np

from recbench.data.interactions import Interactions
from recbench.evaluation.ctr import has_probabilities


class CandidateScorer:
    """A scorer that ranks only ``candidates``: every other item scores below all of them.

    Wraps any object with ``score(users, history)``; used to rank cold items among themselves. (The
    evaluator rejects non-finite scores, so the others get a finite score below the batch's lowest
    rather than ``-inf``; they rank last and, not being targets, never count as hits.)
    """

    def __init__(self, model: object, candidates: np.ndarray) -> None:
        self.model = model
        self.candidates = np.asarray(candidates, dtype=np.int64)

    @property
    def predicts_probabilities(self) -> bool:
        """Whether the wrapped model predicts click probabilities (the evaluator's CTR metrics)."""
        return has_probabilities(self.model)

    def predict_proba(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """The wrapped model's ``predict_proba`` (CTR pairs are drawn among ``candidates`` already)."""
        return self.model.predict_proba(users, items)  # type: ignore[attr-defined]

    def score(self, users: np.ndarray, history: Interactions) -> np.ndarray:
        """The wrapped model's scores with the non-candidate items set to ``-inf``."""
        scores = np.array(self.model.score(users, history), dtype=np.float32)  # type: ignore[attr-defined]
        keep = np.zeros(scores.shape[1], dtype=bool)
        keep[self.candidates] = True
        if scores.size:
            low = float(scores.min())
            scores[:, ~keep] = low - abs(low) - 1.0
        return scores
