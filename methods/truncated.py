"""Truncated back-propagation (Shaban, Cheng, Hatch & Boots, AISTATS 2019: K-step truncated
reverse-mode differentiation), with the truncation length set apart from the horizon."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from torch.func import grad

from hgbench.contracts.hparams import HParams, Params
from hgbench.contracts.method import (
    Budget,
    Checkpoint,
    Estimate,
    Family,
    Method,
    Objective,
    Periodic,
    ProbeState,
    Reference,
    register_method,
)
from hgbench.contracts.task import Problem
from hgbench.methods._unrolled import (
    OnlineHyperSteps,
    full_batches,
    next_window,
    unrolled_reference,
    zeros_like,
)
from hgbench.numerics.functional import detach
from hgbench.numerics.training import BatchStream, ValBatches, sgd_momentum_step
from hgbench.numerics.unroll import Batch, l2_decay, unrolled_hypergradient


def plain_steps(
    problem: Problem,
    params: Params,
    velocity: Params,
    hparams: HParams,
    batches: Sequence[Batch],
    lr: float,
    generator: torch.Generator | None = None,
) -> tuple[Params, Params]:
    """SGD-with-momentum steps that build no graph: the part of the horizon not differentiated."""
    for x, y in batches:
        g = grad(problem.train_loss)(params, hparams, x, y, generator)
        params, velocity = sgd_momentum_step(params, velocity, g, lr, problem.task.momentum)
    return detach(params), detach(velocity)


@register_method("truncated_bptt")
@dataclass
class TruncatedBPTT(Method):
    """K-step truncated back-propagation through a horizon of T inner steps (Shaban et al. 2019).

    Of each window of `horizon` SGD-with-momentum steps, the first horizon − truncation run
    without a graph and only the last `truncation` are differentiated: the hypergradient of the
    validation loss at the window's end treats the state entering the differentiated part as a
    constant (biased, memory O(truncation · P)). Run mode: one such window per hyper-step, the
    validation loss on one validation minibatch, Adam on the hparams. Probe mode: a window of
    full-batch steps from the probe state (zero velocity); the reference is the exact gradient
    of the same objective, reverse mode through all `horizon` steps, so `hg_rel_err` is the
    truncation bias against the full unroll (0 to rounding when truncation = horizon).
    """

    horizon: int = 20
    truncation: int = 5
    hyper_lr: float = 0.03
    val_batch_size: int = 200

    family = Family.UNROLLED
    objective = Objective.VALIDATION
    probe_grid = (
        {"truncation": 1},
        {"truncation": 5},
        {"truncation": 10},
        {"truncation": 20},
    )
    probe_quick = ({"truncation": 5}, {"truncation": 20})
    exact_settings = {"truncation": 20}  # = horizon: the full unroll

    def __post_init__(self) -> None:
        if not 1 <= self.truncation <= self.horizon:
            raise ValueError("truncation must be in [1, horizon]")
        if self.hyper_lr <= 0 or self.val_batch_size < 1:
            raise ValueError("hyper_lr must be positive and val_batch_size >= 1")

    def _window(self, problem, params, velocity, hparams, batches, lr, val_loss, gen=None):
        cut = max(len(batches) - self.truncation, 0)  # a window cut short by the budget
        params, velocity = plain_steps(problem, params, velocity, hparams, batches[:cut], lr, gen)
        return unrolled_hypergradient(
            problem.data_loss,  # the weight decay applied in the step: no penalty graph
            val_loss,
            params,
            velocity,
            hparams,
            batches[cut:],
            lr,
            problem.task.momentum,
            gen,
            decay=l2_decay,
        )

    def periodic_work(self, problem: Problem) -> Periodic | None:
        return Periodic.steps(problem, self.horizon)  # one hyper-step per window

    def run(self, problem: Problem, budget: Budget) -> Iterator[Checkpoint]:
        params = problem.init_params()
        velocity = zeros_like(params)
        hparams = {k: v.requires_grad_(True) for k, v in problem.init_hparams().items()}
        hyper = OnlineHyperSteps(hparams, self.hyper_lr)
        stream = BatchStream(problem, problem.task.batch_size)
        val, aug_gen = ValBatches(problem, self.val_batch_size), problem.generator("augment")
        yield Checkpoint(params, hparams, step=0, epoch=0.0)
        while not budget.finished(stream.epoch):
            lr = problem.lr_at(stream.steps)
            batches = next_window(stream, budget, self.horizon)
            hg, loss, params, velocity = self._window(
                problem, params, velocity, detach(hparams), batches, lr, val.loss(), aug_gen
            )
            hyper.step(hg, loss)
            if (point := hyper.checkpoint(params, stream, budget)) is not None:
                yield point

    def probe_reference(self, problem: Problem, hparams: HParams | None = None) -> Reference:
        return unrolled_reference(problem, hparams, self.horizon, " (the full horizon)")

    def hypergradient(self, problem: Problem, state: ProbeState) -> Estimate:
        hg, loss, _, _ = self._window(
            problem,
            state.params,
            zeros_like(state.params),
            state.hparams,
            full_batches(problem, self.horizon),
            problem.lr,
            lambda w, h: problem.val_loss(w),
        )
        return Estimate(hg, extra={"val_loss": float(loss), "truncation": self.truncation})
