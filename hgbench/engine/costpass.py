"""The isolated cost pass (`run --cost-pass`): each (task, method, settings) alone on the device.

A packed cell's seconds are not its cost (hgbench.engine.packing). The cost pass runs one cell per
configuration (its first seed), unpacked, into its own resumable store `DIR/cost/`, for the stretch
of its schedule that covers its periodic work (hgbench.engine.stretch: burn-in plus whole periods
of fits or hyper-steps) or, where the method's work depends on its whole budget, one whole seed.
Its rows (one every epoch) give the cumulative timed seconds and training-step equivalents (TSE)
of that configuration on that device kind, epoch by epoch: a `CostCurve`. A whole cell's cost at
epoch E is the measured curve up to the stretch's end and, beyond it, the rate measured over the
periods after the burn-in. The report (hgbench.report.costs) gives packed rows these cost axes and
keeps every seed's own quality columns; a time-budgeted plan (engine/plan.py) estimates from them.
The cost cells carry the device's name in their context, so a store that grows across GPUs of
different kinds measures each kind once.
"""

from __future__ import annotations

import bisect
import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hgbench.contracts.schema import Mode, Status, read_results
from hgbench.engine.plan import config_key, device_kind
from hgbench.engine.stretch import COST_PASS, DEFAULT_MIN_EPOCHS

if TYPE_CHECKING:  # the report reads cost curves: no runner (and torch) at import
    from hgbench.engine.cells import Cell, RunOptions

COST_DIR = "cost"
# a time-budgeted cost cell is planned as this many epochs past its minimum (a burn-in not yet
# known before its problem is built): pessimistic, so a cost cell never overruns the budget
PLANNED_EXTRA_EPOCHS = 10
# under a time budget the cost pass starts cells only within this share of it, so that the grid
# it serves always gets the rest (what it leaves unmeasured, a later run measures)
COST_SHARE = 0.5


@dataclass(frozen=True)
class CostCurve:
    """Cumulative cost of one configuration epoch by epoch, as its cost-pass cell measured it."""

    epochs: tuple[float, ...]  # increasing, from 0
    time_s: tuple[float, ...]
    tse: tuple[float, ...]
    burnin: float
    whole: bool  # the stretch was the whole schedule
    overhead_s: float = 0.0  # the stretch's wall seconds beyond its timed ones (set-up, evaluation)

    def _interp(self, values: tuple[float, ...], epoch: float) -> float:
        e = self.epochs
        if epoch <= e[-1]:
            k = min(max(bisect.bisect_left(e, epoch), 1), len(e) - 1)
            w = (epoch - e[k - 1]) / (e[k] - e[k - 1])
            return values[k - 1] + w * (values[k] - values[k - 1])
        return values[-1] + (epoch - e[-1]) * self._rate(values)

    def _rate(self, values: tuple[float, ...]) -> float:
        """Per epoch over the periods after the burn-in (all of it where it had none)."""
        start = min(self.burnin, self.epochs[-1])
        span = self.epochs[-1] - start
        if span <= 1e-9:
            return values[-1] / self.epochs[-1]
        return (values[-1] - self._interp(values, start)) / span

    def time_at(self, epoch: float) -> float:
        return self._interp(self.time_s, epoch)

    def tse_at(self, epoch: float) -> float:
        return self._interp(self.tse, epoch)

    @property
    def tse_per_epoch(self) -> float:
        """The steady cost per epoch in TSE (what the cost pass reports per configuration)."""
        return self._rate(self.tse)

    def wall_at(self, epochs: float) -> float:
        """A whole cell's estimated wall seconds: its timed ones plus the stretch's overhead."""
        return self.overhead_s + self.time_at(epochs)


def curve_from_rows(rows: list[dict[str, Any]]) -> CostCurve | None:
    """The curve of one attempt's rows (its final row ok), or None."""
    final = rows[-1]
    if not (final.get("final") and final["status"] == Status.OK and final.get("stretch")):
        return None
    points = {0.0: (0.0, 0.0)}  # the first checkpoint is set-up: untimed
    for row in rows:
        if row.get("epoch") is not None and row.get("time_s") is not None and row.get("tse"):
            points[float(row["epoch"])] = (float(row["time_s"]), float(row["tse"]))
    epochs = sorted(points)
    if len(epochs) < 2:
        return None
    stretch = final["stretch"]
    wall = final.get("wall_s")
    return CostCurve(
        epochs=tuple(epochs),
        time_s=tuple(points[e][0] for e in epochs),
        tse=tuple(points[e][1] for e in epochs),
        burnin=float(stretch.get("burnin") or 0.0),
        whole=stretch.get("stop") is None,
        overhead_s=max(wall - final["time_s"], 0.0) if wall is not None else 0.0,
    )


def cost_curves(rows: list[dict[str, Any]]) -> dict[tuple[str, str], CostCurve]:
    """(device kind, configuration) -> the latest completed cost-pass curve among `rows`."""
    attempts: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        if row.get("mode") == Mode.RUN and row.get("stretch") is not None:
            attempts.setdefault(row["attempt"], []).append(row)
    out: dict[tuple[str, str], CostCurve] = {}
    for group in attempts.values():  # in file order: a later attempt replaces an earlier one
        curve = curve_from_rows(group)
        if curve is not None:
            row = group[-1]
            key = config_key(row["task"], row["method"], row["method_params"])
            out[(device_kind(row), key)] = curve
    return out


def read_cost_rows(out_dir: Path) -> list[dict[str, Any]]:
    path = Path(out_dir) / COST_DIR / "results.jsonl"
    return read_results(path).rows if path.exists() else []


def wall_estimates(rows: list[dict[str, Any]], kind: str) -> dict[str, Callable[[int], float]]:
    """Configuration -> estimated wall seconds of a whole cell of E epochs, for a plan."""
    return {key: c.wall_at for (k, key), c in cost_curves(rows).items() if k == kind}


def cost_cells(cells: list[Cell], min_epochs: float, kind: str) -> list[Cell]:
    """One cell per run-mode configuration of `cells` (its first seed), evaluated every epoch,
    its context marking it a cost-pass cell for `kind`."""
    chosen: dict[str, Cell] = {}
    for cell in cells:
        key = config_key(cell.task.name, cell.method, cell.method_params)
        if cell.mode != Mode.RUN or key in chosen:
            continue
        task = dataclasses.replace(cell.task, eval_every=1)
        context = {**cell.context, COST_PASS: float(min_epochs), "device_kind": kind}
        chosen[key] = dataclasses.replace(cell, task=task, context=context)
    return list(chosen.values())


def planned_epochs(cell: Cell) -> int:
    """The epochs a plan charges a cost cell (see PLANNED_EXTRA_EPOCHS)."""
    wanted = math.ceil(cell.context[COST_PASS]) + PLANNED_EXTRA_EPOCHS
    return min(cell.task.epochs, wanted)


def run_cost_pass(
    cells: list[Cell],
    options: RunOptions,
    out: Path,
    min_epochs: float,
    kind: str,
    log: Any,
    may_start: Callable[[Cell], bool] | None = None,
) -> dict[str, int]:
    """Run the cost cells of `cells` one at a time, alone on the device, into `out/cost/`."""
    from hgbench.engine.executors import LocalExecutor
    from hgbench.engine.runner import Runner
    from hgbench.engine.store import ResultStore

    options = dataclasses.replace(options, pack=1, budget_s=None)
    cost_dir = Path(out) / COST_DIR
    cost_dir.mkdir(parents=True, exist_ok=True)
    todo = cost_cells(cells, min_epochs, kind)
    print(f"cost pass: {len(todo)} configurations alone on the device -> {cost_dir}", file=log)
    executor = LocalExecutor(Runner(ResultStore(cost_dir), options, log))
    executor.may_start = may_start
    start = time.perf_counter()
    counts = executor.run(todo)
    print(f"cost pass: {time.perf_counter() - start:.1f}s", file=log)
    return counts


def _positive(text: str) -> float:
    from hgbench.contracts.errors import UsageError

    try:
        value = float(text)
    except ValueError:
        raise UsageError(f"--cost-epochs expects a number of epochs, got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise UsageError("--cost-epochs must be a positive number of epochs")
    return value


def add_cost_arguments(parser: Any) -> None:
    """`run`'s cost-pass options."""
    parser.add_argument(
        "--cost-pass",
        action="store_true",
        help="first, each (task, method, settings) alone over a stretch covering its periodic "
        "work, into DIR/cost/: the cost axes of packed rows and a plan's estimates (docs/gpu.md)",
    )
    parser.add_argument(
        "--cost-epochs",
        type=_positive,
        default=DEFAULT_MIN_EPOCHS,
        metavar="E",
        help="(cost pass) the fewest epochs of periodic work a stretch spans "
        f"[{DEFAULT_MIN_EPOCHS:g}]",
    )


def cost_pass_first(
    cells: list[Cell],
    priority: tuple[str, ...],
    runner: Any,
    rerun: Any,
    args: Any,
    budget_s: float | None,
) -> float | None:
    """`run --cost-pass`: the cost cells of the configurations the grid will run and has no
    curve for on this device kind, before the grid; returns the time budget left for the grid.

    Under a time budget the configurations are measured in the plan's order (seed-major, the
    suite's priority), and a cost cell starts only while (1) its pessimistic estimate
    (PLANNED_EXTRA_EPOCHS) fits what is left of the cost pass's share (COST_SHARE) of the budget
    and (2) the grid, estimated from what has been measured so far, can still start the
    configuration's first cell in what the budget leaves after it. Measuring in order, rather
    than only the configurations a plan from unmeasured estimates reaches, is what sizes a first
    run on a fresh device: there every cell is estimated at `DEFAULT_WALL_PER_EPOCH_S` (a second
    an epoch, tens of times a GPU's), which alone would plan a few cells.
    """
    from hgbench.engine import plan as planning
    from hgbench.engine.envinfo import device_name

    min_epochs, pack = args.cost_epochs, args.pack
    out = Path(runner.store.path).parent
    device = runner.options.device
    kind = device_name(device) or device.type
    start = time.perf_counter()
    cost_rows = read_cost_rows(out)
    chosen, may_start = cells, None
    if budget_s is not None:
        finished = runner.store.finished_cells(rerun.failed, rerun.noisy)
        rows = runner.store.read().rows
        chosen = planning.order([c for c in cells if c.key not in finished], priority)
        measured, table = planning.measured_walls(rows, kind), planning.committed_table(kind)
        ahead = _cells_ahead(chosen)

        def may_start(cell: Cell) -> bool:
            spent = time.perf_counter() - start
            costs = wall_estimates(read_cost_rows(out), kind)  # what is measured by now
            seconds = planning.estimate(cell, measured, table, costs, planned_epochs(cell)).seconds
            if seconds > COST_SHARE * budget_s - spent:
                return False
            key = config_key(cell.task.name, cell.method, cell.method_params)
            grid = sum(planning.estimate(c, measured, table, costs).seconds for c in ahead[key])
            return spent + seconds + grid / pack < budget_s

    have = cost_curves(cost_rows)
    missing = [
        c for c in chosen if (kind, config_key(c.task.name, c.method, c.method_params)) not in have
    ]
    run_cost_pass(missing, runner.options, out, min_epochs, kind, runner.log, may_start)
    if budget_s is None:
        return None
    return max(budget_s - (time.perf_counter() - start), 0.0)


def _cells_ahead(ordered: list[Cell]) -> dict[str, list[Cell]]:
    """Configuration -> the planned cells before its first one (in plan order): what the grid
    runs before it reaches the configuration."""
    out: dict[str, list[Cell]] = {}
    for k, cell in enumerate(ordered):
        out.setdefault(config_key(cell.task.name, cell.method, cell.method_params), ordered[:k])
    return out
