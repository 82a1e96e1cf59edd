"""Checks of the data a run is about to use: usable splits.

:func:`check_splits` refuses a split with an empty training or test part (a run on it could only report
NaN) and logs how many test users have no training data. (The config checks live in
:mod:`recbench.config`, at the Hydra edge.)
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from recbench.errors import DataError

if TYPE_CHECKING:
    from recbench.data.splits import Split

log = logging.getLogger(__name__)


def check_splits(folds: Sequence[Split], splitter: object) -> None:
    """Refuse splits that leave nothing to train on or to test; log test users without training data.

    Raises :class:`DataError` when a fold's training or test part is empty (every user has too few
    interactions for the protocol, or a time cut leaves nothing after it). Test users with no training
    interaction (possible with ``kfold``, ``temporal`` with ``drop_cold: false`` and the cold-start
    splits, never with ``random`` or ``loo``) are kept and evaluated on what the model scores for an
    unseen user; their number is logged.
    """
    name = type(splitter).__name__
    for j, split in enumerate(folds):
        where = f"split {name}" + (f" (fold {j})" if len(folds) > 1 else "")
        for part in ("train", "test"):
            if len(getattr(split, part)) == 0:
                raise DataError(
                    f"{where} left the {part} part empty ({len(split.train)} train, {len(split.test)} "
                    f"test interactions): users have too few interactions for {splitter!r}. Use another "
                    "split (e.g. split=loo), other split ratios, or filter the data with "
                    "dataset.preprocess.user_core."
                )
        known = split.train.user_counts() > 0
        test_users = np.flatnonzero(split.test.user_counts() > 0)
        cold = int(np.count_nonzero(~known[test_users]))
        if cold:
            log.info(
                "%s: %d of %d test users have no training interaction; they are evaluated on the "
                "model's scores for unseen users",
                where,
                cold,
                len(test_users),
            )
