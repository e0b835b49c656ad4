"""Packed execution: N cells at once on one device, one process each (`--pack N`).

A GPU that one small cell leaves mostly idle (launch- and host-bound steps) runs several cells
side by side; on a CPU each packed cell holds `--threads` cores. What a cell computes does not
depend on what runs beside it (its data, initialisation and batch order derive from its task and
seed; tests/test_packing.py checks packed rows against serial ones cell by cell), but its seconds
do: every packed row says `timing: packed` and its `pack`, and a cost axis comes from an
isolated, unpacked run of the cell (the cost pass, engine/costpass.py), never from packed
seconds. For the same reason packing is refused with a time budget per cell (`--budget-s`): how
far a cell gets in N seconds would depend on its neighbours.

The driver stays the only writer of `DIR/results.jsonl`: workers return their rows and the driver
appends them as cells complete, so resuming skips the same cells whichever executor wrote them.
Workers are spawned (not forked): CUDA cannot be initialised in a forked child.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import torch

from hgbench.contracts.errors import UsageError
from hgbench.contracts.schema import Status
from hgbench.engine.executors import Rerun, _RowList, _worker_runner, unfinished
from hgbench.engine.runner import Cell, Runner, RunOptions

PACK_WITH_BUDGET = (
    "--pack runs cells side by side, so a cell's timed seconds depend on its neighbours: packing "
    "is for epoch budgets only; drop --budget-s (or the suite's budget) or use --pack 1"
)


def check_pack(pack: int, budget_s: float | None) -> None:
    """Refuse, before any work, a packing factor that is not a count or meets a time budget."""
    if pack < 1:
        raise UsageError("--pack must be at least 1")
    if pack > 1 and budget_s is not None:
        raise UsageError(PACK_WITH_BUDGET)


def _execute_packed(
    cell: Cell, options: RunOptions, threads: int, driver_cwd: str
) -> tuple[str, list[dict[str, Any]]]:
    """One cell in a pool worker, through `Runner.execute`, its rows returned to the driver."""
    from hgbench.engine.plugins import load_plugins

    torch.set_num_threads(threads)
    if os.path.isdir(driver_cwd) and driver_cwd not in sys.path:
        sys.path.append(driver_cwd)  # HGBENCH_PLUGINS modules beside the driver
    load_plugins()
    runner = _worker_runner(options)  # one per process: a (task, seed) is built once
    store = _RowList()
    runner.store = store
    status = runner.execute(cell)
    where = {"executor": "packed", "worker_pid": os.getpid()}
    return status, [{**row, "env": {**row["env"], **where}} for row in store.rows]


def start_mps() -> tuple[bool, str]:
    """Start NVIDIA's Multi-Process Service daemon, which lets the packed processes' kernels
    share the GPU's streaming multiprocessors instead of time-slicing; (ran, why not)."""
    if shutil.which("nvidia-cuda-mps-control") is None:
        return False, "nvidia-cuda-mps-control not found"
    try:
        done = subprocess.run(
            ["nvidia-cuda-mps-control", "-d"], capture_output=True, text=True, timeout=20
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, f"nvidia-cuda-mps-control -d: {exc}"
    if done.returncode != 0:
        return False, (done.stderr or done.stdout).strip()[:200] or f"exit {done.returncode}"
    return True, ""


def stop_mps() -> None:
    subprocess.run(
        ["nvidia-cuda-mps-control"], input="quit\n", text=True, capture_output=True, timeout=20
    )


class PackedExecutor:
    """Runs `pack` cells at once in a local pool of spawned processes; see the module docstring.

    Cells are handed out in plan order (seed-major), so the cells in flight together are
    neighbours in the plan and a cut leaves whole seeds behind as the serial runner does.
    """

    def __init__(
        self,
        runner: Runner,
        pack: int,
        threads: int = 1,
        mps: bool = False,
        rerun: Rerun | None = None,
    ) -> None:
        self.runner, self.pack, self.threads = runner, pack, threads
        self.rerun = rerun or Rerun()
        self.mps = mps
        self.may_start: Callable[[Cell], bool] | None = None  # a plan's deadline (engine/plan.py)

    def run(self, cells: list[Cell]) -> dict[str, int]:
        runner = self.runner
        todo, skipped = unfinished(cells, runner, self.rerun)
        if not todo:
            return {"previously_finished": skipped}
        mps_env: dict[str, Any] = {}
        started_mps = False
        if self.mps:
            started_mps, why = start_mps()
            mps_env = {"mps": started_mps, **({"mps_error": why} if why else {})}
            print(f"MPS: {'running' if started_mps else 'not started: ' + why}", file=runner.log)
        counts: dict[str, int] = {}
        context = multiprocessing.get_context("spawn")
        pool = cf.ProcessPoolExecutor(max_workers=self.pack, mp_context=context)
        start, done, cwd = time.perf_counter(), 0, os.getcwd()
        try:
            queue = list(todo)
            futures: dict[cf.Future, Cell] = {}

            def submit() -> None:  # cells start as slots free, while a plan's deadline allows
                while queue and len(futures) < self.pack:
                    if self.may_start is not None and not self.may_start(queue[0]):
                        print(f"time budget spent: {len(queue)} cells left", file=runner.log)
                        queue.clear()
                        return
                    cell = queue.pop(0)
                    futures[pool.submit(_execute_packed, cell, runner.options, *job)] = cell

            job = (self.threads, cwd)
            submit()
            while futures:
                future = next(cf.as_completed(futures))
                cell = futures.pop(future)
                try:
                    status, rows = future.result()
                except Exception as exc:  # the worker died (Runner.execute catches the rest)
                    status = Status.FAILED
                    where = {"executor": "packed", **mps_env}
                    runner.record_failure(cell, f"worker died: {type(exc).__name__}: {exc}", where)
                else:
                    for row in rows:
                        runner.store.append({**row, "env": {**row["env"], **mps_env}})
                submit()
                done += 1
                counts[status] = counts.get(status, 0) + 1
                elapsed = time.perf_counter() - start
                print(
                    f"[cell {done}/{len(todo)}] {cell.label()} seed {cell.seed}: {status} | "
                    f"packed {self.pack} | elapsed {elapsed:.0f}s, "
                    f"remaining ~{elapsed / done * (len(queue) + len(futures)):.0f}s",
                    file=runner.log,
                    flush=True,
                )
        except KeyboardInterrupt:
            # the workers before shutdown, which forgets them (`_processes` becomes None)
            procs = list((getattr(pool, "_processes", None) or {}).values())
            pool.shutdown(wait=False, cancel_futures=True)
            for proc in procs:
                proc.terminate()  # no worker keeps a device busy with a cell nobody records
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            if started_mps:
                stop_mps()
        return {**counts, "previously_finished": skipped}
