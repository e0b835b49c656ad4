"""The floor: training at the task's default hparams (black-box search is in `blackbox`)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from hgbench.contracts.method import Budget, Checkpoint, Family, Method, Periodic, register_method
from hgbench.contracts.task import Problem
from hgbench.numerics.training import SGDTrainer


@register_method("fixed")
@dataclass
class Fixed(Method):
    """Trains with the task's default hparams: the floor every tuner should beat."""

    family = Family.BASELINE
    tunes_hparams = False

    def periodic_work(self, problem: Problem) -> Periodic | None:
        return Periodic.steps(problem, 1)  # every step alike

    def run(self, problem: Problem, budget: Budget) -> Iterator[Checkpoint]:
        hparams = problem.init_hparams()
        trainer = SGDTrainer(problem, problem.init_params())
        trainer.capture(hparams)  # a CUDA graph where the problem allows it; untimed set-up
        yield Checkpoint(trainer.params, hparams, step=0, epoch=0.0)
        for _ in budget.epoch_range():
            trainer.epoch(hparams, budget)
            yield Checkpoint(trainer.params, hparams, trainer.stream.steps, trainer.stream.epoch)
