"""Matrix factorisation in torch: BPR-MF, biased MF ("FunkSVD") and PMF, on one shared block.

All three score a (user, item) pair with :class:`DotProduct`, ``mu + b_u + b_i + p_u . q_i`` with
the biases and the global mean switched on or off, and differ only in their objective:

* :class:`BPR` ranks a positive above sampled negatives (implicit feedback);
* :class:`MF` fits ratings by squared error with per-rating L2, as in the Netflix-prize SGD recipe;
* :class:`PMF` is the MAP estimate of a Gaussian model with Gaussian priors on the factors.

Each epoch is a fresh permutation of the training interactions cut into batches with numpy.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from recbench.data.interactions import Interactions
from recbench.errors import DataError
from recbench.models import kernels
from recbench.models.adhoc import FoldIn, score_by_fold_in
from recbench.models.base import Capabilities, TorchRecommender
from recbench.models.bpr_step import FusedBPRStep
from recbench.models.per_example import RatingExamples, rating_example_batch
from recbench.models.similarity import cosine_similar
from recbench.training.losses import bpr_loss
from recbench.training.samplers import PositiveSet, uniform_negatives
from recbench.training.sparse_rows import gather_rows, row_squares, rows_gradient
from recbench.training.trainer import Trainer

#: Elements of the gathered ``[rows, k, d]`` block processed at once: about 1 MiB, so a chunk's
#: intermediates stay in the CPU cache however large the batch (large batches then cost no more per
#: example than small ones, and the optimiser steps less often).
_CHUNK = 1 << 18


class _GatherDot(torch.autograd.Function):
    """``out[b, k] = P[users[b]] . Q[items[b, k]] (+ bias[items[b, k]])`` with a fused backward.

    The backward writes dense table gradients directly. On CPU both passes are the compiled loops
    of :mod:`recbench.models.kernels` (one read of each table row per pair, several times faster
    than the torch route). Elsewhere (CUDA) the pairs go in cache-sized chunks through ``bmm``, and
    the backward gathers each chunk's rows again and scatters the gradients, so nothing of size
    ``[B, k, d]`` is kept between the passes. Autograd on ``P[users]`` and ``Q[items]`` would
    allocate and walk those tensors several times.

    With ``sparse`` the table gradients are sparse COO tensors holding only the rows the batch
    touched (computed on gathered copies of those rows), so the backward costs ``O(batch)`` whatever
    the table sizes; a sparse-aware optimiser (:class:`~recbench.training.row_adam.RowAdam`)
    then updates only those rows.
    """

    @staticmethod
    def forward(
        ctx: Any,
        P: torch.Tensor,
        Q: torch.Tensor,
        bias: torch.Tensor | None,
        users: torch.Tensor,
        items: torch.Tensor,
        sparse: bool = False,
    ) -> torch.Tensor:
        ctx.has_bias, ctx.sparse = bias is not None, sparse
        if bias is None:
            bias = Q.new_empty(0)
        ctx.save_for_backward(P, Q, bias, users, items)
        out = P.new_empty(items.shape)
        ctx.compiled = _compiled(P, Q, bias, users, items)
        if ctx.compiled:
            kernels.gather_dot(*_arrays(P, Q, bias, users, items), out.numpy())
            return out
        for (p, q, _, _), o in zip(_chunks(P, Q, users, items), out.split(_rows(P, items))):
            torch.bmm(q, p.unsqueeze(-1), out=o.unsqueeze(-1))
        if ctx.has_bias:
            out += bias[items]
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        P, Q, bias, users, items = ctx.saved_tensors
        needs = ctx.needs_input_grad[:2]
        if not ctx.sparse:
            grads = _table_grads(ctx.compiled, ctx.has_bias, needs, P, Q, bias, users, items, grad)
            return (*grads, None, None, None)
        rows_u, local_u = torch.unique(users, return_inverse=True)
        rows_i, local_i = torch.unique(items, return_inverse=True)
        local_bias = bias.index_select(0, rows_i) if ctx.has_bias else bias
        grad_p, grad_q, grad_b = _table_grads(
            ctx.compiled,
            ctx.has_bias,
            needs,
            P.index_select(0, rows_u),
            Q.index_select(0, rows_i),
            local_bias,
            local_u,
            local_i,
            grad,
        )
        return (
            rows_gradient(grad_p, rows_u, P.shape),
            rows_gradient(grad_q, rows_i, Q.shape),
            rows_gradient(grad_b, rows_i, bias.shape),
            None,
            None,
            None,
        )


def _table_grads(
    compiled: bool,
    has_bias: bool,
    needs: tuple[bool, bool],
    P: torch.Tensor,
    Q: torch.Tensor,
    bias: torch.Tensor,
    users: torch.Tensor,
    items: torch.Tensor,
    grad: torch.Tensor,
) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
    """Dense gradients of ``P``, ``Q`` and ``bias`` for :class:`_GatherDot` given ``grad = dL/dout``."""
    grad_b = torch.zeros_like(bias) if has_bias else None
    if compiled:
        grad_p, grad_q = torch.zeros_like(P), torch.zeros_like(Q)
        g = grad.to(P.dtype).contiguous().numpy()
        outputs = (grad_p, grad_q, grad_b if grad_b is not None else bias)
        kernels.gather_dot_backward(*_arrays(P, Q, bias, users, items), g, *(t.numpy() for t in outputs))
        return grad_p, grad_q, grad_b
    grad_p = torch.zeros_like(P) if needs[0] else None
    grad_q = torch.zeros_like(Q) if needs[1] else None
    for (p, q, u, i), g in zip(_chunks(P, Q, users, items), grad.contiguous().split(_rows(P, items))):
        if grad_p is not None:
            gp = q[:, 0] * g[:, :1]
            for k in range(1, q.shape[1]):
                gp.addcmul_(q[:, k], g[:, k : k + 1])
            _scatter_add(grad_p, u, gp)
        if grad_q is not None:
            _scatter_add(grad_q, i.reshape(-1), (g.unsqueeze(-1) * p.unsqueeze(1)).view(-1, p.shape[1]))
    if grad_b is not None:
        _scatter_add(grad_b, items.reshape(-1), grad.reshape(-1).to(grad_b.dtype))
    return grad_p, grad_q, grad_b


def _compiled(
    P: torch.Tensor, Q: torch.Tensor, bias: torch.Tensor, users: torch.Tensor, items: torch.Tensor
) -> bool:
    """Whether the numba kernels of :mod:`recbench.models.kernels` handle these inputs (CPU floats).

    They index without bounds checks, so the ids are checked here (one cheap pass) and an
    out-of-range id raises as ``index_select`` would.
    """
    tables = (P, Q, bias)
    if any(t.is_cuda or t.dtype != P.dtype for t in tables) or P.dtype not in (torch.float32, torch.float64):
        return False
    if bias.numel() not in (0, Q.shape[0]):
        return False
    for ids, table, name in ((users, P, "user"), (items, Q, "item")):
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= table.shape[0]):
            raise IndexError(f"{name} id out of range [0, {table.shape[0]}) in a factorisation batch")
    return True


def _arrays(
    P: torch.Tensor, Q: torch.Tensor, bias: torch.Tensor, users: torch.Tensor, items: torch.Tensor
) -> tuple[np.ndarray, ...]:
    """Contiguous numpy views (no copies where already contiguous) of the kernel inputs."""
    return tuple(t.detach().contiguous().numpy() for t in (P, Q, bias, users.long(), items.long()))


def _scatter_add(table: torch.Tensor, idx: torch.Tensor, rows: torch.Tensor) -> None:
    """``table[idx[j]] += rows[j]`` in place (repeated indices accumulate)."""
    if torch.get_num_threads() == 1 or table.is_cuda:
        table.index_add_(0, idx, rows)  # the fastest kernel, but with several CPU threads it can
    else:  # stall for a long time per call on a busy machine; the accumulating index_put_ runs serially
        table.index_put_((idx,), rows, accumulate=True)


def _rows(P: torch.Tensor, items: torch.Tensor) -> int:
    """Batch rows per chunk: about :data:`_CHUNK` gathered elements."""
    return max(1, _CHUNK // (items.shape[1] * P.shape[1]))


def _chunks(
    P: torch.Tensor, Q: torch.Tensor, users: torch.Tensor, items: torch.Tensor
) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]]:
    """``(P[u], Q[i], u, i)`` for cache-sized chunks ``u``, ``i`` of ``users`` and ``items``."""
    size = _rows(P, items)
    for u, i in zip(users.split(size), items.split(size)):
        yield P.index_select(0, u), Q.index_select(0, i.reshape(-1)).view(*i.shape, -1), u, i


def similar_factors(model: TorchRecommender, items: np.ndarray) -> np.ndarray:
    """``float32[len(items), n_items]``: cosine similarity of the item factors ``q_i`` of a
    :class:`DotProduct` network (``similar_items = similar_factors`` in a class body)."""
    return cosine_similar(model.network_.item.detach().cpu().numpy(), items)


class DotProduct(nn.Module):
    """``mu + b_u + b_i + p_u . q_i``: user/item factors with optional biases and a global offset.

    The shared block of :class:`BPR`, :class:`MF` and :class:`PMF`. Tables are plain parameters:
    ``user`` ``[n_users, factors]``, ``item`` ``[n_items, factors]``, ``user_bias`` / ``item_bias``
    (``[n]``, zero-initialised, or ``None``); ``mu`` is a constant buffer.

    Parameters
    ----------
    n_users, n_items: sizes of the id spaces.
    factors: latent dimension of ``p_u`` and ``q_i``.
    user_bias, item_bias: whether to learn ``b_u`` / ``b_i``.
    global_mean: the constant ``mu``.
    init_std: standard deviation of the normal initialisation of the factors.
    sparse: give the tables sparse gradients holding only the rows a batch touched
        (``sparse_gradients``; the Trainer then steps with a sparse-aware optimiser, see
        :mod:`recbench.training.sparse_rows`).
    """

    def __init__(
        self,
        n_users: int,
        n_items: int,
        factors: int,
        *,
        user_bias: bool = False,
        item_bias: bool = False,
        global_mean: float = 0.0,
        init_std: float = 0.1,
        sparse: bool = False,
    ) -> None:
        super().__init__()
        #: whether the gradients are sparse (read by the Trainer to choose the optimiser)
        self.sparse_gradients = sparse
        self.user = nn.Parameter(torch.randn(n_users, factors) * init_std)
        self.item = nn.Parameter(torch.randn(n_items, factors) * init_std)
        self.user_bias = nn.Parameter(torch.zeros(n_users)) if user_bias else None
        self.item_bias = nn.Parameter(torch.zeros(n_items)) if item_bias else None
        self.register_buffer("global_mean", torch.tensor(float(global_mean)))

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Scores of the pairs ``(users[b], items[b, ...])``; ``items`` is ``[B]`` or ``[B, k]``."""
        wide = items if items.dim() == 2 else items.unsqueeze(1)
        scores = _GatherDot.apply(self.user, self.item, self.item_bias, users, wide, self.sparse_gradients)
        scores = scores + self.global_mean
        if self.user_bias is not None:
            scores = scores + gather_rows(self.user_bias, users, self.sparse_gradients).unsqueeze(1)
        return scores if items.dim() == 2 else scores.squeeze(1)

    def all_items(self, users: torch.Tensor) -> torch.Tensor:
        """``[len(users), n_items]`` scores of every item for ``users``: one matrix product plus the offsets.

        On the CPU outside autograd (scoring), the product runs in numpy's BLAS and the offsets are
        added in place, in the same order: the same sums, without a new block per term (numpy's BLAS
        is also the faster one for this tall, thin product on the project's machine; README, "Large
        data").
        """
        rows = self.user.index_select(0, users)
        if rows.device.type != "cpu" or torch.is_grad_enabled():
            out = rows @ self.item.T + self.global_mean
            if self.item_bias is not None:
                out = out + self.item_bias
            if self.user_bias is not None:
                out = out + self.user_bias.index_select(0, users).unsqueeze(1)
            return out
        scores = rows.numpy() @ self.item.detach().numpy().T
        mean = float(self.global_mean)
        if mean != 0.0:
            scores += np.float32(mean)
        if self.item_bias is not None:
            scores += self.item_bias.detach().numpy()
        if self.user_bias is not None:
            scores += self.user_bias.detach().numpy()[users.numpy()][:, None]
        return torch.from_numpy(scores)

    def l2_rows(
        self, users: torch.Tensor, user_weight: torch.Tensor, items: torch.Tensor, item_weight: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Weighted squared norms of the rows a batch gathered, ``(factors, biases)``:

        ``sum_j user_weight[j] ||p_{users[j]}||^2 + sum_j item_weight[j] ||q_{items[j]}||^2`` (and the
        same for the biases): the cost follows the batch, not the table sizes, and with sparse
        gradients only the touched rows receive a gradient.
        """
        sparse = self.sparse_gradients
        factors = row_squares(self.user, users, user_weight, sparse) + row_squares(
            self.item, items, item_weight, sparse
        )
        biases = factors.new_zeros(())
        if self.user_bias is not None:
            biases = biases + row_squares(self.user_bias, users, user_weight, sparse)
        if self.item_bias is not None:
            biases = biases + row_squares(self.item_bias, items, item_weight, sparse)
        return factors, biases


def _epoch_slices(n: int, batch_size: int, rng: np.random.Generator) -> Iterator[np.ndarray]:
    """Indices of one epoch: a shuffled permutation of ``range(n)`` cut into ``batch_size`` chunks."""
    order = rng.permutation(n)
    for start in range(0, n, batch_size):
        yield order[start : start + batch_size]


class _RatingFactorization(TorchRecommender):
    """Shared plumbing of the explicit-feedback models :class:`MF` and :class:`PMF`."""

    capabilities = Capabilities(
        ratings=True,
        history=True,
        fold_in=True,
        explain=True,
        similar=True,
        needs_ratings=True,
        private=True,
    )
    #: whether the network learns user and item biases
    biases: ClassVar[bool] = False
    factors: int
    init_std: float
    sparse_updates: bool

    def fit(self, train: Interactions, val: Interactions | None = None) -> _RatingFactorization:
        """Train on ``train.ratings`` (a :class:`~recbench.errors.DataError` if there are none)."""
        if train.ratings is None or len(train) == 0:
            raise DataError(
                f"{type(self).__name__} learns from explicit ratings, but the training data has "
                f"{'no ratings' if train.ratings is None else 'no rows'}. Use a dataset with a rating "
                "column (e.g. dataset=ml-100k) or an implicit model such as model=bpr."
            )
        return super().fit(train, val)  # type: ignore[return-value]

    def build_network(self, train: Interactions) -> nn.Module:
        """A :class:`DotProduct` offset by the mean training rating; the rating range is a buffer."""
        ratings = train.ratings if train.ratings is not None else np.zeros(1, np.float32)
        net = DotProduct(
            train.n_users,
            train.n_items,
            self.factors,
            user_bias=self.biases,
            item_bias=self.biases,
            global_mean=float(ratings.mean()),
            init_std=self.init_std,
            sparse=bool(self.sparse_updates),
        )
        net.register_buffer("rating_range", torch.tensor([ratings.min(), ratings.max()], dtype=torch.float32))
        return net

    def batches(
        self, train: Interactions, batch_size: int, rng: np.random.Generator
    ) -> Iterator[dict[str, torch.Tensor]]:
        """Shuffled ``(user, item, rating)`` batches over all training ratings."""
        assert train.ratings is not None
        for idx in _epoch_slices(len(train), batch_size, rng):
            yield {
                "users": torch.from_numpy(train.users[idx]),
                "items": torch.from_numpy(train.items[idx]),
                "ratings": torch.from_numpy(train.ratings[idx]),
            }

    def example_network(self) -> nn.Module:
        """Per-rating losses through ``nn.Embedding`` views of the tables (:class:`RatingExamples`), for
        private training. The offset ``mu`` becomes the middle of the rating scale (the scale is public,
        the mean rating is not)."""
        net = self.network_
        low, high = (float(x) for x in net.rating_range)
        net.global_mean.fill_((low + high) / 2)
        return RatingExamples(net, *self._example_reg())

    def _example_reg(self) -> tuple[float, float, float]:
        """``(user_reg, item_reg, bias_reg)`` per rating."""
        return float(self.reg), float(self.reg), float(self.bias_reg)  # type: ignore[attr-defined]

    def example_batch(
        self, train: Interactions, rows: np.ndarray, rng: np.random.Generator
    ) -> dict[str, torch.Tensor]:
        """The ``(user, item, rating)`` triples of ``rows``."""
        return rating_example_batch(train, rows)

    def score_users(self, net: nn.Module, users: torch.Tensor, history: Interactions) -> torch.Tensor:
        """Predicted ratings of every item (unclipped), usable for ranking."""
        return net.all_items(users)

    def predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """``float32[n]`` predicted ratings of the pairs, clipped to the training rating range."""
        net = self.network_
        with torch.no_grad():
            u = torch.as_tensor(np.asarray(users, dtype=np.int64), device=self.device_)
            i = torch.as_tensor(np.asarray(items, dtype=np.int64), device=self.device_)
            low, high = net.rating_range
            return net(u, i).clamp(low, high).float().cpu().numpy()

    def fold_in_spec(self) -> FoldIn:
        """Least squares on the session's ratings (the top of the rating range when none are given)
        around ``mu + b_i``, with this model's L2 per rating; the user bias is left at 0 (it cannot
        change a ranking)."""
        net = self.network_
        q = net.item.detach().cpu().numpy()
        offset = np.full(len(q), float(net.global_mean), dtype=np.float32)
        if net.item_bias is not None:
            offset += net.item_bias.detach().cpu().numpy()
        per_rating = self._fold_in_reg()
        return FoldIn(
            factors=q,
            offset=offset,
            reg=per_rating[0],
            reg_per_item=per_rating[1],
            target=lambda r, items: r - offset[items],
            implicit=False,
            default_value=float(net.rating_range[1]),
        )

    def _fold_in_reg(self) -> tuple[float, float]:
        """``(reg, reg_per_item)`` of the user factor in this model's objective."""
        return 0.0, float(self.reg)  # type: ignore[attr-defined]

    #: A session's scores from its folded-in user factor (see :mod:`recbench.models.adhoc`).
    score_history = score_by_fold_in
    similar_items = similar_factors


class MF(_RatingFactorization):
    r"""Biased matrix factorisation ("FunkSVD", "biased SVD") for rating prediction.

    Koren, Bell & Volinsky, "Matrix Factorization Techniques for Recommender Systems",
    IEEE Computer 42(8), 2009. The predicted rating is
    :math:`\hat r_{ui} = \mu + b_u + b_i + p_u^\top q_i` and each batch minimises

    .. math:: \frac{1}{|B|}\sum_{(u,i)\in B} (r_{ui} - \hat r_{ui})^2
              + \lambda (\|p_u\|^2 + \|q_i\|^2) + \lambda_b (b_u^2 + b_i^2),

    i.e. L2 only on the parameters the batch touches, once per rating (as in the SGD recipe).
    :meth:`score` returns the (unclipped) predicted ratings, so the model also ranks.

    Parameters
    ----------
    factors: latent dimension.
    reg: :math:`\lambda`, L2 weight on the factors of each rating's user and item.
    bias_reg: :math:`\lambda_b`, L2 weight on the biases.
    init_std: standard deviation of the factor initialisation.
    sparse_updates: sparse gradients over the rows a batch touched and the lazy row-wise Adam, so a
        step costs ``O(batch)`` (see :class:`BPR`); ``False``: dense gradients and steps.
    trainer: the shared :class:`~recbench.training.Trainer` (``None``: tuned defaults).
    seed: seed of initialisation and batch order.
    """

    biases: ClassVar[bool] = True
    training_defaults: ClassVar[dict[str, Any]] = dict(epochs=20, batch_size=1024, lr=3e-3, weight_decay=0.0)

    def __init__(
        self,
        *,
        factors: int = 64,
        reg: float = 0.1,
        bias_reg: float = 0.005,
        init_std: float = 0.05,
        sparse_updates: bool = True,
        trainer: Trainer | None = None,
        seed: int = 0,
    ) -> None:
        self.factors = factors
        self.reg = reg
        self.bias_reg = bias_reg
        self.init_std = init_std
        self.sparse_updates = sparse_updates
        self.trainer = trainer
        self.seed = seed

    def loss(self, net: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Squared error plus the batch L2 terms (see the class docstring)."""
        users, items = batch["users"], batch["items"]
        ones = torch.ones(len(users), device=users.device)
        factors, biases = net.l2_rows(users, ones, items, ones)
        penalty = (self.reg * factors + self.bias_reg * biases) / len(users)
        return F.mse_loss(net(users, items), batch["ratings"]) + penalty


class PMF(_RatingFactorization):
    r"""Probabilistic matrix factorisation: the MAP estimate of a linear-Gaussian model.

    Salakhutdinov & Mnih, "Probabilistic Matrix Factorization", NIPS 2007 (proceedings 2008).
    With :math:`I_{ij} = 1` when user :math:`i` rated item :math:`j`,

    .. math:: p(R \mid U, V, \sigma^2) = \prod_{ij} \mathcal N(R_{ij} \mid U_i^\top V_j, \sigma^2)^{I_{ij}},
              \quad p(U \mid \sigma_U^2) = \prod_i \mathcal N(U_i \mid 0, \sigma_U^2 I),

    and likewise :math:`p(V \mid \sigma_V^2)`. Maximising the log-posterior minimises

    .. math:: E = \tfrac12 \sum_{ij} I_{ij} (R_{ij} - U_i^\top V_j)^2
              + \tfrac{\lambda_U}{2} \sum_i \|U_i\|^2 + \tfrac{\lambda_V}{2} \sum_j \|V_j\|^2,
              \qquad \lambda_U = \sigma^2/\sigma_U^2,\; \lambda_V = \sigma^2/\sigma_V^2,

    so the prior variances enter only through the L2 weights ``lambda_u`` and ``lambda_v``; each
    batch minimises its share :math:`2E_B/|B|`.

    ``prior_per_rating`` says how the priors are shared out. ``False``: exactly :math:`E`, a rating
    of user :math:`i` (who has :math:`n_i` ratings) carries :math:`\lambda_U\|U_i\|^2/n_i`, so every
    prior counts once per epoch. ``True`` (default): the penalty comes with every rating, as in the
    authors' reference code and SGD practice, i.e. the MAP estimate with
    :math:`\sigma_{U,i}^2 = \sigma_U^2/n_i`; it generalises better on MovieLens (a lower 5-fold
    RMSE on ml-100k than the once-per-epoch form reaches at its best ``lambda``).

    There are no biases. The model is fit to ratings centred on the training mean :math:`\mu` (as
    in the reference code); :meth:`predict` returns :math:`\mu + U_i^\top V_j` on the raw scale,
    clipped to the training range, and :meth:`score` the same values unclipped.

    Parameters
    ----------
    factors: latent dimension.
    lambda_u, lambda_v: :math:`\sigma^2/\sigma_U^2` and :math:`\sigma^2/\sigma_V^2`.
    prior_per_rating: apply the prior terms once per rating (see above) instead of once per row.
    init_std: standard deviation of the factor initialisation.
    sparse_updates: as in :class:`MF`.
    trainer: the shared :class:`~recbench.training.Trainer` (``None``: tuned defaults).
    seed: seed of initialisation and batch order.
    """

    training_defaults: ClassVar[dict[str, Any]] = dict(epochs=15, batch_size=1024, lr=3e-3, weight_decay=0.0)

    def __init__(
        self,
        *,
        factors: int = 64,
        lambda_u: float = 0.1,
        lambda_v: float = 0.1,
        prior_per_rating: bool = True,
        init_std: float = 0.01,
        sparse_updates: bool = True,
        trainer: Trainer | None = None,
        seed: int = 0,
    ) -> None:
        self.factors = factors
        self.lambda_u = lambda_u
        self.lambda_v = lambda_v
        self.prior_per_rating = prior_per_rating
        self.init_std = init_std
        self.sparse_updates = sparse_updates
        self.trainer = trainer
        self.seed = seed

    def batches(
        self, train: Interactions, batch_size: int, rng: np.random.Generator
    ) -> Iterator[dict[str, torch.Tensor]]:
        """Rating batches; with a once-per-row prior also each row's ``1/n_i`` and ``1/m_j``."""
        if self.prior_per_rating:
            yield from super().batches(train, batch_size, rng)
            return
        inv_u = (1.0 / np.maximum(train.user_counts(), 1)).astype(np.float32)
        inv_i = (1.0 / np.maximum(train.item_counts(), 1)).astype(np.float32)
        for batch in super().batches(train, batch_size, rng):
            batch["user_w"] = torch.from_numpy(inv_u[batch["users"].numpy()])
            batch["item_w"] = torch.from_numpy(inv_i[batch["items"].numpy()])
            yield batch

    def loss(self, net: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """``2 E_B / |B|``: squared error plus the batch's share of the Gaussian priors."""
        users, items = batch["users"], batch["items"]
        ones = torch.ones(len(users), device=users.device)
        user_w, item_w = batch.get("user_w", ones), batch.get("item_w", ones)
        prior, _ = net.l2_rows(users, self.lambda_u * user_w, items, self.lambda_v * item_w)
        return F.mse_loss(net(users, items), batch["ratings"]) + prior / len(users)

    @classmethod
    def capabilities_for(cls, params: Mapping[str, Any]) -> Capabilities:
        """Private training needs ``prior_per_rating`` (the once-per-row prior reads user counts)."""
        return cls.capabilities.replace(private=bool(params.get("prior_per_rating", True)))

    def _example_reg(self) -> tuple[float, float, float]:
        """The priors ``(lambda_u, lambda_v)`` per rating; PMF has no biases."""
        return float(self.lambda_u), float(self.lambda_v), 0.0

    def _fold_in_reg(self) -> tuple[float, float]:
        """The user prior ``lambda_u``, once per rating or once per user (``prior_per_rating``)."""
        lam = float(self.lambda_u)
        return (0.0, lam) if self.prior_per_rating else (lam, 0.0)


class BPR(TorchRecommender):
    r"""BPR-MF: matrix factorisation trained with Bayesian personalised ranking.

    Rendle, Freudenthaler, Gantner & Schmidt-Thieme, "BPR: Bayesian Personalized Ranking from
    Implicit Feedback", UAI 2009. Every training interaction ``(u, i)`` is a positive; each epoch
    pairs it with ``num_negatives`` items ``j`` drawn uniformly among those ``u`` has not
    interacted with, and minimises

    .. math:: -\ln\sigma(\hat x_{ui} - \hat x_{uj})
              + \lambda (\|p_u\|^2 + \|q_i\|^2 + b_i^2 + \|q_j\|^2 + b_j^2)

    averaged over the batch's triples (the L2 of several negatives is averaged), with
    :math:`\hat x_{ui} = p_u^\top q_i + b_i`. The item bias (on by default) lets the model express
    popularity apart from taste. ``score`` is :math:`P Q^\top + b`. The training defaults (up to 200
    epochs of 8,192 positives at lr 5e-3) were tuned on ml-100k, where validation NDCG still rises
    slowly late in training: with early stopping, validate every 10 epochs rather than every one.

    Parameters
    ----------
    factors: latent dimension.
    reg: :math:`\lambda`, L2 weight on the embeddings (and item biases) a batch uses.
    num_negatives: sampled negatives per positive in each epoch.
    item_bias: whether to learn an item bias :math:`b_i`.
    init_std: standard deviation of the factor initialisation.
    sparse_updates: train with sparse gradients (only the rows a batch touched) and a sparse-aware
        optimiser (``torch.optim.Adam`` in the trainer config becomes the lazy
        :class:`~recbench.training.row_adam.RowAdam`, which keeps Adam's moments per row and
        updates a row when a batch uses it), so a step costs ``O(batch)``
        whatever the number of users and items. ``False``: dense gradients and a dense step over
        all parameters every batch (the cost grows with the table sizes).
    trainer: the shared :class:`~recbench.training.Trainer` (``None``: tuned defaults).
    seed: seed of initialisation, batch order and negative sampling.
    """

    capabilities = Capabilities(history=True, fold_in=True, explain=True, similar=True)
    training_defaults: ClassVar[dict[str, Any]] = dict(
        epochs=200, batch_size=8192, lr=5e-3, weight_decay=0.0, validate_every=10
    )

    def __init__(
        self,
        *,
        factors: int = 64,
        reg: float = 0.01,
        num_negatives: int = 1,
        item_bias: bool = True,
        init_std: float = 0.1,
        sparse_updates: bool = True,
        trainer: Trainer | None = None,
        seed: int = 0,
    ) -> None:
        self.factors = factors
        self.reg = reg
        self.num_negatives = num_negatives
        self.item_bias = item_bias
        self.init_std = init_std
        self.sparse_updates = sparse_updates
        self.trainer = trainer
        self.seed = seed

    def fit(self, train: Interactions, val: Interactions | None = None) -> BPR:
        """Index the training positives (for negative sampling), then train."""
        self.positives_ = PositiveSet(train.binary_csr)
        try:
            super().fit(train, val)
        finally:
            del self.positives_  # sampling state only; not needed to score
        return self

    def build_network(self, train: Interactions) -> nn.Module:
        """A :class:`DotProduct` without user bias (it cannot change a user's ranking)."""
        return DotProduct(
            train.n_users,
            train.n_items,
            self.factors,
            item_bias=self.item_bias,
            init_std=self.init_std,
            sparse=bool(self.sparse_updates),
        )

    def batches(
        self, train: Interactions, batch_size: int, rng: np.random.Generator
    ) -> Iterator[dict[str, torch.Tensor]]:
        """Shuffled positives, each followed by its sampled negatives: ``items`` is ``[B, 1 + n_neg]``."""
        for idx in _epoch_slices(len(train), batch_size, rng):
            users = train.users[idx]
            neg = uniform_negatives(self.positives_, users, self.num_negatives, rng)
            items = np.concatenate([train.items[idx, None], neg], axis=1)
            yield {"users": torch.from_numpy(users), "items": torch.from_numpy(items)}

    def loss(self, net: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """BPR loss plus the batch L2 terms (see the class docstring)."""
        users, items = batch["users"], batch["items"]
        item_w = torch.full(items.shape, 1.0 / max(items.shape[1] - 1, 1), device=items.device)
        item_w[:, 0] = 1.0
        factors, biases = net.l2_rows(users, torch.ones(len(users), device=users.device), items, item_w)
        scores = net(users, items)
        return bpr_loss(scores[:, 0], scores[:, 1:]) + self.reg * (factors + biases) / len(users)

    def fused_step(self, net: nn.Module, optimizer: torch.optim.Optimizer) -> FusedBPRStep | None:
        """The compiled CPU step (:mod:`recbench.models.bpr_step`: the loss of :meth:`loss`, its
        gradients and the lazy Adam update in one pass) when it reproduces the torch route: sparse
        updates with :class:`~recbench.training.row_adam.RowAdam` on the CPU; ``None`` otherwise (GPU,
        other optimisers, dense updates, or a subclass with its own :meth:`loss`). The Trainer uses it
        in one process without DP-SGD."""
        if type(self).loss is not _BPR_LOSS or not self.sparse_updates:
            return None
        if not FusedBPRStep.supports(net, optimizer):
            return None
        return FusedBPRStep(net, optimizer, self.reg)  # type: ignore[arg-type]

    def score_users(self, net: nn.Module, users: torch.Tensor, history: Interactions) -> torch.Tensor:
        """``P[users] @ Q^T + b``."""
        return net.all_items(users)

    def fold_in_spec(self) -> FoldIn:
        """Projection of the binary session row onto the item factors: ``p = (Q^T Q + reg I)^-1 Q^T x``
        (the ridge fit of ``x`` by ``Q p`` over all items); scores ``Q p + b``."""
        net = self.network_
        q = net.item.detach().cpu().numpy()
        bias = net.item_bias
        offset = np.zeros(len(q), np.float32) if bias is None else bias.detach().cpu().numpy().copy()
        return FoldIn(
            factors=q,
            offset=offset,
            reg=float(self.reg),
            gram=q.T.astype(np.float64) @ q,
            weight=np.zeros_like,
        )

    #: A session's scores from its projected user factor (see :mod:`recbench.models.adhoc`).
    score_history = score_by_fold_in
    similar_items = similar_factors


#: The objective :class:`~recbench.models.bpr_step.FusedBPRStep` computes (a subclass or a patch that
#: replaces ``BPR.loss`` trains through the torch route instead).
_BPR_LOSS = BPR.loss
