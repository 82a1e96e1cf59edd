"""The shared plain-data helpers: JSON values and named-array files with CSR matrices."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from recbench.serialization import jsonable, pack_sparse, read_npz, unpack_sparse, write_npz


@dataclass(frozen=True)
class _Spec:
    k: int
    path: Path


def test_jsonable_gives_strict_json_for_numpy_paths_dataclasses_and_non_finite_floats() -> None:
    value = {
        1: np.float32(0.5),
        "arr": np.arange(4).reshape(2, 2),
        "bad": float("nan"),
        "inf": np.float64(np.inf),
        "spec": _Spec(3, Path("/tmp/x")),
        "set": (np.int64(7),),
    }
    out = jsonable(value)
    assert out == {
        "1": 0.5,
        "arr": [[0, 1], [2, 3]],
        "bad": None,
        "inf": None,
        "spec": {"class": f"{__name__}._Spec", "k": 3, "path": "/tmp/x"},
        "set": [7],
    }
    json.dumps(out, allow_nan=False)  # strict JSON


def test_sparse_round_trip_through_an_npz_file_keeps_values_shape_and_other_arrays(tmp_path: Path) -> None:
    mat = sp.random(7, 5, density=0.3, format="csr", dtype=np.float32, random_state=0)
    names = np.array(["a", "b"], dtype=object)  # object arrays are stored as strings
    write_npz(tmp_path / "x.npz", {**pack_sparse("m_", mat), "names": names}, compressed=True)
    arrays = read_npz(tmp_path / "x.npz")
    back = unpack_sparse(arrays, "m_")
    assert back.shape == (7, 5) and (back != mat).nnz == 0
    assert list(arrays) == ["names"] and arrays["names"].tolist() == ["a", "b"]
