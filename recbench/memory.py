"""Estimate before a large allocation: how much memory is available, and a clear refusal when short.

Large dense blocks (score blocks of the evaluator, item-item similarity or Gram matrices, softmax
logits) are sized or checked here before they are allocated, so a run that cannot fit stops with a
:class:`~recbench.errors.ConfigError` that gives the estimate and the setting to change, and is
recorded as failed, instead of being killed by the kernel's out-of-memory killer.
"""

from __future__ import annotations

import ctypes
from pathlib import Path

from recbench.errors import ConfigError

#: Share of the available memory a single allocation may take (the rest is left to the process's
#: other arrays, to the page cache and to other processes).
USABLE_SHARE = 0.9

_MEMINFO = Path("/proc/meminfo")

#: Freed blocks up to this size stay in the C library's heap for the next allocation
#: (see :func:`reuse_freed_memory`).
HEAP_BLOCK_BYTES = 256 << 20

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt parameters (glibc's malloc.h)


def reuse_freed_memory(block_bytes: int = HEAP_BLOCK_BYTES) -> bool:
    """Let glibc reuse freed blocks up to ``block_bytes`` instead of handing them back to the kernel.

    By default glibc maps every allocation above an adaptive threshold (at most 32 MiB) fresh from the
    kernel and unmaps it when freed, and gives back freed memory at the top of its heap beyond a trim
    threshold. A training step or an evaluation block that allocates and frees temporaries of tens of
    MiB then faults their pages in again on every step, in kernel time. This sets ``M_MMAP_THRESHOLD``
    to ``block_bytes`` and ``M_TRIM_THRESHOLD`` to twice that, once per process: larger allocations are
    still mapped and returned when freed, and the free memory kept at the heap's top stays below
    ``2 * block_bytes`` (fragmentation inside the heap can keep more). Returns whether the C library
    accepted both settings; ``False`` (nothing changed) on a C library without ``mallopt``.
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    size = int(min(block_bytes, 2**30))
    return bool(mallopt(_M_MMAP_THRESHOLD, size)) & bool(mallopt(_M_TRIM_THRESHOLD, 2 * size))


def available_bytes() -> int | None:
    """Memory the system can give without swapping (``MemAvailable``), or ``None`` if unknown.

    Read from ``/proc/meminfo`` (Linux); elsewhere from :mod:`psutil` when it is installed.
    """
    try:
        for line in _MEMINFO.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        import psutil
    except ImportError:
        return None
    return int(psutil.virtual_memory().available)


def format_bytes(n: float) -> str:
    """``n`` bytes as a short human string (``3.0 GiB``, ``512 MiB``)."""
    for unit, size in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{int(n)} B"


def check_fits(nbytes: int, what: str, options: str, *, available: int | None = None) -> None:
    """Raise :class:`~recbench.errors.ConfigError` if ``nbytes`` would not fit in available memory.

    ``what`` names the allocation (e.g. ``"EASE on 59047 items: 2 dense float32 item x item
    matrices"``) and ``options`` says what the user can change. ``available`` defaults to
    :func:`available_bytes`; when that is unknown, nothing is checked.
    """
    free = available_bytes() if available is None else available
    if free is None or nbytes <= USABLE_SHARE * free:
        return
    raise ConfigError(
        f"{what} needs about {format_bytes(nbytes)}, but only {format_bytes(free)} of memory is "
        f"available (at most {USABLE_SHARE:.0%} of it is used for one allocation), so the run was "
        f"refused before allocating. {options}"
    )


def rows_within(budget: int, bytes_per_row: int, n_rows: int, what: str, options: str) -> int:
    """How many rows of ``bytes_per_row`` to process at once: within ``budget`` and available memory.

    At least one row; a single row that does not fit raises a :class:`~recbench.errors.ConfigError`
    (see :func:`check_fits`).
    """
    bytes_per_row = max(int(bytes_per_row), 1)
    free = available_bytes()
    limit = budget if free is None else min(budget, int(USABLE_SHARE * free))
    rows = max(1, min(int(n_rows), limit // bytes_per_row))
    check_fits(rows * bytes_per_row, what, options, available=free)
    return rows
