"""Sequential models: contract, learning a deterministic next item, causality, padding, caching."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from recbench.data.interactions import Interactions
from recbench.errors import ConfigError
from recbench.models.base import capabilities_of
from recbench.models.sequential import layers
from recbench.models.sequential.bert4rec import BERT4Rec
from recbench.models.sequential.caser import Caser
from recbench.models.sequential.data import (
    history_sequences,
    length_grouped_batches,
    next_item_batches,
    shuffle_ties,
    tie_times,
    trim_padding,
    windows,
)
from recbench.models.sequential.gru4rec import GRU4Rec
from recbench.models.sequential.layers import (
    MultiHeadSelfAttention,
    attention_bias,
    dropout,
    item_cross_entropy,
    item_logits,
)
from recbench.models.sequential.nextitnet import NextItNet
from recbench.models.sequential.sasrec import SASRec
from recbench.training.trainer import Trainer

SMALL = {
    "sasrec": (SASRec, {"max_len": 12, "hidden_dim": 16, "n_heads": 2, "dropout": 0.0}),
    "gru4rec": (GRU4Rec, {"max_len": 12, "embedding_dim": 16, "hidden_dim": 16, "dropout": 0.0}),
    "nextitnet": (NextItNet, {"max_len": 12, "embedding_dim": 16, "dilations": [1, 2], "dropout": 0.0}),
    "caser": (Caser, {"window": 3, "targets": 1, "embedding_dim": 16, "n_h": 4, "n_v": 2, "dropout": 0.0}),
    "bert4rec": (
        BERT4Rec,
        {
            "max_len": 12,
            "hidden_dim": 16,
            "n_layers": 1,
            "n_heads": 2,
            "dropout": 0.0,
            "mask_prob": 0.5,
            "dupe_factor": 4,
        },
    ),
}
CAUSAL = ["sasrec", "gru4rec", "nextitnet"]


def cycles(
    n_users: int = 32, n_loops: int = 4, loop_len: int = 5, length: int = 12, seed: int = 0
) -> Interactions:
    """Users walk closed loops of items: a user of loop ``g`` repeats ``gL -> gL+1 -> ... -> gL+L-1 -> gL``.

    The next item is deterministic and already in the user's history, so the right answer is never
    excluded by negative sampling; items of other loops are natural negatives. Rows are shuffled.
    """
    rng = np.random.default_rng(seed)
    loop = np.arange(n_users) % n_loops
    start = rng.integers(0, loop_len, n_users)
    start[:n_loops] = loop_len - length % loop_len  # some users end on the loop's last item
    users = np.repeat(np.arange(n_users), length)
    steps = np.tile(np.arange(length), n_users)
    items = loop[users] * loop_len + (start[users] + steps) % loop_len
    ts = users * 1000 + steps * 7
    perm = rng.permutation(len(users))
    return Interactions(users[perm], items[perm], n_users, n_loops * loop_len, timestamps=ts[perm])


def make(name: str, epochs: int = 2, **overrides: object):
    cls, params = SMALL[name]
    batch_size = 32 if name == "caser" else 8  # caser: one example per position, others: per user
    trainer = Trainer(epochs=epochs, batch_size=batch_size, lr=1e-2, device="cpu", progress=False)
    return cls(**{**params, **overrides}, trainer=trainer, seed=0)


def next_items(data: Interactions, loop_len: int = 5) -> np.ndarray:
    last = data.sequences(1)[:, 0] - 1
    return last - last % loop_len + (last + 1) % loop_len


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny tensors: one thread avoids synchronisation overhead on small, shared machines."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def data() -> Interactions:
    return cycles()


_FITTED: dict[str, object] = {}


def trained(name: str, data: Interactions):
    """The model ``name`` trained on ``data`` long enough to learn the cycle (fitted once per run)."""
    if name not in _FITTED:
        # BERT4Rec trains on the masked positions only (half of them here): it needs more epochs
        # than the next-item models, and at 30 it is still settling (float rounding decides).
        _FITTED[name] = make(name, epochs=40 if name == "bert4rec" else 30).fit(data)
    return _FITTED[name]


@pytest.mark.parametrize("name", list(SMALL))
def test_padding_never_changes_a_users_scores(name: str, data: Interactions) -> None:
    """Histories of other lengths in the batch, or none at all, leave a user's scores alone (the shared
    contract checks shapes, seeds, save/load and batch sizes)."""
    model = make(name)
    assert capabilities_of(model).needs_sequences
    model.fit(data)
    # a user without any history (all padding) still gets finite scores
    empty = data.select(data.users != 0)
    assert np.isfinite(model.score(np.array([0]), empty)).all()
    # a user's scores do not depend on the other users of the batch (padding trimmed per batch)
    mixed = data.select((data.users != 1) | (data.timestamps < 1000 + 3 * 7))
    single = np.vstack([model.score(np.array([u]), mixed) for u in (0, 1)])
    np.testing.assert_allclose(model.score(np.array([0, 1]), mixed), single, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", list(SMALL))
def test_learns_the_deterministic_next_item(name: str, data: Interactions) -> None:
    model = trained(name, data)
    top1 = model.score(np.arange(data.n_users), data).argmax(axis=1)
    assert (top1 == next_items(data)).mean() >= 0.9


@pytest.mark.parametrize("name", ["sasrec", "gru4rec", "nextitnet", "caser"])
def test_bce_objective_learns(name: str, data: Interactions) -> None:
    """With negatives drawn outside the user's history, BCE can only learn which loop comes next.

    (Items of the user's own loop are all positives, so their order is not identifiable under BCE.)
    """
    model = make(name, epochs=20, loss_type="bce").fit(data)
    top5 = np.argsort(-model.score(np.arange(data.n_users), data), axis=1)[:, :5]
    assert (top5 == next_items(data)[:, None]).any(axis=1).mean() >= 0.9
    assert model.history_.rows[-1]["loss"] < model.history_.rows[0]["loss"]


def test_caser_predicts_the_next_targets_items(data: Interactions) -> None:
    """With ``targets=2`` both of the next two items share the top two scores."""
    model = make("caser", epochs=30, targets=2).fit(data)
    top2 = np.sort(np.argsort(-model.score(np.arange(data.n_users), data), axis=1)[:, :2], axis=1)
    first = next_items(data)
    second = first - first % 5 + (first + 1) % 5
    want = np.sort(np.stack([first, second], axis=1), axis=1)
    assert (top2 == want).all(axis=1).mean() >= 0.9


def test_scores_follow_the_given_history(data: Interactions) -> None:
    """Dropping each user's last item moves the prediction one step back along the cycle."""
    model = trained("sasrec", data)
    order = data.chronological_order()
    last = np.zeros(len(data), dtype=bool)
    last[order[np.r_[np.flatnonzero(np.diff(data.users[order])), len(order) - 1]]] = True
    shorter = data.select(~last)
    top1 = model.score(np.arange(data.n_users), shorter).argmax(axis=1)
    assert (top1 == next_items(shorter)).mean() >= 0.9
    assert (top1 != next_items(data)).all()


@pytest.mark.parametrize("name", CAUSAL)
def test_causal_representation(name: str, data: Interactions) -> None:
    net = make(name, dropout=0.3).fit(data).network_.eval()
    seqs = torch.as_tensor(data.sequences(12))
    seqs[:, :3] = 0  # some left padding
    changed = seqs.clone()
    changed[:, 8] = (changed[:, 8] % data.n_items) + 1
    with torch.no_grad():
        a, b = net(seqs), net(changed)
    torch.testing.assert_close(a[:, :8], b[:, :8])
    assert not torch.allclose(a[:, 8:], b[:, 8:])


def test_bert4rec_is_bidirectional(data: Interactions) -> None:
    net = make("bert4rec").fit(data).network_.eval()
    seqs = torch.as_tensor(data.sequences(12))
    changed = seqs.clone()
    changed[:, 8] = (changed[:, 8] % data.n_items) + 1
    with torch.no_grad():
        assert not torch.allclose(net(seqs)[:, :8], net(changed)[:, :8])


@pytest.mark.parametrize("name", list(SMALL))
def test_padding_and_special_tokens_are_never_scored(name: str, data: Interactions) -> None:
    """Scores cover exactly the real items; item 0 (token 1) is reachable as the top item."""
    model = trained(name, data)
    scores = model.score(np.arange(data.n_users), data)
    assert scores.shape[1] == data.n_items
    wants_zero = next_items(data) == 0
    assert wants_zero.any() and (scores[wants_zero].argmax(axis=1) == 0).mean() >= 0.8


def test_padding_only_changes_nothing_in_the_last_position(data: Interactions) -> None:
    """Left padding is invisible to attention: more padding in front gives the same last state."""
    net = make("sasrec").fit(data).network_.eval()
    short = torch.as_tensor(data.sequences(6))
    padded = torch.cat([torch.zeros(len(short), 4, dtype=short.dtype), short], dim=1)
    with torch.no_grad():
        a = net(short)[:, -1]
        b = net(padded)[:, -1]
    torch.testing.assert_close(a, b)


def test_trim_padding_drops_only_all_padding_columns() -> None:
    seqs = np.array([[0, 0, 0, 5, 6], [0, 0, 4, 5, 6]])
    np.testing.assert_array_equal(trim_padding(seqs), seqs[:, 2:])
    np.testing.assert_array_equal(trim_padding(np.zeros((2, 3), dtype=np.int64)), np.zeros((2, 1)))


def test_history_sequences_are_cached(data: Interactions) -> None:
    first = history_sequences(data, 7)
    assert history_sequences(data, 7) is first
    np.testing.assert_array_equal(first, data.sequences(7))


def test_windows_crop_contiguous_slices() -> None:
    rng = np.random.default_rng(0)
    seqs = np.array([[0, 0, 0, 0, 1, 2], [1, 2, 3, 4, 5, 6], [7, 8, 9, 10, 11, 12]])
    np.testing.assert_array_equal(windows(seqs, 3, rng, crop=False), seqs[:, 3:])
    seen = set()
    for _ in range(50):
        win = windows(seqs, 3, rng, crop=True)
        np.testing.assert_array_equal(win[0], [0, 1, 2])  # short rows keep their whole sequence
        assert (np.diff(win[1:], axis=1) == 1).all()  # full, contiguous windows of long rows
        seen.add(int(win[1, -1]))
    assert seen == {3, 4, 5, 6}


def test_next_item_batches_skip_the_first_item_as_target(data: Interactions) -> None:
    batch = next(next_item_batches(data, 20, 64, np.random.default_rng(0), crop=False, negatives=True))
    seqs, targets, negs = batch["seqs"].numpy(), batch["targets"].numpy(), batch["negatives"].numpy()
    assert ((seqs == 0) == (targets == 0)).all()
    items = seqs[seqs != 0] - 1
    assert (targets[seqs != 0] - 1 == items - items % 5 + (items + 1) % 5).all()
    assert negs.shape == seqs.shape and negs.min() >= 1 and negs.max() <= data.n_items


def test_dropout_drops_at_its_rate_and_keeps_the_expectation() -> None:
    torch.manual_seed(0)
    x = torch.ones(400_000, requires_grad=True)
    y = dropout(x, 0.2, True)
    kept = y != 0
    assert abs(kept.float().mean().item() - 0.8) < 0.005  # p = 0.2 is 51/256 after rounding
    assert torch.allclose(y[kept], torch.tensor(256 / 205))
    assert abs(y.mean().item() - 1.0) < 0.01
    y.sum().backward()
    assert torch.equal(x.grad, y.detach())  # gradient: the same mask and scale
    assert dropout(x, 0.2, False) is x and dropout(x, 0.0, True) is x
    odd = dropout(torch.ones(3, 5, 7), 0.5, True)  # 105 entries: not a whole number of 8-byte draws
    assert odd.shape == (3, 5, 7) and set(odd.unique().tolist()) == {0.0, 2.0}


def test_training_attention_matches_scaled_dot_product_attention() -> None:
    """The explicit training path (heads folded into the batch, additive bias) equals PyTorch's SDPA."""
    torch.manual_seed(0)
    attn = MultiHeadSelfAttention(8, 2, dropout=0.001)  # rounds to 0/256: nothing dropped
    seqs = torch.tensor([[0, 0, 3, 4, 5], [1, 2, 3, 4, 5]])
    x = torch.randn(2, 5, 8)
    for causal in (True, False):
        bias = attention_bias(seqs, causal=causal)
        assert torch.isinf(bias[0, 0, 2, :2]).all()  # padding keys are hidden
        assert torch.isinf(bias[1, 0, 0, 1:]).all() == causal  # later keys only when not causal
        explicit = attn.train()(x, bias)
        torch.testing.assert_close(explicit, attn.eval()(x, bias))
        for mode in (True, False):  # the last query alone gives the last row of the full output
            last = attn.train(mode)(x, bias, last_only=True)
            torch.testing.assert_close(last, explicit[:, -1:])


@pytest.mark.parametrize("name", ["sasrec", "bert4rec"])
def test_last_only_equals_the_last_column_of_the_full_pass(name: str, data: Interactions) -> None:
    """Scoring computes only the last position in the final layer: the same state as the full pass."""
    net = make(name).fit(data).network_.eval()
    seqs = torch.as_tensor(data.sequences(9))
    with torch.no_grad():
        torch.testing.assert_close(net(seqs, last_only=True), net(seqs)[:, -1:])


@pytest.mark.parametrize("chunk_cells", [layers.CE_CHUNK_CELLS, 20])  # one chunk; chunks of 2 rows
def test_item_cross_entropy_matches_torch_values_and_gradients(
    chunk_cells: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(layers, "CE_CHUNK_CELLS", chunk_cells)
    torch.manual_seed(0)
    n_items = 9
    hidden = torch.randn(7, 4, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(n_items + 2, 4, dtype=torch.float64, requires_grad=True)  # + padding, [MASK]
    targets = torch.tensor([1, 9, 3, 3, 5, 2, 8])  # tokens: item i is token i + 1
    ours = item_cross_entropy(hidden, weight, n_items, targets)
    ours_grads = torch.autograd.grad(3.0 * ours, (hidden, weight))  # a scaled loss scales the gradients
    ref = F.cross_entropy(item_logits(hidden, weight, n_items), targets - 1)
    ref_grads = torch.autograd.grad(3.0 * ref, (hidden, weight))
    torch.testing.assert_close(ours, ref)
    for a, b in zip(ours_grads, ref_grads, strict=True):
        torch.testing.assert_close(a, b)
    assert (ours_grads[1][[0, n_items + 1]] == 0).all()  # padding and [MASK] rows get no gradient
    assert torch.autograd.gradcheck(lambda h, w: item_cross_entropy(h, w, n_items, targets), (hidden, weight))


def test_shuffle_ties_reorders_only_items_sharing_a_timestamp() -> None:
    rng = np.random.default_rng(0)
    seqs = np.array([[0, 5, 6, 7, 8, 9], [1, 2, 3, 4, 5, 6]])
    times = np.array([[-1, 10, 20, 20, 20, 30], [1, 2, 3, 4, 5, 6]])
    orders = set()
    for _ in range(200):
        out = shuffle_ties(seqs, times, rng)
        assert out[0, 0] == 0 and out[0, 1] == 5 and out[0, 5] == 9  # padding and untied items stay
        assert sorted(out[0, 2:5]) == [6, 7, 8]
        np.testing.assert_array_equal(out[1], seqs[1])  # distinct timestamps: order unchanged
        orders.add(tuple(out[0, 2:5]))
    assert len(orders) == 6  # every order of the three tied items turns up
    nanos = 1_700_000_000_000_000_000 + np.array([[0, 1, 1, 2]])  # beyond float64's integer precision
    for _ in range(20):
        out = shuffle_ties(np.array([[1, 2, 3, 4]]), nanos, rng)[0]
        assert out[0] == 1 and out[3] == 4 and sorted(out[1:3]) == [2, 3]


def tied(n_users: int = 6, length: int = 8) -> Interactions:
    """Each user logs items ``0..length-1`` in pairs that share a timestamp: (0, 1), (2, 3), ..."""
    users = np.repeat(np.arange(n_users), length)
    items = np.tile(np.arange(length), n_users)
    return Interactions(users, items, n_users, length, timestamps=items // 2)


def test_next_item_batches_shuffle_ties_within_their_timestamp() -> None:
    data = tied()
    pairs = set()
    for epoch in range(20):
        rng = np.random.default_rng(epoch)
        for batch in next_item_batches(data, 7, 4, rng, crop=False, negatives=False, ties=True):
            seqs, targets = batch["seqs"].numpy(), batch["targets"].numpy()
            rows = np.concatenate([seqs, targets[:, -1:]], axis=1) - 1  # each user's whole sequence
            assert (np.sort(rows, axis=1) == np.arange(8)).all()
            assert (rows // 2 == np.arange(8) // 2).all()  # items only move within their timestamp
            assert (targets[:, :-1] == seqs[:, 1:]).all()  # targets are the shuffled next items
            pairs.update(map(tuple, rows[:, :2]))
    assert pairs == {(0, 1), (1, 0)}
    assert tie_times(data, 8) is not None
    assert tie_times(cycles(), 8) is None  # distinct timestamps: nothing to shuffle, no random draws
    no_times = Interactions(data.users, data.items, data.n_users, data.n_items)
    assert tie_times(no_times, 8) is None
    plain = next(next_item_batches(data, 7, 4, np.random.default_rng(0), crop=False, negatives=False))
    assert (plain["seqs"].numpy() - 1 == np.arange(7)).all()  # off: file order within ties


def test_caser_shuffle_ties_cuts_new_examples_each_epoch() -> None:
    data = tied()
    model = make("caser", shuffle_ties=True, window=2, targets=1)
    model.fit(data)
    firsts = set()
    for epoch in range(10):
        batch = next(model.batches(data, 1000, np.random.default_rng(epoch)))
        seqs, targets = batch["seqs"].numpy() - 1, batch["targets"].numpy() - 1
        assert len(seqs) == 6 * 7  # one example per target after the first item, as without shuffling
        real = (seqs >= 0).all(axis=1)
        assert (seqs[real] // 2 <= targets[real] // 2).all()  # items only move within their timestamp
        crossing = real & (seqs[:, -1] // 2 == 0) & (targets[:, 0] // 2 == 1)
        firsts.update(seqs[crossing, -1].tolist())
    assert firsts == {0, 1}  # the last item before the pair (2, 3) is either member of (0, 1)


@pytest.mark.parametrize("name", CAUSAL)
def test_training_positions_never_see_their_target(name: str) -> None:
    """On real training batches, position ``t`` is trained on item ``t + 1`` and reads nothing after ``t``.

    Uses the model's own ``batches`` (for SASRec: length-grouped, padding-trimmed) and network, so a
    wrong target shift or a leaking attention mask in the training path fails here.
    """
    data = cycles(n_users=24, length=14)
    model = make(name, dropout=0.0).fit(data)
    net = model.network_.eval()
    for batch in model.batches(data, 8, np.random.default_rng(1)):
        seqs, targets = batch["seqs"], batch["targets"]
        real = seqs != 0
        assert (targets[~real] == 0).all() and (targets[real] != 0).all()
        # on the cycles the item after ``i`` is known: each target is the successor of its input
        items = seqs[real] - 1
        np.testing.assert_array_equal(targets[real] - 1, items - items % 5 + (items + 1) % 5)
        if name == "sasrec":  # padding-trimmed: some row of each batch is real in the first column
            assert real[:, 0].any()
        # changing what comes after position t changes nothing at positions <= t
        t = seqs.shape[1] // 2
        changed = seqs.clone()
        later = changed[:, t + 1 :]
        changed[:, t + 1 :] = torch.where(later != 0, later % data.n_items + 1, later)
        with torch.no_grad():
            torch.testing.assert_close(net(seqs)[:, : t + 1], net(changed)[:, : t + 1])


def test_length_grouped_batches_cover_every_row_once_with_little_padding() -> None:
    rng = np.random.default_rng(0)
    lengths = rng.integers(2, 200, 1000)
    batches = list(length_grouped_batches(lengths, 50, rng))
    assert sorted(np.concatenate(batches).tolist()) == list(range(1000))
    assert max(len(b) for b in batches) == 50
    # a batch is as wide as its longest row: far less padding than random batches
    grouped = sum(len(b) * lengths[b].max() for b in batches)
    shuffled = sum(len(b) * lengths[b].max() for b in np.array_split(rng.permutation(1000), 20))
    assert grouped < 0.7 * shuffled
    again = list(length_grouped_batches(lengths, 50, rng))
    assert any(not np.array_equal(np.sort(a), np.sort(b)) for a, b in zip(batches, again, strict=True))


@pytest.mark.parametrize("name", ["sasrec", "gru4rec", "nextitnet", "caser"])
def test_bad_loss_type_is_a_config_error(name: str, data: Interactions) -> None:
    with pytest.raises(ConfigError, match="loss_type"):
        make(name, loss_type="hinge").fit(data)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name", list(SMALL))
def test_trains_and_scores_on_gpu(name: str, data: Interactions) -> None:
    cls, params = SMALL[name]
    trainer = Trainer(epochs=40, batch_size=16, lr=1e-2, device="cuda", progress=False)
    model = cls(**params, trainer=trainer, seed=0).fit(data)
    assert next(model.network_.parameters()).is_cuda
    scores = model.score(np.arange(data.n_users), data)
    assert scores.dtype == np.float32 and np.isfinite(scores).all()
