"""Inner training shared by methods: minibatch SGD with momentum at given hparams.

`SGDTrainer` is the fast, non-differentiable path (torch.optim's foreach kernels, in-place);
`sgd_momentum_step` is the functional, differentiable step used inside unrolls. Both follow
torch.optim.SGD's convention: v ← μ v + g, w ← w − α v.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor

from hgbench.contracts.hparams import HParams, Params, decay_coefficients
from hgbench.contracts.method import Budget
from hgbench.contracts.task import LRSchedule, Problem


def sgd_momentum_step(
    params: Params, velocity: Params, grads: Params, lr: float | Tensor, momentum: float | Tensor
) -> tuple[Params, Params]:
    velocity = {k: momentum * velocity[k] + grads[k] for k in params}
    return {k: params[k] - lr * velocity[k] for k in params}, velocity


class BatchStream:
    """Endless minibatches of the training set, epoch after epoch, from a seeded stream.

    Every method gets the same stream for a (task, seed): the same order of batches.
    """

    def __init__(self, problem: Problem, batch_size: int, purpose: str = "batches") -> None:
        self.problem, self.batch_size = problem, batch_size
        self.generator = problem.generator(purpose)
        self.steps = 0
        self.steps_per_epoch = -(-problem.n_train // batch_size)
        self._it: Iterator[Tensor] = iter(())

    def next(self) -> tuple[Tensor, Tensor]:
        idx = next(self._it, None)
        if idx is None:
            self._it = self.problem.batches(self.batch_size, self.generator)
            idx = next(self._it)
        self.steps += 1
        d = self.problem.data
        return d.x_train[idx], d.y_train[idx]

    @property
    def epoch(self) -> float:
        return self.steps / self.steps_per_epoch

    @property
    def at_epoch_end(self) -> bool:
        return self.steps % self.steps_per_epoch == 0


class SGDTrainer:
    """Trains a copy of `params` (exposed, live, as `.params`) at fixed hparams, epoch by epoch.

    `lr`, `momentum` and `batch_size` default to the task's; the learning rate follows the task's
    schedule (`Problem.lr_at`, scaled to `lr`), step by step. Hparams are constant here, so the
    weight-decay term is not built into the autograd graph: its gradient exp(log_wd) ⊙ params is
    added to the data-loss gradient in one fused step, as torch.optim's own weight_decay does
    (same update, ~20% cheaper on small models). With the problem's `compile` the model runs
    through torch.compile, and with `channels_last` batches and weights use that layout.
    """

    def __init__(
        self,
        problem: Problem,
        params: Params,
        lr: float | None = None,
        momentum: float | None = None,
        batch_size: int | None = None,
    ) -> None:
        self.problem = problem
        self.base_lr = problem.lr if lr is None else lr
        momentum = problem.task.momentum if momentum is None else momentum
        self.model = problem.bind(params)
        self.channels_last = problem.channels_last
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.params: Params = dict(self.model.named_parameters())  # live: trained in place
        self.optimizer = torch.optim.SGD(
            list(self.params.values()), lr=self.base_lr, momentum=momentum
        )
        self.forward = torch.compile(self.model) if problem.compile else self.model
        self.stream = BatchStream(problem, batch_size or problem.task.batch_size)
        self.aug_generator = problem.generator("augment")
        self.scheduled = problem.task.lr_schedule != LRSchedule.CONSTANT

    def lr_at(self, step: int) -> float:
        return self.base_lr * self.problem.lr_at(step) / self.problem.lr

    def steps(self, hparams: HParams, n: int | None = None, budget: Budget | None = None) -> int:
        """Train `n` steps (None: to the end of the current epoch), stopping early if the budget
        is over or an epoch ends; returns the steps taken."""
        decay = decay_coefficients(self.params, hparams)
        decayed = [self.params[k] for k in decay]
        coefficients = list(decay.values())
        # this loop is the floor every method is compared against: look everything up once
        stream, forward, optimizer, gen = (
            self.stream,
            self.forward,
            self.optimizer,
            self.aug_generator,
        )
        group = optimizer.param_groups[0]
        data_loss = self.problem.data_loss
        channels_last = self.channels_last
        taken = 0
        while n is None or taken < n:
            if self.scheduled:
                group["lr"] = self.lr_at(stream.steps)
            x, y = stream.next()
            if channels_last and x.dim() == 4:
                x = x.contiguous(memory_format=torch.channels_last)
            loss = data_loss(forward, hparams, x, y, gen)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if decayed:
                with torch.no_grad():
                    # grad += c ⊙ p in one fused call, no temporaries (half the cost of mul+add)
                    torch._foreach_addcmul_([p.grad for p in decayed], decayed, coefficients)
            optimizer.step()
            taken += 1
            if stream.at_epoch_end or (budget is not None and budget.over()):
                break
        return taken

    def epoch(self, hparams: HParams, budget: Budget | None = None) -> None:
        """Train to the end of the current epoch, or until the budget is over."""
        self.steps(hparams, None, budget)
