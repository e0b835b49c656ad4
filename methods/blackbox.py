"""Black-box hparam search at the same budget as one training run: random search with successive
halving, and TPE (Optuna) with a successive-halving pruner.

Neither differentiates anything: each trial trains the task's model from the shared seeded init
with the plain SGD trainer at fixed hparams drawn from the task's space (`HParamSpace.sample`: one
value per tensor) and is judged by its validation loss. The cell's budget (the task's epochs as
steps, or `--budget-s` seconds) is shared by all trials, so a black-box tuner spends what one run
of any other method spends; every checkpoint reports the best trial so far.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from hgbench.contracts.hparams import HParams, Params
from hgbench.contracts.method import Budget, Checkpoint, Family, Method, register_method
from hgbench.contracts.task import Problem
from hgbench.numerics.functional import detach
from hgbench.numerics.training import SGDTrainer


class Allowance:
    """A cell's budget in the units it comes in: optimiser steps (epoch budgets, exact) or timed
    seconds (`--budget-s`). `share(k)` splits what is left into k parts."""

    def __init__(self, problem: Problem, budget: Budget) -> None:
        self.budget = budget
        self.in_steps = budget.epochs is not None
        self.total = budget.epochs * problem.steps_per_epoch if self.in_steps else budget.seconds
        assert self.total is not None
        self.used_steps = 0

    def left(self) -> float:
        if self.in_steps:
            return self.total - self.used_steps
        return self.total - self.budget.elapsed()

    def over(self) -> bool:
        return self.left() <= 0 or self.budget.over()

    def train(self, trainer: SGDTrainer, hparams: HParams, amount: float) -> None:
        """Train `amount` more units (steps, or seconds), never past the cell's budget."""
        if self.in_steps:
            target = min(int(round(amount)), int(self.left()))
            done = 0
            while done < target:
                done += trainer.steps(hparams, target - done, self.budget)
            self.used_steps += done
            return
        deadline = min(self.budget.elapsed() + amount, self.total)
        while self.budget.elapsed() < deadline and not self.budget.over():
            trainer.steps(hparams, 1, self.budget)
            self.used_steps += 1


@dataclass
class _Trial:
    hparams: HParams
    trainer: SGDTrainer
    val_loss: float = math.inf


def _val_loss(problem: Problem, params: Params) -> float:
    with torch.no_grad():
        loss = float(problem.val_loss(params))
    return loss if math.isfinite(loss) else math.inf  # a diverged trial never wins


class _Search(Method):
    """Shared bookkeeping: the best trial so far, reported as a checkpoint."""

    family = Family.BLACKBOX

    def _start(self, problem: Problem) -> None:
        self._best: tuple[Params, HParams] = (problem.init_params(), problem.init_hparams())
        self._best_val = math.inf

    def _consider(self, problem: Problem, trial: _Trial) -> None:
        trial.val_loss = _val_loss(problem, trial.trainer.params)
        if trial.val_loss < self._best_val:
            self._best_val = trial.val_loss
            self._best = (detach(trial.trainer.params), trial.hparams)

    def _checkpoint(self, problem: Problem, allowance: Allowance) -> Checkpoint:
        steps = allowance.used_steps
        best = self._best_val if math.isfinite(self._best_val) else None
        return Checkpoint(
            *self._best, step=steps, epoch=steps / problem.steps_per_epoch, objective=best
        )


@register_method("random_search")
@dataclass
class RandomSearch(_Search):
    """Random search (Bergstra & Bengio 2012) with successive halving (Jamieson & Talwalkar 2016).

    `n_configs` configurations (the task's default hparams first, if `include_default`, then
    uniform draws from its space) start together; after each rung only the best 1/`eta` by
    validation loss go on training, from where they stopped. Every rung gets an equal part of the
    cell's budget, shared equally by the configurations alive in it, so with 9 configurations and
    eta = 3 the survivor trains 13/27 of one run.
    """

    n_configs: int = 9
    eta: int = 3
    include_default: bool = True

    def __post_init__(self) -> None:
        if self.n_configs < 1 or self.eta < 2:
            raise ValueError("n_configs must be at least 1 and eta at least 2")

    def run(self, problem: Problem, budget: Budget) -> Iterator[Checkpoint]:
        gen = torch.Generator().manual_seed(problem.generator("random-search").initial_seed())
        self._start(problem)
        allowance = Allowance(problem, budget)
        draws = [problem.sample_hparams(gen) for _ in range(self.n_configs)]
        if self.include_default:
            draws[0] = problem.init_hparams()
        trials = [_Trial(h, SGDTrainer(problem, problem.init_params())) for h in draws]
        yield self._checkpoint(problem, allowance)
        rungs = math.floor(math.log(self.n_configs, self.eta) + 1e-9) + 1
        alive = trials
        for rung in range(rungs):
            per_rung = allowance.left() / (rungs - rung)
            for trial in alive:
                if allowance.over():
                    break
                allowance.train(trial.trainer, trial.hparams, per_rung / len(alive))
                self._consider(problem, trial)
            yield self._checkpoint(problem, allowance)
            if allowance.over():
                return
            keep = max(1, math.ceil(len(alive) / self.eta))
            alive = sorted(alive, key=lambda t: t.val_loss)[:keep]


@register_method("tpe")
@dataclass
class TPE(_Search):
    """TPE (Bergstra et al. 2011) through Optuna, with its successive-halving pruner.

    Trials are proposed one after another by Optuna's TPE sampler (the first `startup_trials`
    at random) over the task's searchable hparams (one value per tensor, uniform in each
    hparam's range); each trial trains in rungs of `min_share` × eta^k of the cell's budget up
    to `max_share`, reporting its validation loss, and Optuna's successive-halving pruner stops
    the unpromising ones. Trials continue until the cell's budget is spent. Optuna is a core
    dependency: the default suite runs this method.
    """

    startup_trials: int = 4
    eta: int = 3
    max_share: float = 1 / 3  # of the cell's budget, for one trial at most
    min_share: float = 1 / 81

    def __post_init__(self) -> None:
        if self.startup_trials < 1 or self.eta < 2:
            raise ValueError("startup_trials must be at least 1 and eta at least 2")
        if not 0 < self.min_share <= self.max_share <= 1:
            raise ValueError("0 < min_share <= max_share <= 1 is required")

    def run(self, problem: Problem, budget: Budget) -> Iterator[Checkpoint]:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        seed = int(problem.generator("tpe").initial_seed() % 2**31)
        sampler = optuna.samplers.TPESampler(n_startup_trials=self.startup_trials, seed=seed)
        pruner = optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=self.eta)
        study = optuna.create_study(direction="minimize", sampler=sampler, pruner=pruner)
        self._start(problem)
        allowance = Allowance(problem, budget)
        searchable = [h for h in problem.space if h.searchable]
        yield self._checkpoint(problem, allowance)
        rungs = math.floor(math.log(self.max_share / self.min_share, self.eta) + 1e-9) + 1
        while not allowance.over():
            trial = study.ask()
            hparams = problem.init_hparams()
            for h in searchable:
                value = trial.suggest_float(h.name, h.low, h.high)
                hparams[h.name] = torch.full_like(hparams[h.name], value)
            run = _Trial(hparams, SGDTrainer(problem, problem.init_params()))
            trained, state = 0.0, optuna.trial.TrialState.COMPLETE
            for rung in range(rungs):
                target = self.min_share * self.eta**rung * allowance.total
                allowance.train(run.trainer, hparams, target - trained)
                trained = target
                self._consider(problem, run)
                trial.report(min(run.val_loss, 1e30), step=rung + 1)
                if allowance.over():
                    break
                if trial.should_prune():
                    state = optuna.trial.TrialState.PRUNED
                    break
            if state == optuna.trial.TrialState.PRUNED:
                study.tell(trial, state=state)
            else:
                study.tell(trial, min(run.val_loss, 1e30))
            yield self._checkpoint(problem, allowance)
