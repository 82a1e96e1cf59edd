"""Shared optimisation machinery for torch models: the Trainer, samplers, losses and seeding."""

from recbench.training.trainer import EarlyStopping, Trainer, TrainHistory

__all__ = ["EarlyStopping", "TrainHistory", "Trainer"]
