"""Imported once by the fork server that starts scaling workers (hgbench.engine.scaling.pool).

Every worker starts as a fork of this process: torch, hgbench, its methods, tasks and plugins
imported, the digits arrays loaded, and torch's one-off lazy initialisation done on a tiny
problem (the first optimiser step imports seconds of modules), but nothing of any cell. The
server computes on one thread, so no OpenMP pool exists to be inherited half-alive by a fork,
and its objects are frozen out of the garbage collector, so a worker's `gc.collect()` (before
each memory region) does not walk every imported module.
"""

from __future__ import annotations

import dataclasses
import gc

import torch

from hgbench.engine.plugins import load_plugins

torch.set_num_threads(1)
load_plugins()

from hgbench.contracts.task import TASKS  # noqa: E402
from hgbench.engine.calibration import step_time  # noqa: E402
from hgbench.engine.scaling.counts import measure_units  # noqa: E402
from hgbench.engine.scaling.worker import generic_state  # noqa: E402  (and the workers' entry point)


def _warm_up() -> None:
    task = dataclasses.replace(TASKS["scaling_mlp"], hidden=(4,), n_train=20, n_val=10)
    problem = task.build(0, "cpu", torch.float32)
    problem.warm_up()
    state = generic_state(problem, 2)
    measure_units(problem, state, step_time(problem, blocks=1, block_seconds=0.0))


_warm_up()
gc.collect()
gc.freeze()
