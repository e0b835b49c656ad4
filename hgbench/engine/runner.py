"""The runner: executes cells (task × method × settings × seed) and measures them fairly.

Every cell's work is measured the same way (`hgbench.engine.timing`), its cost is also expressed in
training-step equivalents (`hgbench.engine.calibration`), every outcome becomes rows in the store
(`hgbench.engine.store`), and nothing a method does (raise, NaN, diverge, OOM, hang past
`timeout_s`) stops the suite: it becomes a row with status `failed` or `timeout`. A run whose
validation loss or objective grows far beyond its start (`hgbench.engine.guards.DivergenceGuard`)
fails as diverged.
"""

from __future__ import annotations

import math
import statistics
import sys
import time
import uuid
from typing import Any

import torch

from hgbench.contracts.errors import DivergedError
from hgbench.contracts.hparams import HParams, HParamSpace
from hgbench.contracts.method import Budget, Checkpoint, Estimate, Method, Objective, Reference
from hgbench.contracts.schema import CheckpointKind, Mode, Status, Timing
from hgbench.contracts.task import Problem, Task
from hgbench.engine.calibration import drift, step_time
from hgbench.engine.cells import Cell, RunOptions
from hgbench.engine.envinfo import environment, software_env
from hgbench.engine.estimates import estimate_record, save_estimates
from hgbench.engine.graphcheck import check_capture
from hgbench.engine.guards import (
    CellTimeout,
    DivergenceGuard,
    check_finite,
    copy_checkpoint,
    deadline,
    error_text,
)
from hgbench.engine.probe import compare, probe_reference
from hgbench.engine.store import Store
from hgbench.engine.stretch import cell_stretch
from hgbench.engine.timing import PeakMemory, Stopwatch

__all__ = ["Cell", "RunOptions", "Runner"]  # Cell and RunOptions live in engine/cells.py


class Runner:
    """Executes cells into a store; one `Problem` per (task, seed) is built and reused."""

    def __init__(self, store: Store, options: RunOptions, log=None) -> None:
        self.store, self.options, self._log = store, options, log
        self._problem_key: tuple | None = None
        self._problem: Problem | None = None
        self._step_time = math.nan  # the current problem's calibration step, seconds
        self._references: dict[tuple, Reference] = {}  # the current problem's probe references
        self._wall_start: float | None = None

    @property
    def log(self):
        return self._log if self._log is not None else sys.stderr  # looked up when printing

    def problem(self, task: Task, seed: int) -> Problem:
        key = (task, seed)
        if self._problem_key != key:
            self._problem = None  # free the previous one's device memory first
            self._references = {}
            problem = task.build(seed, self.options.device, self.options.dtype)
            problem.compile = self.options.compile
            problem.channels_last = self.options.channels_last
            problem.warm_up()
            if self.options.cuda_graphs and problem.device.type == "cuda":
                problem.cuda_graphs = check_capture(problem).kept  # only where numbers match
            self._step_time = step_time(problem)
            self._problem, self._problem_key = problem, key
        assert self._problem is not None
        return self._problem

    def base_row(self, cell: Cell) -> dict[str, Any]:
        """The fields every row of one attempt at `cell` shares."""
        return {
            "mode": cell.mode.value,
            "suite": cell.suite,
            "task": cell.task.name,
            "method": cell.method,
            "method_params": cell.method_params,
            "seed": cell.seed,
            "cell": cell.key,
            "attempt": uuid.uuid4().hex[:12],
            "device": str(self.options.device),
            "dtype": str(self.options.dtype).removeprefix("torch."),
            "env": environment(self.options.device),
            "timing": (Timing.PACKED if self.options.pack > 1 else Timing.ISOLATED).value,
            "pack": self.options.pack,
        }

    def record_failure(self, cell: Cell, error: str, where: dict[str, Any]) -> None:
        """A final `failed` row for a cell whose execution never reported back (its worker
        died); `where` is what is known of where it ran, in place of this process's placement."""
        self._wall_start = None  # it ran elsewhere, for a time nobody measured
        base = self.base_row(cell)
        base["env"] = {**software_env(), **where}
        self._finish(base, [], status=Status.FAILED, error=error)

    def execute(self, cell: Cell) -> Status:
        self._wall_start = time.perf_counter()  # the final row's wall_s: what a plan budgets
        base = self.base_row(cell)
        watch = Stopwatch(self.options.device)
        mem = PeakMemory(self.options.device)
        pending: list[dict] = []  # the latest row is held back until we know whether it is final
        try:
            # Built and warmed up outside the deadline: the alarm must never interrupt a
            # first-time import (a half-imported module would break every later cell).
            problem = self.problem(cell.task, cell.seed)
            base["cuda_graph"] = problem.cuda_graphs if problem.device.type == "cuda" else None
            with deadline(self.options.timeout_s):
                method = cell.make_method()
                reason = method.skip_reason(problem)
                if (
                    reason is None
                    and cell.mode == Mode.PROBE
                    and method.objective == Objective.NONE
                ):
                    reason = f"{cell.method} estimates no hypergradient"
                if reason is not None:
                    self._finish(base, pending, status=Status.SKIPPED, error=reason)
                    return Status.SKIPPED
                start_step = step_time(problem)
                if cell.mode == Mode.RUN:
                    self._run_cell(cell, problem, method, base, watch, mem, pending)
                else:
                    self._probe_cell(cell, problem, method, base, watch, mem, pending)
                calib = self._calibration(start_step, step_time(problem))
        except KeyboardInterrupt:
            raise
        except CellTimeout as exc:
            self._finish(
                base, pending, status=Status.TIMEOUT, error=str(exc), time_s=watch.elapsed()
            )
            return Status.TIMEOUT
        except Exception as exc:  # noqa: BLE001 - any failure of a method is a row, not a crash
            if isinstance(exc, torch.cuda.OutOfMemoryError):
                torch.cuda.empty_cache()
            watch.pause()
            self._finish(
                base,
                pending,
                status=Status.FAILED,
                error=error_text(exc),
                time_s=watch.total,
                peak_mem_mb=mem.read_mb(),
            )
            return Status.FAILED
        self._finish(base, pending, calibration=calib)
        return Status.OK

    def _calibration(self, start: float, end: float) -> dict[str, Any]:
        """How far this cell's calibration steps (at its start and end) strayed from the
        problem's: beyond the threshold the machine changed speed under the cell."""
        moved = drift(self._step_time, start, end)
        return {"calib_drift": moved, "noisy": bool(moved > self.options.noise_threshold)}

    def _finish(
        self,
        base: dict,
        pending: list[dict],
        status: Status | None = None,
        calibration: dict[str, Any] | None = None,
        **fields,
    ) -> None:
        """Write the held-back row as final, or (on skip/failure) a final status row after it."""
        wall = None if self._wall_start is None else time.perf_counter() - self._wall_start
        if status is None:
            last = pending.pop() if pending else {**base, "status": Status.OK.value, "error": None}
            self.store.append({**last, **(calibration or {}), "wall_s": wall, "final": True})
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
                "status": Status(status).value,
                "error": fields.get("error"),
                "wall_s": wall,
                "final": True,
            }
        )

    def _emit(self, pending: list[dict], row: dict) -> None:
        for held in pending:
            self.store.append(held)
        pending[:] = [row]

    def _timing(self, watch: Stopwatch, mem: PeakMemory) -> dict[str, Any]:
        return {
            "time_s": watch.total,
            "tse": watch.total / self._step_time,
            "step_time_s": self._step_time,
            "peak_mem_mb": mem.read_mb(),
        }

    # --- run mode ------------------------------------------------------------------------------
    def _run_cell(self, cell, problem, method, base, watch, mem, pending) -> None:
        method.setup(problem)
        task = cell.task
        stretch = cell_stretch(cell.context, method, problem)  # a cost-pass cell stops early
        if stretch is not None:
            base["stretch"] = stretch.as_row()
        budget = Budget(
            epochs=None if self.options.budget_s else task.epochs,
            seconds=self.options.budget_s,
            elapsed=watch.elapsed,
        )
        subset = task.eval_test_subset is not None
        # Evaluations every `eval_every` epochs, and on the test subset until the last one: the
        # latest checkpoint that was not evaluated in full is kept (copied: methods train their
        # params in place) so that the last one gets its full evaluation once the run ends.
        latest: tuple[Checkpoint, bool] | None = None  # (copy, whether its row is pending)
        evaluated_upto: float | None = None
        guard = DivergenceGuard()
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
                check_finite(ckpt)
                due = evaluated_upto is None or (
                    ckpt.epoch // task.eval_every > evaluated_upto // task.eval_every
                )
                if due:
                    row = self._run_row(base, problem, ckpt, watch, mem, subset)
                    self._emit(pending, row)  # stored, so a diverged cell's rows show the loss
                    guard.check("val_loss", row["val_loss"], ckpt.step)
                    evaluated_upto = ckpt.epoch
                guard.check("objective", ckpt.objective, ckpt.step)
                latest = (copy_checkpoint(ckpt), due) if subset or not due else None
                stop = stretch is not None and stretch.reached(ckpt.epoch, watch.total)
                if budget.over() or stop:
                    break
        finally:
            steps.close()
        if latest is not None:
            ckpt, is_pending = latest
            row = self._run_row(base, problem, ckpt, watch, mem, subset=False)
            if is_pending:
                pending[:] = [row]  # the same checkpoint, now evaluated in full
            else:
                self._emit(pending, row)
            guard.check("val_loss", row["val_loss"], ckpt.step)

    def _run_row(self, base, problem, ckpt, watch, mem, subset: bool) -> dict[str, Any]:
        metrics = problem.evaluate(ckpt.params, ckpt.hparams, "test", subset=subset)
        with torch.no_grad():
            val_loss = float(problem.val_loss(ckpt.params))
        n_test = problem.data.y_test.shape[0]
        return {
            **base,
            "step": ckpt.step,
            "epoch": ckpt.epoch,
            **metrics,
            "test_n": problem.test_subset().shape[0] if subset else n_test,
            "val_loss": val_loss,
            "objective": ckpt.objective,
            "hparams": HParamSpace.summary(ckpt.hparams),
            "checkpoint": CheckpointKind(ckpt.kind).value,
            "extra": ckpt.extra,
            "status": Status.OK.value,
            "error": None,
            **self._timing(watch, mem),
            "final": False,
        }

    # --- probe mode ----------------------------------------------------------------------------
    def _probe_states(self, problem: Problem) -> list[HParams | None]:
        """The hparams of each probe state: the task's initial ones (None), then draws from its
        space (the same draws for every method)."""
        states: list[HParams | None] = [None]
        for k in range(1, self.options.probe_states + 1):
            seed = problem.generator(f"probe-state/{k}").initial_seed()
            states.append(problem.sample_hparams(torch.Generator().manual_seed(seed)))
        return states

    def _reference(self, problem: Problem, method: Method, k: int, hparams) -> Reference:
        ref = method.probe_reference(problem, hparams)
        if ref is None:  # the harness's reference for the objective, shared by the methods
            key = (method.objective, k)
            if key not in self._references:
                self._references[key] = probe_reference(problem, method.objective, hparams)
            ref = self._references[key]
        return ref

    def _probe_cell(self, cell, problem, method, base, watch, mem, pending) -> None:
        method.setup(problem)
        saved: list[dict[str, Any]] = []
        for k, hparams in enumerate(self._probe_states(problem)):
            ref = self._reference(problem, method, k, hparams)
            method.prepare_probe(problem, ref.state)
            method.hypergradient(problem, ref.state)  # warm-up: lazy init, kernel selection
            mem.reset()
            times = []
            est: Estimate | None = None
            for _ in range(self.options.probe_repeats):
                start = watch.total
                watch.resume()
                est = method.hypergradient(problem, ref.state)
                watch.pause()
                times.append(watch.total - start)
            assert est is not None
            cos, rel = compare(est.hypergradient, ref.hypergradient)
            if not (math.isfinite(cos) and math.isfinite(rel)):
                raise DivergedError(f"non-finite hypergradient (cos={cos}, rel_err={rel})")
            hg_time = statistics.median(times)
            self._emit(
                pending,
                {
                    **base,
                    "status": Status.OK.value,
                    "error": None,
                    **self._timing(watch, mem),
                    "probe_state": k,
                    "hg_time_s": hg_time,
                    "hg_tse": hg_time / self._step_time,
                    "hg_cos": cos,
                    "hg_rel_err": rel,
                    "reference": ref.name,
                    "value": est.value,
                    "exact_value": ref.value,
                    "extra": est.extra,
                    "final": False,
                },
            )
            if self.options.estimates_dir is not None:
                saved.append(estimate_record(k, ref, est))
        if saved:
            assert self.options.estimates_dir is not None
            save_estimates(self.options.estimates_dir, cell.key, cell.method_params, saved)
