"""Experiment trackers: one small interface (:class:`~recbench.tracking.base.Tracker`) and its adapters.

The ``logger=`` config group (``configs/logger/``) chooses them: ``none`` (default), ``csv``,
``tensorboard``, ``mlflow``, ``wandb`` (offline unless configured otherwise) or ``many``. The pipeline
builds them and calls them through :class:`~recbench.tracking.hook.TrackingHook`, which also receives
the Trainer's per-epoch rows; a tracker that fails is switched off with a warning and never fails the
run. Tracker libraries are imported only when a tracker starts (extra ``recbench[track]``).
"""
