"""What `--executor ray` costs and gains against the in-process executor on this machine.

    python benchmarks/ray_overhead.py [--suite default] [--epochs N] [--seeds 0] [--cells 40]

1. Whole suite: wall time of `python -m hgbench run` with `--executor local` and with
   `--executor ray` (Ray started by the command, one CPU and one thread per cell, so as many
   cells at once as the machine has cores), each a fresh process into a fresh directory: Ray's
   start-up and shut-down are in its figure. `--epochs` shortens every task (`--set
   task.epochs=N`; by default they run their registered epochs); the table says what ran.
2. Per-cell overhead: trivially short cells (`fixed` on ridge, one epoch, one seed per cell, so
   each builds its problem on either side) through `LocalExecutor` and `RayExecutor` in this
   process, with Ray already up and its workers warm. With two CPUs per cell Ray runs them one at
   a time like the local loop, so (Ray wall - local wall) / cells is what Ray adds to a cell:
   scheduling, shipping the cell out and its rows back. The round trip of an empty Ray task is
   printed beside it.

Run it on an otherwise idle machine with OMP_NUM_THREADS=1 (both executors then time one
thread per cell). It measures; it asserts nothing.
"""

from __future__ import annotations

import argparse
import io
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from hgbench.contracts.suites import SUITES
from hgbench.engine.executors import LocalExecutor, RayExecutor
from hgbench.engine.planning import plan_cells
from hgbench.engine.plugins import load_plugins
from hgbench.engine.runner import Runner, RunOptions
from hgbench.engine.store import ResultStore, read_rows


def suite_wall(executor: str, args: argparse.Namespace, out: Path) -> tuple[float, int]:
    cmd = [sys.executable, "-m", "hgbench", "run", "--suite", args.suite, "--seeds", args.seeds]
    cmd += ["--no-report", "--out", str(out)]
    cmd += ["--set", f"task.epochs={args.epochs}"] if args.epochs else []
    cmd += ["--executor", executor] + (["--tasks", args.tasks] if args.tasks else [])
    start = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    wall = time.perf_counter() - start
    return wall, sum(1 for r in read_rows(out / "results.jsonl") if r.get("final"))


def short_cells(seeds: range) -> list:
    context = {"device": "cpu", "dtype": "float32", "budget_s": None}
    return plan_cells(
        "run", SUITES["default"], ["ridge"], ["fixed"], list(seeds), ["task.epochs=1"], context
    )


def executor_wall(make, cells: list, out: Path) -> float:
    runner = Runner(
        ResultStore(out), RunOptions(torch.device("cpu"), torch.float32), log=io.StringIO()
    )
    start = time.perf_counter()
    make(runner).run(cells)
    return time.perf_counter() - start


def per_cell_overhead(n: int, tmp: Path) -> dict[str, float]:
    import ray

    start = time.perf_counter()
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, logging_level=logging.WARNING)
    init_s = time.perf_counter() - start
    serial = os.cpu_count() or 1  # one cell holds every CPU: Ray runs them one at a time
    out: dict[str, float] = {"init_s": init_s}
    try:
        start = time.perf_counter()
        executor_wall(ray_executor(serial), short_cells(range(1000, 1002)), tmp / "w0")
        out["first_s"] = time.perf_counter() - start  # starting workers, importing torch there
        executor_wall(LocalExecutor, short_cells(range(1000, 1002)), tmp / "w1")
        out["local"] = executor_wall(LocalExecutor, short_cells(range(n)), tmp / "local")
        out["ray_serial"] = executor_wall(ray_executor(serial), short_cells(range(n)), tmp / "rs")
        # as many workers as cores: warm them all before timing (Ray starts them on demand)
        executor_wall(ray_executor(1), short_cells(range(1002, 1010)), tmp / "w2")
        out["ray_par"] = executor_wall(ray_executor(1), short_cells(range(n)), tmp / "rp")

        # last: a task without the executor's runtime_env needs a worker of its own
        @ray.remote
        def empty() -> None:
            return None

        ray.get(empty.remote())
        trips = []
        for _ in range(50):
            start = time.perf_counter()
            ray.get(empty.remote())
            trips.append(time.perf_counter() - start)
        out["trip_ms"] = 1e3 * sorted(trips)[len(trips) // 2]
    finally:
        ray.shutdown()
    return out


def ray_executor(cpus_per_cell: int):
    return lambda runner: RayExecutor(runner, cpus_per_cell=cpus_per_cell)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", default="default")
    parser.add_argument("--epochs", type=int, help="task.epochs for part 1 [the tasks' own]")
    parser.add_argument("--seeds", default="0", help="seeds for part 1")
    parser.add_argument("--tasks", help="tasks for part 1 (default: the suite's)")
    parser.add_argument("--cells", type=int, default=40, help="short cells for part 2")
    args = parser.parse_args()
    load_plugins()
    cores = os.cpu_count()
    omp = os.environ.get("OMP_NUM_THREADS")
    print(f"{cores} CPU cores, torch {torch.__version__}, OMP_NUM_THREADS={omp}")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        local, n = suite_wall("local", args, tmp / "local")
        ray_wall, n_ray = suite_wall("ray", args, tmp / "ray")
        print(
            f"\n1. suite {args.suite!r}{f' tasks {args.tasks}' if args.tasks else ''}, "
            f"seeds {args.seeds}, task.epochs={args.epochs or 'as registered'}: "
            f"{n} cells (ray: {n_ray})"
        )
        print(f"{'executor':<28}{'wall s':>10}{'speed-up':>10}")
        print(f"{'local (in-process)':<28}{local:>10.1f}{1:>10.2f}")
        print(f"{f'ray ({cores} workers)':<28}{ray_wall:>10.1f}{local / ray_wall:>10.2f}")

        o = per_cell_overhead(args.cells, tmp)
        n = args.cells
        print(f"\n2. {n} short cells (fixed on ridge, 1 epoch), Ray up and warm")
        print(f"{'':<36}{'wall s':>10}{'ms/cell':>10}")
        print(f"{'local (in-process)':<36}{o['local']:>10.2f}{1e3 * o['local'] / n:>10.1f}")
        for label, key in (
            ("ray, one at a time", "ray_serial"),
            (f"ray, {cores} at once", "ray_par"),
        ):
            print(f"{label:<36}{o[key]:>10.2f}{1e3 * o[key] / n:>10.1f}")
        added = 1e3 * (o["ray_serial"] - o["local"]) / n
        print(f"Ray overhead per cell (serial - local) / cells: {added:.1f} ms")
        print(f"empty Ray task round trip (median of 50):       {o['trip_ms']:.2f} ms")
        print(
            f"ray.init: {o['init_s']:.1f} s; first 2 cells, workers starting: {o['first_s']:.1f} s"
        )


if __name__ == "__main__":
    main()
