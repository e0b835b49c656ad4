"""The minibatch losses of one hyper-step, shared by the joint loops that take a hyper-step every
`period` inner steps from one training and one validation minibatch: `ift_*` (and `ift_nystrom`,
`soba`, `amigo`, which run its loop) and the one-step methods `darts` and `sama`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from hgbench.contracts.hparams import HParams, Params
from hgbench.contracts.seeding import make_generator
from hgbench.contracts.task import Problem
from hgbench.numerics.training import BatchStream, ValBatches

Loss = Callable[[Params, HParams], Tensor]  # (params, hparams) -> scalar


class HyperStepLosses:
    """L_T and L_V of each hyper-step, each on a minibatch of its own.

    The training minibatch comes from a stream of its own (`train_purpose`), so the inner loop's
    batches stay those every other method sees for this seed; the validation minibatch from
    `ValBatches`. The augmentation noise is one seed per hyper-step (from `noise_purpose`'s
    stream): every evaluation of L_T within a hyper-step (each HVP of a solver, both sides of a
    finite difference) sees the same noise, and the next hyper-step fresh noise.
    """

    def __init__(
        self, problem: Problem, val_batch_size: int, train_purpose: str, noise_purpose: str
    ) -> None:
        self.problem = problem
        self.train = BatchStream(problem, problem.task.batch_size, purpose=train_purpose)
        self.val = ValBatches(problem, val_batch_size)
        self.noise = torch.Generator().manual_seed(problem.generator(noise_purpose).initial_seed())

    def next(self) -> tuple[Loss, Loss]:
        """(train_loss, val_loss) of the next hyper-step, each a function of (params, hparams)."""
        problem = self.problem
        x, y = self.train.next()
        val_loss = self.val.loss()
        seed = int(torch.randint(2**62, (), generator=self.noise))

        def train_loss(w: Params, h: HParams) -> Tensor:
            return problem.train_loss(w, h, x, y, make_generator(seed, problem.device))

        return train_loss, val_loss
