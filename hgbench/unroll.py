"""Reverse-mode differentiation through K differentiable inner SGD-with-momentum steps.

Memory is O(K·P): torch.func keeps every step's graph for the backward pass. This is what
`higher` computes; the tests compare the two.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor
from torch.func import grad

from hgbench.functional import detach
from hgbench.hparams import HParams, Params
from hgbench.training import sgd_momentum_step

Batch = tuple[Tensor, Tensor]


def unrolled_hypergradient(
    train_loss: Callable[..., Tensor],
    val_loss: Callable[[Params, HParams], Tensor],
    params: Params,
    velocity: Params,
    hparams: HParams,
    batches: Sequence[Batch],
    lr: float,
    momentum: float,
    generator: torch.Generator | None = None,
) -> tuple[dict[str, Tensor], Tensor, Params, Params]:
    """d val_loss(w_K) / d hparams through len(batches) steps from (params, velocity).

    Returns (hypergradient, validation loss, w_K, v_K), the last two detached so training can go
    on from them.
    """

    def outer(h: HParams):
        w, v = params, velocity
        for x, y in batches:
            g = grad(train_loss)(w, h, x, y, generator)
            w, v = sgd_momentum_step(w, v, g, lr, momentum)
        loss = val_loss(w, h)
        return loss, (loss.detach(), detach(w), detach(v))

    hg, (loss, w, v) = grad(outer, has_aux=True)(hparams)
    return hg, loss, w, v
