"""Does the cost pass predict a whole cell's cost? For every configuration of a suite (its first
seed), the cost pass's stretch and the whole isolated cell, alternately, `--rounds` times each, in
one process on one problem per task (so both share the task's calibration step: the TSE ratio is
the ratio of timed seconds); the cost pass's estimate of the whole cell's TSE (the median curve
of its rounds, hgbench.engine.costpass.CostCurve) against the median of the whole cell's own.

    python benchmarks/costpass_agreement.py [--suite default] [--rounds 3] [--cost-epochs 3]
        [--tasks ...] [--methods ...] [--set K=V ...] [--threads 1]

Alternating the two within a configuration keeps a change of the machine's load from falling on
one of them only. Prints one line per configuration and how many agree within 10%, with the
1-minute load average at the start and end: on a shared machine say the load beside the figure.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import time
from typing import Any

import torch

from hgbench.contracts.schema import Mode
from hgbench.contracts.suites import SUITES
from hgbench.engine.costpass import CostCurve, cost_cells, curve_from_rows
from hgbench.engine.planning import plan_cells
from hgbench.engine.plugins import load_plugins
from hgbench.engine.runner import Runner, RunOptions
from hgbench.engine.stretch import COST_PASS

TOLERANCE = 0.10


class _Rows:
    """An in-memory store: the rows of the latest execution."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []
        self.path = "<memory>"

    def append(self, row: dict[str, Any]) -> None:
        self.rows.append(row)

    def take(self) -> list[dict[str, Any]]:
        rows, self.rows = self.rows, []
        return rows


def _median_curve(curves: list[CostCurve], epochs: float) -> float:
    return statistics.median(c.tse_at(epochs) for c in curves)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", default="default")
    parser.add_argument("--tasks")
    parser.add_argument("--methods")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cost-epochs", type=float, default=3.0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--set", dest="sets", action="append", default=[])
    args = parser.parse_args()
    load_plugins()
    torch.set_num_threads(args.threads)
    suite = SUITES[args.suite]
    cells = plan_cells(
        Mode.RUN, suite, args.tasks, args.methods, [args.seed], args.sets, {"device": "cpu"}
    )
    store = _Rows()
    runner = Runner(store, RunOptions(torch.device("cpu"), torch.float32, threads=args.threads))
    load0, start = os.getloadavg()[0], time.perf_counter()
    print(f"{'task':18s} {'method':22s} {'own TSE':>10s} {'estimate':>10s} {'ratio':>6s}  stretch")
    ratios: list[tuple[float, bool]] = []
    for cost in cost_cells(cells, args.cost_epochs, "cpu"):
        # the whole cell on the same task (evaluated every epoch, as the cost cell), not stopped
        whole = dataclasses.replace(
            cost, context={k: v for k, v in cost.context.items() if k != COST_PASS}
        )
        curves, own = [], []
        for _ in range(args.rounds):
            runner.execute(cost)
            curve = curve_from_rows(store.take())
            runner.execute(whole)
            final = store.take()[-1]
            if curve is None or final["status"] != "ok" or not final.get("tse"):
                break
            curves.append(curve)
            own.append((final["tse"], final["epoch"]))
        if len(own) < args.rounds:
            continue  # skipped or failed: nothing to compare
        epochs = own[0][1]
        mine = statistics.median(t for t, _ in own)
        estimate = _median_curve(curves, epochs)
        stretched = not curves[0].whole
        stretch = f"{curves[0].epochs[-1]:g} of {epochs:g} ep" if stretched else "whole seed"
        # a stretch that reached the schedule's end (MIN_SECONDS of timed work takes a small
        # task's whole seed) measured the cell itself: only a part of it tests the estimate
        ratios.append((estimate / mine, stretched and curves[0].epochs[-1] < epochs - 1e-9))
        print(
            f"{cost.task.name:18s} {cost.method:22s} {mine:10.1f} {estimate:10.1f} "
            f"{estimate / mine:6.3f}  {stretch}",
            flush=True,
        )
    wall, load1 = time.perf_counter() - start, os.getloadavg()[0]
    values = [r for r, _ in ratios]
    within = sum(abs(r - 1) <= TOLERANCE for r in values)
    print(
        f"\n{len(values)} configurations, medians of {args.rounds} rounds: {within} within "
        f"{TOLERANCE:.0%} (median ratio {statistics.median(values):.3f}, "
        f"range {min(values):.3f}-{max(values):.3f})"
    )
    part = [r for r, s in ratios if s]
    inside = sum(abs(r - 1) <= TOLERANCE for r in part)
    print(f"measured over part of the schedule: {inside} of {len(part)} within")
    print(f"wall {wall:.0f} s; 1-minute load {load0:.2f} at the start, {load1:.2f} at the end")


if __name__ == "__main__":
    main()
