"""Building blocks shared by the sequential models (plain ``nn.Module`` components).

Token convention (fixed by :meth:`recbench.data.interactions.Interactions.sequences`): ``0`` is
padding and item ``i`` is token ``i + 1``. BERT4Rec adds a ``[MASK]`` token ``n_items + 1``. Output
layers only ever score tokens ``1..n_items``, so padding and ``[MASK]`` are never ranked as items.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from recbench.errors import ConfigError
from recbench.models.similarity import cosine_similar


def attention_bias(seqs: torch.Tensor, *, causal: bool, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``float[B, 1, T, T]`` additive mask: ``0`` where query ``q`` may attend to key ``k``, else ``-inf``.

    Padding keys are hidden, except that every position may attend to itself: a padding query then
    never sees an all-masked row (which would give NaNs), and a real query never sees padding. With
    ``causal=True`` a position also never sees later positions. Built once per forward pass and
    added to the scores of every layer (cheaper than masking each layer's scores).
    """
    t = seqs.shape[1]
    real_key = (seqs != 0)[:, None, None, :]
    eye = torch.eye(t, dtype=torch.bool, device=seqs.device)
    allowed = real_key | eye
    if causal:
        allowed = allowed & torch.ones(t, t, dtype=torch.bool, device=seqs.device).tril()
    return torch.zeros(allowed.shape, dtype=dtype, device=seqs.device).masked_fill_(~allowed, float("-inf"))


def dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Inverted dropout drawn from random bytes: like ``F.dropout``, about twice as fast on CPU.

    Each entry is dropped with probability ``round(256 * p) / 256`` (``p`` rounded to 1/256) and the
    survivors are scaled by the inverse keep rate, so the expectation is unchanged.
    """
    if not training or p <= 0:
        return x
    cut = min(round(256 * p), 255)
    n = x.numel()  # random bytes 8 at a time: a quarter of the generator calls of a uint8 fill
    words = torch.empty((n + 7) // 8, dtype=torch.int64, device=x.device).random_(-(2**63), None)
    keep = words.view(torch.uint8)[:n].view(x.shape) >= cut
    return x * keep.to(x.dtype).mul_(256.0 / (256 - cut))  # one float mask: fewer passes than two products


class Dropout(nn.Module):
    """Module form of :func:`dropout` (a drop-in for ``nn.Dropout``)."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` with entries zeroed at rate ``p`` in training mode; ``x`` itself in eval mode."""
        return dropout(x, self.p, self.training)


class MultiHeadSelfAttention(nn.Module):
    """Scaled dot-product self-attention with ``n_heads`` heads (Vaswani et al., NeurIPS 2017)."""

    def __init__(self, dim: int, n_heads: int, dropout: float) -> None:
        super().__init__()
        if dim % n_heads:
            raise ValueError(f"hidden size {dim} is not divisible by n_heads={n_heads}")
        self.n_heads = n_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.dropout = dropout

    def forward(self, x: torch.Tensor, bias: torch.Tensor, *, last_only: bool = False) -> torch.Tensor:
        """``x[B, T, dim]``, ``bias`` from :func:`attention_bias`; returns ``[B, T, dim]``.

        ``last_only=True`` computes only the last position's output (``[B, 1, dim]``), attending to
        all positions as usual: all that scoring needs from the last layer.
        """
        b, t, d = x.shape
        h, dh = self.n_heads, d // self.n_heads
        q, k, v = self.qkv(x).view(b, t, 3, h, dh).permute(2, 0, 3, 1, 4)
        if last_only:
            q, bias = q[:, :, -1:], bias[:, :, -1:]
        tq = q.shape[2]
        if self.training and self.dropout > 0:  # explicit, to use the fast dropout on the weights
            q = q.reshape(b * h, tq, dh)  # heads folded into the batch
            k, v = k.reshape(b * h, t, dh), v.reshape(b * h, t, dh)
            bias = bias.expand(b, h, tq, t).reshape(b * h, tq, t)
            scores = torch.baddbmm(bias, q, k.transpose(1, 2), alpha=dh**-0.5)  # scaled and masked at once
            y = torch.bmm(dropout(scores.softmax(dim=-1), self.dropout, True), v).view(b, h, tq, dh)
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        return self.out(y.transpose(1, 2).reshape(b, tq, d))


class TransformerBlock(nn.Module):
    """Pre-norm transformer layer: ``x + Attn(LN(x))`` then ``x + FFN(LN(x))``, dropout on both branches."""

    def __init__(self, dim: int, n_heads: int, dropout: float, ff_dim: int, activation: str = "gelu") -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = MultiHeadSelfAttention(dim, n_heads, dropout)
        self.norm2 = nn.LayerNorm(dim)
        act: nn.Module = nn.GELU() if activation == "gelu" else nn.ReLU()
        self.ff = nn.Sequential(nn.Linear(dim, ff_dim), act, Dropout(dropout), nn.Linear(ff_dim, dim))
        self.drop = Dropout(dropout)

    def forward(self, x: torch.Tensor, bias: torch.Tensor, *, last_only: bool = False) -> torch.Tensor:
        """One layer over ``x[B, T, dim]`` with the additive attention ``bias``.

        ``last_only=True`` returns only the last position (``[B, 1, dim]``), see
        :meth:`MultiHeadSelfAttention.forward`.
        """
        y = self.attn(self.norm1(x), bias, last_only=last_only)
        x = (x[:, -1:] if last_only else x) + self.drop(y)
        return x + self.drop(self.ff(self.norm2(x)))


class TransformerEncoder(nn.Module):
    """Token + learned position embeddings, ``n_layers`` :class:`TransformerBlock` s, final LayerNorm.

    Used causally by SASRec and bidirectionally by BERT4Rec. ``n_tokens`` counts padding (token 0,
    a zero vector) and any special tokens. ``scale_tokens`` multiplies the token embeddings by
    ``sqrt(dim)`` before the position embeddings are added (as in SASRec and the original
    Transformer): with small initial embeddings it keeps the identity of each position's own item
    strong in the residual stream, which the blocks' outputs would otherwise drown.
    """

    def __init__(
        self,
        n_tokens: int,
        max_len: int,
        dim: int,
        n_layers: int,
        n_heads: int,
        dropout: float,
        ff_dim: int,
        *,
        causal: bool,
        activation: str = "gelu",
        scale_tokens: bool = False,
    ) -> None:
        super().__init__()
        self.causal = causal
        self.token_scale = dim**0.5 if scale_tokens else 1.0
        self.tokens = nn.Embedding(n_tokens, dim, padding_idx=0)
        self.positions = nn.Embedding(max_len, dim)
        self.drop = Dropout(dropout)
        self.blocks = nn.ModuleList(
            TransformerBlock(dim, n_heads, dropout, ff_dim, activation) for _ in range(n_layers)
        )
        self.norm = nn.LayerNorm(dim)
        nn.init.normal_(self.tokens.weight, std=0.02)
        nn.init.normal_(self.positions.weight, std=0.02)
        with torch.no_grad():
            self.tokens.weight[0].zero_()

    def forward(self, seqs: torch.Tensor, *, last_only: bool = False) -> torch.Tensor:
        """``seqs[B, T]`` tokens (left-padded, ``T <= max_len``) -> hidden states ``[B, T, dim]``.

        ``last_only=True`` gives only the last position's state (``[B, 1, dim]``, equal to the last
        column of the full output): the final layer then skips every other query, which makes
        scoring (and validation) cheaper.
        """
        t = seqs.shape[1]
        pos = torch.arange(
            self.positions.num_embeddings - t, self.positions.num_embeddings, device=seqs.device
        )
        x = self.tokens(seqs) * self.token_scale + self.positions(pos)
        x = self.drop(x)
        bias = attention_bias(seqs, causal=self.causal, dtype=x.dtype)
        for i, block in enumerate(self.blocks):
            x = block(x, bias, last_only=last_only and i == len(self.blocks) - 1)
        return self.norm(x[:, -1:] if last_only else x)


class CausalConvBlock(nn.Module):
    """NextItNet residual block: two dilated causal 1-D convolutions (dilations ``d`` and ``2d``).

    Each convolution is followed by LayerNorm and ReLU; the input is added back (Yuan et al., WSDM 2019).
    Causality comes from padding ``(kernel - 1) * dilation`` steps on the left only.
    """

    def __init__(self, dim: int, kernel_size: int, dilation: int, dropout: float) -> None:
        super().__init__()
        self.pads = ((kernel_size - 1) * dilation, (kernel_size - 1) * 2 * dilation)
        self.conv1 = nn.Conv1d(dim, dim, kernel_size, dilation=dilation)
        self.conv2 = nn.Conv1d(dim, dim, kernel_size, dilation=2 * dilation)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.drop = Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x[B, T, dim]`` -> ``[B, T, dim]``; output at step ``t`` depends on steps ``<= t`` only."""
        h = F.pad(x.transpose(1, 2), (self.pads[0], 0))
        h = torch.relu(self.norm1(self.conv1(h).transpose(1, 2)))
        h = F.pad(self.drop(h).transpose(1, 2), (self.pads[1], 0))
        h = torch.relu(self.norm2(self.conv2(h).transpose(1, 2)))
        return x + self.drop(h)


def init_item_tables(*tables: nn.Embedding) -> None:
    """Draw each table's weights from N(0, 0.02), in order, then zero its padding row 0."""
    for table in tables:
        nn.init.normal_(table.weight, std=0.02)
    with torch.no_grad():
        for table in tables:
            table.weight[0].zero_()


def item_logits(hidden: torch.Tensor, token_weight: torch.Tensor, n_items: int) -> torch.Tensor:
    """Scores of the ``n_items`` real items: ``hidden[..., d] @ token_weight[1:n_items + 1].T``.

    Column ``j`` of the result is item ``j`` (token ``j + 1``); padding and special tokens are left out.
    """
    return hidden @ token_weight[1 : n_items + 1].T


def similar_tokens(token_weight: torch.Tensor, n_items: int, items: Any) -> Any:
    """``float32[len(items), n_items]``: cosine similarity of the item tokens' embeddings (rows
    ``1..n_items`` of ``token_weight``), the ``similar_items`` of the sequential models."""
    return cosine_similar(token_weight[1 : n_items + 1].detach().float().cpu().numpy(), items)


#: Logit cells (rows x items) per chunk of :class:`_SoftmaxCrossEntropy` on CPU: 2 MiB of float32,
#: so that a chunk's logits stay in a core's cache between their softmax and the two gradient products.
CE_CHUNK_CELLS = 2**19


class _SoftmaxCrossEntropy(torch.autograd.Function):
    """Mean cross-entropy of ``h @ w.T`` against ``targets``, with the gradients formed in the forward pass.

    ``F.cross_entropy(h @ w.T, targets)`` keeps the ``[N, C]`` log-probabilities, then in the
    backward pass fills a zero ``[N, C]`` matrix for the target one-hots and makes two more passes
    over it. Here the forward pass works through the rows in cache-sized chunks: each chunk's logits
    become ``softmax - onehot`` in place and are used at once for both gradients (``grad_h`` rows and
    the accumulated ``grad_w``), so the ``[N, C]`` matrix never exists as a whole and the backward
    pass only scales the saved gradients. Same values and gradients (to float rounding), in less
    time than ``F.cross_entropy`` (the README's speed notes give the measurements). On CUDA the rows
    go in one chunk.
    """

    @staticmethod
    def forward(ctx: Any, h: torch.Tensor, w: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        n = len(targets)
        need_h, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        grad_h = torch.empty(h.shape, dtype=h.dtype, device=h.device) if need_h else None
        grad_w = torch.zeros_like(w) if need_w else None
        total = h.new_zeros(())
        step = n if h.is_cuda else max(1, CE_CHUNK_CELLS // max(len(w), 1))
        for start in range(0, n, step):
            hc, tc = h[start : start + step], targets[start : start + step]
            rows = torch.arange(len(tc), device=h.device)
            logits = hc @ w.T
            target_logits = logits[rows, tc]
            top = logits.amax(dim=1, keepdim=True)
            grad = logits.sub_(top).exp_()  # in place: one exp pass, no second buffer
            norm = grad.sum(dim=1, keepdim=True)
            total += (top.squeeze(1) + norm.squeeze(1).log() - target_logits).sum()
            if grad_h is None and grad_w is None:
                continue
            grad.div_(norm)  # softmax
            grad[rows, tc] -= 1.0
            if grad_h is not None:
                torch.mm(grad, w, out=grad_h[start : start + step])
            if grad_w is not None:
                grad_w.addmm_(grad.T, hc)
        scale = 1.0 / max(n, 1)
        ctx.save_for_backward(*(g.mul_(scale) if g is not None else h.new_empty(0) for g in (grad_h, grad_w)))
        return total * scale

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None, None]:
        grad_h, grad_w = ctx.saved_tensors
        return (
            grad_h * grad_out if ctx.needs_input_grad[0] else None,
            grad_w * grad_out if ctx.needs_input_grad[1] else None,
            None,
        )


def item_cross_entropy(
    hidden: torch.Tensor, token_weight: torch.Tensor, n_items: int, targets: torch.Tensor
) -> torch.Tensor:
    """Mean full-softmax cross-entropy of ``hidden[N, d]`` over the real items, targets as tokens ``[N]``.

    Equal to ``F.cross_entropy(item_logits(hidden, token_weight, n_items), targets - 1)``, computed by
    :class:`_SoftmaxCrossEntropy` (faster, and without a second ``[N, n_items]`` buffer).
    """
    if len(targets) == 0:
        return hidden.sum() * 0.0  # keeps the graph: an empty batch contributes nothing
    return _SoftmaxCrossEntropy.apply(hidden, token_weight[1 : n_items + 1], targets - 1)


def check_option(model: str, key: str, value: object, choices: tuple[object, ...]) -> None:
    """Raise :class:`~recbench.errors.ConfigError` unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise ConfigError(
            f"model.{key}={value!r} is not valid for {model}: choose one of "
            f"{', '.join(map(str, choices))} (configs/model/{model.lower()}.yaml or `model.{key}=...`)."
        )


def check_positive(model: str, **values: float) -> None:
    """Raise :class:`~recbench.errors.ConfigError` for any hyperparameter in ``values`` that is not > 0."""
    for key, value in values.items():
        if not value > 0:
            raise ConfigError(
                f"model.{key}={value!r} must be > 0 for {model} "
                f"(configs/model/{model.lower()}.yaml or `model.{key}=...`)."
            )
