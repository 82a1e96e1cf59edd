"""Why a model recommends an item to a user: one method per model family, each naming itself.

:func:`explain` takes the model, the user's current history (:class:`ExplainInput`) and an item, and
returns an :class:`Explanation`: the method in words, the score, and the contributions (history
items, similar users, or positions) sorted by size. Methods by family:

* ``itemknn`` / ``ease`` / ``slim`` / ``rp3beta`` / ``puresvd``: the score is a sum over the history items
  of ``h_i w_ij`` (neighbour weight, ``B`` or ``W`` entry, or ``(V V^T)_ij``); the contributions are
  those terms and sum to the score exactly.
* ``als`` / ``bpr`` / ``mf`` / ``pmf``: the user factor folded in from the history is linear in the
  history's targets, so the folded-in score splits exactly into one term per history item: its
  target times its similarity to the item in the model's factor space (Hu, Koren & Volinsky, ICDM
  2008, section 5), plus the item's offset (biases), reported as ``baseline``.
* ``userknn``: the user's neighbours who have the item, as a count and their summed similarity (ids
  are not shown); these terms sum to the score exactly.
* ``sasrec`` / ``bert4rec``: the last layer's attention weights (mean over heads) of the scoring
  position over the history positions: where the model looked, not a decomposition of the score.
* ``gru4rec`` / ``caser`` / ``nextitnet`` (and any other model that scores a history): occlusion,
  the drop in the item's score when one history item is left out, for the most recent
  ``max_occlusion`` items; each drop is a recomputed score, not an estimate.
* ``fm``: the score is the bias plus each field's first-order term plus the pairwise terms
  ``<x_a v_a, x_b v_b>`` of the row's columns, grouped by pair of fields (``user.age x item.genre``):
  an exact split. ``deepfm`` / ``widedeep``: the MLP does not split, so each field (user id, user
  age, item genre, ...) is left out in turn (its slot weights set to 0) and the drop of the score
  recomputed (occlusion over fields).
* ``pop``: the item's training count is the score.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from recbench.data.interactions import Interactions
from recbench.errors import RecbenchError
from recbench.models.adhoc import session_interactions
from recbench.models.base import capabilities_of

#: Model classes (by name) and the method that explains them; other models are refused.
METHODS = {
    "ItemKNN": "item_weights",
    "EASE": "item_weights",
    "SLIM": "item_weights",
    "RP3beta": "item_weights",
    "PureSVD": "item_weights",
    "ImplicitALS": "fold_in",
    "BPR": "fold_in",
    "MF": "fold_in",
    "PMF": "fold_in",
    "UserKNN": "neighbours",
    "SASRec": "attention",
    "BERT4Rec": "attention",
    "GRU4Rec": "occlusion",
    "Caser": "occlusion",
    "NextItNet": "occlusion",
    "Popularity": "popularity",
    "FM": "fields",
    "DeepFM": "fields",
    "WideDeep": "fields",
}


class ExplainError(RecbenchError):
    """The model has no explanation method (or lacks what its method needs)."""


@dataclass(frozen=True)
class ExplainInput:
    """What an explanation may read about the user.

    ``items`` / ``ratings``: the user's current history, oldest first (dense ids); ``user``: their
    dense id, or ``None`` for an ad-hoc session; ``history``: the interactions the model scores known
    users against (dataset plus new events).
    """

    items: np.ndarray
    ratings: np.ndarray | None
    user: int | None
    history: Interactions
    max_occlusion: int = 20


@dataclass
class Explanation:
    """The answer: ``contributions`` are ``{"item": dense id, "weight": w}`` rows (or ``"users"``
    counts for neighbourhood explanations), largest ``|w|`` first.

    ``exact``: the weights plus ``baseline`` sum to ``score``; otherwise they describe where the model
    looked (attention) or what each item changes (occlusion). ``rest`` is the summed weight of the
    contributions left out beyond the ``top`` shown.
    """

    item: int
    score: float
    method: str
    exact: bool
    contributions: list[dict[str, Any]] = field(default_factory=list)
    baseline: float = 0.0
    rest: float = 0.0


def explain(model: Any, ctx: ExplainInput, item: int, top: int = 10) -> Explanation:
    """Explain ``model``'s score of ``item`` for the user of ``ctx`` (see the module docstring)."""
    kind = METHODS.get(type(model).__name__)
    if kind is None or not capabilities_of(model).explain:
        from recbench.config import models_with

        raise ExplainError(
            f"model {type(model).__name__} has no explanation method; models that explain: "
            f"{', '.join(models_with('explain'))}."
        )
    if len(ctx.items) == 0 and kind not in ("popularity", "fields"):
        raise ExplainError("the user has an empty history: there is nothing to explain the item by.")
    out: Explanation = _DISPATCH[kind](model, ctx, int(item))
    out.contributions.sort(key=lambda c: -abs(c["weight"]))
    out.rest = float(sum(c["weight"] for c in out.contributions[top:]))
    del out.contributions[top:]
    return out


def _last_unique(items: np.ndarray, ratings: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
    """Each item once, at its latest position (a history row holds one value per item)."""
    rev = items[::-1]
    _, first = np.unique(rev, return_index=True)
    keep = np.sort(len(items) - 1 - first)
    return items[keep], None if ratings is None else ratings[keep]


def _session(ctx: ExplainInput, n_items: int) -> Interactions:
    ratings = None if ctx.ratings is None else [ctx.ratings]
    return session_interactions([ctx.items], n_items, ratings)


def _rows(items: np.ndarray, weights: np.ndarray) -> list[dict[str, Any]]:
    return [{"item": int(i), "weight": float(w)} for i, w in zip(items, weights)]


def _item_weights(model: Any, ctx: ExplainInput, item: int) -> Explanation:
    items, ratings = _last_unique(ctx.items, ctx.ratings)
    name = type(model).__name__
    values = np.ones(len(items))
    if name == "ItemKNN":
        if not model.implicit and ratings is not None:
            values = ratings.astype(np.float64)
        col = np.asarray(model.weights_[:, [item]].todense()).ravel()[items]
        method = "item-item: each history item's value times its neighbour similarity to the item"
    elif name in ("EASE", "SLIM", "RP3beta"):
        col = _entries(model.weights_, items, item)
        method = f"{name}: each history item's weight W[i, item] in the item-item model"
    else:
        if not model.implicit and ratings is not None:
            values = ratings.astype(np.float64)
        v = model.item_factors_.astype(np.float64)
        col = v[items] @ v[item]
        method = "PureSVD: each history item's value times (V V^T)[i, item], its similarity in factor space"
    weights = values * col
    score = float(model.score_history(_session(ctx, ctx.history.n_items))[0, item])
    return Explanation(item, score, method, True, _rows(items, weights))


def _entries(weights: Any, rows: np.ndarray, col: int) -> np.ndarray:
    """``weights[rows, col]`` of a dense or sparse item-item matrix, as float64."""
    if hasattr(weights, "tocsc"):
        return np.asarray(weights[:, [col]].todense()).ravel()[rows].astype(np.float64)
    return np.asarray(weights[rows, col], dtype=np.float64)


def _fold_in(model: Any, ctx: ExplainInput, item: int) -> Explanation:
    spec = model.fold_in_spec()
    items, ratings = _last_unique(ctx.items, ctx.ratings)
    if spec.implicit or ratings is None:
        values = np.full(len(items), spec.default_value)
    else:
        values = ratings.astype(np.float64)
    weights = spec.contributions(items, values, item)
    score = float(model.score_history(_session(ctx, ctx.history.n_items))[0, item])
    method = (
        f"{type(model).__name__} fold-in: the user factor solved from the history is linear in it, so the "
        "score is the item's offset plus one term per history item (its target times its similarity to "
        "the item in factor space)"
    )
    return Explanation(item, score, method, True, _rows(items, weights), baseline=float(spec.offset[item]))


def _neighbours(model: Any, ctx: ExplainInput, item: int) -> Explanation:
    if ctx.user is None:
        raise ExplainError("UserKNN explains known users only (its neighbours are training users).")
    sims = model.similarity_[ctx.user]
    hist = model._history(ctx.history)
    values = np.asarray(hist[sims.indices][:, [item]].todense()).ravel()
    terms = sims.data.astype(np.float64) * values
    have = values != 0
    score = float(model.score(np.array([ctx.user]), ctx.history)[0, item])
    rows = [{"users": int(have.sum()), "weight": float(terms[have].sum())}] if have.any() else []
    method = (
        f"user-based: {int(have.sum())} of the user's {len(sims.indices)} most similar users have the item; "
        "the score is their summed similarity (times their rating for explicit models)"
    )
    return Explanation(item, score, method, True, rows)


def _attention(model: Any, ctx: ExplainInput, item: int) -> Explanation:
    import torch

    net = model.network_
    bert = type(model).__name__ == "BERT4Rec"
    width = model.max_len - 1 if bert else model.max_len
    seq = session_interactions([ctx.items[-width:]], ctx.history.n_items).sequences(width)
    seq = seq[:, (seq[0] == 0).sum() :]  # drop the left padding (masked out anyway)
    if bert:
        seq = np.concatenate([seq, [[net.mask_token]]], axis=1)
    captured: dict[str, torch.Tensor] = {}
    attn = net.encoder.blocks[-1].attn

    def grab(module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        captured["x"], captured["bias"] = args[0], args[1]

    handle = attn.register_forward_pre_hook(grab, with_kwargs=True)
    was_training = net.training
    net.eval()
    try:
        with torch.no_grad():
            tokens = torch.as_tensor(seq, device=model.device_)
            net(tokens, last_only=True)
            x, bias = captured["x"], captured["bias"]
            b, t, d = x.shape
            h, dh = attn.n_heads, d // attn.n_heads
            q, k, _ = attn.qkv(x).view(b, t, 3, h, dh).permute(2, 0, 3, 1, 4)
            logits = q[:, :, -1:] @ k.transpose(-1, -2) * dh**-0.5 + bias[:, :, -1:]
            weights = logits.softmax(dim=-1).mean(dim=1)[0, 0].float().cpu().numpy()
    finally:
        handle.remove()
        net.train(was_training)
    tokens_np = seq[0]
    real = (tokens_np > 0) & (tokens_np <= model.n_items_)
    score = float(model.score_history(_session(ctx, ctx.history.n_items))[0, item])
    method = (
        f"{type(model).__name__} attention: the last layer's attention weights (mean over heads) of the "
        "scoring position over the history positions (where the model looked; not a split of the score)"
    )
    rows = [
        {"item": int(tok - 1), "weight": float(w), "position": int(p - len(tokens_np) + (1 if bert else 0))}
        for p, (tok, w, ok) in enumerate(zip(tokens_np, weights, real))
        if ok
    ]
    return Explanation(item, score, method, False, rows)


def _occlusion(model: Any, ctx: ExplainInput, item: int) -> Explanation:
    n = len(ctx.items)
    positions = np.arange(max(0, n - ctx.max_occlusion), n)
    sessions = [ctx.items] + [np.delete(ctx.items, p) for p in positions]
    scores = _session_scores(model, ctx, sessions, item)
    full = float(scores[0])
    rows = [
        {"item": int(ctx.items[p]), "weight": full - float(s), "position": int(p - n)}
        for p, s in zip(positions, scores[1:])
    ]
    method = (
        f"{type(model).__name__} occlusion: the drop in the item's score when one history item is left "
        f"out (recomputed, for the {len(positions)} most recent items)"
    )
    return Explanation(item, full, method, False, rows)


def _session_scores(model: Any, ctx: ExplainInput, sessions: list[np.ndarray], item: int) -> np.ndarray:
    """The score of ``item`` for each session (a history variant of the user)."""
    n_items = ctx.history.n_items
    if capabilities_of(model).history:
        return np.asarray(model.score_history(session_interactions(sessions, n_items)))[:, item]
    if ctx.user is None:
        raise ExplainError(f"{type(model).__name__} explains known users only (it has user embeddings).")
    out = np.empty(len(sessions))
    n_users = ctx.history.n_users
    for j, items in enumerate(sessions):  # the user alone, with this variant of their history
        hist = Interactions(
            np.full(len(items), ctx.user),
            items,
            n_users,
            n_items,
            timestamps=np.arange(len(items)),
        )
        out[j] = model.score(np.array([ctx.user]), hist)[0, item]
    return out


def _popularity(model: Any, ctx: ExplainInput, item: int) -> Explanation:
    score = float(model.item_counts_[item])
    return Explanation(item, score, "popularity: the item's number of training interactions", True, [], score)


def _slot_labels(emb: Any, ctx: ExplainInput, side: str, idx: int) -> tuple[Any, Any, list[str]]:
    """Columns, weights and ``side.field`` label of each slot of one entity of a feature model."""
    table = getattr(ctx.history, f"{side}_features")
    names = (["id"] if emb.has_id[side] else []) + (list(table.fields) if table is not None else [])
    field = getattr(emb, f"{side}_pool").argmax(1).cpu().numpy()
    cols = getattr(emb, f"{side}_cols")[idx]
    return cols, getattr(emb, f"{side}_weights")[idx], [f"{side}.{names[f]}" for f in field]


def _pair_logit(net: Any, user: int, item: int) -> float:
    import torch

    dev = next(net.parameters()).device
    u = torch.tensor([user], device=dev)
    return float(net(u, torch.tensor([[item]], device=dev))[0, 0])


def _fields(model: Any, ctx: ExplainInput, item: int) -> Explanation:
    import copy

    import torch

    if ctx.user is None:
        raise ExplainError(f"{type(model).__name__} explains known users only (it scores a user's features).")
    net, name = model.network_, type(model).__name__
    emb = net.emb
    was_training = net.training
    net.eval()
    try:
        with torch.no_grad():
            parts = [_slot_labels(emb, ctx, side, idx) for side, idx in (("user", ctx.user), ("item", item))]
            score = _pair_logit(net, ctx.user, item)
            if name == "FM":
                cols = torch.cat([p[0] for p in parts])
                w = torch.cat([p[1] for p in parts])
                labels = parts[0][2] + parts[1][2]
                e = emb.embed(cols) * w.unsqueeze(-1)
                lin = (emb.linear(cols).squeeze(-1) * w).double().cpu().numpy()
                gram = (e @ e.T).double().cpu().numpy()
                terms: dict[str, float] = {}
                for a, la in enumerate(labels):
                    terms[la] = terms.get(la, 0.0) + lin[a]
                    for b in range(a + 1, len(labels)):
                        key = la if la == labels[b] else f"{la} x {labels[b]}"
                        terms[key] = terms.get(key, 0.0) + gram[a, b]
                rows = [{"fields": k, "weight": float(v)} for k, v in terms.items() if v != 0.0]
                method = (
                    "FM: the bias plus each field's first-order term plus the pairwise terms "
                    "<x_a v_a, x_b v_b>, "
                    "grouped by field pair (an exact split of the score)"
                )
                return Explanation(item, score, method, True, rows, baseline=float(net.bias))
            rows = []
            for side, idx, (_, weights, labels) in zip(("user", "item"), (ctx.user, item), parts):
                for label in dict.fromkeys(labels):
                    keep = torch.tensor([lab != label for lab in labels], device=weights.device)
                    table = getattr(emb, f"{side}_weights").clone()
                    table[idx] = weights * keep
                    occluded = copy.copy(emb)  # shares every parameter; only this buffer differs
                    occluded._buffers = {**emb._buffers, f"{side}_weights": table}
                    variant = copy.copy(net)
                    variant._modules = {**net._modules, "emb": occluded}
                    rows.append({"fields": label, "weight": score - _pair_logit(variant, ctx.user, item)})
    finally:
        net.train(was_training)
    method = (
        f"{name} field occlusion: the drop in the score when one field (its slot weights) is left out, "
        "recomputed per field"
    )
    return Explanation(item, score, method, False, rows)


_DISPATCH = {
    "item_weights": _item_weights,
    "fold_in": _fold_in,
    "neighbours": _neighbours,
    "attention": _attention,
    "occlusion": _occlusion,
    "popularity": _popularity,
    "fields": _fields,
}
