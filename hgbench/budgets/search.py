"""Black-box search at a budget of B full training runs: each trial trains the task's whole
schedule (unlike `random_search` and `tpe` of the default suite, whose trials share one run).

Four strategies, all through one loop: `random` (the task's default hparams first, then uniform
draws), `tpe` (Optuna's TPE sampler), `hyperband` (random draws under Optuna's Hyperband pruner,
rungs at 1/9, 1/3 and 1 of the schedule) and `gp` (Optuna's Gaussian-process sampler: the
model-based one Optuna ships that fits a few continuous hparams and a few dozen trials).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch

from hgbench.contracts.method import Budget, Checkpoint
from hgbench.contracts.schema import StrEnum
from hgbench.contracts.task import Problem
from hgbench.methods.blackbox import Allowance, _Search, _Trial
from hgbench.numerics.training import SGDTrainer


class Strategy(StrEnum):
    RANDOM = "random"
    TPE = "tpe"
    HYPERBAND = "hyperband"
    GP = "gp"


STRATEGY_OF = {
    "random_search": Strategy.RANDOM,
    "tpe": Strategy.TPE,
    "hyperband": Strategy.HYPERBAND,
    "gp_bo": Strategy.GP,
}
RUNG_SHARES = {Strategy.HYPERBAND: (1 / 9, 1 / 3, 1.0)}  # of one run; others: the whole run
STARTUP_TRIALS = 4  # random proposals before a model-based sampler takes over


def _study(strategy: Strategy, seed: int):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    samplers = optuna.samplers
    if strategy == Strategy.TPE:
        sampler = samplers.TPESampler(n_startup_trials=STARTUP_TRIALS, seed=seed)
    elif strategy == Strategy.GP:
        sampler = samplers.GPSampler(n_startup_trials=STARTUP_TRIALS, seed=seed)
    else:
        sampler = samplers.RandomSampler(seed=seed)
    pruner = (
        optuna.pruners.HyperbandPruner(min_resource=1, max_resource=3, reduction_factor=3)
        if strategy == Strategy.HYPERBAND
        else optuna.pruners.NopPruner()
    )
    return optuna.create_study(direction="minimize", sampler=sampler, pruner=pruner)


@dataclass
class FullTrialSearch(_Search):
    """`runs` full-schedule trials' worth of black-box search by `strategy` (see the module)."""

    strategy: Strategy = Strategy.RANDOM
    runs: int = 1

    def run(self, problem: Problem, budget: Budget) -> Iterator[Checkpoint]:
        import optuna

        run_steps = problem.task.epochs * problem.steps_per_epoch
        allowance = Allowance(
            problem, Budget(self.runs * problem.task.epochs, None, budget.elapsed)
        )
        seed = int(problem.generator(f"budget-{self.strategy}").initial_seed() % 2**31)
        study = _study(self.strategy, seed)
        searchable = [h for h in problem.space if h.searchable]
        shares = RUNG_SHARES.get(self.strategy, (1.0,))
        self._start(problem)
        yield self._checkpoint(problem, allowance)
        first = True
        while not allowance.over():
            hparams = problem.init_hparams()
            # random search tries the task's defaults first, as random_search does
            trial = None if first and self.strategy == Strategy.RANDOM else study.ask()
            if trial is not None:
                for h in searchable:
                    value = trial.suggest_float(h.name, h.low, h.high)
                    hparams[h.name] = torch.full_like(hparams[h.name], value)
            first = False
            run = _Trial(hparams, SGDTrainer(problem, problem.init_params()))
            trained, pruned = 0, False
            for rung, share in enumerate(shares, 1):
                target = int(round(share * run_steps))
                allowance.train(run.trainer, hparams, target - trained)
                trained = target
                self._consider(problem, run)
                if trial is None or allowance.over():
                    break
                trial.report(min(run.val_loss, 1e30), step=rung)
                if trial.should_prune():
                    pruned = True
                    break
            if trial is not None:
                if pruned:
                    study.tell(trial, state=optuna.trial.TrialState.PRUNED)
                else:
                    study.tell(trial, min(run.val_loss, 1e30))
            yield self._checkpoint(problem, allowance)
