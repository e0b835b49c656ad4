"""Which stretch of a method's schedule the isolated cost pass measures (hgbench.engine.costpass).

A method says how its cost is spread over its schedule (`Method.periodic_work`: after `burnin`
epochs its work repeats every `period` epochs). The cost pass then runs the cell alone, from the
start of its own schedule (the task's epochs and learning-rate schedule unchanged), and stops it
at the first checkpoint at or past `stop` = the burn-in plus the fewest whole periods that span at
least `min_epochs`, rounded up to a whole epoch, once it has at least `MIN_SECONDS` of timed work
(else at the next end of a whole period that does). From that stretch the cost of any epoch follows:
the measured curve up to `stop`, and beyond it the rate measured over the periods after the
burn-in (hgbench.engine.costpass.CostCurve). A method whose work depends on its whole budget
(`periodic_work` None: a search dividing the budget among trials) and a stretch that would reach
the schedule's end run the whole seed instead (`stop` None).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from hgbench.contracts.method import Method, Periodic
from hgbench.contracts.task import Problem

COST_PASS = "cost_pass"  # the cell-context key that makes a cell a cost-pass cell (its min_epochs)
DEFAULT_MIN_EPOCHS = 3.0
# the fewest timed seconds a stretch measures: a few hundredths of a second of a small CPU task's
# epochs are within the scheduler's slices on a shared machine, and time as noise
MIN_SECONDS = 0.5


@dataclass(frozen=True)
class Stretch:
    burnin: float  # epochs before the periodic work starts
    period: float  # epochs between repeats of it
    stop: float | None  # where the cost pass stops the cell at the earliest; None: the whole
    min_seconds: float = MIN_SECONDS

    def reached(self, epoch: float, timed_s: float = math.inf) -> bool:
        """Past `stop`, with at least `min_seconds` timed, at the end of a whole period (or
        of any epoch where a period is an epoch or shorter, or 20 periods are done)."""
        if self.stop is None or epoch < self.stop - 1e-9 or timed_s < self.min_seconds:
            return False
        periods = (epoch - self.burnin) / self.period
        return self.period <= 1 or periods >= 20 or abs(periods - round(periods)) < 0.05

    def as_row(self) -> dict[str, Any]:
        return asdict(self)


def choose(periodic: Periodic | None, epochs: int, min_epochs: float) -> Stretch:
    """The stretch to measure of a schedule of `epochs` epochs (see the module docstring)."""
    if periodic is None:
        return Stretch(0.0, float(epochs), None)
    periods = max(1, math.ceil(min_epochs / periodic.period - 1e-9))
    stop = (
        None
        if (end := math.ceil(periodic.burnin + periods * periodic.period - 1e-9)) >= epochs
        else float(end)
    )
    return Stretch(periodic.burnin, periodic.period, stop, MIN_SECONDS)


def cell_stretch(context: dict[str, Any], method: Method, problem: Problem) -> Stretch | None:
    """A cost-pass cell's stretch (None for every other cell)."""
    min_epochs = context.get(COST_PASS)
    if min_epochs is None:
        return None
    return choose(method.periodic_work(problem), problem.task.epochs, float(min_epochs))
