"""Training one torch model in several processes (PyTorch DistributedDataParallel).

A run is distributed when it is started by a launcher that sets ``RANK`` / ``WORLD_SIZE`` (``torchrun``,
Slurm's ``srun`` through torchrun) or when ``trainer.strategy=ddp trainer.devices=N`` asks recbench to
start ``N`` processes itself (:func:`spawn`). Every process runs the whole pipeline on the same data:

- **batches**: every rank draws the epoch's batches from the same seeded generator (so all ranks
  agree on the shuffle and the sampled negatives) at ``ceil(batch_size / world_size)`` examples each,
  and rank ``r`` trains on batches ``r, r + W, r + 2W, ...``. One optimiser step sees ``W`` such
  batches: ``trainer.batch_size`` stays the global batch, as in a one-process run.
- **gradients** are averaged over the ranks before every step: by :class:`DistributedDataParallel`
  for dense networks, and by an explicit all-gather of the touched rows for networks with sparse
  gradients (``net.sparse_gradients``, e.g. BPR's lazy Adam), which DDP's reducer does not accept.
- **evaluation** ranks a contiguous share of the users on each rank and gathers the top-k lists
  (:mod:`recbench.evaluation.sharding`), so every rank computes the same metrics.
- **files**: only rank 0 writes (results, checkpoints, model files, trackers); see :func:`is_main`.

Backends: gloo on CPU; on CUDA ``cpu:gloo,cuda:nccl`` (NCCL for the training tensors, gloo for the
evaluation lists), each rank on ``cuda:LOCAL_RANK``.
"""

from __future__ import annotations

import atexit
import inspect
import json
import logging
import math
import os
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from recbench.errors import ConfigError, RecbenchError, TrainingError
from recbench.evaluation.sharding import rank, world_size

log = logging.getLogger(__name__)

#: Values of ``trainer.strategy``: ``auto`` (DDP when started by a launcher such as torchrun, else one
#: process) and ``ddp`` (DDP; with ``trainer.devices=N`` recbench starts the N processes itself).
STRATEGIES = ("auto", "ddp")


def check_settings(strategy: str, devices: int | None) -> None:
    """Raise :class:`ConfigError` for an unknown ``trainer.strategy`` or ``trainer.devices < 1``."""
    if strategy not in STRATEGIES:
        raise ConfigError(
            f"trainer.strategy={strategy!r} is not one of {', '.join(STRATEGIES)}. Use trainer.strategy=ddp "
            "trainer.devices=N to train a torch model in N processes, or auto (one process unless started "
            "by torchrun)."
        )
    if devices is not None and (isinstance(devices, bool) or not isinstance(devices, int) or devices < 1):
        raise ConfigError(
            f"trainer.devices={devices!r} must be a whole number >= 1 (the processes to train in, e.g. "
            "trainer.devices=2), or null for one process (or the launcher's WORLD_SIZE under torchrun)."
        )


def launcher_world_size() -> int:
    """``WORLD_SIZE`` set by a launcher such as torchrun (1 when the process was not started by one)."""
    value = os.environ.get("WORLD_SIZE", "1")
    return int(value) if value.isdigit() and int(value) > 0 else 1


def launcher_rank() -> int:
    """``RANK`` set by a launcher (0 when the process was not started by one)."""
    value = os.environ.get("RANK", "0")
    return int(value) if value.isdigit() else 0


@dataclass(frozen=True)
class Launch:
    """How a run uses processes: ``world_size`` processes, and whether recbench must ``spawn`` them."""

    world_size: int = 1
    spawn: bool = False

    @property
    def distributed(self) -> bool:
        """Whether more than one process trains the model."""
        return self.world_size > 1


def plan(strategy: str, devices: int | None, device: str, *, torch_model: bool, model: str) -> Launch:
    """The :class:`Launch` of a run, or a :class:`ConfigError` before anything is loaded.

    ``strategy`` / ``devices`` / ``device`` are the ``trainer.*`` settings; ``torch_model`` says whether
    the model (named ``model``) trains with the Trainer. Under a launcher (``WORLD_SIZE`` > 1) the
    processes already exist; with ``strategy=ddp`` and ``devices`` > 1 they are to be spawned.
    """
    check_settings(strategy, devices)
    launched = launcher_world_size()
    if launched > 1:
        if devices not in (None, 1, launched):
            raise ConfigError(
                f"trainer.devices={devices} but the launcher started {launched} processes (WORLD_SIZE). "
                f"Leave trainer.devices unset under torchrun, or set it to {launched}."
            )
        if not torch_model:
            raise ConfigError(
                f"model={model} does not train with torch, so it cannot be trained in {launched} processes "
                "(this run was started by torchrun or another launcher with WORLD_SIZE > 1). Run it as "
                "one process (`recbench train ...` without torchrun)."
            )
        return Launch(world_size=launched)
    if strategy != "ddp":
        if devices not in (None, 1):
            raise ConfigError(
                f"trainer.devices={devices} needs trainer.strategy=ddp (several processes); add "
                "trainer.strategy=ddp, or unset trainer.devices."
            )
        return Launch()
    if not torch_model:
        raise ConfigError(
            f"trainer.strategy=ddp trains a torch model in several processes, but model={model} does not "
            "train with torch (it has no trainer). Drop trainer.strategy=ddp for this model, or choose a "
            "torch model (bpr, mf, ncf, sasrec, ...)."
        )
    n = devices or 1
    on_cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if n > 1 and on_cuda and torch.cuda.device_count() < n:
        raise ConfigError(
            f"trainer.devices={n} with trainer.device={device} needs {n} GPUs, but this machine has "
            f"{torch.cuda.device_count()}. Lower trainer.devices, or train on CPU (trainer.device=cpu)."
        )
    return Launch(world_size=n, spawn=n > 1)


def backend_for(device: str) -> str:
    """``gloo`` for CPU training; ``cpu:gloo,cuda:nccl`` when the trainer runs on CUDA."""
    cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    return "cpu:gloo,cuda:nccl" if cuda else "gloo"


def init_from_env(device: str) -> None:
    """Join the process group described by the launcher's environment (once per process).

    Reads ``MASTER_ADDR``, ``MASTER_PORT``, ``RANK`` and ``WORLD_SIZE`` (``env://``); on CUDA the
    process's default GPU becomes ``cuda:LOCAL_RANK``. The group is destroyed at interpreter exit.
    """
    if dist.is_initialized():
        return
    backend = backend_for(device)
    if "nccl" in backend:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend=backend, init_method="env://")
    atexit.register(_destroy)
    log.info("process %d of %d joined the %s process group", dist.get_rank(), dist.get_world_size(), backend)


def _destroy() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def active() -> bool:
    """Whether this process trains together with others (a process group of more than one)."""
    return world_size() > 1


def is_main() -> bool:
    """Whether this process writes files: rank 0, or the only process."""
    return rank() == 0


def local_device(device: torch.device) -> torch.device:
    """``device`` with the rank's GPU (``cuda:LOCAL_RANK``) when it is an unnumbered CUDA device."""
    if active() and device.type == "cuda" and device.index is None:
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return device


def from_rank0(value: Any) -> Any:
    """``value`` as rank 0 has it, on every rank (any picklable object); ``value`` itself outside DDP."""
    if not active():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


# --- training ------------------------------------------------------------------------------------------


class _LossOf(nn.Module):
    """``forward(batch) = model.loss(net, batch)``: the module DDP wraps, so that its forward pass is the
    model's whole loss (which may call any method of the network, not only its ``forward``)."""

    def __init__(self, model: Any, net: nn.Module) -> None:
        super().__init__()
        self.net = net
        self.model = model  # a plain attribute: the recommender is not a module

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.model.loss(self.net, batch)


class DistributedTraining:
    """One rank's share of an epoch's steps, with gradients averaged over the ranks.

    The Trainer uses it in place of ``model.loss(net, batch)`` / ``loss.backward()`` when
    :func:`active`: :meth:`local_batch_size` (what to ask the model for), :meth:`shard` (this rank's
    batches), :meth:`loss`, :meth:`backward` and :meth:`epoch_loss`.
    """

    def __init__(self, model: Any, net: nn.Module, device: torch.device) -> None:
        self.size = world_size()
        self.rank = rank()
        self.sparse = bool(getattr(net, "sparse_gradients", False))
        self.net = net
        self.module = _LossOf(model, net)
        self.ddp: nn.Module | None = None
        if not self.sparse:
            from torch.nn.parallel import DistributedDataParallel

            # every rank builds identical buffers from the same data: no buffer broadcast at each forward
            params = inspect.signature(DistributedDataParallel.__init__).parameters
            quiet = {"forward_sync_buffers": False} if "forward_sync_buffers" in params else {}
            self.ddp = DistributedDataParallel(
                self.module,
                device_ids=[device.index] if device.type == "cuda" else None,
                static_graph=True,  # the loss uses the same parameters at every step (unused ones too)
                **(quiet or {"broadcast_buffers": False}),
            )
        else:
            # replicas start equal: the ranks built the network from the same seed, but make sure
            for p in net.parameters():
                dist.broadcast(p.data, src=0)
        self.device = device
        self._weight = 1.0
        self._total = torch.zeros((), dtype=torch.float64, device=device)
        self._count = 0

    def local_batch_size(self, batch_size: int) -> int:
        """Examples per rank and step so that one step over all ranks sees about ``batch_size``."""
        return max(1, math.ceil(batch_size / self.size))

    def shard(self, batches: Iterator[dict[str, torch.Tensor]]) -> Iterator[dict[str, torch.Tensor]]:
        """This rank's batch of every group of ``world_size`` consecutive batches (one step each).

        In the epoch's last group, when it has ``m < world_size`` batches, ranks ``>= m`` repeat the
        group's first batch with weight 0 (they still take part in the collective step) and the others
        weigh their loss by ``world_size / m``, so the step averages the ``m`` real batches exactly.
        """
        self._total = torch.zeros((), dtype=torch.float64, device=self.device)
        self._count = 0
        group: list[dict[str, torch.Tensor]] = []
        for batch in batches:
            group.append(batch)
            if len(group) == self.size:
                self._weight = 1.0
                yield group[self.rank]
                group = []
        if group:
            m = len(group)
            self._weight = self.size / m if self.rank < m else 0.0
            yield group[self.rank] if self.rank < m else group[0]

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The model's loss on ``batch`` (through DDP for dense networks)."""
        return (self.ddp or self.module)(batch)

    def backward(self, loss: torch.Tensor) -> None:
        """Back-propagate ``loss`` (weighted, see :meth:`shard`) and average the gradients over the ranks."""
        if self._weight:
            self._total += loss.detach().double()  # stays on the device: no synchronisation per step
            self._count += 1
        (loss * self._weight).backward()
        if self.sparse:
            self._average_gradients()

    def epoch_loss(self) -> float:
        """The mean loss over every rank's real batches of the epoch (the same number on every rank)."""
        count = torch.tensor(float(self._count), dtype=torch.float64, device=self.device)
        both = torch.stack([self._total, count])
        dist.all_reduce(both)
        return float(both[0] / max(float(both[1]), 1.0))

    def _average_gradients(self) -> None:
        """Mean of every parameter's gradient over the ranks, without DDP (sparse gradients).

        Sparse gradients travel as the (row, values) pairs of the rows each rank touched and are
        summed per row, so the cost follows the batch, not the tables; dense ones are summed in one
        flat all-reduce. Three or four collectives per step whatever the number of parameters: the
        per-parameter kinds and row counts, then the dense sum, the rows and the values. A rank
        without a real batch (weight 0) sends no rows.
        """
        named = [(n, p) for n, p in self.net.named_parameters() if p.requires_grad]
        params = [p for _, p in named]
        if not params:
            return
        device = params[0].device
        kind = [0 if p.grad is None else 2 if p.grad.is_sparse else 1 for p in params]
        local = [p.grad.coalesce() if k == 2 else None for p, k in zip(params, kind)]
        rows_here = [0 if g is None or self._weight == 0 else len(g.indices()[0]) for g in local]
        meta = torch.tensor(list(zip(kind, rows_here)), dtype=torch.int64, device=device)
        metas = self._gather(meta)  # [world, n_params, 2]
        kinds = metas[:, :, 0].amax(0).tolist()
        mixed = [n for (n, _), k, g in zip(named, kinds, kind) if g and g != k]
        if mixed:
            raise TrainingError(
                f"The parameters {mixed} have a sparse gradient in some training processes and a dense one "
                "in others, so their gradients cannot be averaged. Train this model in one process."
            )
        dense = [p for p, k in zip(params, kinds) if k == 1]
        if dense:
            grads = [torch.zeros_like(p) if p.grad is None else p.grad.to_dense() for p in dense]
            flat = torch.cat([g.reshape(-1) for g in grads])
            dist.all_reduce(flat)
            flat /= self.size
            for p, piece in zip(dense, flat.split([p.numel() for p in dense])):
                p.grad = piece.view_as(p).clone()
        sparse = [j for j, k in enumerate(kinds) if k == 2]
        if sparse:
            self._sum_rows(params, local, metas[:, sparse, 1], sparse)

    def _sum_rows(
        self,
        params: list[nn.Parameter],
        local: list[torch.Tensor | None],
        counts: torch.Tensor,
        which: list[int],
    ) -> None:
        """Set the sparse gradients of ``params[which]`` to their mean over the ranks (rows gathered)."""
        device = params[which[0]].device
        widths = torch.tensor([params[j][0].numel() if params[j].dim() > 1 else 1 for j in which])
        rows, values = [], []
        for j, n in zip(which, counts[self.rank].tolist()):
            grad = local[j]
            if n:
                assert grad is not None
                rows.append(grad.indices()[0])
                values.append(grad.values().reshape(-1))
        counts = counts.cpu()
        n_rows = counts.sum(1)
        n_values = (counts * widths).sum(1)
        all_rows = self._gather(_padded(rows, int(n_rows.max()), torch.int64, device))
        all_values = self._gather(_padded(values, int(n_values.max()), params[which[0]].dtype, device))
        per_param_rows: list[list[torch.Tensor]] = [[] for _ in which]
        per_param_values: list[list[torch.Tensor]] = [[] for _ in which]
        for r in range(self.size):
            r_rows = all_rows[r, : int(n_rows[r])].split(counts[r].tolist())
            r_values = all_values[r, : int(n_values[r])].split((counts[r] * widths).tolist())
            for i in range(len(which)):
                per_param_rows[i].append(r_rows[i])
                per_param_values[i].append(r_values[i])
        for i, j in enumerate(which):
            p = params[j]
            idx = torch.cat(per_param_rows[i])
            vals = torch.cat(per_param_values[i]).view(len(idx), *p.shape[1:]) / self.size
            p.grad = torch.sparse_coo_tensor(
                idx.unsqueeze(0), vals, p.shape, check_invariants=False
            ).coalesce()

    def _gather(self, tensor: torch.Tensor) -> torch.Tensor:
        """``[world, *tensor.shape]``: every rank's ``tensor`` (same shape on all ranks)."""
        out = torch.empty(
            (self.size * tensor.shape[0], *tensor.shape[1:]), dtype=tensor.dtype, device=tensor.device
        )
        dist.all_gather_into_tensor(out, tensor)
        return out.view(self.size, *tensor.shape)


def _padded(
    pieces: list[torch.Tensor], length: int, dtype: torch.dtype, device: torch.device
) -> torch.Tensor:
    """The concatenated 1-D ``pieces`` zero-padded to ``length``."""
    out = torch.zeros(max(length, 1), dtype=dtype, device=device)
    if pieces:
        flat = torch.cat(pieces)
        out[: len(flat)] = flat
    return out


# --- spawning the processes ----------------------------------------------------------------------------


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (for the rendezvous of spawned processes)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def spawn(fn: Callable[..., Any], args: tuple[Any, ...], world: int, *, threads: int | None = None) -> Any:
    """Run ``fn(*args)`` in ``world`` new processes forming one process group; return rank 0's result.

    The processes find each other on 127.0.0.1 (``MASTER_ADDR`` / ``MASTER_PORT``, ``RANK``,
    ``WORLD_SIZE``, ``LOCAL_RANK``), exactly as under ``torchrun``. Each gets ``threads`` torch/BLAS
    threads (default: the CPUs divided by ``world``). Rank 0's result comes back as JSON (``fn``
    returns plain data: dicts, lists, numbers, strings). When one process fails the others are stopped
    and its error is raised here (a :mod:`recbench.errors` class keeps its type; other exceptions
    become a :class:`RecbenchError` naming theirs). Rank 0's console and file log handlers are
    recreated in its process, so the run's ``train.log`` gets its lines.
    """
    import tempfile

    import torch.multiprocessing as mp

    per = threads or max(1, (os.cpu_count() or 1) // world)
    env = {
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(free_port()),
        "WORLD_SIZE": str(world),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", str(per)),
    }
    with tempfile.TemporaryDirectory(prefix="recbench-ddp-") as box:
        context = mp.start_processes(
            _worker,
            args=(fn, args, env, _handler_specs(), box),
            nprocs=world,
            join=False,
            start_method="spawn",
        )
        try:
            while not context.join():
                pass
        except (mp.ProcessRaisedException, mp.ProcessExitedException) as exc:
            failure = _outcome(box, "error")
            if failure is not None:
                raise _error_from(failure) from None
            raise RecbenchError(f"A training process failed: {exc}") from None
        result = _outcome(box, "ok")
    if result is None:
        raise RecbenchError("The training processes finished without a result from rank 0.")
    return result["value"]


def _worker(
    local_rank: int,
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    env: dict[str, str],
    handlers: list[tuple[str, str | None, str, int]],
    box: str,
) -> None:
    os.environ.update(env)
    os.environ.update({"RANK": str(local_rank), "LOCAL_RANK": str(local_rank)})
    if local_rank == 0:
        _install_handlers(handlers)
    try:
        out = fn(*args)
    except BaseException as exc:
        _leave(
            box,
            f"error-{local_rank}",
            {"type": type(exc).__name__, "module": type(exc).__module__, "message": str(exc)},
        )
        raise
    if local_rank == 0:
        _leave(box, "ok-0", {"value": out})


def _leave(box: str, name: str, value: dict[str, Any]) -> None:
    Path(box, f"{name}.json").write_text(json.dumps(value))


def _outcome(box: str, kind: str) -> dict[str, Any] | None:
    """The first record a worker left under ``kind`` (``ok`` / ``error``), else None: the earliest
    error is the cause (the other processes fail after it, when their collectives lose a peer)."""
    found = sorted(Path(box).glob(f"{kind}-*.json"), key=lambda p: p.stat().st_mtime_ns)
    return json.loads(found[0].read_text()) if found else None


def _error_from(failure: dict[str, Any]) -> BaseException:
    """The exception a worker raised: its own class for recbench's errors, else a RecbenchError."""
    from recbench import errors

    cls = getattr(errors, failure["type"], None) if failure["module"] == errors.__name__ else None
    if isinstance(cls, type) and issubclass(cls, RecbenchError):
        return cls(failure["message"])
    return RecbenchError(f"{failure['type']}: {failure['message']}")


def _handler_specs() -> list[tuple[str, str | None, str, int]]:
    """``(kind, file, format, level)`` of the root logger's console and file handlers."""
    specs = []
    for h in logging.getLogger().handlers:
        fmt = h.formatter._fmt if h.formatter is not None and h.formatter._fmt else "%(message)s"
        if isinstance(h, logging.FileHandler):
            specs.append(("file", h.baseFilename, fmt, h.level))
        elif isinstance(h, logging.StreamHandler):
            specs.append(("stream", None, fmt, h.level))
    return specs


def _install_handlers(specs: list[tuple[str, str | None, str, int]]) -> None:
    root = logging.getLogger()
    for kind, path, fmt, level in specs:
        handler: logging.Handler = (
            logging.FileHandler(path) if kind == "file" and path else logging.StreamHandler()
        )
        handler.setFormatter(logging.Formatter(fmt))
        handler.setLevel(level)
        root.addHandler(handler)
    if specs:
        root.setLevel(logging.INFO)
