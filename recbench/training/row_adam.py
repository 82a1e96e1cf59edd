"""Adam for sparse row gradients: only the rows a batch touched are read and written.

Embedding tables trained on mini-batches receive gradients on a few rows per step. Dense Adam
would still update every row (its moments decay even where the gradient is zero), so a step costs
the whole table; :class:`RowAdam` is "lazy" Adam, as ``torch.optim.SparseAdam``: the moments and
the parameters of a row change only in the steps whose gradient holds that row, with the bias
correction of the global step count. It gathers the touched rows, updates them as dense blocks
and scatters them back, which on CPU is several times faster than ``SparseAdam``'s sparse-tensor
arithmetic. Dense gradients get the ordinary (non-lazy) Adam update.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch


class RowAdam(torch.optim.Optimizer):
    """Lazy Adam over the rows of sparse gradients (see the module docstring).

    Parameters
    ----------
    params: parameters (or parameter groups) to optimise.
    lr: learning rate.
    betas: decay rates of the first and second moment estimates.
    eps: term added to the denominator.
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ) -> None:
        if not lr > 0 or not 0 <= betas[0] < 1 or not 0 <= betas[1] < 1 or not eps >= 0:
            raise ValueError(f"invalid RowAdam settings lr={lr}, betas={betas}, eps={eps}")
        super().__init__(params, {"lr": lr, "betas": tuple(betas), "eps": eps})

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        """One update of every parameter that has a gradient."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["step"] += 1
                t = state["step"]
                scale = group["lr"] * (1 - beta2**t) ** 0.5 / (1 - beta1**t)
                eps = group["eps"] * (1 - beta2**t) ** 0.5
                m_all, v_all = state["exp_avg"], state["exp_avg_sq"]
                grad = p.grad
                if grad.is_sparse:
                    grad = grad.coalesce()
                    rows, values = grad.indices()[0], grad.values()
                    m = m_all.index_select(0, rows).mul_(beta1).add_(values, alpha=1 - beta1)
                    v = v_all.index_select(0, rows).mul_(beta2).addcmul_(values, values, value=1 - beta2)
                    m_all.index_copy_(0, rows, m)
                    v_all.index_copy_(0, rows, v)
                    p.index_add_(0, rows, m.div_(v.sqrt_().add_(eps)), alpha=-scale)
                else:
                    m_all.mul_(beta1).add_(grad, alpha=1 - beta1)
                    v_all.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                    p.addcdiv_(m_all, v_all.sqrt().add_(eps), value=-scale)
        return loss
