"""`python -m hgbench budgets`: the budget study's cells through the runner, then its report."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import torch

from hgbench.budgets.kinds import BUDGETS
from hgbench.contracts.errors import UsageError
from hgbench.contracts.schema import results_path

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
    p.add_argument(
        "--report-only",
        action="store_true",
        help="redraw report.md, report.html and the figures from OUT's stored rows; run nothing",
    )
    p.add_argument(
        "--pack",
        type=int,
        default=1,
        help="cells at once, one process each (hgbench.engine.packing); rows say timing: packed",
    )


def _ints(text: str, flag: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise UsageError(f"{flag} takes comma-separated whole numbers, not {text!r}") from None


class _LabelledStore:
    """The store, filling in each row's budget and setting from its cell: a packed worker runs
    the plain `Runner`, whose rows lack the two fields `BudgetRunner.base_row` adds."""

    def __init__(self, store, cells) -> None:
        self._store = store
        self._labels = {c.key: (c.context["runs"], c.context["setting"]) for c in cells}

    def append(self, row: dict[str, Any]) -> None:
        runs, setting = self._labels.get(row["cell"], (None, None))
        if runs is not None:
            row = {"budget_runs": runs, "setting": setting, **row}
        self._store.append(row)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


def budgets_command(args: argparse.Namespace) -> int:
    from hgbench.budgets.plan import BudgetRunner, plan_budget_cells
    from hgbench.engine.executors import LocalExecutor
    from hgbench.engine.packing import PackedExecutor, check_pack
    from hgbench.engine.runner import RunOptions
    from hgbench.engine.store import ResultStore
    from hgbench.report.budgets_writer import write_budget_report

    if args.report_only:  # the rows as stored (results.jsonl, or its .gz archive)
        if not results_path(args.out).exists():
            raise UsageError(f"--report-only: no stored rows in {args.out}")
        print(f"report: {write_budget_report(args.out)}")
        return 0
    check_pack(args.pack, None)  # the study has no time budget per cell
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
    options = RunOptions(torch.device("cpu"), torch.float32, threads=1, pack=args.pack)
    runner = BudgetRunner(_LabelledStore(ResultStore(args.out), cells), options)
    # Packed cells compute what serial ones do (tests/test_budgets.py checks it), with one
    # caveat: an online method retrains when its measured seconds leave a run of budget, so a
    # cell near that edge can decide differently when packing slows it (docs/budgets.md).
    executor: LocalExecutor | PackedExecutor = (
        PackedExecutor(runner, args.pack, threads=1) if args.pack > 1 else LocalExecutor(runner)
    )
    via = f", {args.pack} at once" if args.pack > 1 else ""
    print(f"hgbench budgets: {len(cells)} cells{via} -> {args.out}", file=sys.stderr)
    start = time.perf_counter()
    counts = executor.run(cells)
    print(f"finished in {time.perf_counter() - start:.1f}s: {counts}", file=sys.stderr)
    if not args.no_report:
        print(f"report: {write_budget_report(args.out)}")
    return 0
