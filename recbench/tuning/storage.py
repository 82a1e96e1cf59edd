"""Optuna studies kept in SQLite files, so that an interrupted search continues where it stopped.

The Hydra Optuna sweeper (``hydra-optuna-sweeper``) needs Optuna 2.x. Optuna 2.10 creates a new
SQLite storage in a way that SQLAlchemy 2 no longer commits (the schema's version stamp is left in an
open transaction, and opening the storage then fails). :func:`prepare_sqlite` creates the schema and
the stamp itself, in committed transactions, before Optuna opens the file; an existing file is left
as it is. Nothing here imports Hydra.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from recbench.errors import ConfigError

SQLITE_PREFIX = "sqlite:///"
#: User attribute set on trials that were still running when their search was interrupted.
INTERRUPTED = "recbench_interrupted"


def sqlite_url(path: str | Path) -> str:
    """``sqlite:///<path>`` for a file path (absolute paths give the four-slash form)."""
    return SQLITE_PREFIX + str(path)


def prepare_sqlite(url: str) -> Path | None:
    """Make the SQLite file behind ``url`` ready for Optuna (create folder, schema and version stamp).

    Returns the file's path, or ``None`` when ``url`` is not a ``sqlite:///`` URL (other databases
    are left to Optuna). Safe to call on an existing storage.
    """
    if not url.startswith(SQLITE_PREFIX):
        return None
    path = Path(url[len(SQLITE_PREFIX) :])
    path.parent.mkdir(parents=True, exist_ok=True)
    import alembic.config
    import alembic.script
    import sqlalchemy as sa
    from alembic.migration import MigrationContext
    from optuna import version as optuna_version
    from optuna.storages._rdb import models

    engine = sa.create_engine(url)
    try:
        models.BaseModel.metadata.create_all(engine)
        with engine.begin() as conn:
            info = models.VersionInfoModel.__table__
            if conn.execute(sa.select(info)).first() is None:
                conn.execute(
                    info.insert().values(
                        version_info_id=1,
                        schema_version=models.SCHEMA_VERSION,
                        library_version=optuna_version.__version__,
                    )
                )
            context = MigrationContext.configure(conn)
            if context.get_current_revision() is None:
                here = os.path.dirname(models.__file__)
                cfg = alembic.config.Config(os.path.join(here, "alembic.ini"))
                cfg.set_main_option("script_location", os.path.join(here, "alembic").replace("%", "%%"))
                script = alembic.script.ScriptDirectory.from_config(cfg)
                context.stamp(script, script.get_current_head())
    finally:
        engine.dispose()
    return path


@dataclass
class StudyState:
    """What a stored study holds: trials used (finished or failed), the best one, the interrupted ones.

    ``best_params`` are the searched parameters of the best trial (override name -> value).
    """

    used: int = 0
    complete: int = 0
    failed: int = 0
    interrupted: int = 0
    best_params: dict[str, Any] = field(default_factory=dict)
    best_value: float | None = None
    best_number: int | None = None


def study_state(url: str, study_name: str, *, close_running: bool = False) -> StudyState:
    """Count the trials of ``study_name`` in ``url`` and read its best trial (empty if no such study).

    ``close_running=True`` marks trials still in the RUNNING state as failed and interrupted: call
    it only when no search on this study is running (an interrupted search left them behind). They
    do not count as used, so the resumed search draws them again.
    """
    import optuna
    from optuna.trial import TrialState

    prepare_sqlite(url)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = optuna.storages.RDBStorage(url)
    try:
        study_id = storage.get_study_id_from_name(study_name)
    except KeyError:
        return StudyState()
    trials = storage.get_all_trials(study_id, deepcopy=False)
    if close_running:
        for trial in trials:
            if trial.state == TrialState.RUNNING:
                storage.set_trial_user_attr(trial._trial_id, INTERRUPTED, True)
                storage.set_trial_state(trial._trial_id, TrialState.FAIL)
        trials = storage.get_all_trials(study_id, deepcopy=False)
    state = StudyState()
    for trial in trials:
        if trial.user_attrs.get(INTERRUPTED):
            state.interrupted += 1
        elif trial.state == TrialState.COMPLETE:
            state.complete += 1
        elif trial.state == TrialState.FAIL:
            state.failed += 1
    state.used = state.complete + state.failed
    if state.complete:
        directions = storage.get_study_directions(study_id)
        if len(directions) != 1:
            raise ConfigError(
                f"study {study_name!r} in {url} has {len(directions)} objectives; tune needs one."
            )
        sign = -1.0 if directions[0] == optuna.study.StudyDirection.MINIMIZE else 1.0
        done = [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
        best = max(done, key=lambda t: (sign * float(t.value), -t.number))
        state.best_params = dict(best.params)
        state.best_value, state.best_number = float(best.value), best.number
    return state
