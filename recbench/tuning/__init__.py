"""Equal-budget hyperparameter tuning: Optuna storage helpers and the ``recbench tune`` protocol."""
