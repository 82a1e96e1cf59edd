"""``recbench serve``: a trained run as an HTTP JSON service.

:mod:`recbench.service.live` holds the run's live state (the loaded run, the interaction log and the
users' updated histories) and answers every question through the model's own methods;
:mod:`recbench.service.app` is the thin FastAPI layer (validation, limits, status codes) over it.
"""
