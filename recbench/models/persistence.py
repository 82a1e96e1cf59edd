"""Saving and loading fitted models without pickle.

Torch models store ``network_.state_dict()`` in ``model.pt`` (loaded with ``weights_only=True``);
other models store their learned numpy / scipy.sparse attributes in ``model.npz`` (loaded with
``allow_pickle=False``). Nothing here unpickles arbitrary objects.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from recbench.errors import ConfigError, RecbenchError
from recbench.files import atomic_write
from recbench.models.base import Recommender
from recbench.serialization import pack_sparse, read_npz, unpack_sparse, write_npz

TORCH_FILE = "model.pt"
NUMPY_FILE = "model.npz"
_SPARSE = "__csr__"


#: Learned attributes of torch models that loading rebuilds (the network, from ``model.pt``) or that
#: only describe the training (effective trainer, device, learning curves, the sequential models'
#: resolved objective): never saved in ``model.npz``.
REBUILT = frozenset({"network_", "trainer_", "device_", "history_", "loss_type_"})


def _is_number(value: Any) -> bool:
    return isinstance(value, (bool, int, float, np.bool_, np.integer, np.floating))


def learned_arrays(model: Recommender) -> dict[str, np.ndarray]:
    """The learned (``_``-suffixed) attributes of ``model`` as arrays for ``model.npz``.

    Numpy arrays, scipy.sparse matrices, numbers and tuples or lists of numbers are saved (as
    arrays); anything else is learned state that would be silently lost on load, so it is an error
    (:class:`RecbenchError`), and so is a public attribute that is neither a hyperparameter nor
    ``_``-suffixed (private ``_name`` attributes are caches, rebuilt when missing).
    """
    arrays: dict[str, np.ndarray] = {}
    params = set(model.get_params())
    for name, value in vars(model).items():
        if name.startswith("_") or name in REBUILT or name in params:
            continue  # private caches (rebuilt on use), rebuilt torch state, hyperparameters
        if not name.endswith("_"):
            raise RecbenchError(
                f"{type(model).__name__}.{name} is neither a hyperparameter nor learned state (a name ending "
                "in '_'), so recbench would not save it and a loaded model would lack it. Rename it with a "
                "trailing '_' to save it, or with a leading '_' if it is a cache rebuilt when missing."
            )
        if isinstance(value, np.ndarray) and value.dtype != object:
            arrays[name] = value
        elif sp.issparse(value):
            arrays.update(pack_sparse(f"{_SPARSE}{name}", value))
        elif _is_number(value) or (isinstance(value, (tuple, list)) and all(map(_is_number, value))):
            arrays[name] = np.asarray(value)
        else:
            raise RecbenchError(
                f"{type(model).__name__}.{name} is learned state of type {type(value).__name__}, which "
                "recbench cannot save (numpy arrays, scipy.sparse matrices, numbers and tuples or lists of "
                "numbers only), so a loaded model would lack it. Store it as one of those, rebuild it in "
                "build_network, or drop it after fit (a name without the trailing '_' is not saved)."
            )
    return arrays


def save_model(model: Recommender, run_dir: str | Path) -> Path:
    """Write the learned state of ``model`` into ``run_dir``; returns the main file written.

    Torch models write their network to ``model.pt`` and any other learned state (e.g. a rating range
    or the ids seen in training) to ``model.npz`` beside it; other models write ``model.npz`` only.
    """
    run_dir = Path(run_dir)
    arrays = learned_arrays(model)
    if getattr(model, "network_", None) is not None:
        if arrays:
            write_npz(run_dir / NUMPY_FILE, arrays)
        return save_network(model, run_dir / TORCH_FILE)
    path = run_dir / NUMPY_FILE
    write_npz(path, arrays)
    return path


def save_network(model: Recommender, path: str | Path) -> Path:
    """Write ``model.network_.state_dict()`` (CPU tensors) to a file, or to a directory's ``model.pt``."""
    import torch

    path = Path(path)
    if path.is_dir():
        path = path / TORCH_FILE
    state = {k: v.detach().cpu() for k, v in model.network_.state_dict().items()}  # type: ignore[attr-defined]
    atomic_write(path, lambda fh: torch.save(state, fh))
    return path


def read_network(path: str | Path, key: str = "path") -> dict[str, Any]:
    """The state dict written by :func:`save_network`, from a file or a run directory's ``model.pt``.

    Loads onto the CPU with ``weights_only=True`` (tensors only, never arbitrary pickled objects).
    ``key`` names the config option in the error raised when nothing is there.
    """
    import torch

    file = Path(path)
    if file.is_dir():
        file = file / TORCH_FILE
    if not file.is_file():
        raise ConfigError(
            f"{key}={str(path)!r}: no saved weights at {file}. Point it at the run directory of a "
            "finished run of the matching model (it holds model.pt) or at the .pt file itself."
        )
    try:
        return torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated, foreign or tampered files (pickled objects are refused)
        raise _unreadable(file, exc) from exc


def _unreadable(path: Path, exc: BaseException) -> RecbenchError:
    return RecbenchError(
        f"{path} is not a readable recbench model file ({type(exc).__name__}: {exc}). It may be truncated "
        "or not written by recbench; re-run the training run to write it again."
    )


def load_state(model: Recommender, run_dir: str | Path, train: Any = None) -> Recommender:
    """Restore the learned state saved by :func:`save_model` into an unfitted ``model``.

    Torch models need ``train`` (the training :class:`~recbench.data.interactions.Interactions`)
    to rebuild their network before the weights are loaded.
    """
    run_dir = Path(run_dir)
    if (run_dir / TORCH_FILE).is_file():
        if train is None:
            raise ValueError("loading a torch model needs the training interactions to rebuild its network")
        trainer = model._trainer()  # type: ignore[attr-defined]
        model.device_ = trainer.resolved_device()  # type: ignore[attr-defined]
        model.n_users_, model.n_items_ = train.n_users, train.n_items  # type: ignore[attr-defined]
        net = model.build_network(train)  # type: ignore[attr-defined]
        state = read_network(run_dir / TORCH_FILE)
        try:
            net.load_state_dict(state)
        except Exception as exc:  # a foreign file whose tensors do not fit the network
            raise _unreadable(run_dir / TORCH_FILE, exc) from exc
        model.network_ = net.to(model.device_).eval()  # type: ignore[attr-defined]  # loaded for inference
        if (run_dir / NUMPY_FILE).is_file():
            _restore_arrays(model, run_dir / NUMPY_FILE)
        return model
    return _restore_arrays(model, run_dir / NUMPY_FILE)


def _restore_arrays(model: Recommender, path: Path) -> Recommender:
    """Set the attributes saved by :func:`learned_arrays` on ``model``."""
    try:
        files = read_npz(path)
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as exc:
        raise _unreadable(path, exc) from exc
    for key in [k for k in files if k.startswith(_SPARSE) and k.endswith("shape")]:
        name = key[len(_SPARSE) : -len("shape")]
        setattr(model, name, unpack_sparse(files, f"{_SPARSE}{name}"))
    for name, value in files.items():
        setattr(model, name, value.item() if value.ndim == 0 else value)
    return model
