"""Evaluation shared by the processes of a distributed run: each ranks a share of the users.

Outside a process group of more than one (every ordinary run) these are identities. Inside one (see
:mod:`recbench.training.distributed`), :func:`shard_rows` gives this process's contiguous share of the
evaluated users and :func:`gather_rows` puts every share's top-k lists back together in order, so
every process computes the same metrics from the same lists.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.distributed as dist


def world_size() -> int:
    """Processes in the current group (1 outside distributed training)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    """This process's rank (0 outside distributed training)."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def _bounds(n: int, size: int) -> np.ndarray:
    """Start of every rank's share of ``n`` rows, and ``n`` (the ``np.array_split`` cut)."""
    base, extra = divmod(n, size)
    return np.concatenate([[0], np.cumsum([base + (r < extra) for r in range(size)])]).astype(np.int64)


def shard_rows(n: int) -> slice:
    """The contiguous share of ``n`` rows this rank handles (all of them outside distributed runs)."""
    size = world_size()
    if size == 1:
        return slice(0, n)
    bounds = _bounds(n, size)
    here = rank()
    return slice(int(bounds[here]), int(bounds[here + 1]))


def gather_rows(part: np.ndarray, n: int) -> np.ndarray:
    """The ``n`` rows of all ranks in rank order, from this rank's ``part`` (its :func:`shard_rows`).

    Collective: every rank calls it with its share (same trailing shape and dtype on all ranks). The
    rows travel as CPU tensors (gloo), padded to the largest share.
    """
    size = world_size()
    if size == 1:
        return part
    bounds = _bounds(n, size)
    widest = int(np.diff(bounds).max())
    padded = np.zeros((widest, *part.shape[1:]), dtype=part.dtype)
    padded[: len(part)] = part
    local = torch.from_numpy(padded)
    pieces = [torch.empty_like(local) for _ in range(size)]
    dist.all_gather(pieces, local)
    return np.concatenate([p.numpy()[: bounds[r + 1] - bounds[r]] for r, p in enumerate(pieces)], axis=0)
