"""The floor and the black-box baseline: fixed hparams, and random search at the same budget."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch

from hgbench.functional import detach
from hgbench.method import Budget, Checkpoint, Family, Method, register_method
from hgbench.task import Problem
from hgbench.training import SGDTrainer


@register_method("fixed")
@dataclass
class Fixed(Method):
    """Trains with the task's default hparams: the floor every tuner should beat."""

    family = Family.BASELINE
    tunes_hparams = False

    def run(self, problem: Problem, budget: Budget) -> Iterator[Checkpoint]:
        hparams = problem.init_hparams()
        trainer = SGDTrainer(problem, problem.init_params())
        yield Checkpoint(trainer.params, hparams, step=0, epoch=0.0)
        for _ in budget.epoch_range():
            trainer.epoch(hparams, budget)
            yield Checkpoint(trainer.params, hparams, trainer.stream.steps, trainer.stream.epoch)


@register_method("random_search")
@dataclass
class RandomSearch(Method):
    """Random search (Bergstra & Bengio 2012): n_trials draws from the task's hparam space.

    The cell's budget is split evenly between the trials (its steps, or its seconds with
    --budget-s), so it spends what one training run of the other methods spends. Each trial
    trains from the same seeded init on the same batch order; the trial with the lowest
    validation loss is kept, and every checkpoint reports the best trial so far.
    """

    n_trials: int = 4

    family = Family.BLACKBOX

    def __post_init__(self) -> None:
        if self.n_trials < 1:
            raise ValueError("n_trials must be at least 1")

    def run(self, problem: Problem, budget: Budget) -> Iterator[Checkpoint]:
        gen = torch.Generator().manual_seed(problem.generator("random-search").initial_seed())
        best = (problem.init_params(), problem.init_hparams())
        best_val = float("inf")
        yield Checkpoint(*best, step=0, epoch=0.0)
        # An epoch budget is split into steps, exactly: the trials together take as many steps
        # as one run of another method (fewer trials when there are fewer steps than trials).
        batch = problem.task.batch_size
        if budget.epochs is not None:
            total = budget.epochs * -(-problem.n_train // batch)
            n = min(self.n_trials, total)
            shares: list[int | None] = [total // n + (i < total % n) for i in range(n)]
        else:
            n, shares = self.n_trials, [None] * self.n_trials
        steps, epochs = 0, 0.0
        for i, share in enumerate(shares):
            trial_budget = Budget(
                epochs=None,
                seconds=None
                if budget.seconds is None
                else budget.elapsed() + (budget.seconds - budget.elapsed()) / (n - i),
                elapsed=budget.elapsed,
            )
            hparams = problem.sample_hparams(gen)
            trainer = SGDTrainer(problem, problem.init_params())
            while (share is None or trainer.stream.steps < share) and not trial_budget.over():
                left = None if share is None else share - trainer.stream.steps
                trainer.steps(hparams, left, trial_budget)
            steps, epochs = steps + trainer.stream.steps, epochs + trainer.stream.epoch
            with torch.no_grad():
                val = float(problem.val_loss(trainer.params))
            if val < best_val:  # a NaN trial never wins
                best_val, best = val, (detach(trainer.params), hparams)
            yield Checkpoint(*best, step=steps, epoch=epochs, objective=best_val)
            if budget.over():
                return
