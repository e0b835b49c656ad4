"""The unit of cost that travels across machines: one training step of the `fixed` method.

A cell's timed seconds divided by the seconds of one plain SGD step of the same task on the same
device (minibatch forward, backward, update: what `fixed` repeats) is its cost in training-step
equivalents (TSE). The step is timed untimed-for-the-method, once per problem, and again at the
start and the end of every cell: when those drift from the problem's figure, the machine's speed
changed under the cell (other processes, thermal limits) and its times are flagged as noisy.
"""

from __future__ import annotations

import statistics
import time

from hgbench.task import Problem
from hgbench.timing import synchronize
from hgbench.training import SGDTrainer

NOISE_THRESHOLD = 0.25  # a cell whose step time moved by more than this fraction is noisy


def step_time(problem: Problem, steps: int = 9, max_seconds: float = 0.5) -> float:
    """Median seconds of one `fixed` training step (after two warm-up steps): at most `steps`
    steps and, past three, no more than about `max_seconds` of them."""
    trainer = SGDTrainer(problem, problem.init_params())
    hparams = problem.init_hparams()
    trainer.steps(hparams, 2)
    times: list[float] = []
    for _ in range(steps):
        synchronize(problem.device)
        start = time.perf_counter()
        trainer.steps(hparams, 1)
        synchronize(problem.device)
        times.append(time.perf_counter() - start)
        if len(times) >= 3 and sum(times) > max_seconds:
            break
    return statistics.median(times)


def drift(reference: float, *measured: float) -> float:
    """The largest relative deviation of the measured step times from the reference one."""
    return max(abs(m / reference - 1.0) for m in measured)
