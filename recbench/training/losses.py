"""Training objectives as plain functions over score tensors."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def bpr_loss(pos_scores: torch.Tensor, neg_scores: torch.Tensor) -> torch.Tensor:
    """Bayesian personalised ranking: ``-mean(log sigmoid(pos - neg))`` (Rendle et al. 2009).

    ``neg_scores`` may have an extra trailing dimension (several negatives per positive).
    """
    if neg_scores.dim() == pos_scores.dim() + 1:
        pos_scores = pos_scores.unsqueeze(-1)
    return -F.logsigmoid(pos_scores - neg_scores).mean()


def bce_loss(pos_logits: torch.Tensor, neg_logits: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy with positives labelled 1 and sampled negatives labelled 0 (logits in).

    The mean is taken over all labelled examples, positives and negatives together.
    """
    pos = F.binary_cross_entropy_with_logits(pos_logits, torch.ones_like(pos_logits), reduction="sum")
    neg = F.binary_cross_entropy_with_logits(neg_logits, torch.zeros_like(neg_logits), reduction="sum")
    return (pos + neg) / (pos_logits.numel() + neg_logits.numel())


def softmax_ce_loss(logits: torch.Tensor, targets: torch.Tensor, ignore_index: int = -100) -> torch.Tensor:
    """Full softmax cross-entropy over the catalogue: ``logits[..., n_items]``, ``targets`` int64."""
    return F.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=ignore_index
    )


def sampled_softmax_loss(pos_logits: torch.Tensor, neg_logits: torch.Tensor) -> torch.Tensor:
    """Softmax cross-entropy of each positive against its sampled negatives (``neg[..., n_neg]``)."""
    logits = torch.cat([pos_logits.unsqueeze(-1), neg_logits], dim=-1)
    return -F.log_softmax(logits, dim=-1)[..., 0].mean()


def mse_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error (rating prediction)."""
    return F.mse_loss(pred, target)
