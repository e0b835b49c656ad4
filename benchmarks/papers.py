"""Reproduce each paper's headline result with hgbench: reports/papers/<paper>/report.md.

    python benchmarks/papers.py {lorraine2020,maclaurin2015,immer2023,immer2021,all}
                                [--out reports/papers] [--report-only]

Each paper's cells (its run suites, as registered in hgbench/contracts/suites.py, and the probe and
sweep cells listed in benchmarks/papers_specs.py) go through hgbench's runner into one results.jsonl
per paper, resumably: a rerun skips every finished cell. Diagnostics that are not cells (the
joint-loop traces of Lorraine et al.'s divergence) go to diagnostics.json beside it. The report
(figures, and the claims table: the paper's value and source, hgbench's value over seeds, a
verdict) is drawn from those files only (hgbench/report/papers*.py). Sized for a 2-core CPU:
each paper's CPU part finishes within 20 minutes there; the CIFAR-scale parts run from
the papers part of benchmarks/gpu_reference.sh.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from hgbench.contracts.schema import Mode
from hgbench.contracts.suites import SUITES
from hgbench.engine.executors import LocalExecutor
from hgbench.engine.planning import plan_cells
from hgbench.engine.plugins import load_plugins
from hgbench.engine.runner import Cell, Runner, RunOptions
from hgbench.engine.store import DirectoryLock, ResultStore

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/ is not a package
import papers_specs  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DTYPES = {"float32": torch.float32, "float64": torch.float64}


def suite_cells(part: papers_specs.SuitePart) -> list[Cell]:
    """The cells `python -m hgbench <mode> --suite S` plans, keyed as the CLI keys them."""
    context = papers_specs.context(part.mode, part.dtype)
    return plan_cells(part.mode, SUITES[part.suite], None, None, None, [], context)


def execute(out: Path, cells: list[Cell], mode: Mode, dtype: str) -> dict[str, int]:
    """Run `cells` (all of one mode and dtype) into out/results.jsonl, skipping finished ones."""
    options = RunOptions(
        device=torch.device("cpu"),
        dtype=DTYPES[dtype],
        probe_repeats=papers_specs.PROBE_REPEATS,
        threads=1,  # the CLI's default on a CPU: cells never oversubscribe a shared machine
    )
    runner = Runner(ResultStore(out), options)
    return LocalExecutor(runner).run(cells)


def reproduce(paper: papers_specs.Paper, out: Path, report_only: bool) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    if not report_only:
        start = time.perf_counter()
        with DirectoryLock(out):
            for part in paper.parts:
                is_suite = isinstance(part, papers_specs.SuitePart)
                cells = suite_cells(part) if is_suite else part.cells()
                print(f"{paper.key}: {part.label} ({len(cells)} cells)", file=sys.stderr)
                execute(out, cells, part.mode, part.dtype)
            if paper.diagnostics is not None:
                print(f"{paper.key}: diagnostics", file=sys.stderr)
                paper.diagnostics(out)
        print(f"{paper.key}: cells done in {time.perf_counter() - start:.0f} s", file=sys.stderr)
    return paper.report(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paper", choices=[*papers_specs.PAPERS, "all"])
    parser.add_argument("--out", type=Path, default=ROOT / "reports" / "papers")
    parser.add_argument(
        "--report-only", action="store_true", help="redraw the report from stored results"
    )
    args = parser.parse_args(argv)
    load_plugins()
    keys = list(papers_specs.PAPERS) if args.paper == "all" else [args.paper]
    for key in keys:
        report = reproduce(papers_specs.PAPERS[key], args.out / key, args.report_only)
        print(f"report: {report}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
