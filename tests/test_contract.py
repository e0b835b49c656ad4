"""Contract tests over every registered method × every small task, through the real Runner.

Parametrized from the registries at collection time, so a newly registered method or small task
is tested here without anyone writing a test for it. Runs are cut to 2 epochs; each cell runs
once per session and every contract check reads its stored rows.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from hgbench.contracts.method import METHODS, Budget, Checkpoint, Family, Method, Objective
from hgbench.contracts.suites import SUITES
from hgbench.contracts.task import TASKS, Problem
from hgbench.engine.executors import LocalExecutor
from hgbench.engine.planning import plan_cells
from hgbench.engine.plugins import load_plugins
from hgbench.engine.runner import Cell, Runner, RunOptions
from hgbench.engine.store import ResultStore, read_rows
from hgbench.numerics.training import SGDTrainer

load_plugins()

EPOCHS = 2
TUNE_EPOCHS = 3  # for tuners that have not moved their hparams by EPOCHS (a burn-in)
SEED = 0
PROBE_TASK = "ridge"
# A guard, not a performance bound: a method that hangs gets a `timeout` row (and fails its
# contract tests) instead of hanging the test session; after one such timeout its other cells
# are not run (each would cost the full guard).
GUARD_TIMEOUT_S = 120.0
# (task, method) pairs, and probe methods, whose contract cell took over 10 s on a 2-core CPU
# when measured (2026-11, with the methods registered then). They are marked `slow`
# (`pytest -m "not slow"` leaves their cell unrun); an entry that goes stale only costs a label.
SLOW_METHODS = {"reversible_sgd", "drmad"}  # T = 100 exact steps forward and back per meta-step
SLOW_RUNS = {("digits_cnn", "ift_cg"), ("digits_cnn", "ift_neumann")}
SLOW_PROBES = SLOW_METHODS
CPU = torch.device("cpu")
ALL_METHODS = METHODS.names()
SMALL_TASKS = [n for n, t in TASKS.items() if "small" in t.tags]

COMMON_FIELDS = {
    "mode",
    "suite",
    "task",
    "method",
    "method_params",
    "seed",
    "status",
    "error",
    "time_s",
    "peak_mem_mb",
    "device",
    "env",
    "cell",
    "attempt",
    "final",
    "dtype",  # ours, beyond DESIGN.md's list
}
RUN_FIELDS = {"step", "epoch", "test_acc", "test_nll", "objective", "hparams", "val_loss"}
PROBE_FIELDS = {"hg_time_s", "hg_cos", "hg_rel_err", "reference", "value", "exact_value"}
STATUSES = {"ok", "failed", "timeout", "skipped"}

Rows = list[dict[str, Any]]


def _by_cell(rows: Rows) -> dict[str, Rows]:
    out: dict[str, Rows] = {}
    for row in rows:
        out.setdefault(row["cell"], []).append(row)
    return out


def _json_like(value: Any) -> Any:
    """What a value reads back as from the store (tuples become lists, enums their value)."""
    return json.loads(json.dumps(value, default=str))


@dataclasses.dataclass
class CellResult:
    cell: Cell
    rows: Rows


@pytest.fixture(scope="session")
def run_results(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., list[CellResult]]:
    """`run_results(task, method, epochs=2)`: every run cell the default suite plans for the pair
    (with `task.epochs=<epochs>`, seed 0), executed once per session; the stored rows of each."""
    cache: dict[tuple[str, str, int], list[CellResult]] = {}
    hung: dict[str, str] = {}  # method -> the cell where it hit the guard timeout

    def get(task: str, method: str, epochs: int = EPOCHS) -> list[CellResult]:
        if method in hung:
            pytest.fail(f"{method} hit the {GUARD_TIMEOUT_S:g} s guard timeout in {hung[method]}")
        if (task, method, epochs) not in cache:
            sets = [f"task.epochs={epochs}"]
            cells = plan_cells("run", SUITES["default"], [task], [method], [SEED], sets)
            store = ResultStore(tmp_path_factory.mktemp(f"run-{task}-{method}-{epochs}"))
            options = RunOptions(device=CPU, dtype=torch.float32, timeout_s=GUARD_TIMEOUT_S)
            LocalExecutor(Runner(store, options, log=io.StringIO())).run(cells)
            rows = _by_cell(read_rows(store.path))
            cache[task, method, epochs] = [CellResult(c, rows.get(c.key, [])) for c in cells]
            for key, cell_rows in rows.items():
                if cell_rows[-1].get("status") == "timeout":
                    hung[method] = key
        return cache[task, method, epochs]

    return get


@pytest.fixture(scope="session")
def probe_results(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], CellResult]:
    """`probe_results(method)`: one probe cell of the method at its default settings on ridge."""
    cache: dict[str, CellResult] = {}

    def get(method: str) -> CellResult:
        if method not in cache:
            cell = Cell(
                "probe",
                "contract",
                TASKS[PROBE_TASK],
                method,
                METHODS[method]().method_params(),
                SEED,
            )
            store = ResultStore(tmp_path_factory.mktemp(f"probe-{method}"))
            options = RunOptions(
                device=CPU, dtype=torch.float64, probe_repeats=1, timeout_s=GUARD_TIMEOUT_S
            )
            LocalExecutor(Runner(store, options, log=io.StringIO())).run([cell])
            cache[method] = CellResult(cell, _by_cell(read_rows(store.path)).get(cell.key, []))
        return cache[method]

    return get


def _pairs() -> list[Any]:
    """Every (small task, method) pair, the slow ones marked."""
    return [
        pytest.param(
            task,
            method,
            marks=[pytest.mark.slow]
            if (task, method) in SLOW_RUNS or method in SLOW_METHODS
            else [],
        )
        for method in ALL_METHODS
        for task in SMALL_TASKS
    ]


run_matrix = pytest.mark.parametrize(("task", "method"), _pairs())


def _ok_cells(results: list[CellResult]) -> Iterator[CellResult]:
    """Cells whose attempt ended ok; a skipped cell must say why (and has no curve to check)."""
    for res in results:
        assert res.rows, f"no rows for {res.cell.key}"
        final = res.rows[-1]
        if final["status"] == "skipped":
            assert isinstance(final["error"], str) and final["error"].strip()
            continue
        assert final["status"] == "ok", final["error"]
        yield res


# --- the method classes themselves -------------------------------------------------------------
@pytest.mark.parametrize("method", ALL_METHODS)
def test_method_class_contract(method: str) -> None:
    cls = METHODS[method]
    assert issubclass(cls, Method) and dataclasses.is_dataclass(cls)
    assert cls.name == method  # the registry key is the method's only name
    assert cls.__doc__ and cls.__doc__.strip().splitlines()[0].strip()
    assert isinstance(cls.objective, Objective)
    instance = cls()
    assert instance.method_params() == dataclasses.asdict(instance)
    json.dumps(instance.method_params())  # storable in a row as it is (str Enums, numbers, ...)
    assert cls.probe_grid, "probe mode needs at least one configuration"
    for config in cls.probe_grid:
        cls(**config)  # every probe configuration is a valid setting


# --- run mode ------------------------------------------------------------------------------
def test_small_tasks_and_methods_exist() -> None:
    assert SMALL_TASKS and ALL_METHODS


@run_matrix
def test_run_rows_have_every_field(run_results, task: str, method: str) -> None:
    results = run_results(task, method)
    assert results, "the default suite plans no cell for this pair"
    for res in results:
        assert res.rows, f"no rows for {res.cell.key}"
        for row in res.rows:
            assert COMMON_FIELDS <= row.keys(), COMMON_FIELDS - row.keys()
            assert row["mode"] == "run" and row["suite"] == "default"
            assert (row["task"], row["method"], row["seed"]) == (task, method, SEED)
            assert row["cell"] == res.cell.key
            assert row["device"] == "cpu" and row["dtype"] == "float32"
            assert row["status"] in STATUSES
            assert isinstance(row["env"], dict)
            assert row["env"]["torch"] == torch.__version__
            assert isinstance(row["env"]["device_name"], str) and row["env"]["device_name"]
            assert "git_sha" in row["env"]
            if row["status"] == "ok":
                assert RUN_FIELDS <= row.keys(), RUN_FIELDS - row.keys()
                assert row["error"] is None
            else:
                assert isinstance(row["error"], str) and row["error"]


@run_matrix
def test_run_method_params_are_the_dataclass_fields(run_results, task: str, method: str) -> None:
    for res in run_results(task, method):
        expected = _json_like(dataclasses.asdict(res.cell.make_method()))
        for row in res.rows:
            assert isinstance(row["method_params"], dict)
            assert row["method_params"] == expected


@run_matrix
def test_run_one_final_row_last_and_ok(run_results, task: str, method: str) -> None:
    for res in run_results(task, method):
        finals = [r["final"] for r in res.rows]
        assert finals == [False] * (len(finals) - 1) + [True]
        assert len({r["attempt"] for r in res.rows}) == 1  # one attempt, one id
        final = res.rows[-1]
        assert final["status"] in ("ok", "skipped"), final["error"]
        if final["status"] == "ok":
            assert all(r["status"] == "ok" for r in res.rows)


@run_matrix
def test_run_curve_is_well_formed(run_results, task: str, method: str) -> None:
    for res in _ok_cells(run_results(task, method)):
        rows = res.rows
        assert len(rows) >= 2, "a checkpoint before training and at least one after"
        assert rows[0]["step"] == 0 and rows[0]["epoch"] == 0
        steps = [r["step"] for r in rows]
        epochs = [r["epoch"] for r in rows]
        times = [r["time_s"] for r in rows]
        assert all(a < b for a, b in zip(steps, steps[1:], strict=False)), steps
        assert all(a <= b for a, b in zip(epochs, epochs[1:], strict=False)), epochs
        assert all(a <= b for a, b in zip(times, times[1:], strict=False)), times
        assert times[0] >= 0 and times[-1] > 0
        for row in rows:
            assert 0.0 <= row["test_acc"] <= 1.0
            assert math.isfinite(row["test_nll"]) and math.isfinite(row["val_loss"])
            assert row["objective"] is None or math.isfinite(row["objective"])
            assert row["peak_mem_mb"] is not None and row["peak_mem_mb"] > 0
        assert epochs[-1] > 0, "training ran"


@run_matrix
def test_run_stays_within_its_epoch_budget(run_results, task: str, method: str) -> None:
    """A method may finish the unit of work in flight when the budget ends, not another epoch."""
    for res in _ok_cells(run_results(task, method)):
        assert res.cell.task.epochs == EPOCHS
        assert res.rows[-1]["epoch"] < EPOCHS + 1


@run_matrix
def test_run_hparams_tuned_or_left_alone(run_results, task: str, method: str) -> None:
    cls = METHODS[method]
    for res in _ok_cells(run_results(task, method)):
        first, last = res.rows[0]["hparams"], res.rows[-1]["hparams"]
        assert isinstance(first, dict) and first
        assert all(r["hparams"].keys() == first.keys() for r in res.rows)
        assert all(isinstance(v, float) and math.isfinite(v) for v in last.values())
        if not cls.tunes_hparams:
            assert last == first
        elif last == first and cls.family == Family.BLACKBOX:
            # a search may keep the default when no draw beats it; it must say what it found
            assert res.rows[-1]["objective"] is not None
        elif last == first:
            # A burn-in may outlast the 2-epoch contract budget: a tuner must move its hparams
            # within a few more epochs.
            (longer,) = [
                r
                for r in run_results(task, method, TUNE_EPOCHS)
                if r.cell.method_params == res.cell.method_params and r.cell.seed == res.cell.seed
            ]
            assert longer.rows[-1]["status"] == "ok", longer.rows[-1]["error"]
            assert longer.rows[-1]["hparams"] != first, (
                f"{method} claims to tune hparams but left them at {first} for {TUNE_EPOCHS} epochs"
            )


# --- probe mode ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "method",
    [pytest.param(m, marks=[pytest.mark.slow] if m in SLOW_PROBES else []) for m in ALL_METHODS],
)
def test_probe_rows(probe_results, method: str) -> None:
    res = probe_results(method)
    rows = res.rows
    assert rows and [r["final"] for r in rows] == [False] * (len(rows) - 1) + [True]
    final = rows[-1]
    for row in rows:
        assert COMMON_FIELDS <= row.keys(), COMMON_FIELDS - row.keys()
        assert row["mode"] == "probe" and row["task"] == PROBE_TASK and row["method"] == method
        assert row["dtype"] == "float64"
        assert row["method_params"] == _json_like(dataclasses.asdict(res.cell.make_method()))
    if METHODS[method].objective == Objective.NONE or final["status"] == "skipped":
        # a method without a hypergradient, or one that cannot apply to this task, says why
        assert final["status"] == "skipped"
        assert isinstance(final["error"], str) and final["error"].strip()
        return
    assert final["status"] == "ok", final["error"]
    assert PROBE_FIELDS <= final.keys(), PROBE_FIELDS - final.keys()
    assert final["hg_time_s"] > 0
    assert final["time_s"] >= final["hg_time_s"]
    assert math.isfinite(final["hg_cos"]) and -1.0 - 1e-9 <= final["hg_cos"] <= 1.0 + 1e-9
    assert math.isfinite(final["hg_rel_err"]) and final["hg_rel_err"] >= 0
    assert isinstance(final["reference"], str) and final["reference"]


# --- methods that fail ------------------------------------------------------------------------
def _start(problem: Problem) -> Checkpoint:
    return Checkpoint(problem.init_params(), problem.init_hparams(), step=0, epoch=0.0)


@dataclasses.dataclass
class RaisesAtSecondCheckpoint(Method):
    """Test double: trains one epoch like `fixed`, then raises instead of checkpointing."""

    tunes_hparams = False

    def run(self, problem: Problem, budget: Budget) -> Iterator[Checkpoint]:
        params, hparams = problem.init_params(), problem.init_hparams()
        trainer = SGDTrainer(problem, params, problem.lr, 0.0, problem.task.batch_size)
        yield Checkpoint(trainer.params, hparams, step=0, epoch=0.0)
        trainer.epoch(hparams, budget)
        raise RuntimeError("deliberate failure at the second checkpoint")


@dataclasses.dataclass
class Diverges(Method):
    """Test double: SGD at a step size far past stability, so the params overflow to inf/NaN."""

    lr_factor: float = 1e8
    tunes_hparams = False

    def run(self, problem: Problem, budget: Budget) -> Iterator[Checkpoint]:
        params, hparams = problem.init_params(), problem.init_hparams()
        trainer = SGDTrainer(
            problem, params, problem.lr * self.lr_factor, 0.0, problem.task.batch_size
        )
        yield Checkpoint(trainer.params, hparams, step=0, epoch=0.0)
        for _ in budget.epoch_range():
            trainer.epoch(hparams, budget)
            yield Checkpoint(trainer.params, hparams, trainer.stream.steps, trainer.stream.epoch)


@dataclasses.dataclass
class Hangs(Method):
    """Test double: never reaches its second checkpoint."""

    tunes_hparams = False

    def run(self, problem: Problem, budget: Budget) -> Iterator[Checkpoint]:
        yield _start(problem)
        while True:
            time.sleep(0.01)


@pytest.mark.parametrize(
    ("bad", "status", "causes", "timeout_s"),
    [
        (RaisesAtSecondCheckpoint, "failed", ("RuntimeError", "deliberate failure"), None),
        (Diverges, "failed", ("DivergedError", "non-finite"), None),
        (Hangs, "timeout", ("2 s", "limit"), 2.0),
    ],
    ids=["raises", "diverges", "hangs"],
)
def test_failing_method_is_a_row_and_the_others_finish(
    register_test_method,
    short_task,
    tmp_path: Path,
    bad: type[Method],
    status: str,
    causes: tuple[str, ...],
    timeout_s: float | None,
) -> None:
    name = register_test_method(bad)
    task = short_task(PROBE_TASK)
    # Warm the process first (lazy imports, data load: seconds on a busy CPU) so that the ok
    # cells fit the 2 s timeout below, and no timeout lands inside an import.
    warm = ResultStore(tmp_path / "warm-up")
    LocalExecutor(Runner(warm, RunOptions(device=CPU, dtype=torch.float32), log=io.StringIO())).run(
        [Cell("run", "contract", task, "fixed", {}, SEED)]
    )
    cells = [
        Cell("run", "contract", task, "fixed", {}, 0),
        Cell("run", "contract", task, name, dataclasses.asdict(bad()), 0),
        Cell("run", "contract", task, "fixed", {}, 1),
    ]
    store = ResultStore(tmp_path / "out")
    options = RunOptions(device=CPU, dtype=torch.float32, timeout_s=timeout_s)
    counts = LocalExecutor(Runner(store, options, log=io.StringIO())).run(cells)
    assert counts.get("ok") == 2 and counts.get(status) == 1, counts

    rows = _by_cell(read_rows(store.path))
    assert rows.keys() == {c.key for c in cells}
    for cell in cells:
        cell_rows = rows[cell.key]
        assert [r["final"] for r in cell_rows] == [False] * (len(cell_rows) - 1) + [True]
        final = cell_rows[-1]
        assert COMMON_FIELDS <= final.keys()
        if cell.method == name:
            assert final["status"] == status
            for cause in causes:
                assert cause in final["error"], final["error"]
            assert final["time_s"] is not None and final["time_s"] >= 0
        else:
            assert final["status"] == "ok", final["error"]
            assert final["epoch"] == EPOCHS
