"""Truncated unrolled differentiation, joint with training (the baseline `higher` implements)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch

from hgbench.contracts.method import (
    Budget,
    Checkpoint,
    Estimate,
    Family,
    Method,
    Objective,
    Periodic,
    ProbeState,
    register_method,
)
from hgbench.contracts.task import Problem
from hgbench.methods._unrolled import OnlineHyperSteps
from hgbench.numerics.training import BatchStream, ValBatches
from hgbench.numerics.unroll import l2_decay, unrolled_hypergradient


@register_method("unroll")
@dataclass
class Unroll(Method):
    """Truncated reverse-mode hypergradients through K inner SGD steps, joint with training.

    Domke 2012; Shaban et al. 2019 for truncation.

    Training proceeds in windows: K differentiable SGD-with-momentum steps on K training
    minibatches advance the params, the validation loss on one validation minibatch at the
    window's end is differentiated back through the window, and Adam takes one step on the
    hparams. Probe mode unrolls K full-batch steps from the probe state (zero velocity).

    Run mode matches a `higher` loop to ~1e-15 (tests/test_reference_loops.py). On purpose, it
    differs in: the window's K steps all use the learning rate of its first step; weight decay is
    applied in the step, not the loss (same numbers); weights and velocity carry over windows;
    the last window may run past an epoch budget (⌈E·steps_per_epoch / K⌉ windows). See
    docs/reference-loops.md.
    """

    K: int = 10
    hyper_lr: float = 0.03
    val_batch_size: int = 200

    family = Family.UNROLLED
    objective = Objective.VALIDATION
    probe_grid = ({"K": 5}, {"K": 20}, {"K": 100})

    def __post_init__(self) -> None:
        if self.K < 1:
            raise ValueError("K must be at least 1")
        if self.hyper_lr <= 0:
            raise ValueError("hyper_lr must be positive")

    def periodic_work(self, problem: Problem) -> Periodic | None:
        return Periodic.steps(problem, self.K)  # one hyper-step per window of K steps

    def run(self, problem: Problem, budget: Budget) -> Iterator[Checkpoint]:
        task = problem.task
        params = problem.init_params()
        velocity = {k: torch.zeros_like(v) for k, v in params.items()}
        hparams = {k: v.requires_grad_(True) for k, v in problem.init_hparams().items()}
        hyper = OnlineHyperSteps(hparams, self.hyper_lr)
        stream = BatchStream(problem, task.batch_size)
        val = ValBatches(problem, self.val_batch_size)
        aug_gen = problem.generator("augment")
        yield Checkpoint(params, hparams, step=0, epoch=0.0)
        while not budget.finished(stream.epoch):
            batches = [stream.next() for _ in range(self.K)]
            hg, val_loss, params, velocity = unrolled_hypergradient(
                problem.data_loss,  # weight decay applied in the step: l2_decay
                val.loss(),
                params,
                velocity,
                {k: v.detach() for k, v in hparams.items()},
                batches,
                problem.lr_at(stream.steps - self.K),
                task.momentum,
                aug_gen,
                decay=l2_decay,
            )
            hyper.step(hg, val_loss)
            extra = {"hypersteps": len(hyper.val_losses)}
            if (point := hyper.checkpoint(params, stream, budget, extra)) is not None:
                yield point

    def hypergradient(self, problem: Problem, state: ProbeState) -> Estimate:
        d = problem.data
        velocity = {k: torch.zeros_like(v) for k, v in state.params.items()}
        hg, val_loss, _, _ = unrolled_hypergradient(
            problem.data_loss,  # fixed augmentation noise (no generator); weight decay in the step
            lambda w, h: problem.val_loss(w),
            state.params,
            velocity,
            state.hparams,
            [(d.x_train, d.y_train)] * self.K,
            problem.lr,
            problem.task.momentum,
            decay=l2_decay,
        )
        return Estimate(hg, extra={"val_loss": float(val_loss)})
