"""The scaling sweep (`python -m hgbench scaling`): its sizes, per-cell memory, failed points, fits.

The fake methods below are registered only inside the sweep's worker processes, which import this
module by name (`Options.plugins`): the test process never registers them, so no other test's
loop over every registered method meets them.
"""

from __future__ import annotations

import dataclasses
import multiprocessing as mp
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest
import torch

from hgbench.cli import main
from hgbench.contracts.method import METHODS, Estimate, Method, Objective, register_method
from hgbench.engine.plugins import load_plugins
from hgbench.engine.scaling.cli import record_run
from hgbench.engine.scaling.counts import operation_count
from hgbench.engine.scaling.run import Options, Sweeper
from hgbench.engine.scaling.sweep import (
    OWN_HPARAMS,
    Axis,
    Plan,
    Point,
    base_task,
    hypergradient_methods,
    plan_points,
    task_sizes,
    variant,
)
from hgbench.engine.store import ResultStore
from hgbench.report.load import load_rows
from hgbench.report.scaling.writer import (
    count_table,
    deviation_reasons,
    fit_slope,
    scaling_figure,
    scaling_points,
    slope_rows,
    summary_table,
    write_scaling_report,
)
from hgbench.tasks.models import MLP
from hgbench.tasks.scaling import FlatMLP, Granularity

PLUGIN = (__name__,)  # the workers import this module to know the fake methods


def _zeros(state) -> dict[str, torch.Tensor]:
    return {k: torch.zeros_like(v) for k, v in state.hparams.items()}


if mp.parent_process() is not None and "scaling_fake_alloc" not in METHODS:  # a worker

    @register_method("scaling_fake_alloc")
    @dataclass
    class FakeAlloc(Method):
        """Touches `mb` MB (two tensors of mb/2) inside its hypergradient, then frees them."""

        mb: float = 10.0
        objective = Objective.VALIDATION

        def hypergradient(self, problem, state) -> Estimate:
            half = int(self.mb * 2**20 / 2 / 4)
            a = torch.ones(half)
            b = a + 1.0  # both alive at once: the peak is mb
            del a, b
            return Estimate(_zeros(state))

    @register_method("scaling_fake_sleep")
    @dataclass
    class FakeSleep(Method):
        """Sleeps `seconds` in its hypergradient."""

        seconds: float = 0.0
        objective = Objective.VALIDATION

        def hypergradient(self, problem, state) -> Estimate:
            time.sleep(self.seconds)
            return Estimate(_zeros(state))


# --- the sweep's sizes -----------------------------------------------------------------------
def test_hparam_axis_spans_six_decades_on_a_million_weight_model() -> None:
    points = plan_points(Plan(axes=(Axis.HPARAMS,)), ["ift_neumann"])
    sizes = [p.size for p in points]
    assert sizes == sorted(sizes) and len(sizes) == 5
    assert sizes[0] == 1 and sizes[-1] >= 10**6 and sizes[-1] / sizes[0] >= 10**6
    steps = [(p.detail["granularity"], p.detail["augnet"]) for p in points]
    assert steps == [
        ("global", False),
        ("tensor", False),
        ("tensor", True),
        ("unit", False),
        ("param", False),
    ]
    n_params = {p.detail["n_params"] for p in points}
    assert n_params == {1_076_010}  # one model throughout, >= 10^6 weights
    # per weight: one hparam per weight; per unit: (out, 1) and (out,) per tensor, 2 per unit
    assert sizes[-1] == 1_076_010 and sizes[3] == 2 * (1000 + 1000 + 10)
    assert sizes[2] - sizes[1] == 16 * 2 * 9 + 16 + 16 * 9 + 1  # the augmentation network


def test_every_hypergradient_method_has_a_series_on_the_model_axes() -> None:
    points = plan_points(Plan(axes=(Axis.HPARAMS, Axis.WIDTH)))
    for axis in (Axis.HPARAMS, Axis.WIDTH):
        methods = {p.method for p in points if p.axis == axis}
        expected = set(hypergradient_methods())
        if axis == Axis.HPARAMS:
            expected -= OWN_HPARAMS
        assert methods == expected, axis
    width = [p for p in points if p.axis == Axis.WIDTH and p.method == "unroll"]
    assert [p.size for p in width] == sorted(p.size for p in width)
    assert {p.detail["n_hparams"] for p in width} == {6}  # fixed hparam count


def test_horizon_and_block_axes_sweep_the_methods_settings() -> None:
    points = plan_points(Plan(axes=(Axis.HORIZON, Axis.BLOCK), horizons=(1, 8), blocks=(4, 40)))
    unroll = [p for p in points if p.series == "unroll"]
    assert [(p.size, p.method_params["K"]) for p in unroll] == [(1, 1), (8, 8)]
    rev = [p for p in points if p.series == "reversible_sgd(exact=False)"]
    assert [p.method_params["T"] for p in rev] == [1, 8]
    assert all(p.method_params["exact"] is False for p in rev)
    ntk = [p for p in points if p.axis == Axis.BLOCK and p.series == "laplace_ntk"]
    assert [p.method_params["block_size"] for p in ntk] == [4, 40]


def test_granularities_share_the_function_and_count_hparams() -> None:
    task = dataclasses.replace(base_task(), hidden=(7, 5))
    torch.manual_seed(0)
    mlp = MLP(64, (7, 5), 10, activation="tanh")
    flat = FlatMLP.from_mlp(mlp)
    x = torch.randn(3, 1, 8, 8)
    torch.testing.assert_close(flat(x), mlp(x))
    n = sum(p.numel() for p in mlp.parameters())
    counts = {
        g: task_sizes(dataclasses.replace(task, granularity=g))[1]
        for g in ("global", "tensor", "unit", "param")
    }
    assert counts == {"global": 1, "tensor": 6, "unit": 2 * (7 + 5 + 10), "param": n}
    problem = dataclasses.replace(task, granularity="unit").build(0)
    loss = problem.train_loss(problem.init_params(), problem.init_hparams(), *_batch(problem))
    assert loss.shape == () and bool(torch.isfinite(loss))


def _batch(problem):
    return problem.data.x_train[:4], problem.data.y_train[:4]


# --- slopes and failed points in the report --------------------------------------------------
def test_slope_fit_recovers_a_known_slope() -> None:
    rng = np.random.default_rng(0)
    x = np.logspace(0, 6, 7)
    y = 3.0 * x**1.5 * np.exp(rng.normal(0, 0.05, x.size))
    fit = fit_slope(x, y)
    assert fit is not None and abs(fit.slope - 1.5) < 0.05 and fit.n == 7
    assert 0 < fit.stderr < 0.05
    assert fit_slope([10, 10], [1, 2]) is None  # one distinct size: no slope
    flat = fit_slope([1, 10, 100], [2.0, 2.0, 2.0])
    assert flat is not None and abs(flat.slope) < 1e-12


def _row(size: int, status: str, seconds: float | None, failure: str | None = None) -> dict:
    return {
        "method": "unroll",
        "status": status,
        "error": None if status == "ok" else "x",
        "hg_time_s": seconds,
        "hg_tse": None if seconds is None else seconds * 10,
        "noisy": False,
        "extra": {
            "scaling": [{"axis": "width", "size": size, "series": "unroll"}],
            "mem_increase_mb": None if seconds is None else 100 * seconds,
            "failure": failure,
        },
    }


def test_slopes_fit_the_ok_points_and_a_failure_stops_the_series() -> None:
    rows = pd.DataFrame(
        [_row(10, "ok", 0.01), _row(100, "ok", 0.1), _row(1000, "ok", 1.0)]
        + [_row(10_000, "timeout", None, "timeout"), _row(100_000, "skipped", None, "beyond")]
    )
    points = scaling_points(rows)
    assert list(points["outcome"]) == ["ok", "ok", "ok", "timeout", "beyond"]
    (summary,) = slope_rows(points, "width")
    assert abs(summary["time"].slope - 1.0) < 1e-9 and summary["time"].n == 3
    assert abs(summary["memory"].slope - 1.0) < 1e-9
    assert summary["reached"] == 1000
    assert summary["stopped"] == "10,000: out of time; ≥ 1.00e+05: not run"


def test_deviations_beyond_twice_the_count_are_marked_and_explained() -> None:
    def point(series, method, size, tse, count, step_s, noisy=False):
        return {"axis": "hparams", "size": size, "series": series, "method": method,
                "outcome": "ok", "hg_time_s": tse * step_s, "hg_tse": tse, "mem_mb": 10.0,
                "count_tse": count, "formula": "x", "noisy": noisy, "step_s": step_s}  # fmt: skip

    points = pd.DataFrame(
        [
            point("reversible_sgd", "reversible_sgd", 1, 40.0, 10.0, 0.05),  # 4×: known reason
            point("reversible_sgd", "reversible_sgd", 10, 15.0, 10.0, 0.05),  # 1.5×: not marked
            point("unroll", "unroll", 1, 30.0, 10.0, 1e-4),  # 3× on a tiny model
            point("unroll", "unroll", 10, 11.0, 10.0, 0.05),
            point("ift_cg", "ift_cg", 1, 25.0, 10.0, 0.05, noisy=True),  # 2.5×, busy machine
            point("ift_cg", "ift_cg", 10, 31.0, 10.0, 0.05),  # 3.1×, nothing known
        ]
    )
    table, flagged = count_table(points, "hparams")
    assert flagged == 4 and table.count("⚠") == 4
    lines = deviation_reasons(points, "hparams")
    key = [line for line in lines if line.startswith("- ") and not line.startswith("- **")]
    bullets = [line for line in lines if line.startswith("- **")]
    assert len(bullets) == 3 and {k[2] for k in key} == {"S", "B", "?"}
    cg, unroll, rev = bullets  # families in report order: implicit, unrolled, reversal
    assert "reversible_sgd** at 1 (4.00×)" in rev and "int64" in rev and " 10 (" not in rev
    assert "unroll** at 1 (3.00×, S)" in unroll
    assert "ift_cg** at 1 (2.50×, B), 10 (3.10×, ?)" in cg
    assert deviation_reasons(points.assign(count_tse=points["hg_tse"]), "hparams") == []
    summary = summary_table(points.assign(count_tse=None))
    assert "largest hparam count ok" in summary.splitlines()[0]


def _failure_markers(fig) -> list[float]:
    """x positions of the cross markers (failed points) on the time panel."""
    ax = fig.axes[0]
    xs: list[float] = []
    for coll in ax.collections:
        offsets = coll.get_offsets()
        if len(offsets) and coll.get_paths() and coll.get_facecolors().size:
            xs += [float(v) for v in np.asarray(offsets)[:, 0]]
    return sorted(xs)


# --- end to end through worker processes -----------------------------------------------------
@pytest.fixture(scope="module")
def tiny_task():
    return dataclasses.replace(variant(4, Granularity.TENSOR), n_train=40, n_val=20)


def _points(task, method: str, settings: list[dict], axis: Axis = Axis.WIDTH) -> list[Point]:
    return [Point(axis, i + 1, method, task, method, s, {}) for i, s in enumerate(settings)]


def test_per_cell_peak_memory_follows_what_each_cell_allocates(tmp_path, tiny_task) -> None:
    options = Options(limit_s=60.0, mem_limit_mb=None, repeats=0, plugins=PLUGIN)
    points = _points(tiny_task, "scaling_fake_alloc", [{"mb": 200.0}, {"mb": 20.0}])
    Sweeper(ResultStore(tmp_path), options, log=open("/dev/null", "w")).run(points)
    rows = load_rows(tmp_path)
    assert list(rows["status"]) == ["ok", "ok"], list(rows["error"])
    big, small = rows["peak_mem_mb"]
    assert big > 5 * small  # the 200 MB cell, run first, does not lift the 20 MB one
    assert 180 <= big <= 260 and 15 <= small <= 45
    assert all(e["mem_method"] == "rss-hwm-reset" for e in rows["extra"])
    assert rows["reference"].str.startswith("none").all() and rows["hg_cos"].isna().all()


def test_out_of_time_and_memory_are_failed_points_and_drawn(tmp_path, tiny_task) -> None:
    options = Options(limit_s=1.5, mem_limit_mb=300.0, repeats=0, plugins=PLUGIN)
    sleep = [{"seconds": 0.0}, {"seconds": 30.0}, {"seconds": 0.01}]
    sleepy = _points(tiny_task, "scaling_fake_sleep", sleep)
    hungry = _points(tiny_task, "scaling_fake_alloc", [{"mb": 10.0}, {"mb": 3000.0}, {"mb": 1.0}])
    start = time.perf_counter()
    Sweeper(ResultStore(tmp_path), options, log=open("/dev/null", "w")).run(sleepy + hungry)
    assert time.perf_counter() - start < 30  # the 30 s sleep was killed at the limit
    rows = load_rows(tmp_path)
    outcome = {
        (r.method, r.extra["scaling"][0]["size"]): (r.status, r.extra.get("failure"))
        for r in rows.itertuples()
    }
    assert outcome[("scaling_fake_sleep", 1)] == ("ok", None)
    assert outcome[("scaling_fake_sleep", 2)] == ("timeout", "timeout")
    assert outcome[("scaling_fake_sleep", 3)] == ("skipped", "beyond")  # not run past it
    assert outcome[("scaling_fake_alloc", 2)] == ("failed", "oom")
    assert outcome[("scaling_fake_alloc", 3)] == ("skipped", "beyond")
    points = scaling_points(rows)
    fig = scaling_figure(points, "width")
    assert _failure_markers(fig) == [2.0, 2.0, 3.0, 3.0]  # both series, failed and not run
    run = {"started": "2026-01-01 00:00:00 UTC", "wall_s": 12.3, "load_before": [1.0, 2.0, 3.0]}
    record_run(tmp_path, {**run, "load_after": [2.0, 2.0, 3.0], "cpus": 2})
    report = write_scaling_report(tmp_path).read_text()
    assert "out of time" in report and "out of memory" in report
    assert "12 s wall" in report and "1.00/2.00/3.00 before and 2.00/2.00/3.00 after" in report
    assert (tmp_path / "figures" / "scaling_width.png").exists()
    # resuming runs nothing again
    counts = Sweeper(ResultStore(tmp_path), options, log=open("/dev/null", "w")).run(sleepy)
    assert counts == {}


def test_marglik_counts_add_their_own_units_at_the_cells_settings() -> None:
    units = {"lfit": 2.0, "ldet": 3.0, "lgrad": 4.0}
    covered = {"fit_points": 50, "outputs": 10}
    ntk = {"block_size": 64, "structure": "kernel"}
    cases = {"none": "a 500 × 500 kernel", "single": "a 50 × 50 kernel",
             "independent": "10 kernels of 50 × 50"}  # fmt: skip
    for split, kernel in cases.items():
        count = operation_count("laplace_ntk", {**ntk, "split": split}, units, covered)
        assert count is not None and count.tse == 9.0
        assert kernel in count.formula and "M = 64" in count.formula
    full = operation_count("laplace_full", {"structure": "kron"}, units, covered)
    assert full is not None and full.tse == 9.0 and "kron on 50 points (all N)" in full.formula
    assert "lfit + ldet + lgrad = 2 + 3 + 4 (" in full.formula
    # the task's units alone (no marglik units measured): no count, not a wrong one
    assert operation_count("laplace_full", {"structure": "kron"}, {"f": 1.0}, covered) is None


def test_marglik_cells_time_their_units_and_get_a_count(tmp_path, tiny_task) -> None:
    load_plugins()
    options = Options(limit_s=60.0, mem_limit_mb=None, repeats=1)
    points = [
        Point(Axis.BLOCK, 8, "laplace_ntk", tiny_task, "laplace_ntk",
              METHODS["laplace_ntk"](block_size=8).method_params(), {}),
        Point(Axis.WIDTH, 1, "laplace_full", tiny_task, "laplace_full",
              METHODS["laplace_full"](structure="diag").method_params(), {}),
    ]  # fmt: skip
    Sweeper(ResultStore(tmp_path), options, log=open("/dev/null", "w")).run(points)
    rows = load_rows(tmp_path)
    assert list(rows["status"]) == ["ok", "ok"], list(rows["error"])
    for row, points_fitted in zip(rows.itertuples(), (8, 40), strict=True):
        extra = row.extra
        units = extra["method_units_tse"]
        assert set(units) == {"lfit", "ldet", "lgrad"} and min(units.values()) > 0
        assert extra["units_covered"] == {"fit_points": points_fitted, "outputs": 10}
        assert extra["op_count_tse"] == pytest.approx(sum(units.values()))
        assert extra["op_ratio"] == pytest.approx(row.hg_tse / extra["op_count_tse"])
        assert f"on {points_fitted} points" in extra["op_formula"]
    assert "lfit" in write_scaling_report(tmp_path).read_text()


def test_scaling_command_checks_its_input_before_work(tmp_path, capsys) -> None:
    assert main(["scaling", "--out", str(tmp_path / "a"), "--axes", "depth"]) == 2
    assert "unknown axis" in capsys.readouterr().err
    assert main(["scaling", "--out", str(tmp_path / "b"), "--methods", "nothing_*"]) == 2
    assert main(["scaling", "--out", str(tmp_path / "c"), "--limit-s", "0"]) == 2
    assert main(["scaling", "--out", str(tmp_path / "d"), "--widths", "0,3"]) == 2
    assert not any((tmp_path / d).exists() for d in "abcd")
