"""Inner training shared by methods: minibatch SGD with momentum at given hparams.

`SGDTrainer` is the fast, non-differentiable path (torch.optim's foreach kernels, in-place);
`sgd_momentum_step` is the functional, differentiable step used inside unrolls. Both follow
torch.optim.SGD's convention: v ← μ v + g, w ← w − α v.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
from torch import Tensor

from hgbench.contracts.hparams import HParams, Params, decay_coefficients
from hgbench.contracts.method import Budget
from hgbench.contracts.task import LRSchedule, Problem
from hgbench.numerics.graphs import StepGraph, sgd_update_


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


class ValBatches:
    """Validation minibatches for the hyper-steps of the joint loops: `size` indices (at most the
    validation set's size) drawn with replacement from the task's "val-batches" stream, so every
    method of a (task, seed) draws the same sequence."""

    def __init__(self, problem: Problem, size: int) -> None:
        self.problem = problem
        self.generator = problem.generator("val-batches")
        self.size = min(size, len(problem.data.y_val))

    def next(self) -> tuple[Tensor, Tensor]:
        d = self.problem.data
        vi = torch.randint(
            len(d.y_val), (self.size,), device=self.problem.device, generator=self.generator
        )
        return d.x_val[vi], d.y_val[vi]

    def loss(self) -> Callable[[Params, HParams | None], Tensor]:
        """The validation loss on the next minibatch, as a function of (params, hparams)."""
        x, y = self.next()
        return lambda w, h: self.problem.val_loss(w, x, y)


class SGDTrainer:
    """Trains a copy of `params` (exposed, live, as `.params`) at fixed hparams, epoch by epoch.

    `lr`, `momentum` and `batch_size` default to the task's; the learning rate follows the task's
    schedule (`Problem.lr_at`, scaled to `lr`), step by step. Hparams are constant here, so the
    weight-decay term is not built into the autograd graph: its gradient exp(log_wd) ⊙ params is
    added to the data-loss gradient in one fused step, as torch.optim's own weight_decay does
    (same update, ~20% cheaper on small models). With the problem's `compile` the model runs
    through torch.compile, and with `channels_last` batches and weights use that layout.

    On a GPU whose problem allows it (`Problem.cuda_graphs`, set where hgbench.engine.graphcheck
    found captured steps equal to eager ones), `capture(hparams)` records the full-size-batch step
    as a CUDA graph (hgbench.numerics.graphs) that later `steps` at those hparams replay; a
    smaller last batch of an epoch runs eagerly. The `fixed` method and the calibration step
    capture; on a CPU nothing changes.
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
        self._graph: StepGraph | None = None
        self._graph_hparams: HParams | None = None

    def capture(self, hparams: HParams, force: bool = False) -> bool:
        """Capture the step at `hparams` (untimed: call it before training) where the problem
        allows it, or with `force` (the check that decides whether it does); whether it did."""
        problem = self.problem
        if problem.device.type != "cuda" or problem.compile:
            return False
        if not (force or getattr(problem, "cuda_graphs", False)):
            return False
        params = list(self.params.values())
        group = self.optimizer.param_groups[0]
        bufs = []
        for p in params:  # zeros: SGD's first step would clone the gradient, the same numbers
            state = self.optimizer.state[p]
            if state.get("momentum_buffer") is None:
                state["momentum_buffer"] = torch.zeros_like(p)
            bufs.append(state["momentum_buffer"])
        d, n = problem.data, min(self.stream.batch_size, problem.n_train)
        self._x, self._y = d.x_train[:n].clone(), d.y_train[:n].clone()
        if self.channels_last and self._x.dim() == 4:
            self._x = self._x.contiguous(memory_format=torch.channels_last)
        self._neg_lr = torch.tensor(-group["lr"], device=problem.device, dtype=params[0].dtype)
        decay = decay_coefficients(self.params, hparams)
        decayed, coefficients = [self.params[k] for k in decay], list(decay.values())
        momentum, forward, gen = group["momentum"], self.forward, self.aug_generator

        def step() -> None:
            for p in params:
                p.grad = None
            problem.data_loss(forward, hparams, self._x, self._y, gen).backward()
            grads = [p.grad for p in params]
            with torch.no_grad():
                if decayed:
                    torch._foreach_addcmul_([p.grad for p in decayed], decayed, coefficients)
                sgd_update_(params, bufs, grads, momentum, self._neg_lr)

        self._graph = StepGraph(step, [*params, *bufs], [gen])
        self._graph_hparams = hparams
        return True

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
        graph = self._graph if self._graph_hparams is hparams else None
        taken = 0
        while n is None or taken < n:
            if self.scheduled:
                group["lr"] = self.lr_at(stream.steps)
            x, y = stream.next()
            if graph is not None and x.shape[0] == self._x.shape[0]:
                self._x.copy_(x)
                self._y.copy_(y)
                if self.scheduled:
                    self._neg_lr.fill_(-group["lr"])
                graph.replay()
                taken += 1
                if stream.at_epoch_end or (budget is not None and budget.over()):
                    break
                continue
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
