"""The isolated cost pass: which stretch of a schedule it measures (burn-in plus whole periods of
the method's periodic work, or one whole seed), the arithmetic that turns the stretch into a whole
cell's cost, and `run --cost-pass` giving packed rows their cost axes in the report (and saying
so) while every seed keeps its own quality columns. Whether the estimates agree with whole cells'
own TSE is timing, so a benchmark shows it: benchmarks/costpass_agreement.py (docs/gpu.md)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from hgbench.contracts.method import METHODS, Periodic
from hgbench.contracts.schema import Mode
from hgbench.contracts.suites import SUITES
from hgbench.engine import plan as planning
from hgbench.engine.costpass import (
    COST_DIR,
    CostCurve,
    cost_curves,
    curve_from_rows,
    read_cost_rows,
)
from hgbench.engine.plan import config_key
from hgbench.engine.planning import plan_cells
from hgbench.engine.plugins import load_plugins
from hgbench.engine.store import read_rows
from hgbench.engine.stretch import choose

load_plugins()


@pytest.mark.parametrize(
    "periodic, epochs, min_epochs, stop, first",
    [
        (Periodic(10, 5), 600, 3, 15.0, 15),  # the CIFAR protocol's laplace_full: its first fit
        (Periodic(10, 5), 600, 12, 25.0, 25),  # three whole periods span at least 12 epochs
        # every 10 steps of 7 an epoch: 3 periods end at 4.29 epochs; at 5 the 4th is half done,
        # and whole periods and whole epochs meet at 10 (70 steps)
        (Periodic(0, 10 / 7), 600, 3, 5.0, 10),
        (Periodic(0, 0.1), 20, 3, 3.0, 3),  # every step: the minimum
        (Periodic(1, 2), 4, 3, None, None),  # 1 + 2 * 2 = 5 is past the schedule's 4: whole seed
        (None, 20, 3, None, None),  # work that depends on the whole budget: the whole seed
    ],
)
def test_the_stretch_covers_burn_in_and_whole_periods(
    periodic, epochs, min_epochs, stop, first
) -> None:
    stretch = choose(periodic, epochs, min_epochs)
    assert stretch.stop == stop
    if stop is None:
        assert not any(stretch.reached(e) for e in range(epochs + 1))
        return
    periods = (stop - periodic.burnin) / periodic.period
    assert periods >= 1 and stop - periodic.burnin >= min_epochs - 1e-9
    reached = [e for e in range(epochs + 1) if stretch.reached(e)]
    assert reached[0] == first
    assert not stretch.reached(first, timed_s=0.1)  # too short a measurement: it goes on


def test_a_short_stretch_goes_on_to_the_end_of_a_whole_period() -> None:
    stretch = choose(Periodic(1, 2), 100, 3)  # stop 5: burn-in 1 + two periods
    assert stretch.stop == 5.0 and stretch.min_seconds > 0
    assert not stretch.reached(5, timed_s=0.01)  # not yet enough timed work
    assert not stretch.reached(6, timed_s=1.0)  # enough, but half a period: a fit is missing
    assert stretch.reached(7, timed_s=1.0)  # three whole periods
    every_step = choose(Periodic(0, 0.1), 100, 3)
    assert every_step.reached(4, timed_s=1.0)  # periods shorter than an epoch: any epoch


def test_every_method_states_its_periodic_work_or_is_measured_whole(short_task) -> None:
    """On a real problem: each registered method's stretch covers its burn-in and a whole period
    of its work, and the CIFAR protocol's Laplace settings stop after their first fit."""
    problem = short_task("digits_mlp", epochs=600).build(0, _cpu(), _f32())
    whole = set()
    for name, cls in METHODS.items():
        periodic = cls().periodic_work(problem)
        stretch = choose(periodic, 600, 3)
        if periodic is None:
            whole.add(name)
            assert stretch.stop is None
            continue
        assert stretch.stop is not None
        assert stretch.stop >= periodic.burnin + periodic.period - 1e-9, name
    # the searches plan their trials from the whole budget; reversal counts meta-iterations
    assert {"random_search", "tpe", "reversible_sgd", "drmad"} <= whole
    assert "fixed" not in whole and "laplace_full" not in whole
    cifar_full = METHODS["laplace_full"](burnin=10, frequency=5).periodic_work(problem)
    assert choose(cifar_full, 600, 3).stop == 15.0
    ntk = METHODS["laplace_ntk"](burnin=10, frequency=1).periodic_work(problem)
    assert choose(ntk, 600, 3).stop == 13.0
    steps = METHODS["ift_neumann"](period=10, warmup_steps=20).periodic_work(problem)
    spe = problem.steps_per_epoch
    assert steps == Periodic(20 / spe, 10 / spe)


def _cpu():
    import torch

    return torch.device("cpu")


def _f32():
    import torch

    return torch.float32


def _rows(points, stretch, attempt="a", wall=None, status="ok"):
    """A cost-pass attempt's rows: cumulative (epoch, time_s, tse), the last one final."""
    rows = []
    for k, (epoch, time_s, tse) in enumerate(points):
        last = k == len(points) - 1
        rows.append({
            "mode": "run", "task": "t", "method": "m", "method_params": {"a": 1},
            "attempt": attempt, "final": last, "status": status if last else "ok",
            "epoch": epoch, "time_s": time_s, "tse": tse, "stretch": stretch,
            "device": "cpu", "env": {"device_name": "x86_64"}, "wall_s": wall if last else None,
        })  # fmt: skip
    return rows


def test_a_whole_cells_cost_is_the_stretch_then_the_rate_after_burn_in() -> None:
    # burn-in: 2 epochs at 1 TSE each; then 4 TSE an epoch plus a fit of 6 every 3 epochs
    def exact(e: float) -> float:
        return min(e, 2) + 4 * max(e - 2, 0) + 6 * (max(e - 2, 0) // 3)

    stretch = {"burnin": 2.0, "period": 3.0, "stop": 8.0}  # burn-in plus two whole periods
    points = [(float(e), 0.5 * exact(e), exact(e)) for e in range(1, 9)]
    curve = curve_from_rows(_rows(points, stretch, wall=20.0))
    assert curve is not None and not curve.whole
    assert curve.epochs[0] == 0 and curve.tse_at(0) == 0
    assert curve.tse_at(5) == exact(5) and curve.tse_at(4.5) == (exact(4) + exact(5)) / 2
    # past the stretch: after burn-in 6 TSE an epoch (4 + 6 / 3); whole periods are exact
    assert curve.tse_per_epoch == pytest.approx(6.0)
    for epochs in (11, 20, 302):
        assert curve.tse_at(epochs) == pytest.approx(exact(epochs))
    # a rate over the whole stretch (burn-in included) would be wrong by ~10% at 302 epochs
    naive = exact(8) / 8 * 302
    assert abs(naive / exact(302) - 1) > 0.05
    assert curve.time_at(20) == pytest.approx(0.5 * exact(20))
    # a plan's wall estimate: timed seconds plus the stretch's untimed ones (20 - 0.5 * 38)
    assert curve.wall_at(20) == pytest.approx(0.5 * exact(20) + (20.0 - 0.5 * exact(8)))


def test_curves_come_from_completed_attempts_the_latest_winning() -> None:
    stretch = {"burnin": 0.0, "period": 1.0, "stop": 2.0}
    first = _rows([(1.0, 1.0, 10.0), (2.0, 2.0, 20.0)], stretch, attempt="a")
    later = _rows([(1.0, 1.0, 12.0), (2.0, 2.0, 24.0)], stretch, attempt="b")
    failed = _rows([(1.0, 1.0, 99.0), (2.0, 2.0, 99.0)], stretch, attempt="c", status="failed")
    grid_row = {**first[-1], "stretch": None, "tse": 1e6, "attempt": "g"}  # not a cost row
    curves = cost_curves([*first, *later, *failed, grid_row])
    key = ("x86_64", config_key("t", "m", {"a": 1}))
    assert list(curves) == [key]
    assert curves[key].tse_at(10) == pytest.approx(120.0)  # 12 an epoch: attempt b
    whole = curve_from_rows(_rows([(1.0, 1.0, 5.0)], {"burnin": 0, "period": 1, "stop": None}))
    assert whole is not None and whole.whole


def test_a_plan_estimates_from_the_cost_pass_after_the_store() -> None:
    curve = CostCurve((0.0, 1.0, 2.0), (0.0, 1.0, 2.0), (0.0, 1.0, 2.0), 0.0, False, 3.0)
    suite = SUITES["default"]
    cells = plan_cells(Mode.RUN, suite, ["ridge"], ["fixed"], [0], ["task.epochs=10"], {})
    key = config_key("ridge", "fixed", cells[0].method_params)
    est = planning.estimate(cells[0], {}, {}, {key: curve.wall_at})
    assert est == planning.Estimate(3.0 + 10.0, "cost")  # 1 s an epoch timed, 3 s untimed
    assert planning.estimate(cells[0], {key: 0.5}, {}, {key: curve.wall_at}).source == "store"


def test_cost_pass_gives_packed_rows_their_cost(cli, tmp_path: Path, monkeypatch) -> None:
    from hgbench.engine import stretch
    from hgbench.report.costs import apply_cost_pass
    from hgbench.report.load import load_rows

    monkeypatch.setattr(stretch, "MIN_SECONDS", 0.0)  # these cells' stretches time ~0.1 s

    out = tmp_path / "out"
    grid = ("run", "--tasks", "digits_mlp", "--methods", "fixed,laplace_full,random_search",
            "--seeds", "0,1", "--set", "task.epochs=6", "--out", str(out))  # fmt: skip
    result = cli(*grid, "--pack", "2", "--cost-pass", "--cost-epochs", "2")
    assert result.code == 0, result.err
    cost_rows = [r for r in read_rows(out / COST_DIR / "results.jsonl") if r["final"]]
    # one isolated cell per configuration, the first seed, each stopped where its stretch ends
    stops = {r["method"]: (r["epoch"], r["stretch"]["stop"]) for r in cost_rows}
    assert stops["fixed"] == (2.0, 2.0)
    assert stops["laplace_full"] == (3.0, 3.0)  # burn-in 1 + one period of 2 (its first fit)
    assert stops["random_search"][1] is None and stops["random_search"][0] == 6.0  # whole
    assert all(r["timing"] == "isolated" and r["seed"] == 0 for r in cost_rows)
    curves = cost_curves(read_cost_rows(out))
    raw = load_rows(out)
    rows, note = apply_cost_pass(raw, out)
    assert note is not None and "isolated cost pass" in note
    for column in ("test_nll", "test_acc", "objective"):  # quality untouched
        assert rows[column].equals(raw[column])
    run = rows[rows["mode"] == "run"]
    assert (run["timing"] == "packed").all() and (run["cost_source"] == "cost pass").all()
    for r in run.itertuples():
        curve = curves[("x86_64", config_key(r.task, r.method, r.method_params))]
        assert r.tse == pytest.approx(curve.tse_at(r.epoch))
        assert r.time_s == pytest.approx(curve.time_at(r.epoch))
    assert "isolated cost pass" in (out / "report.md").read_text()
    # resumed: nothing runs again, the cost pass included
    again = cli(*grid, "--pack", "2", "--cost-pass", "--cost-epochs", "2", "--no-report")
    assert again.code == 0 and "cost pass: 0 configurations" in again.err


def test_packed_rows_without_a_cost_pass_have_no_cost(cli, tmp_path: Path) -> None:
    from hgbench.report.costs import apply_cost_pass
    from hgbench.report.load import load_rows

    out = tmp_path / "out"
    grid = ("run", "--tasks", "ridge", "--methods", "fixed", "--seeds", "0,1",
            "--set", "task.epochs=1", "--pack", "2", "--no-report", "--out", str(out))  # fmt: skip
    assert cli(*grid).code == 0
    rows, note = apply_cost_pass(load_rows(out), out)
    run = rows[rows["mode"] == "run"]
    assert note is not None and "no cost-pass figure" in note
    assert run["tse"].map(math.isnan).all() and (run["cost_source"] == "none").all()


@pytest.mark.parametrize("value", ["0", "-1", "nan", "x"])
def test_cost_epochs_must_be_positive(cli, tmp_path: Path, value: str) -> None:
    out = tmp_path / "o"
    result = cli("run", "--tasks", "ridge", "--cost-pass", "--cost-epochs", value, "--out", out)
    assert result.code == 2 and "--cost-epochs" in result.err and not out.exists()


def test_a_fresh_device_measures_configurations_in_plan_order(
    cli, tmp_path: Path, monkeypatch
) -> None:
    """Unmeasured cells are estimated far above what they take (as on a fresh GPU, where the
    default is tens of times its speed): a plan from those estimates reaches 2 of these 4
    configurations, but the cost pass measures all four in plan order, so that the grid is
    planned from measurements and every cell fits."""
    from hgbench.engine import costpass

    monkeypatch.setattr(planning, "DEFAULT_WALL_PER_EPOCH_S", 10.0)  # 20 s a 2-epoch cell
    monkeypatch.setattr(costpass, "COST_SHARE", 1.0)  # the reach, not the share, is tested
    out = tmp_path / "out"
    grid = ("run", "--tasks", "ridge,digits_cleaning", "--methods", "fixed,ift_neumann",
            "--seeds", "0,1,2", "--set", "task.epochs=2", "--time-budget-s", "50",
            "--cost-pass", "--cost-epochs", "1", "--no-report", "--out", str(out))  # fmt: skip
    result = cli(*grid)
    assert result.code == 0, result.err
    assert "cost pass: 4 configurations" in result.err
    assert "12 cells fit" in result.err and "12 from cost" in result.err, result.err
    assert len([r for r in read_rows(out / "results.jsonl") if r["final"]]) == 12


def test_the_cost_pass_skips_configurations_the_grid_cannot_reach(monkeypatch) -> None:
    """A configuration whose first grid cell lies past what the budget leaves is not measured."""
    from types import SimpleNamespace

    from hgbench.engine import costpass

    cells = plan_cells(Mode.RUN, SUITES["default"], ["ridge"], ["fixed", "ift_neumann"], [0, 1],
                       ["task.epochs=2"], {"device": "cpu"})  # fmt: skip
    ahead = costpass._cells_ahead(planning.order(cells, ()))
    keys = [config_key(c.task.name, c.method, c.method_params) for c in cells]
    assert [len(ahead[k]) for k in dict.fromkeys(keys)] == [0, 1]  # ridge fixed, then ift
    started: list[str] = []

    def fake_pass(todo, options, out, min_epochs, kind, log, may_start):
        for cell in costpass.cost_cells(todo, min_epochs, kind):
            if not may_start(cell):
                break
            started.append(cell.method)

    monkeypatch.setattr(costpass, "run_cost_pass", fake_pass)
    monkeypatch.setattr(costpass, "read_cost_rows", lambda out: [])
    monkeypatch.setattr(planning, "DEFAULT_WALL_PER_EPOCH_S", 10.0)  # every cell 20 s
    monkeypatch.setattr(costpass, "COST_SHARE", 1.0)
    store = SimpleNamespace(
        path=Path("/nonexistent/results.jsonl"),
        finished_cells=lambda *a: set(),
        read=lambda: SimpleNamespace(rows=[]),
    )
    runner = SimpleNamespace(store=store, options=SimpleNamespace(device=torch_cpu()), log=None)
    args = SimpleNamespace(cost_epochs=1.0, pack=1)
    rerun = SimpleNamespace(failed=False, noisy=False)
    # ift_neumann's cost cell (20 s) and, before its first grid cell, fixed's (20 s, estimated
    # unmeasured here, as these fake cost cells measure nothing): 40 s, past a budget of 35 s
    costpass.cost_pass_first(cells, (), runner, rerun, args, 35.0)
    assert started == ["fixed"]
    started.clear()
    costpass.cost_pass_first(cells, (), runner, rerun, args, 45.0)
    assert started == ["fixed", "ift_neumann"]


def torch_cpu():
    import torch

    return torch.device("cpu")
