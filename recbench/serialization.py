"""Plain-data forms of recbench values, for the files every layer writes.

:func:`jsonable` turns parameters, records and cache keys into JSON types; :func:`write_npz` /
:func:`read_npz` write and read named arrays (``.npz``, atomically, never pickled), and
:func:`pack_sparse` / :func:`unpack_sparse` store a CSR matrix as four of those arrays under a key
prefix. Data caches, feature caches, model files and per-user metrics all go through these.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Iterable, Mapping, MutableMapping
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from recbench.files import atomic_write

_SPARSE_PARTS = ("data", "indices", "indptr", "shape")


def jsonable(value: Any) -> Any:
    """``value`` as plain JSON types.

    Mappings become dicts with string keys; dataclass instances a dict of their class path and fields;
    sequences, sets and arrays lists; numpy scalars Python numbers; paths strings; non-finite floats
    ``None`` (strict JSON); anything else its ``str``.
    """
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out = {"class": f"{type(value).__module__}.{type(value).__qualname__}"}
        out.update({f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)})
        return out
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (str, bool, int, float)) or value is None:
        return value
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, (np.ndarray, Iterable)) and not isinstance(value, (bytes, bytearray)):
        return [jsonable(v) for v in value]
    return str(value)


def pack_sparse(prefix: str, matrix: sp.spmatrix | sp.sparray) -> dict[str, np.ndarray]:
    """The CSR arrays of ``matrix`` under the keys ``<prefix>data``, ``indices``, ``indptr`` and ``shape``."""
    csr = sp.csr_matrix(matrix)
    parts = (csr.data, csr.indices, csr.indptr, np.asarray(csr.shape))
    return {f"{prefix}{name}": arr for name, arr in zip(_SPARSE_PARTS, parts)}


def unpack_sparse(arrays: MutableMapping[str, np.ndarray], prefix: str) -> sp.csr_matrix:
    """The CSR matrix :func:`pack_sparse` stored under ``prefix`` (its keys are removed from ``arrays``)."""
    data, indices, indptr, shape = (arrays.pop(f"{prefix}{name}") for name in _SPARSE_PARTS)
    return sp.csr_matrix((data, indices, indptr), shape=tuple(int(n) for n in shape))


def write_npz(path: str | Path, arrays: Mapping[str, np.ndarray], *, compressed: bool = False) -> None:
    """Write ``arrays`` to the ``.npz`` file ``path`` atomically; object arrays are stored as strings."""
    plain = {k: np.asarray(v) for k, v in arrays.items()}
    plain = {k: v.astype(str) if v.dtype.kind == "O" else v for k, v in plain.items()}
    save = np.savez_compressed if compressed else np.savez
    atomic_write(path, lambda fh: save(fh, **plain))


def read_npz(path: str | Path) -> dict[str, np.ndarray]:
    """Every array of the ``.npz`` file ``path``, read without unpickling (``allow_pickle=False``).

    Raises what :func:`numpy.load` raises for a missing or unreadable file (``OSError``,
    ``ValueError``, ``EOFError``, ``zipfile.BadZipFile``); callers turn that into their own message.
    """
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}
