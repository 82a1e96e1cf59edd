"""recbench: reproducible recommender-system experiments driven by Hydra configs."""

__version__ = "0.1.0"
