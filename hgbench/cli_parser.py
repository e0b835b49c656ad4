"""The command line's parser: every subcommand, flag and help text of `python -m hgbench`.

Only the flags live here (the CLI reference in docs/cli.md is generated from `build_parser`);
what each command does with them is in hgbench/cli.py, which checks the values before any work.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from hgbench.contracts.errors import UsageError

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
