"""Training objectives of the sequential models: full softmax, sampled softmax and sampled BCE.

Every sequential model chooses its objective with ``model.loss_type``:

- ``ce``: softmax cross-entropy over the whole catalogue. Its cost (and, on a GPU, the memory of
  its logits: positions x items) grows with the number of items.
- ``sampled``: softmax cross-entropy of each target against ``model.n_negatives`` items drawn (with
  replacement) for each row of a batch and shared by the row's positions, so a position costs the
  same at 1,000 or 1,000,000 items. ``model.sampler`` draws them uniformly or in proportion to popularity
  (:class:`~recbench.models.sequential.data.RowNegatives`); with ``popularity`` the logits of the
  target and of the negatives are lowered by their log-probability of being drawn (the log-q
  correction of sampled softmax, which makes it estimate the full softmax); with ``uniform`` that
  correction is the same for every candidate and cancels. A drawn item that equals a position's own
  target is removed from that position's softmax (its logit is set to ``-inf``), so the target is
  never its own negative; other items of the user's history may be drawn, as the full softmax
  includes them too.
- ``bce``: binary cross-entropy of each target against one unseen item drawn per position (the
  original SASRec and Caser objective).
- ``auto`` (the default): ``ce`` up to :data:`SAMPLED_ABOVE_ITEMS` items, ``sampled`` above.

The full softmax checks its logits' memory before allocating them (:func:`check_logits_memory`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from recbench.memory import check_fits
from recbench.models.sequential.data import SAMPLERS
from recbench.models.sequential.layers import (
    CE_CHUNK_CELLS,
    check_option,
    check_positive,
    item_cross_entropy,
)
from recbench.training.losses import bce_loss

#: ``model.loss_type`` values of the sequential models (see the module docstring).
LOSS_TYPES = ("auto", "ce", "sampled", "bce")

#: Catalogue size above which ``loss_type=auto`` trains with the sampled softmax. Up to here the full
#: softmax is used (it ranks best where it is affordable); the README's sequential scale results
#: give the measurements behind the choice.
SAMPLED_ABOVE_ITEMS = 20_000

#: Logit buffers smaller than this are allocated without reading the available memory.
CHECK_FLOOR_BYTES = 64 << 20


def resolve_loss_type(model: str, loss_type: str, n_items: int) -> str:
    """The objective a model trains with: ``loss_type``, with ``auto`` decided by ``n_items``.

    Raises :class:`~recbench.errors.ConfigError` for an unknown ``loss_type``.
    """
    check_option(model, "loss_type", loss_type, LOSS_TYPES)
    if loss_type == "auto":
        return "sampled" if n_items > SAMPLED_ABOVE_ITEMS else "ce"
    return loss_type


def objective(model: str, loss_type: str, n_negatives: int, n_items: int, sampler: str = "uniform") -> str:
    """:func:`resolve_loss_type`, also checking ``n_negatives`` and ``sampler`` for the sampled softmax."""
    resolved = resolve_loss_type(model, loss_type, n_items)
    if resolved == "sampled":
        check_positive(model, n_negatives=n_negatives)
        check_option(model, "sampler", sampler, SAMPLERS)
    return resolved


def sampled_cross_entropy(
    pos_logits: torch.Tensor,
    neg_logits: torch.Tensor,
    targets: torch.Tensor,
    negatives: torch.Tensor,
    pos_log_q: torch.Tensor | None = None,
    neg_log_q: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean softmax cross-entropy of each target against its sampled negatives.

    ``pos_logits[N]`` are the targets' logits, ``neg_logits[N, K]`` the logits of the ``K`` negatives
    of each of the ``N`` positions, whose tokens are ``negatives`` (``[N, K]``, or ``[K]`` shared by
    all positions); the target tokens are ``targets[N]``. A negative equal to the position's target is
    left out of its softmax. With the log-probabilities of being drawn, ``pos_log_q[N]`` and
    ``neg_log_q`` (shaped like ``negatives``), each logit is lowered by its own (the log-q correction).
    """
    if pos_log_q is not None and neg_log_q is not None:
        pos_logits, neg_logits = pos_logits - pos_log_q, neg_logits - neg_log_q
    hit = negatives == targets.unsqueeze(1)  # [N, K]: the target drawn as a negative
    neg_logits = neg_logits.masked_fill(hit, float("-inf"))
    logits = torch.cat([pos_logits.unsqueeze(1), neg_logits], dim=1)
    return -F.log_softmax(logits, dim=1)[:, 0].mean()


def sampled_item_cross_entropy(
    hidden: torch.Tensor,
    token_weight: torch.Tensor,
    targets: torch.Tensor,
    negatives: torch.Tensor,
    target_log_q: torch.Tensor | None = None,
    negative_log_q: torch.Tensor | None = None,
) -> torch.Tensor:
    """:func:`sampled_cross_entropy` of ``hidden[B, T, d]`` at the positions with a target
    (``targets[B, T]``, ``0`` = none), scored by dot products with ``token_weight`` rows against each
    row's ``negatives[B, K]`` (one batched matrix product); ``target_log_q[B, T]`` and
    ``negative_log_q[B, K]`` as in :func:`batch_log_q`."""
    valid = targets != 0
    if not bool(valid.any()):
        return hidden.sum() * 0.0  # keeps the graph: an empty batch contributes nothing
    rows = torch.nonzero(valid, as_tuple=True)[0]
    h, tokens = hidden[valid], targets[valid]
    pos = (h * F.embedding(tokens, token_weight)).sum(-1)
    neg = torch.bmm(hidden, F.embedding(negatives, token_weight).transpose(1, 2))[valid]  # [N, K]
    pos_q = None if target_log_q is None else target_log_q[valid]
    neg_q = None if negative_log_q is None else negative_log_q[rows]
    return sampled_cross_entropy(pos, neg, tokens, negatives[rows], pos_q, neg_q)


def batch_log_q(batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """A batch's log-q terms of the sampled softmax, ``(target_log_q, negative_log_q)`` shaped like its
    targets and its ``row_negatives`` (``None`` when uniform)."""
    if "negative_log_q" not in batch:
        return None, None
    return batch["target_log_q"], batch["negative_log_q"]


def device_available_bytes(device: torch.device) -> int | None:
    """Free memory of a CUDA ``device``; ``None`` (the system's available memory) for other devices."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    return None


def check_logits_memory(model: str, rows: int, n_items: int, device: torch.device, copies: int = 2) -> None:
    """Refuse (:class:`~recbench.errors.ConfigError`) before ``copies`` float32 ``[rows, n_items]`` logit
    buffers that would not fit in the memory of ``device``; the message names the settings to change."""
    nbytes = int(rows) * int(n_items) * 4 * int(copies)
    if nbytes < CHECK_FLOOR_BYTES:
        return
    available = device_available_bytes(device)
    check_fits(
        nbytes,
        f"{model}'s full softmax cross-entropy (loss_type=ce) over {n_items} items for {rows} training "
        f"positions ({copies} float32 logit buffers of {rows} x {n_items} on {device.type})",
        "Train with the sampled softmax (`model.loss_type=sampled`, `model.n_negatives=256`; "
        "`model.loss_type=auto` does so above "
        f"{SAMPLED_ABOVE_ITEMS} items), or lower `trainer.batch_size` (or `model.max_len`).",
        available=available,
    )


def full_item_cross_entropy(
    model: str, hidden: torch.Tensor, token_weight: torch.Tensor, n_items: int, targets: torch.Tensor
) -> torch.Tensor:
    """:func:`~recbench.models.sequential.layers.item_cross_entropy` after checking its logits' memory.

    On CPU the logits are formed in cache-sized chunks; on CUDA all rows go at once.
    """
    rows = len(targets) if hidden.is_cuda else min(len(targets), max(1, CE_CHUNK_CELLS // max(n_items, 1)))
    check_logits_memory(model, rows, n_items, hidden.device)
    return item_cross_entropy(hidden, token_weight, n_items, targets)


def next_item_loss(
    model: str,
    hidden: torch.Tensor,
    batch: dict[str, torch.Tensor],
    token_weight: torch.Tensor,
    n_items: int,
    loss_type: str,
) -> torch.Tensor:
    """Loss of ``hidden[B, T, d]`` against ``batch["targets"][B, T]`` (tokens; ``0`` = no target).

    ``loss_type`` is a resolved objective (see :func:`resolve_loss_type`): ``ce`` over the catalogue,
    ``sampled`` against ``batch["row_negatives"]``, or ``bce`` against the per-position token in
    ``batch["negatives"]``. Only positions with a target enter the loss.
    """
    targets = batch["targets"]
    if loss_type == "sampled":
        return sampled_item_cross_entropy(
            hidden, token_weight, targets, batch["row_negatives"], *batch_log_q(batch)
        )
    valid = targets != 0
    h = hidden[valid]
    if loss_type == "ce":
        return full_item_cross_entropy(model, h, token_weight, n_items, targets[valid])
    pos = (h * token_weight[targets[valid]]).sum(-1)
    neg = (h * token_weight[batch["negatives"][valid]]).sum(-1)
    return bce_loss(pos, neg)
