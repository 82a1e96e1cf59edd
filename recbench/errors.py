"""Errors that recbench reports to users as one clear paragraph instead of a traceback.

Every message names the file, key or value at fault and says what to do about it.
"""

from __future__ import annotations


class RecbenchError(Exception):
    """Base class of every error recbench explains to the user (exit status 2 on the CLI)."""


class ConfigError(RecbenchError):
    """A config option, key or value is wrong (unknown model, bad type, out-of-range value...)."""


class DataError(RecbenchError):
    """A dataset file is missing, malformed, empty after filtering, or failed its checksum."""


class TrainingError(RecbenchError):
    """Training cannot go on (for example a NaN or infinite loss)."""
