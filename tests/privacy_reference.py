"""The independent reference of the DP-SGD clipping tests: plain autograd, one privacy unit at a time."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable

import torch
from torch import nn


def flat_grad(params: Iterable[nn.Parameter]) -> torch.Tensor:
    """The gradients of ``params`` in one vector (zeros for a parameter without one)."""
    return torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in params])


def clipped_sum(
    view: nn.Module,
    units: Iterable[dict[str, torch.Tensor]],
    clip: float,
    reduce: Callable[[torch.Tensor], torch.Tensor] = torch.sum,
) -> tuple[torch.Tensor, list[float]]:
    """The sum over ``units`` (one batch each) of the gradient of ``reduce(view(unit))`` clipped to norm
    ``clip``, over ``view``'s trainable parameters, and each unit's gradient norm before clipping."""
    params = [p for p in view.parameters() if p.requires_grad]
    expected, norms = torch.zeros(sum(p.numel() for p in params)), []
    for unit in units:
        view.zero_grad()
        with warnings.catch_warnings():  # Opacus's hooks on shared layers: no input gradients
            warnings.filterwarnings("ignore", message="Full backward hook is firing")
            reduce(view(unit)).backward()
        g = flat_grad(params)
        norms.append(float(g.norm()))
        expected += g * min(1.0, clip / norms[-1])
    return expected, norms


def step_gradient(module: nn.Module, expected_batch_size: float) -> torch.Tensor:
    """The summed clipped (and noised) gradient of a DP step: the trainable parameters' gradients, which
    Opacus divides by the expected batch size, times that size."""
    return flat_grad(p for p in module.parameters() if p.requires_grad) * expected_batch_size
