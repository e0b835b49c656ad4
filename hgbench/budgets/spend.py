"""A registered method spending a total budget of `runs` × one `fixed` run, by its kind's rule
(`hgbench.budgets.kinds.RULES`)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

from hgbench.budgets.kinds import Kind, kind_of
from hgbench.budgets.search import STRATEGY_OF, FullTrialSearch
from hgbench.contracts.method import METHODS, Budget, Checkpoint, Method
from hgbench.contracts.schema import CheckpointKind
from hgbench.contracts.task import Problem
from hgbench.engine.calibration import step_time
from hgbench.numerics.functional import detach
from hgbench.numerics.training import SGDTrainer


def _val_loss(problem: Problem, params) -> float:
    with torch.no_grad():
        loss = float(problem.val_loss(params))
    return loss if math.isfinite(loss) else math.inf


@dataclass
class Budgeted(Method):
    """`method` (a registered name, settings `settings`) at a total budget of `runs` runs."""

    method: str = "fixed"
    settings: dict[str, Any] = field(default_factory=dict)
    runs: int = 1

    def __post_init__(self) -> None:
        if self.runs < 1:
            raise ValueError("runs must be at least 1")
        self.kind = kind_of(self.method)
        if self.kind == Kind.SEARCH:
            self.inner: Method = FullTrialSearch(STRATEGY_OF[self.method], self.runs)
        else:
            settings = dict(self.settings)
            if self.kind == Kind.META:
                settings["meta_iterations"] = None  # the budget, not the cap, stops it
            self.inner = METHODS[self.method](**settings)
        self.family = self.inner.family
        self.objective = self.inner.objective
        self.requires = getattr(self.inner, "requires", ())
        self.step_s = math.nan
        self.unused_runs = 0.0  # budget the rule could not spend (reported)

    def skip_reason(self, problem: Problem) -> str | None:
        return self.inner.skip_reason(problem)

    def setup(self, problem: Problem) -> None:
        self.inner.setup(problem)
        if self.kind == Kind.ONLINE:
            self.step_s = step_time(problem)  # untimed: what a retrain would cost, in seconds

    def method_params(self) -> dict[str, Any]:
        return self.inner.method_params()

    def run(self, problem: Problem, budget: Budget) -> Iterator[Checkpoint]:
        epochs = problem.task.epochs
        if self.kind == Kind.SEARCH:
            yield from self.inner.run(problem, budget)
        elif self.kind == Kind.META:
            yield from self.inner.run(problem, Budget(self.runs, None, budget.elapsed))
        elif self.kind == Kind.SINGLE:
            self.unused_runs = self.runs - 1
            yield from self.inner.run(problem, budget)
        else:
            yield from self._online(problem, budget, epochs)

    def _online(self, problem: Problem, budget: Budget, epochs: int) -> Iterator[Checkpoint]:
        last: Checkpoint | None = None
        for ckpt in self.inner.run(problem, Budget(epochs, None, budget.elapsed)):
            last = ckpt
            yield ckpt
        assert last is not None
        run_steps = epochs * problem.steps_per_epoch
        spent = budget.elapsed() / self.step_s / run_steps  # in runs
        if self.runs - spent < 1:
            self.unused_runs = max(0.0, self.runs - spent)
            return
        joint = (detach(last.params), {k: v.detach().clone() for k, v in last.hparams.items()})
        trainer = SGDTrainer(problem, problem.init_params())
        done = 0
        while done < run_steps:
            done += trainer.steps(joint[1], run_steps - done)
        retrained = (detach(trainer.params), joint[1])
        keep = (
            retrained if _val_loss(problem, retrained[0]) < _val_loss(problem, joint[0]) else joint
        )
        self.unused_runs = self.runs - spent - 1
        yield Checkpoint(
            *keep,
            step=last.step + run_steps,
            epoch=last.epoch + epochs,
            objective=last.objective,
            extra={"retrained": float(keep is retrained)},
            # the joint run's result keeps its own kind (laplace_full's best-marglik state is
            # not the state where training ended); a retrain is its current state
            kind=CheckpointKind.CURRENT if keep is retrained else last.kind,
        )
