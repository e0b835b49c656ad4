"""The command line: `python -m hgbench [run|probe|report|list] ...` (see DESIGN.md).

What each command does: its values checked (exit 2 before any work), then the run, the report
or the listing. The flags and their help text are in hgbench/cli_parser.py.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path

import torch

from hgbench.cli_parser import DTYPES, build_parser
from hgbench.contracts.errors import UsageError
from hgbench.contracts.schema import (
    RESULTS_FILE,
    Mode,
    ResultsFileError,
    read_results,
    results_path,
)
from hgbench.engine.outdirs import make_dirs, remove_dirs, writable_dir

DEFAULT_OUT = Path("runs")


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
    from hgbench.engine.executors import import_ray

    import_ray()
    cpus = 1 if args.ray_cpus_per_cell is None else args.ray_cpus_per_cell
    retries = 2 if args.retries is None else args.retries
    if cpus < 1:
        raise UsageError("--ray-cpus-per-cell must be at least 1")
    if retries < 0:
        raise UsageError("--retries must be 0 or more")
    return {"address": args.address, "cpus_per_cell": cpus, "retries": retries}


def _list(what: str) -> int:
    from hgbench.contracts.method import METHODS
    from hgbench.contracts.suites import SUITES
    from hgbench.contracts.task import TASKS

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


def _execute(args: argparse.Namespace, mode: Mode) -> int:
    from hgbench.contracts.suites import SUITES
    from hgbench.engine.executors import LocalExecutor, RayExecutor, Rerun
    from hgbench.engine.packing import PackedExecutor
    from hgbench.engine.planning import plan_cells
    from hgbench.engine.runner import Runner, RunOptions
    from hgbench.engine.store import DirectoryLock, ResultStore

    if args.data_dir is not None:
        os.environ["HGBENCH_DATA"] = str(args.data_dir)
    suite = SUITES[args.suite]
    budget_s = getattr(args, "budget_s", None)
    if budget_s is not None and not (math.isfinite(budget_s) and budget_s > 0):
        raise UsageError("--budget-s must be a positive number of seconds")
    if budget_s is None and mode == Mode.RUN:
        budget_s = suite.budget_s
    if args.timeout_s is not None and not (math.isfinite(args.timeout_s) and args.timeout_s > 0):
        raise UsageError("--timeout-s must be a positive number of seconds")
    repeats = getattr(args, "repeats", 3)
    if repeats < 1:
        raise UsageError("--repeats must be at least 1")
    probe_states = getattr(args, "probe_states", 0)
    if probe_states < 0:
        raise UsageError("--probe-states must be 0 or more")
    if args.threads is not None and args.threads < 1:
        raise UsageError("--threads must be at least 1")
    ray_options = _executor_options(args)
    from hgbench.engine.packing import check_pack

    check_pack(args.pack, budget_s)
    time_budget_s = getattr(args, "time_budget_s", None)
    if time_budget_s is not None and not (math.isfinite(time_budget_s) and time_budget_s > 0):
        raise UsageError("--time-budget-s must be a positive number of seconds")
    if time_budget_s is not None and budget_s is not None:
        raise UsageError("--time-budget-s plans cells of epoch budgets: drop --budget-s")
    device = _device(args.device, args.executor)
    if args.channels_last and device.type != "cuda":
        print("note: --channels-last mostly pays on a GPU", file=sys.stderr)
    context = {"device": device.type, "dtype": args.dtype, "budget_s": budget_s}
    if mode == Mode.PROBE:
        context["repeats"] = repeats
    if args.compile or args.channels_last:
        context.update(compile=args.compile, channels_last=args.channels_last)
    full = getattr(args, "full", False)
    seeds = args.seeds
    if mode == Mode.PROBE and seeds is None and not full:
        seeds = list(suite.seeds[:1])  # the quick default: one seed (--full: the suite's)
    cells = plan_cells(
        mode, suite, args.tasks, args.methods, seeds, args.sets, context, full_probe_grid=full
    )
    out = args.out or DEFAULT_OUT / (suite.name if mode == Mode.RUN else f"{suite.name}-probe")
    missing = writable_dir(out, "--out")
    if suite.gpu and device.type == "cpu" and not args.tasks:
        print(
            f"note: suite {suite.name!r} is sized for a GPU; on a CPU it will be slow",
            file=sys.stderr,
        )
    threads = args.threads
    if threads is None and device.type == "cpu" and args.executor == "local":
        threads = 1
    options = RunOptions(
        device=device,
        dtype=DTYPES[args.dtype],
        budget_s=budget_s,
        timeout_s=args.timeout_s,
        probe_repeats=repeats,
        probe_states=probe_states,
        estimates_dir=out / "estimates" if getattr(args, "save_estimates", False) else None,
        threads=threads,
        compile=args.compile,
        channels_last=args.channels_last,
        pack=args.pack,
        cuda_graphs=not args.no_cuda_graphs,
    )
    make_dirs(missing)
    lock = DirectoryLock(out)
    try:
        note = lock.acquire()
    except UsageError:
        remove_dirs(missing)
        raise
    try:
        if note:
            print(f"note: {note}", file=sys.stderr)
        store = ResultStore(out)
        try:
            read = store.read()
        except ResultsFileError as exc:
            raise UsageError(str(exc)) from None
        if read.torn_tail:
            torn = store.repair_tail()
            print(f"note: moved a torn last line of {store.path} to {torn}", file=sys.stderr)
            read = store.read()
        if read.n_skipped:
            print(f"warning: {store.path}: {read.summary()}", file=sys.stderr)
        runner = Runner(store, options)
        rerun = Rerun(failed=args.retry_failed, noisy=args.rerun_noisy)
        executor: LocalExecutor | RayExecutor | PackedExecutor
        if args.executor == "ray":
            executor = RayExecutor(runner, **ray_options, pack=args.pack, rerun=rerun)
            via = f" via Ray ({args.address or 'started here'})"
        elif args.pack > 1:
            executor = PackedExecutor(runner, args.pack, threads or 1, args.mps, rerun)
            via = f", {args.pack} at once"
        else:
            executor, via = LocalExecutor(runner, rerun), ""
        print(
            f"hgbench {mode.value}: {len(cells)} cells on {device} ({args.dtype}){via} -> {out}",
            file=sys.stderr,
        )
        if getattr(args, "cost_pass", False):  # each configuration alone first (docs/gpu.md)
            from hgbench.engine.costpass import cost_pass_first

            left = cost_pass_first(cells, suite.priority, runner, rerun, args, time_budget_s)
            time_budget_s = left
        if time_budget_s is not None:
            cells = _plan(cells, suite, runner, rerun, time_budget_s, args.pack, executor)
        start = time.perf_counter()
        try:
            counts = executor.run(cells)
        except UsageError:
            if not store.path.exists():
                lock.release()
                remove_dirs(missing)
            raise
        done = ", ".join(f"{v} {k}" for k, v in counts.items() if v)
        print(f"finished in {time.perf_counter() - start:.1f}s: {done}", file=sys.stderr)
        print(f"results: {store.path}")
        if not args.no_report:
            _report(out)
    finally:
        lock.release()
    return 0


def _plan(cells, suite, runner, rerun, budget_s: float, pack: int, executor) -> list:
    """The cells a `--time-budget-s` plan runs (engine/plan.py), the finished ones left out."""
    from hgbench.engine import plan as planning
    from hgbench.engine.envinfo import device_name

    device = runner.options.device
    kind = device_name(device) or device.type
    finished = runner.store.finished_cells(rerun.failed, rerun.noisy)
    todo = [c for c in cells if c.key not in finished]
    if len(todo) < len(cells):
        print(f"resuming: {len(cells) - len(todo)} of {len(cells)} cells done", file=sys.stderr)
    from hgbench.engine.costpass import read_cost_rows, wall_estimates

    costs = wall_estimates(read_cost_rows(Path(runner.store.path).parent), kind)
    rows = runner.store.read().rows
    plan = planning.make_plan(todo, suite.priority, budget_s, rows, kind, pack, costs)
    print(planning.describe(plan, budget_s, pack, kind), file=sys.stderr)
    executor.may_start = planning.Deadline(plan, budget_s, pack).may_start
    return plan.cells


def _report(out: Path, export: str | None = None) -> Path:
    from hgbench.report import write_report
    from hgbench.report.html_page import HTML_FILE

    report = write_report(out)
    print(f"report: {report}")
    print(f"html: {report.with_name(HTML_FILE)}")  # beside it: the same report, interactive
    if export is not None:
        from hgbench.report.export import export_rows

        print(f"table: {export_rows(out, export)}")
    return report


def _report_command(args: argparse.Namespace) -> int:
    from hgbench.engine.store import ResultStore

    if args.export is not None:
        from hgbench.report.export import check_format

        check_format(args.export)  # before anything is read: parquet needs pyarrow
    path = results_path(args.dir)  # an archived reference run ships results.jsonl.gz
    try:
        read = ResultStore(args.dir).read() if path.name == RESULTS_FILE else read_results(path)
    except ResultsFileError as exc:
        raise UsageError(str(exc)) from None
    if not path.exists():
        raise UsageError(f"no {RESULTS_FILE} in {args.dir}")
    writable_dir(args.dir, "report")
    if read.n_skipped:
        print(f"warning: {path}: {read.summary()}", file=sys.stderr)
    _report(args.dir, args.export)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        if not argv or (argv[0].startswith("-") and argv[0] not in ("-h", "--help")):
            argv = ["run", *argv]  # `python -m hgbench [--out DIR ...]`: the default suite
        args = build_parser().parse_args(argv)
        from hgbench.engine.plugins import load_plugins

        try:
            load_plugins()
        except ImportError as exc:
            raise UsageError(str(exc)) from None
        if args.command == "list":
            return _list(args.what)
        if args.command == "report":
            return _report_command(args)
        if args.command == "scaling":
            from hgbench.engine.scaling.cli import scaling_command

            return scaling_command(args)
        if args.command == "budgets":
            from hgbench.budgets.study import budgets_command

            return budgets_command(args)
        if args.command == "check":
            from hgbench.engine.check import check_directory

            return check_directory(args.dir)
        return _execute(args, Mode(args.command))
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            "\ninterrupted: finished cells are saved; rerun the same command to resume",
            file=sys.stderr,
        )
        return 130
