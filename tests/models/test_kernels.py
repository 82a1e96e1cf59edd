"""The compiled gather-dot kernels against the plain torch route they replace on CPU."""

from __future__ import annotations

import pytest
import torch

from recbench.models import factorization
from recbench.models.factorization import _GatherDot


def _run(P, Q, bias, users, items, monkeypatch=None, compiled=True):
    """Forward value and gradients of ``sum(w * out)`` with the compiled or the torch route."""
    leaves = [t.detach().clone().requires_grad_(True) if t is not None else None for t in (P, Q, bias)]
    if not compiled:
        monkeypatch.setattr(factorization, "_compiled", lambda *args: False)
    out = _GatherDot.apply(*leaves, users, items)
    weights = torch.linspace(-1.0, 2.0, out.numel(), dtype=out.dtype).reshape(out.shape)
    weights[0, 0] = 0.0  # a zero gradient entry takes the kernel's skip branch
    (out * weights).sum().backward()
    grads = [t.grad if t is not None else None for t in leaves]
    if not compiled:
        monkeypatch.undo()
    return out.detach(), grads


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("with_bias", [True, False])
def test_compiled_route_matches_torch(monkeypatch, dtype, with_bias):
    gen = torch.Generator().manual_seed(0)
    P = torch.randn(7, 5, generator=gen, dtype=dtype)
    Q = torch.randn(9, 5, generator=gen, dtype=dtype)
    bias = torch.randn(9, generator=gen, dtype=dtype) if with_bias else None
    users = torch.tensor([0, 3, 3, 6, 1, 0])  # repeated users and items must accumulate
    items = torch.tensor([[1, 2, 2], [8, 0, 1], [1, 1, 5], [4, 3, 2], [0, 8, 7], [2, 2, 2]])
    fast, fast_grads = _run(P, Q, bias, users, items)
    slow, slow_grads = _run(P, Q, bias, users, items, monkeypatch, compiled=False)
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(fast, slow, atol=tol, rtol=tol)
    expected = (P[users].unsqueeze(1) * Q[items]).sum(-1) + (bias[items] if with_bias else 0)
    torch.testing.assert_close(fast, expected, atol=tol, rtol=tol)
    for got, want in zip(fast_grads, slow_grads):
        if want is None:
            assert got is None
        else:
            torch.testing.assert_close(got, want, atol=tol, rtol=tol)


def test_out_of_range_ids_raise_instead_of_reading_stray_memory():
    P, Q = torch.randn(3, 4), torch.randn(5, 4)
    with pytest.raises(IndexError, match="item id"):
        _GatherDot.apply(P, Q, None, torch.tensor([0, 1]), torch.tensor([[0], [5]]))
    with pytest.raises(IndexError, match="user id"):
        _GatherDot.apply(P, Q, None, torch.tensor([-1, 1]), torch.tensor([[0], [1]]))


def test_selected_rows_products_match_scipy() -> None:
    """The scoring products read the selected rows in place: scipy's numbers, in any row order."""
    import numpy as np
    import scipy.sparse as sp

    from recbench.models.similarity import sparse_rows_times_dense, sparse_times_sparse

    rng = np.random.default_rng(0)
    left = sp.random(30, 20, density=0.3, format="csr", dtype=np.float32, random_state=1)
    right = sp.random(20, 25, density=0.2, format="csr", dtype=np.float32, random_state=2)
    dense = rng.standard_normal((20, 25)).astype(np.float32)
    rows = np.array([7, 0, 7, 29, 3])  # repeated and out of order
    want = (left[rows] @ right).toarray()
    np.testing.assert_allclose(sparse_times_sparse(left, right, rows=rows), want, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(
        sparse_times_sparse(left, right, rows=rows)[1], sparse_times_sparse(left, right)[0]
    )
    np.testing.assert_array_equal(sparse_rows_times_dense(left, rows, dense), left[rows] @ dense)
    wide = left.astype(np.float64)  # other dtypes select the rows first, then convert only those
    np.testing.assert_allclose(sparse_times_sparse(wide, right, rows=rows), want, rtol=1e-6, atol=1e-6)
