"""One compiled BPR mini-batch step on CPU: loss, gradients and the lazy row-wise Adam update fused.

The torch route of :class:`~recbench.models.factorization.BPR` (autograd through
:class:`~recbench.models.factorization.DotProduct`, sparse row gradients, then
:class:`~recbench.training.row_adam.RowAdam`) spends most of a batch outside arithmetic: finding the
distinct rows several times over, building and coalescing sparse tensors, gathering and scattering
the optimiser's moments, and the autograd bookkeeping. :func:`bpr_adam_step` does the same
mini-batch step in one pass of compiled code (numba, single-threaded, ``nogil``):

1. give every distinct user and item of the batch a slot (a per-table slot array, allocated once per
   fit and reset after each batch, so the cost follows the batch, not the table sizes);
2. for each positive ``(u, i)`` and its negatives ``j``: the scores from the parameters before the
   step, the BPR loss ``-ln sigma(x_ui - x_uj)`` averaged over the batch's pairs, the L2 terms of
   :meth:`BPR.loss` (positives weighted 1, each of ``n`` negatives ``1/n``), and their gradients
   accumulated per slot;
3. the lazy Adam update of every touched row (moments and parameters change only for rows the
   batch used, with the bias correction of the global step count), exactly as :class:`RowAdam`.

The result is the torch route's step up to float summation order. :class:`FusedBPRStep` binds it to
a network and its :class:`RowAdam` (whose state tensors it updates in place, so checkpoints and
resume see the usual optimiser state); :meth:`BPR.fused_step` decides when it applies (CPU, RowAdam,
one process, no DP-SGD) and the Trainer falls back to the torch route otherwise.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from numba import njit
from torch import nn

from recbench.training.prefetch import prefetch
from recbench.training.row_adam import RowAdam

#: iterations ahead whose table rows a kernel asks the CPU to load (see :mod:`recbench.training.prefetch`)
_AHEAD = 6


@njit(cache=True, nogil=True, fastmath=True, error_model="numpy")
def _slots(ids: np.ndarray, slot: np.ndarray, rows: np.ndarray) -> int:
    """Give each distinct id of ``ids`` a slot (``slot[id]``, first come first served); ``rows[s]``
    is the id of slot ``s``. Returns the number of distinct ids. ``slot`` holds ``-1`` elsewhere."""
    n = 0
    for k in range(ids.shape[0]):
        r = ids[k]
        if slot[r] < 0:
            slot[r] = n
            rows[n] = r
            n += 1
    return n


@njit(cache=True, nogil=True, fastmath=True, error_model="numpy")
def _adam_rows(
    table: np.ndarray,
    m: np.ndarray,
    v: np.ndarray,
    grad: np.ndarray,
    weight: np.ndarray,
    rows: np.ndarray,
    n: int,
    slot: np.ndarray,
    two_l2: float,
    beta1: float,
    beta2: float,
    scale: float,
    eps: float,
) -> float:
    """Lazy Adam on rows ``rows[:n]`` of a 2-D ``table`` whose loss gradients are ``grad[:n]``,
    adding the L2 term ``two_l2 * weight[s] * row`` of each row's summed occurrence weight; resets
    ``slot``. Returns ``sum_s weight[s] * ||row||^2`` before the step.

    The arithmetic stays in the table's float type, so the row loops vectorise."""
    real = table.dtype.type
    b1, b2, c1, c2 = real(beta1), real(beta2), real(1.0 - beta1), real(1.0 - beta2)
    step, tiny = real(scale), real(eps)
    squares = 0.0
    line = max(1, 64 // table.itemsize)  # elements per cache line
    for s in range(n):
        if s + _AHEAD < n:
            ahead = rows[s + _AHEAD]
            for f in range(0, table.shape[1], line):
                prefetch(table, ahead, f)
                prefetch(m, ahead, f)
                prefetch(v, ahead, f)
        r = rows[s]
        w = real(weight[s])
        decay = real(two_l2 * weight[s])
        row, m_r, v_r, g_r = table[r], m[r], v[r], grad[s]
        sq = real(0.0)
        for f in range(row.shape[0]):
            x = row[f]
            sq += x * x
            g = g_r[f] + decay * x
            mf = b1 * m_r[f] + c1 * g
            vf = b2 * v_r[f] + c2 * g * g
            m_r[f] = mf
            v_r[f] = vf
            row[f] = x - step * mf / (np.sqrt(vf) + tiny)
        squares += w * sq
        slot[r] = -1
    return squares


@njit(cache=True, nogil=True, fastmath=True, error_model="numpy")
def _adam_bias(
    bias: np.ndarray,
    m: np.ndarray,
    v: np.ndarray,
    grad: np.ndarray,
    weight: np.ndarray,
    rows: np.ndarray,
    n: int,
    two_l2: float,
    beta1: float,
    beta2: float,
    scale: float,
    eps: float,
) -> float:
    """:func:`_adam_rows` for the entries of a 1-D bias vector (no slots to reset)."""
    real = bias.dtype.type
    b1, b2, c1, c2 = real(beta1), real(beta2), real(1.0 - beta1), real(1.0 - beta2)
    step, tiny = real(scale), real(eps)
    squares = 0.0
    for s in range(n):
        r = rows[s]
        x = bias[r]
        squares += weight[s] * x * x
        g = grad[s] + real(two_l2 * weight[s]) * x
        mf = b1 * m[r] + c1 * g
        vf = b2 * v[r] + c2 * g * g
        m[r] = mf
        v[r] = vf
        bias[r] = x - step * mf / (np.sqrt(vf) + tiny)
    return squares


@njit(cache=True, nogil=True, fastmath=True, error_model="numpy")
def bpr_adam_step(
    P: np.ndarray,
    Q: np.ndarray,
    bias: np.ndarray,
    mP: np.ndarray,
    vP: np.ndarray,
    mQ: np.ndarray,
    vQ: np.ndarray,
    mB: np.ndarray,
    vB: np.ndarray,
    users: np.ndarray,
    items: np.ndarray,
    user_slot: np.ndarray,
    item_slot: np.ndarray,
    user_rows: np.ndarray,
    item_rows: np.ndarray,
    grad_p: np.ndarray,
    grad_q: np.ndarray,
    grad_b: np.ndarray,
    user_weight: np.ndarray,
    item_weight: np.ndarray,
    reg: float,
    beta1: float,
    beta2: float,
    scale: float,
    eps: float,
) -> float:
    """One BPR step with lazy Adam on ``P`` (users), ``Q`` (items) and ``bias`` (items; empty: none).

    ``users`` is ``[B]``, ``items`` ``[B, 1 + n]`` (the positive, then ``n >= 1`` negatives).
    ``mX``/``vX`` are Adam's moments of each table (same shapes), ``scale`` and ``eps`` the step's
    bias-corrected learning rate and epsilon. ``user_slot`` / ``item_slot`` are ``-1``-filled
    ``int64`` arrays of the table lengths (left ``-1`` on return); the other arrays after them are
    work space of at least ``B`` (users) and ``B * (1 + n)`` (items) rows. Returns the batch loss
    (the value of :meth:`BPR.loss` before the step).

    The BPR term's gradients are accumulated per slot while the pairs are scored; the L2 terms
    depend on a row only through its summed occurrence weight (1 per use as user or positive,
    ``1/n`` per use as a negative), so they are added once per distinct row in the Adam pass.
    """
    n_rows, width = items.shape
    n_neg = width - 1
    dim = P.shape[1]
    has_bias = bias.shape[0] > 0
    nu = _slots(users, user_slot, user_rows)
    ni = _slots(items.reshape(-1), item_slot, item_rows)
    real = P.dtype.type
    gP = grad_p[:nu]
    gQ = grad_q[:ni]
    gB = grad_b[:ni]
    gP[:] = 0.0
    gQ[:] = 0.0
    gB[:] = 0.0
    user_weight[:nu] = 0.0
    item_weight[:ni] = 0.0
    pair_w = 1.0 / (n_rows * n_neg)  # the BPR term is a mean over the batch's (positive, negative) pairs
    neg_w = 1.0 / n_neg  # each of n negatives carries 1/n of the L2 weight
    loss = 0.0
    line = max(1, 64 // P.itemsize)  # elements per cache line
    for b in range(n_rows):
        if b + _AHEAD < n_rows:  # the rows of a later pair, so that they arrive while this one computes
            for f in range(0, dim, line):
                prefetch(P, users[b + _AHEAD], f)
            for k in range(width):
                for f in range(0, dim, line):
                    prefetch(Q, items[b + _AHEAD, k], f)
        u = users[b]
        su = user_slot[u]
        user_weight[su] += 1.0
        p = P[u]
        gp = gP[su]
        i = items[b, 0]
        si = item_slot[i]
        item_weight[si] += 1.0
        q_i = Q[i]
        x_i = real(0.0)
        for f in range(dim):
            x_i += p[f] * q_i[f]
        if has_bias:
            x_i += bias[i]
        g_i = real(0.0)  # d loss / d x_ui, summed over the negatives
        for k in range(1, width):
            j = items[b, k]
            sj = item_slot[j]
            item_weight[sj] += neg_w
            q_j = Q[j]
            x_j = real(0.0)
            for f in range(dim):
                x_j += p[f] * q_j[f]
            if has_bias:
                x_j += bias[j]
            z = float(x_i - x_j)
            # -ln sigma(z) = softplus(-z), computed without overflow
            loss += (math.log1p(math.exp(z)) - z) if z < 0.0 else math.log1p(math.exp(-z))
            g = real(-pair_w / (1.0 + math.exp(z)))  # d loss / d z
            g_i += g
            gq_j = gQ[sj]
            for f in range(dim):
                gp[f] += g * (q_i[f] - q_j[f])
                gq_j[f] -= g * p[f]
            if has_bias:
                gB[sj] -= g
        gq_i = gQ[si]
        for f in range(dim):
            gq_i[f] += g_i * p[f]
        if has_bias:
            gB[si] += g_i
    l2 = reg / n_rows  # the L2 terms are summed over the batch's occurrences, then divided by B
    adam = (2.0 * l2, beta1, beta2, scale, eps)
    squares = 0.0
    if has_bias:
        squares += _adam_bias(bias, mB, vB, gB, item_weight, item_rows, ni, *adam)
    squares += _adam_rows(P, mP, vP, gP, user_weight, user_rows, nu, user_slot, *adam)
    squares += _adam_rows(Q, mQ, vQ, gQ, item_weight, item_rows, ni, item_slot, *adam)
    return loss * pair_w + l2 * squares


def _np(t: torch.Tensor) -> np.ndarray:
    """A numpy view sharing memory with ``t`` (which must be a contiguous CPU tensor)."""
    return t.detach().numpy()


class FusedBPRStep:
    """:func:`bpr_adam_step` bound to a BPR network and its :class:`RowAdam`: ``step(batch) -> loss``.

    The optimiser's per-parameter state (``step``, ``exp_avg``, ``exp_avg_sq``) is created and
    advanced exactly as :meth:`RowAdam.step` would, so its ``state_dict`` (checkpoints, resume) is the
    same whichever route trained. The slot arrays are allocated here, once per fit.

    Parameters
    ----------
    net: a :class:`~recbench.models.factorization.DotProduct` without user bias, on the CPU.
    optimizer: the network's :class:`RowAdam` (one parameter group).
    reg: the BPR model's L2 weight.
    """

    def __init__(self, net: nn.Module, optimizer: RowAdam, reg: float) -> None:
        self.net, self.optimizer, self.reg = net, optimizer, float(reg)
        self.params = [p for p in (net.user, net.item, net.item_bias) if p is not None]
        self.user_slot = np.full(net.user.shape[0], -1, np.int64)
        self.item_slot = np.full(net.item.shape[0], -1, np.int64)
        self.buffers: tuple[np.ndarray, ...] = ()

    def _buffers(self, n_rows: int, width: int) -> tuple[np.ndarray, ...]:
        """Slot ids and gradient rows for a batch of ``n_rows x width`` items (kept between batches)."""
        if not self.buffers or len(self.buffers[0]) < n_rows or len(self.buffers[1]) < n_rows * width:
            dim, dtype = self.net.user.shape[1], _np(self.net.user).dtype
            self.buffers = (
                np.empty(n_rows, np.int64),
                np.empty(n_rows * width, np.int64),
                np.empty((n_rows, dim), dtype),
                np.empty((n_rows * width, dim), dtype),
                np.empty(n_rows * width, dtype),
                np.empty(n_rows, np.float64),
                np.empty(n_rows * width, np.float64),
            )
        return self.buffers

    @staticmethod
    def supports(net: nn.Module, optimizer: torch.optim.Optimizer) -> bool:
        """Whether this step reproduces the torch route for ``net`` trained by ``optimizer``."""
        params = [p for p in (net.user, net.item, net.item_bias) if p is not None]
        return (
            type(optimizer) is RowAdam
            and len(optimizer.param_groups) == 1
            and {id(p) for p in optimizer.param_groups[0]["params"]} == {id(p) for p in params}
            and getattr(net, "user_bias", None) is None
            and float(net.global_mean) == 0.0
            and all(
                p.device.type == "cpu" and p.dtype == net.user.dtype and p.is_contiguous() for p in params
            )
            and net.user.dtype in (torch.float32, torch.float64)
        )

    def _state(self, p: torch.Tensor) -> dict[str, Any]:
        state = self.optimizer.state[p]
        if not state:
            state["step"] = 0
            state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        state["step"] += 1
        return state

    def __call__(self, batch: dict[str, torch.Tensor]) -> float:
        """Train on ``batch`` (``users [B]``, ``items [B, 1 + n]``); returns its loss before the step."""
        users, items = batch["users"], batch["items"]
        if items.dim() != 2 or items.shape[1] < 2:
            shape = tuple(items.shape)
            raise ValueError(f"BPR batches need items [B, 1 + n_negatives], n_negatives >= 1; got {shape}")
        for ids, table, name in ((users, self.net.user, "user"), (items, self.net.item, "item")):
            if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= table.shape[0]):
                raise IndexError(f"{name} id out of range [0, {table.shape[0]}) in a BPR batch")
        group = self.optimizer.param_groups[0]
        beta1, beta2 = group["betas"]
        states = [self._state(p) for p in self.params]
        t = states[0]["step"]
        scale = group["lr"] * (1 - beta2**t) ** 0.5 / (1 - beta1**t)
        eps = group["eps"] * (1 - beta2**t) ** 0.5
        moments = [(_np(s["exp_avg"]), _np(s["exp_avg_sq"])) for s in states]
        if len(moments) == 2:  # no item bias: empty stand-ins
            empty = np.empty(0, moments[0][0].dtype)
            moments.append((empty, empty))
            bias = empty
        else:
            bias = _np(self.params[2])
        loss = bpr_adam_step(
            _np(self.params[0]),
            _np(self.params[1]),
            bias,
            *moments[0],
            *moments[1],
            *moments[2],
            users.long().contiguous().numpy(),
            items.long().contiguous().numpy(),
            self.user_slot,
            self.item_slot,
            *self._buffers(*items.shape),
            self.reg,
            float(beta1),
            float(beta2),
            float(scale),
            float(eps),
        )
        return float(loss)
