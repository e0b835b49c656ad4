"""The command line: `python -m hgbench [run|probe|report|list] ...` (see DESIGN.md)."""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path

import torch

from hgbench.errors import UsageError

DEFAULT_OUT = Path("runs")
DTYPES = {"float32": torch.float32, "float64": torch.float64}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse's own errors: exit 2 with one line, like ours
        raise UsageError(message)


def _seeds(text: str) -> list[int]:
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise UsageError(f"--seeds expects comma-separated integers, got {text!r}") from None
    if not seeds:
        raise UsageError("--seeds names no seed")
    return list(dict.fromkeys(seeds))  # a repeated seed is the same cell: run it once


def _common(p: argparse.ArgumentParser, default_dtype: str) -> None:
    p.add_argument("--suite", default="default", help="suite name (python -m hgbench list suites)")
    p.add_argument("--tasks", help="comma-separated task names or patterns ('digits_*')")
    p.add_argument("--methods", help="comma-separated method names or patterns ('ift_*,unroll')")
    p.add_argument("--seeds", type=_seeds, help="comma-separated seeds (default: the suite's)")
    p.add_argument("--device", choices=["cpu", "cuda"], help="default: cuda when available")
    p.add_argument("--dtype", choices=list(DTYPES), default=default_dtype)
    p.add_argument("--out", type=Path, help="result directory; rerunning into it resumes")
    p.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="K=V",
        help="a method setting (field=v or method.field=v) or task.field=v; repeatable",
    )
    p.add_argument("--data-dir", type=Path, help="dataset root (or set HGBENCH_DATA)")
    p.add_argument("--timeout-s", type=float, help="wall-clock limit per cell (status timeout)")
    p.add_argument("--no-report", action="store_true", help="only write results.jsonl")
    ray = p.add_argument_group("executor (where cells run)")
    ray.add_argument(
        "--executor",
        choices=["local", "ray"],
        default="local",
        help="local: one cell after another in this process; ray: cells as Ray tasks, one per "
        "GPU (or per --ray-cpus-per-cell CPUs)",
    )
    ray.add_argument(
        "--address", help="(ray) join this Ray cluster, e.g. HEAD:6379; default: start Ray here"
    )
    ray.add_argument(
        "--ray-cpus-per-cell", type=int, metavar="N", help="(ray) CPUs (and threads) per cell [1]"
    )
    ray.add_argument(
        "--retries", type=int, metavar="N", help="(ray) reruns of a cell whose worker dies [2]"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="python -m hgbench",
        description=("Benchmark hypergradient methods. Without a command: run the default suite."),
    )
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)
    run = sub.add_parser("run", help="joint training and tuning within a budget")
    _common(run, "float32")
    run.add_argument(
        "--budget-s", type=float, help="timed seconds per cell (default: the task's epochs)"
    )
    probe = sub.add_parser("probe", help="hypergradient fidelity against exact references")
    _common(probe, "float64")
    probe.add_argument("--repeats", type=int, default=3, help="timed estimates per cell")
    report = sub.add_parser("report", help="redraw report.md and figures from stored results")
    report.add_argument("dir", type=Path)
    lister = sub.add_parser("list", help="list registered methods, tasks or suites")
    lister.add_argument("what", choices=["methods", "tasks", "suites"])
    return parser


def _device(name: str | None, executor: str) -> torch.device:
    if name is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    # Under Ray the cells run on the cluster's GPUs, which this driver need not have: the
    # executor checks the cluster for one before any cell starts.
    if name == "cuda" and not torch.cuda.is_available() and executor == "local":
        raise UsageError("--device cuda: no CUDA device is available here")
    return torch.device(name)


def _executor_options(args: argparse.Namespace) -> dict[str, object]:
    """The RayExecutor's options, checked (and Ray's presence) before any work starts."""
    given = {
        "--address": args.address,
        "--ray-cpus-per-cell": args.ray_cpus_per_cell,
        "--retries": args.retries,
    }
    if args.executor == "local":
        for flag, value in given.items():
            if value is not None:
                raise UsageError(f"{flag} applies to --executor ray only")
        return {}
    from hgbench.executors import import_ray

    import_ray()
    cpus = 1 if args.ray_cpus_per_cell is None else args.ray_cpus_per_cell
    retries = 2 if args.retries is None else args.retries
    if cpus < 1:
        raise UsageError("--ray-cpus-per-cell must be at least 1")
    if retries < 0:
        raise UsageError("--retries must be 0 or more")
    return {"address": args.address, "cpus_per_cell": cpus, "retries": retries}


def _list(what: str) -> int:
    from hgbench.method import METHODS
    from hgbench.suites import SUITES
    from hgbench.task import TASKS

    if what == "methods":
        for name, cls in METHODS.items():
            doc = (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""
            print(f"{name:20s} [{cls.objective.value}] {doc}")
    elif what == "tasks":
        for name, task in TASKS.items():
            print(f"{name:24s} {task.description}")
    else:
        for name, suite in SUITES.items():
            print(f"{name:12s} {suite.description}")
    return 0


def _execute(args: argparse.Namespace, mode: str) -> int:
    from hgbench.executors import LocalExecutor, RayExecutor
    from hgbench.planning import plan_cells
    from hgbench.runner import Runner, RunOptions
    from hgbench.store import ResultStore
    from hgbench.suites import SUITES

    if args.data_dir is not None:
        os.environ["HGBENCH_DATA"] = str(args.data_dir)
    budget_s = getattr(args, "budget_s", None)
    if budget_s is not None and not (math.isfinite(budget_s) and budget_s > 0):
        raise UsageError("--budget-s must be a positive number of seconds")
    if args.timeout_s is not None and not (math.isfinite(args.timeout_s) and args.timeout_s > 0):
        raise UsageError("--timeout-s must be a positive number of seconds")
    repeats = getattr(args, "repeats", 3)
    if repeats < 1:
        raise UsageError("--repeats must be at least 1")
    ray_options = _executor_options(args)
    device = _device(args.device, args.executor)
    suite = SUITES[args.suite]
    context = {"device": device.type, "dtype": args.dtype, "budget_s": budget_s}
    if mode == "probe":
        context["repeats"] = repeats
    cells = plan_cells(mode, suite, args.tasks, args.methods, args.seeds, args.sets, context)
    out = args.out or DEFAULT_OUT / (suite.name if mode == "run" else f"{suite.name}-probe")
    if suite.gpu and device.type == "cpu" and not args.tasks:
        print(
            f"note: suite {suite.name!r} is sized for a GPU; on a CPU it will be slow",
            file=sys.stderr,
        )
    options = RunOptions(
        device=device,
        dtype=DTYPES[args.dtype],
        budget_s=budget_s,
        timeout_s=args.timeout_s,
        probe_repeats=repeats,
    )
    runner = Runner(ResultStore(out), options)
    if args.executor == "ray":
        executor: LocalExecutor | RayExecutor = RayExecutor(runner, **ray_options)
        via = f" via Ray ({args.address or 'started here'})"
    else:
        executor, via = LocalExecutor(runner), ""
    print(
        f"hgbench {mode}: {len(cells)} cells on {device} ({args.dtype}){via} -> {out}",
        file=sys.stderr,
    )
    start = time.perf_counter()
    counts = executor.run(cells)
    done = ", ".join(f"{v} {k}" for k, v in counts.items() if v)
    print(f"finished in {time.perf_counter() - start:.1f}s: {done}", file=sys.stderr)
    print(f"results: {out / 'results.jsonl'}")
    if not args.no_report:
        from hgbench.report import write_report

        print(f"report: {write_report(out)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        args = build_parser().parse_args(argv or ["run"])
        from hgbench.plugins import load_plugins

        try:
            load_plugins()
        except ImportError as exc:
            raise UsageError(str(exc)) from None
        if args.command == "list":
            return _list(args.what)
        if args.command == "report":
            from hgbench.report import write_report

            if not (args.dir / "results.jsonl").exists():
                raise UsageError(f"no results.jsonl in {args.dir}")
            print(f"report: {write_report(args.dir)}")
            return 0
        return _execute(args, args.command)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            "\ninterrupted: finished cells are saved; rerun the same command to resume",
            file=sys.stderr,
        )
        return 130
