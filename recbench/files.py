"""Atomic file writes: the one way recbench writes a result, cache, checkpoint or model file.

A writer fills a temporary sibling ``<name>.<random>.tmp`` and renames it onto the target with
``os.replace``, so readers see either the old file or the complete new one, and a failure (or a
kill before the rename) never leaves a half-written target. Readers ignore ``*.tmp`` files.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], None]) -> None:
    """Call ``write`` on a temporary sibling ``<name>.<random>.tmp`` of ``path``, then ``os.replace`` it.

    Readers see either the old file or the complete new one; a failed ``write`` leaves no temporary file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
