"""`python -m hgbench budgets`: the budget study's cells through the runner, then its report."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from hgbench.budgets.kinds import BUDGETS
from hgbench.contracts.errors import UsageError

DEFAULT_DIR = Path("reports/budgets")


def add_budgets_parser(sub) -> None:
    p = sub.add_parser("budgets", help="every method at B × one fixed run, and a settings sweep")
    p.add_argument("--out", type=Path, default=DEFAULT_DIR)
    p.add_argument("--tasks", help="comma-separated task names (default: the default suite's)")
    p.add_argument(
        "--methods", help="comma-separated method names (default: all, + hyperband, gp_bo)"
    )
    p.add_argument("--seeds", default="0,1,2,3,4")
    p.add_argument("--budgets", default=",".join(map(str, BUDGETS)), help="runs, e.g. 1,3,10,30")
    p.add_argument("--no-sweep", action="store_true", help="the budget axis only")
    p.add_argument("--no-report", action="store_true")


def _ints(text: str, flag: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise UsageError(f"{flag} takes comma-separated whole numbers, not {text!r}") from None


def budgets_command(args: argparse.Namespace) -> int:
    from hgbench.budgets.plan import BudgetRunner, plan_budget_cells
    from hgbench.engine.executors import LocalExecutor, Rerun
    from hgbench.engine.runner import RunOptions
    from hgbench.engine.store import ResultStore
    from hgbench.report.budgets_writer import write_budget_report

    split = lambda s: [x.strip() for x in s.split(",") if x.strip()] if s else None  # noqa: E731
    cells = plan_budget_cells(
        split(args.tasks),
        split(args.methods),
        _ints(args.seeds, "--seeds"),
        tuple(_ints(args.budgets, "--budgets")),
        sweep=not args.no_sweep,
        context={"device": "cpu", "dtype": "float32"},
    )
    args.out.mkdir(parents=True, exist_ok=True)
    runner = BudgetRunner(
        ResultStore(args.out), RunOptions(torch.device("cpu"), torch.float32, threads=1)
    )
    # Packing (issue 21) plugs in here: a packed executor over `cells` in place of the local one.
    executor = LocalExecutor(runner, Rerun())
    print(f"hgbench budgets: {len(cells)} cells -> {args.out}", file=sys.stderr)
    start = time.perf_counter()
    counts = executor.run(cells)
    print(f"finished in {time.perf_counter() - start:.1f}s: {counts}", file=sys.stderr)
    if not args.no_report:
        print(f"report: {write_budget_report(args.out)}")
    return 0
