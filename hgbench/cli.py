"""The command line: `python -m hgbench [run|probe|report|list] ...` (see DESIGN.md)."""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path

import torch

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
    p.add_argument(
        "--threads",
        type=int,
        help="CPU threads per cell (default 1 on a CPU: several processes or cells sharing "
        "the cores would otherwise oversubscribe them)",
    )
    p.add_argument(
        "--retry-failed",
        action="store_true",
        help="rerun cells that failed or timed out (their old rows stay but stop counting)",
    )
    p.add_argument(
        "--rerun-noisy", action="store_true", help="rerun cells whose timing was flagged noisy"
    )
    p.add_argument("--compile", action="store_true", help="training steps through torch.compile")
    p.add_argument("--no-cuda-graphs", action="store_true", help="(GPU) no CUDA-graph capture")
    p.add_argument(
        "--channels-last", action="store_true", help="image batches in channels-last layout"
    )
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
    ray.add_argument(
        "--pack",
        type=int,
        default=1,
        metavar="N",
        help="N cells at once on the device, one process each (ray: 1/N of a GPU each); epoch "
        "budgets only, rows say timing: packed (docs/gpu.md) [1]",
    )
    ray.add_argument("--mps", action="store_true", help="(--pack, GPU) start NVIDIA MPS first")


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
    run.add_argument(
        "--time-budget-s",
        type=float,
        metavar="T",
        help="run only the cells whose estimated wall seconds fit T, seed-major and by the "
        "suite's priority; rerun to continue (docs/gpu.md)",
    )
    from hgbench.engine.costpass import add_cost_arguments

    add_cost_arguments(run)
    probe = sub.add_parser("probe", help="hypergradient fidelity against exact references")
    _common(probe, "float64")
    probe.add_argument("--repeats", type=int, default=3, help="timed estimates per cell")
    probe.add_argument(
        "--probe-states",
        type=int,
        default=0,
        metavar="N",
        help="also probe at N states drawn from the task's hparam space (reference at each)",
    )
    probe.add_argument(
        "--save-estimates",
        action="store_true",
        help="keep every estimate and its reference under DIR/estimates/ (torch.save)",
    )
    probe.add_argument(
        "--full",
        action="store_true",
        help="every probe_grid setting and the suite's seeds (default: a quick subset, seed 0)",
    )
    report = sub.add_parser("report", help="redraw report.md and figures from stored results")
    report.add_argument("dir", type=Path)
    report.add_argument(
        "--export",
        choices=["csv", "parquet"],
        help="also write DIR/results.<format>: one tidy row per stored row",
    )
    check = sub.add_parser("check", help="list what is wrong with a results directory")
    check.add_argument("dir", type=Path)
    from hgbench.engine.scaling.cli import add_scaling_parser

    add_scaling_parser(sub)
    from hgbench.budgets.study import add_budgets_parser

    add_budgets_parser(sub)
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
            print(f"report: {_report(out)}")
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

    report = write_report(out)
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
    print(f"report: {_report(args.dir, args.export)}")
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
