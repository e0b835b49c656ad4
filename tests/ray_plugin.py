"""Test doubles for tests/test_ray_executor.py, loaded as a plugin (HGBENCH_PLUGINS=ray_plugin) so
that Ray workers register them too. Both behave like `fixed` unless their setting asks otherwise.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from hgbench.contracts.method import Budget, Checkpoint, register_method
from hgbench.contracts.task import Problem
from hgbench.methods.baselines import Fixed


def _in_ray_worker() -> bool:
    # never kill the driver (under pytest: the test session) whatever the settings say
    import ray

    return ray.is_initialized() and ray.get_runtime_context().get_task_id() is not None


@register_method("ray_test_crash_once")
@dataclass
class CrashOnce(Fixed):
    """Test double: on its first attempt per seed (no file `crash_dir/<seed>` yet) it creates
    that file and SIGKILLs its own Ray worker mid-cell; later attempts train like `fixed`."""

    crash_dir: str = ""

    def run(self, problem: Problem, budget: Budget) -> Iterator[Checkpoint]:
        steps = super().run(problem, budget)
        yield next(steps)  # the initial state: a row the dead attempt must never store
        marker = Path(self.crash_dir) / str(problem.seed)
        if self.crash_dir and not marker.exists() and _in_ray_worker():
            marker.touch()
            os.kill(os.getpid(), signal.SIGKILL)
        yield from steps


@register_method("ray_test_wait")
@dataclass
class WaitForFile(Fixed):
    """Test double: blocks (untimed, before training) until the file `release` exists."""

    release: str = ""

    def setup(self, problem: Problem) -> None:
        while self.release and not os.path.exists(self.release):
            time.sleep(0.05)
