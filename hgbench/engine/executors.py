"""Executors: how the planned cells get run, one after another here or spread over a Ray cluster.

Either way `Runner.execute` is the one place that turns a cell into rows, the driver is the only
writer of `DIR/results.jsonl`, and a cell counts as finished once its final row is stored, so
resuming skips the same cells (`Cell.key`) whichever executor wrote them.

- `LocalExecutor`: the cells in turn, in this process (the default; needs nothing extra).
- `RayExecutor`: each cell a Ray task holding one GPU (or `cpus_per_cell` CPUs on a CPU-only
  cluster), so no two timed cells share a device; workers return their rows and the driver
  appends them as tasks complete. Ray is imported only here, and only when asked for.
"""

from __future__ import annotations

import functools
import logging
import os
import platform
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TextIO

import torch

from hgbench.contracts.errors import UsageError
from hgbench.contracts.schema import Status
from hgbench.engine.extras import require
from hgbench.engine.runner import Cell, Runner, RunOptions


@dataclass(frozen=True)
class Rerun:
    """Which finished cells run again: those that failed or timed out, those flagged noisy."""

    failed: bool = False
    noisy: bool = False


def unfinished(cells: list[Cell], runner: Runner, rerun: Rerun) -> tuple[list[Cell], int]:
    """The cells without a final row in the store (or chosen to rerun), saying how many are
    skipped."""
    finished = runner.store.finished_cells(rerun.failed, rerun.noisy)
    todo = [c for c in cells if c.key not in finished]
    skipped = len(cells) - len(todo)
    if skipped:
        print(
            f"resuming: {skipped} of {len(cells)} cells already finished in "
            f"{runner.store.path}, skipping them",
            file=runner.log,
        )
    return todo, skipped


class LocalExecutor:
    """Runs the cells one after another in this process."""

    def __init__(self, runner: Runner, rerun: Rerun = Rerun()) -> None:
        self.runner, self.rerun = runner, rerun
        self.may_start: Callable[[Cell], bool] | None = None  # a plan's deadline (engine/plan.py)

    def run(self, cells: list[Cell]) -> dict[str, int]:
        todo, skipped = unfinished(cells, self.runner, self.rerun)
        if self.runner.options.threads:
            torch.set_num_threads(self.runner.options.threads)
        counts: dict[str, int] = {}
        start = time.perf_counter()
        for k, cell in enumerate(todo, 1):
            if self.may_start is not None and not self.may_start(cell):
                print(f"time budget spent: {len(todo) - k + 1} cells left", file=self.runner.log)
                break
            status = self.runner.execute(cell)
            counts[status] = counts.get(status, 0) + 1
            elapsed = time.perf_counter() - start
            eta = elapsed / k * (len(todo) - k)
            print(
                f"[cell {k}/{len(todo)}] {cell.label()} seed {cell.seed}: {status} | "
                f"elapsed {elapsed:.0f}s, remaining ~{eta:.0f}s",
                file=self.runner.log,
                flush=True,
            )
        counts["previously_finished"] = skipped
        return counts


# --- Ray -----------------------------------------------------------------------------------------
def import_ray() -> Any:
    """Ray, or a UsageError naming the extra to install (checked before any work starts)."""
    require("ray", "--executor ray")
    import ray

    return ray


class _RowList:
    """A store that keeps rows in memory: a worker's rows travel back to the driver's store."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []
        self.path = "<ray worker>"

    def append(self, row: dict[str, Any]) -> None:
        self.rows.append(row)

    def finished_cells(self, retry_failed: bool = False, rerun_noisy: bool = False) -> set[str]:
        return set()  # the driver decided what to run


@functools.cache
def _worker_runner(options: RunOptions) -> Runner:
    # One Runner per worker process and options, so a CPU worker that gets several cells of one
    # (task, seed) builds and warms up that problem once, as the local executor does.
    return Runner(_RowList(), options)


def _execute_in_worker(
    cell: Cell, options: RunOptions, threads: int, driver_cwd: str
) -> tuple[str, list[dict[str, Any]]]:
    """The Ray task: one cell through `Runner.execute`, its rows returned rather than written."""
    import ray

    from hgbench.engine.plugins import load_plugins

    # Ray's workers start with OMP_NUM_THREADS=1; time the cell on the CPUs it holds instead.
    torch.set_num_threads(threads)
    # HGBENCH_PLUGINS modules are importable from the driver's folder (on a cluster: where it
    # is shared), whatever folder Ray starts this worker in.
    if os.path.isdir(driver_cwd) and driver_cwd not in sys.path:
        sys.path.append(driver_cwd)
    load_plugins()
    runner = _worker_runner(options)
    store = _RowList()
    runner.store = store
    status = runner.execute(cell)
    where = {
        "executor": "ray",
        "node_id": ray.get_runtime_context().get_node_id(),
        "ray_gpu_ids": [str(i) for i in ray.get_gpu_ids()],
    }
    rows = [{**row, "env": {**row["env"], **where}} for row in store.rows]
    return status, rows


def _failure_text(exc: BaseException, attempts: int) -> str:
    ray = import_ray()
    first = (str(exc).strip().splitlines() or [""])[0]
    if isinstance(exc, ray.exceptions.RayTaskError):  # raised outside Runner.execute's guard
        return f"worker raised: {type(exc.cause).__name__}: {exc.cause}"
    tries = f" ({attempts} attempt{'s' if attempts > 1 else ''})"
    return f"worker died{tries}: {type(exc).__name__}: {first}"


CONNECT_TIMEOUT_S = 10.0


def check_reachable(address: str, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """A HOST:PORT address must accept a TCP connection within `timeout` seconds: Ray itself
    retries an unreachable head for many minutes before it gives up."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        return  # "auto", "local", a ray:// URL without a port: Ray resolves these quickly
    host = host.removeprefix("ray://").strip("[]")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise UsageError(
            f"the Ray cluster at {address} is unreachable ({reason} within {timeout:g} s); "
            "is `ray start --head` running there?"
        ) from None


class RayExecutor:
    """Runs each cell as a Ray task; see the module docstring.

    `address`: an existing cluster ("HOST:6379", "auto"); None starts Ray on this machine.
    If this process is already connected to Ray, that connection is used and left open.
    """

    def __init__(
        self,
        runner: Runner,
        address: str | None = None,
        cpus_per_cell: int = 1,
        retries: int = 2,
        pack: int = 1,
        rerun: Rerun = Rerun(),
    ) -> None:
        self.ray = import_ray()
        self.runner, self.address, self.rerun = runner, address, rerun
        self.cpus_per_cell, self.retries = cpus_per_cell, retries
        self.gpu = runner.options.device.type == "cuda"
        self.pack = pack  # cells per GPU: each task asks for 1/pack of one (hgbench.engine.packing)

    def _connect(self) -> bool:
        """Start or join Ray; True when this executor did (and so must shut it down)."""
        ray = self.ray
        if ray.is_initialized():
            return False
        quiet = {"logging_level": logging.WARNING, "log_to_driver": True}
        if self.address:
            check_reachable(self.address)
            try:
                ray.init(address=self.address, **quiet)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                raise UsageError(
                    f"cannot join the Ray cluster at {self.address}: {first}"
                ) from None
        else:  # "local": a fresh instance on this machine's CPUs and GPUs, never a stale one
            ray.init(address="local", include_dashboard=False, **quiet)
        return True

    def _slots(self) -> int:
        """How many cells the live cluster can hold at once (for the "running" count)."""
        slots = 0
        for node in self.ray.nodes():
            if node.get("Alive"):
                res = node.get("Resources", {})
                fit = int(res.get("CPU", 0) // self.cpus_per_cell)
                gpus = int(res.get("GPU", 0)) * self.pack
                slots += min(fit, gpus) if self.gpu else fit
        return slots

    def _check_cluster(self) -> None:
        # Ray would queue a cell no node can hold forever (warning only): refuse it up front.
        if self._slots() == 0:
            need = f"{self.cpus_per_cell} CPU(s)" + (" and 1 GPU" if self.gpu else "")
            raise UsageError(
                f"no node of the Ray cluster has the {need} a cell asks for "
                f"(cluster resources: {self.ray.cluster_resources()})"
            )

    def _task_env(self) -> dict[str, str]:
        """What workers must see: the same plugins, and the data where the driver finds it."""
        env = {"HGBENCH_DATA": os.path.abspath(os.environ.get("HGBENCH_DATA", "data"))}
        if os.environ.get("HGBENCH_PLUGINS"):
            env["HGBENCH_PLUGINS"] = os.environ["HGBENCH_PLUGINS"]
        return env

    def run(self, cells: list[Cell]) -> dict[str, int]:
        runner, ray = self.runner, self.ray
        todo, skipped = unfinished(cells, runner, self.rerun)
        counts: dict[str, int] = {}
        if not todo:
            return {"previously_finished": skipped}  # nothing to run: no need to start Ray
        started = self._connect()
        pending: dict[Any, Cell] = {}
        try:
            self._check_cluster()
            task = ray.remote(
                num_cpus=self.cpus_per_cell,
                num_gpus=1 / self.pack if self.gpu else 0,
                # A worker's CUDA context stays on the GPU it first saw, whatever Ray assigns its
                # next task: one GPU cell per worker process (max_calls is only honoured here,
                # not in .options(), which is why the resources are given here too).
                max_calls=1 if self.gpu else 0,
                max_retries=self.retries,  # system failures only: a dead worker or node
            )(_execute_in_worker).options(runtime_env={"env_vars": self._task_env()})
            cwd = os.getcwd()
            for cell in todo:
                pending[task.remote(cell, runner.options, self.cpus_per_cell, cwd)] = cell
            self._collect(pending, counts, len(todo), runner.log)
        except KeyboardInterrupt:
            # Rows of finished cells are stored; stop the rest now, killing their workers so
            # no GPU stays busy with a cell nobody will record.
            for ref in pending:
                ray.cancel(ref, force=True)
            raise
        finally:
            if started:
                ray.shutdown()
        return {**counts, "previously_finished": skipped}

    def _collect(
        self, pending: dict[Any, Cell], counts: dict[str, int], n: int, log: TextIO
    ) -> None:
        """Store each task's rows as it completes, with a progress line."""
        ray, start, done = self.ray, time.perf_counter(), 0
        while pending:
            (ref,), _ = ray.wait(list(pending), num_returns=1)
            cell = pending.pop(ref)
            try:
                status, rows = ray.get(ref)
            except ray.exceptions.RayError as exc:
                status = Status.FAILED
                # where the worker died is unknown here: say so rather than name the driver's host
                where = {"executor": "ray", "host": None, "driver_host": platform.node()}
                self.runner.record_failure(cell, _failure_text(exc, self.retries + 1), where)
            else:
                for row in rows:
                    self.runner.store.append(row)
            done += 1
            counts[status] = counts.get(status, 0) + 1
            elapsed = time.perf_counter() - start
            eta = elapsed / done * (n - done)
            running = min(len(pending), self._slots())
            print(
                f"[cell {done}/{n}] {cell.label()} seed {cell.seed}: {status} | "
                f"{done} done, {running} running, {counts.get(Status.FAILED, 0)} failed | "
                f"elapsed {elapsed:.0f}s, remaining ~{eta:.0f}s",
                file=log,
                flush=True,
            )
