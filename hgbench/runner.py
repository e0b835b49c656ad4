"""The runner: plans cells (task × method × settings × seed) and executes them fairly.

Every cell's work is measured the same way (`hgbench.timing`), every outcome becomes rows in the
store (`hgbench.store`), and nothing a method does (raise, NaN, diverge, OOM, hang past
`timeout_s`) stops the suite: it becomes a row with status `failed` or `timeout`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import signal
import statistics
import sys
import traceback
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

from hgbench.envinfo import environment, software_env
from hgbench.errors import DivergedError
from hgbench.hparams import HParamSpace
from hgbench.method import METHODS, Budget, Checkpoint, Method, Objective
from hgbench.probe import compare, probe_reference
from hgbench.store import ResultStore
from hgbench.task import TASKS, Problem, Task
from hgbench.timing import PeakMemory, Stopwatch


@dataclass(frozen=True)
class Cell:
    mode: str  # "run" | "probe"
    suite: str
    task: Task
    method: str
    settings: dict[str, Any] = field(hash=False)
    seed: int
    # what the measurement depends on beyond the method and task: device type, dtype, budget
    context: dict[str, Any] = field(default_factory=dict, hash=False)

    @property
    def key(self) -> str:
        """mode/task/method/digest/seed; the digest covers the method's settings, the task's
        (so `--set task.epochs=...` makes new cells rather than matching finished ones) and the
        context (so a rerun with another --dtype, --device or --budget-s is not skipped)."""
        task = {
            k: v
            for k, v in dataclasses.asdict(self.task).items()
            if k not in ("name", "description", "tags")
        }
        parts = [self.settings, task] + ([self.context] if self.context else [])
        canon = json.dumps(parts, sort_keys=True, default=str)
        digest = hashlib.sha1(canon.encode()).hexdigest()[:10]
        return f"{self.mode}/{self.task.name}/{self.method}/{digest}/{self.seed}"

    def make_method(self) -> Method:
        return METHODS[self.method](**self.settings)

    def label(self) -> str:
        shown = ",".join(f"{k}={v}" for k, v in self.settings.items())
        return f"{self.task.name} {self.method}" + (f"({shown})" if shown else "")


@dataclass(frozen=True)
class RunOptions:
    device: torch.device
    dtype: torch.dtype
    budget_s: float | None = None
    timeout_s: float | None = None
    probe_repeats: int = 3


class CellTimeout(Exception):
    pass


@contextlib.contextmanager
def _deadline(seconds: float | None) -> Iterator[None]:
    """Raise CellTimeout in this (main) thread after `seconds` of wall time."""
    if not seconds or not hasattr(signal, "SIGALRM"):
        yield
        return

    def on_alarm(signum, frame):
        raise CellTimeout(f"cell exceeded its {seconds:g} s wall-clock limit")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _error_text(exc: BaseException) -> str:
    where = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
    loc = f" (at {where[0].filename.rsplit('/', 1)[-1]}:{where[0].lineno})" if where else ""
    return f"{type(exc).__name__}: {exc}{loc}"


def _finite(tensors) -> bool:
    return all(bool(torch.isfinite(t).all()) for t in tensors)


class Runner:
    """Executes cells into a store; one `Problem` per (task, seed) is built and reused."""

    def __init__(self, store: ResultStore, options: RunOptions, log=None) -> None:
        self.store, self.opt, self._log = store, options, log
        self._problem_key: tuple | None = None
        self._problem: Problem | None = None
        self._probe_cache: dict[tuple, Any] = {}

    @property
    def log(self):
        return self._log if self._log is not None else sys.stderr  # looked up when printing

    # --- driving -----------------------------------------------------------------------------
    def run(self, cells: list[Cell]) -> dict[str, int]:
        """Execute the unfinished `cells` one after another in this process."""
        from hgbench.executors import LocalExecutor  # executors builds on this module

        return LocalExecutor(self).run(cells)

    def problem(self, task: Task, seed: int) -> Problem:
        key = (task, seed)
        if self._problem_key != key:
            self._problem = None  # free the previous one's device memory first
            self._problem = task.build(seed, self.opt.device, self.opt.dtype)
            self._problem.warm_up()
            self._problem_key = key
        return self._problem

    def base_row(self, cell: Cell) -> dict[str, Any]:
        """The fields every row of one attempt at `cell` shares."""
        return {
            "mode": cell.mode,
            "suite": cell.suite,
            "task": cell.task.name,
            "method": cell.method,
            "method_params": cell.settings,
            "seed": cell.seed,
            "cell": cell.key,
            "attempt": uuid.uuid4().hex[:12],
            "device": str(self.opt.device),
            "dtype": str(self.opt.dtype).removeprefix("torch."),
            "env": environment(self.opt.device),
        }

    def record_failure(self, cell: Cell, error: str, where: dict[str, Any]) -> None:
        """A final `failed` row for a cell whose execution never reported back (its worker
        died); `where` is what is known of where it ran, in place of this process's placement."""
        base = self.base_row(cell)
        base["env"] = {**software_env(), **where}
        self._finish(base, [], status="failed", error=error)

    def execute(self, cell: Cell) -> str:
        base = self.base_row(cell)
        watch = Stopwatch(self.opt.device)
        mem = PeakMemory(self.opt.device)
        pending: list[dict] = []  # the latest row is held back until we know whether it is final
        try:
            # Built and warmed up outside the deadline: the alarm must never interrupt a
            # first-time import (a half-imported module would break every later cell).
            problem = self.problem(cell.task, cell.seed)
            with _deadline(self.opt.timeout_s):
                method = cell.make_method()
                reason = method.skip_reason(problem)
                if reason is None and cell.mode == "probe" and method.objective == Objective.NONE:
                    reason = f"{cell.method} estimates no hypergradient"
                if reason is not None:
                    self._finish(base, pending, status="skipped", error=reason)
                    return "skipped"
                if cell.mode == "run":
                    self._run_cell(cell, problem, method, base, watch, mem, pending)
                else:
                    self._probe_cell(problem, method, base, watch, mem, pending)
        except KeyboardInterrupt:
            raise
        except CellTimeout as exc:
            self._finish(base, pending, status="timeout", error=str(exc), time_s=watch.elapsed())
            return "timeout"
        except Exception as exc:  # noqa: BLE001 - any failure of a method is a row, not a crash
            if isinstance(exc, torch.cuda.OutOfMemoryError):
                torch.cuda.empty_cache()
            watch.pause()
            self._finish(
                base,
                pending,
                status="failed",
                error=_error_text(exc),
                time_s=watch.total,
                peak_mem_mb=mem.read_mb(),
            )
            return "failed"
        self._finish(base, pending)
        return "ok"

    def _finish(self, base: dict, pending: list[dict], status: str | None = None, **fields) -> None:
        """Write the held-back row as final, or (on skip/failure) a final status row after it."""
        if status is None:
            last = pending.pop() if pending else {**base, "status": "ok", "error": None}
            self.store.append({**last, "final": True})
            return
        for row in pending:
            self.store.append(row)
        pending.clear()
        self.store.append(
            {
                "time_s": None,
                "peak_mem_mb": None,
                **base,
                **fields,
                "status": status,
                "error": fields.get("error"),
                "final": True,
            }
        )

    def _emit(self, pending: list[dict], row: dict) -> None:
        for held in pending:
            self.store.append(held)
        pending[:] = [row]

    # --- run mode ------------------------------------------------------------------------------
    def _run_cell(self, cell, problem, method, base, watch, mem, pending) -> None:
        method.setup(problem)
        budget = Budget(
            epochs=None if self.opt.budget_s else cell.task.epochs,
            seconds=self.opt.budget_s,
            elapsed=watch.elapsed,
        )
        steps = method.run(problem, budget)
        first = True  # the segment up to the first checkpoint (initial state) is set-up: untimed
        try:
            while True:
                if first:
                    mem.reset()
                else:
                    watch.resume()
                try:
                    ckpt = next(steps)
                except StopIteration:
                    break
                finally:
                    if not first:
                        watch.pause()
                first = False
                self._emit(
                    pending,
                    {
                        **base,
                        **self._evaluate(problem, ckpt),
                        "status": "ok",
                        "error": None,
                        "time_s": watch.total,
                        "peak_mem_mb": mem.read_mb(),
                        "final": False,
                    },
                )
                if budget.over():
                    break
        finally:
            steps.close()

    def _evaluate(self, problem: Problem, ckpt: Checkpoint) -> dict[str, Any]:
        if ckpt.objective is not None and not math.isfinite(ckpt.objective):
            raise DivergedError(f"objective is {ckpt.objective} at step {ckpt.step}")
        if not _finite(ckpt.params.values()) or not _finite(ckpt.hparams.values()):
            raise DivergedError(f"non-finite params or hparams at step {ckpt.step}")
        metrics = problem.evaluate(ckpt.params, ckpt.hparams, "test")
        with torch.no_grad():
            val_loss = float(problem.val_loss(ckpt.params))
        return {
            "step": ckpt.step,
            "epoch": ckpt.epoch,
            **metrics,
            "val_loss": val_loss,
            "objective": ckpt.objective,
            "hparams": HParamSpace.summary(ckpt.hparams),
            "extra": ckpt.extra,
        }

    # --- probe mode ----------------------------------------------------------------------------
    def _probe_cell(self, problem, method, base, watch, mem, pending) -> None:
        method.setup(problem)
        ref = method.probe_reference(problem)
        if ref is None:  # the harness's reference for the objective, shared by the methods
            key = (problem.task, problem.seed, method.objective)
            if key not in self._probe_cache:
                self._probe_cache = {key: probe_reference(problem, method.objective)}
            ref = self._probe_cache[key]
        method.hypergradient(problem, ref.state)  # warm-up: caches, lazy init, kernel selection
        mem.reset()
        times = []
        for _ in range(self.opt.probe_repeats):
            start = watch.total
            watch.resume()
            est = method.hypergradient(problem, ref.state)
            watch.pause()
            times.append(watch.total - start)
        cos, rel = compare(est.hypergradient, ref.hypergradient)
        if not (math.isfinite(cos) and math.isfinite(rel)):
            raise DivergedError(f"non-finite hypergradient (cos={cos}, rel_err={rel})")
        self._emit(
            pending,
            {
                **base,
                "status": "ok",
                "error": None,
                "time_s": watch.total,
                "peak_mem_mb": mem.read_mb(),
                "hg_time_s": statistics.median(times),
                "hg_cos": cos,
                "hg_rel_err": rel,
                "reference": ref.name,
                "value": est.value,
                "exact_value": ref.value,
                "extra": est.extra,
                "final": False,
            },
        )


def tasks_by_names(names: list[str]) -> list[Task]:
    return [TASKS[n] for n in names]
