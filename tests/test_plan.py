"""`run --time-budget-s`: seed-major order by the suite's priority, estimates from the store's
isolated rows (else the committed table, else a default), a prefix that fits, resumed by a rerun."""

from __future__ import annotations

from pathlib import Path

from hgbench.contracts.schema import Mode
from hgbench.contracts.suites import Suite
from hgbench.engine import plan as planning
from hgbench.engine.planning import plan_cells
from hgbench.engine.plugins import load_plugins
from hgbench.engine.store import read_rows

load_plugins()
SUITE = Suite(
    name="plan-test", description="", tasks=("ridge", "digits_cleaning"), methods=("fixed",),
    seeds=(0, 1), priority=("digits_*",),
)  # fmt: skip


def _cells():
    return plan_cells(Mode.RUN, SUITE, None, None, None, ["task.epochs=2"], {"device": "cpu"})


def test_order_is_seed_major_then_priority() -> None:
    ordered = planning.order(_cells(), SUITE.priority)
    assert [(c.seed, c.task.name) for c in ordered] == [
        (0, "digits_cleaning"), (0, "ridge"), (1, "digits_cleaning"), (1, "ridge"),
    ]  # fmt: skip


def _row(task: str, wall: float, epoch: int = 2, timing: str = "isolated", kind="cpu") -> dict:
    return {
        "mode": "run", "task": task, "method": "fixed", "method_params": {}, "status": "ok",
        "final": True, "wall_s": wall, "epoch": epoch, "timing": timing, "device": kind, "env": {},
    }  # fmt: skip


def test_estimates_come_from_isolated_rows_of_the_same_device_per_epoch() -> None:
    cells = _cells()
    params = {c.task.name: c.method_params for c in cells}
    rows = [
        {**_row("ridge", 4.0), "method_params": params["ridge"]},  # 2 s an epoch
        {**_row("ridge", 1.0, timing="packed"), "method_params": params["ridge"]},  # ignored
        {**_row("ridge", 1.0, kind="cuda"), "method_params": params["ridge"]},  # other device
    ]
    measured = planning.measured_walls(rows, "cpu")
    ridge = next(c for c in cells if c.task.name == "ridge")
    cleaning = next(c for c in cells if c.task.name == "digits_cleaning")
    assert planning.estimate(ridge, measured, {}) == planning.Estimate(4.0, "store")
    fallback = planning.estimate(cleaning, measured, {})
    assert fallback == planning.Estimate(2 * planning.DEFAULT_WALL_PER_EPOCH_S, "default")
    # 3 + 4 + 3 + 4: a budget of 10 s takes the first two cells (seed 0 whole) and stops
    rows.append({**_row("digits_cleaning", 3.0, epoch=1), "method_params": params["ridge"]})
    plan = planning.make_plan(cells, SUITE.priority, 10.0, rows, "cpu")
    assert [(c.seed, c.task.name) for c in plan.cells] == [(0, "digits_cleaning"), (0, "ridge")]
    assert plan.left_out == 2
    packed = planning.make_plan(cells, SUITE.priority, 10.0, rows, "cpu", pack=2)
    assert len(packed.cells) == 4  # 14 s of cells two at a time: 7 s


def test_cli_runs_what_fits_and_a_rerun_continues(cli, tmp_path: Path, monkeypatch) -> None:
    # a default estimate far above what these cells take, so the deadline never cuts them
    monkeypatch.setattr(planning, "DEFAULT_WALL_PER_EPOCH_S", 100.0)
    out = tmp_path / "out"
    grid = ("run", "--tasks", "ridge", "--methods", "fixed,ift_neumann", "--seeds", "0,1,2")
    grid += ("--set", "task.epochs=2", "--no-report", "--out", str(out))
    # unmeasured: 2 epochs at the default estimate each, so a budget of 4.5 default-epochs fits 2
    first = cli(*grid, "--time-budget-s", "450")
    assert first.code == 0, first.err
    assert "2 cells fit" in first.err and "4 left for a later run" in first.err
    rows = [r for r in read_rows(out / "results.jsonl") if r["final"]]
    assert [(r["seed"], r["method"]) for r in rows] == [(0, "fixed"), (0, "ift_neumann")]
    assert all(r["wall_s"] > 0 for r in rows)
    # the rerun estimates from the rows it finds and goes on with seed 1 onwards
    second = cli(*grid, "--time-budget-s", "600")
    assert second.code == 0 and "resuming: 2 of 6 cells done" in second.err
    assert "4 cells fit" in second.err and "4 from store" in second.err
    assert len([r for r in read_rows(out / "results.jsonl") if r["final"]]) == 6


def test_time_budget_with_a_cell_budget_exits_2(cli, tmp_path: Path) -> None:
    result = cli("run", "--tasks", "ridge", "--time-budget-s", "10", "--budget-s", "1",
                 "--out", str(tmp_path / "o"))  # fmt: skip
    assert result.code == 2 and "drop --budget-s" in result.err
