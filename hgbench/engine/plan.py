"""A plan that fits a time budget (`run --time-budget-s T`): which cells, in which order.

Cells run seed-major (every cell of the first seed, then the next), and within a seed in the
order of the suite's `priority` (task-name patterns; the first match ranks a cell, unmatched
cells last, in suite order). Each cell's wall-clock seconds are estimated, per (task, method,
settings) and per epoch, from the isolated final rows of the same device kind already in the
store (their `wall_s`, which includes set-up and evaluation), else from the isolated cost pass
(engine/costpass.py: its timed curve at the cell's epochs plus its stretch's untimed seconds),
else from the committed table `hgbench/engine/plan_estimates.json`, else from
`DEFAULT_WALL_PER_EPOCH_S`. The plan takes cells in
order while their estimates (divided by the packing factor) fit, and stops at the first that
does not, so that what runs is a prefix of the seed-major order: whole seeds first. While it
runs, a cell starts only if its estimate fits the time left; a started cell always finishes.
"""

from __future__ import annotations

import fnmatch
import json
import statistics
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING, Any

from hgbench.contracts.schema import Mode, Status, Timing

if TYPE_CHECKING:  # the report reads cost curves through engine/costpass.py: no torch at import
    from hgbench.engine.cells import Cell

DEFAULT_WALL_PER_EPOCH_S = 1.0  # an unmeasured cell: pessimistic for the CPU tasks, so it waits
TABLE = "plan_estimates.json"


def device_kind(row: dict[str, Any]) -> str:
    """What a row's timings are comparable across: the GPU's name, or `cpu`."""
    env = row.get("env") or {}
    return str(env.get("device_name") or row.get("device") or "unknown")


def config_key(task: str, method: str, method_params: dict[str, Any]) -> str:
    return f"{task}|{method}|{json.dumps(method_params, sort_keys=True, default=str)}"


def measured_walls(rows: list[dict[str, Any]], kind: str) -> dict[str, float]:
    """Median wall seconds per epoch of each (task, method, settings) timed alone on `kind`."""
    per: dict[str, list[float]] = defaultdict(list)
    for row in rows:
        if not (row.get("final") and row["status"] == Status.OK and row["mode"] == Mode.RUN):
            continue
        if row.get("timing", Timing.ISOLATED) != Timing.ISOLATED or device_kind(row) != kind:
            continue
        if row.get("wall_s") and row.get("epoch"):
            key = config_key(row["task"], row["method"], row.get("method_params") or {})
            per[key].append(row["wall_s"] / row["epoch"])
    return {k: statistics.median(v) for k, v in per.items()}


def committed_table(kind: str) -> dict[str, float]:
    """The committed per-device table (wall seconds per epoch), `{}` for a device it lacks."""
    text = resources.files("hgbench.engine").joinpath(TABLE).read_text()
    return json.loads(text).get(kind, {})


@dataclass(frozen=True)
class Estimate:
    seconds: float
    source: str  # "store", "cost", "table" or "default"


# configuration -> estimated wall seconds of a whole cell of E epochs (engine/costpass.py)
CostEstimates = dict[str, Callable[[int], float]]


def estimate(
    cell: Cell,
    measured: dict[str, float],
    table: dict[str, float],
    costs: CostEstimates | None = None,
    epochs: int | None = None,
) -> Estimate:
    """`epochs`: what the cell will run (default: its task's)."""
    key = config_key(cell.task.name, cell.method, cell.method_params)
    if epochs is None:
        epochs = max(1, int(getattr(cell.task, "epochs", 1) or 1))
    if key in measured:
        return Estimate(measured[key] * epochs, "store")
    if costs and key in costs:
        return Estimate(costs[key](epochs), "cost")
    if key in table:
        return Estimate(table[key] * epochs, "table")
    return Estimate(DEFAULT_WALL_PER_EPOCH_S * epochs, "default")


def rank(task: str, priority: tuple[str, ...]) -> int:
    for k, pattern in enumerate(priority):
        if fnmatch.fnmatchcase(task, pattern):
            return k
    return len(priority)


def order(cells: list[Cell], priority: tuple[str, ...]) -> list[Cell]:
    """Seed-major, then the suite's priority, then the suite's own order (a stable sort)."""
    seeds = list(dict.fromkeys(c.seed for c in cells))
    return sorted(cells, key=lambda c: (seeds.index(c.seed), rank(c.task.name, priority)))


@dataclass(frozen=True)
class Plan:
    cells: list[Cell]  # what fits, in order
    estimates: dict[str, Estimate]  # cell key -> estimate (every cell offered)
    left_out: int  # cells that did not fit
    planned_s: float  # the estimated wall seconds of what fits (divided by the packing)

    def sources(self) -> dict[str, int]:
        out: dict[str, int] = defaultdict(int)
        for c in self.cells:
            out[self.estimates[c.key].source] += 1
        return dict(out)


def make_plan(
    cells: list[Cell],
    priority: tuple[str, ...],
    budget_s: float,
    rows: list[dict[str, Any]],
    kind: str,
    pack: int = 1,
    costs: CostEstimates | None = None,
) -> Plan:
    """The prefix of the ordered cells whose estimates fit `budget_s` (see the module)."""
    measured, table = measured_walls(rows, kind), committed_table(kind)
    ordered = order(cells, priority)
    estimates = {c.key: estimate(c, measured, table, costs) for c in ordered}
    chosen, total = [], 0.0
    for cell in ordered:
        cost = estimates[cell.key].seconds / pack
        if total + cost > budget_s:
            break
        chosen.append(cell)
        total += cost
    return Plan(chosen, estimates, len(ordered) - len(chosen), total)


class Deadline:
    """While a plan runs: a cell starts only if its estimate fits the time left."""

    def __init__(self, plan: Plan, budget_s: float, pack: int = 1) -> None:
        import time

        self._clock = time.perf_counter
        self.plan, self.budget_s, self.pack = plan, budget_s, pack
        self.start = self._clock()
        self.refused = 0

    def may_start(self, cell: Cell) -> bool:
        left = self.budget_s - (self._clock() - self.start)
        if self.plan.estimates[cell.key].seconds / self.pack <= left:
            return True
        self.refused += 1
        return False


def describe(plan: Plan, budget_s: float, pack: int, kind: str) -> str:
    sources = ", ".join(f"{n} from {s}" for s, n in sorted(plan.sources().items()))
    return (
        f"plan for {budget_s:.0f} s on {kind}: {len(plan.cells)} cells fit "
        f"(~{plan.planned_s:.0f} s estimated{f', {pack} at once' if pack > 1 else ''}; "
        f"estimates: {sources or 'none'}), {plan.left_out} left for a later run"
    )
