"""recbench's norm samplers give the norms of the per-sample gradients (plain autograd for embeddings,
Opacus's grad sampler for linear layers)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

pytest.importorskip("opacus")

from opacus.grad_sample.linear import compute_linear_grad_sample

from recbench.training.norm_samplers import embedding_norm_sample, linear_norm_sample


def _norms(per_sample: dict[nn.Parameter, torch.Tensor]) -> dict[nn.Parameter, torch.Tensor]:
    return {p: g.reshape(g.shape[0], -1).norm(dim=1) for p, g in per_sample.items()}


@pytest.mark.parametrize("padding_idx", [None, 0])
@pytest.mark.parametrize(("rows", "shape"), [(6, (7, 1)), (6, (7, 5)), (6, (4, 3, 6)), (1000, (20, 4))])
def test_embedding_norms_with_repeated_rows(rows, shape, padding_idx) -> None:
    """Few rows: most samples read a row twice; many rows: only the first does (both code paths)."""
    gen = torch.Generator().manual_seed(0)
    layer = nn.Embedding(rows, 4, padding_idx=padding_idx)
    ids = torch.randint(0, rows, shape, generator=gen)
    ids[0] = 3  # one sample reads the same row everywhere
    backprops = torch.randn(*shape, 4, generator=gen)
    expected = []
    for b in range(shape[0]):  # reference: autograd, one sample at a time (no gradient to padding_idx)
        layer.zero_grad()
        (layer(ids[b]) * backprops[b]).sum().backward()
        expected.append(layer.weight.grad.norm())
    expected = torch.stack(expected)
    got = embedding_norm_sample(layer, [ids], backprops)[layer.weight]
    assert torch.allclose(got, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize(
    ("shape", "inp", "out"),
    [((5,), 6, 3), ((5, 1), 6, 3), ((5, 4), 32, 32), ((5, 9), 40, 1), ((5, 9), 4, 3), ((3, 2, 4), 6, 5)],
)
def test_linear_norms_for_every_rank_and_both_formulas(shape, inp, out, bias) -> None:
    gen = torch.Generator().manual_seed(1)
    layer = nn.Linear(inp, out, bias=bias)
    activations = torch.randn(*shape, inp, generator=gen)
    backprops = torch.randn(*shape, out, generator=gen)
    flat_a = activations.reshape(shape[0], -1, inp) if len(shape) > 1 else activations
    flat_g = backprops.reshape(shape[0], -1, out) if len(shape) > 1 else backprops
    expected = _norms(compute_linear_grad_sample(layer, [flat_a], flat_g))
    got = linear_norm_sample(layer, [activations], backprops)
    assert set(got) == set(expected)
    for p in expected:
        assert torch.allclose(got[p], expected[p], rtol=1e-5, atol=1e-6)
