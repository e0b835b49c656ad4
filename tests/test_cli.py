"""The command line as a user meets it: listing, usage errors, resuming, interruption, probe."""

from __future__ import annotations

import dataclasses
import json
import re
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from hgbench.contracts.method import METHODS, Budget, Checkpoint, Method
from hgbench.contracts.suites import SUITES
from hgbench.contracts.task import TASKS, Problem
from hgbench.engine.plugins import load_plugins
from hgbench.engine.store import RESULTS_FILE, ResultStore, read_rows

load_plugins()

RIDGE = ("--tasks", "ridge", "--set", "task.epochs=2", "--no-report")

Cli = Callable[..., Any]  # conftest's `cli`: returns CliResult(code, out, err)


def _finals(rows: list[dict]) -> dict[str, list[dict]]:
    """cell -> its final rows (a cell finished once has exactly one)."""
    out: dict[str, list[dict]] = {}
    for row in rows:
        if row.get("final"):
            out.setdefault(row["cell"], []).append(row)
    return out


def _assert_usage_error(res: Any, out: Path, *fragments: str) -> None:
    assert res.code == 2, res
    lines = res.err.strip().splitlines()
    assert len(lines) == 1, res.err  # one line, no traceback
    assert lines[0].startswith("error:")
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    assert "[cell" not in res.err  # no work started
    assert not (out / RESULTS_FILE).exists()
    assert not out.exists()


def _wait_until(condition: Callable[[], bool], proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"hgbench exited ({proc.returncode}) too early:\n{out}\n{err}")
        if time.monotonic() > deadline:
            pytest.fail(f"condition not reached within {timeout} s")
        time.sleep(0.05)


# --- list ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("what", "names"),
    [
        ("methods", METHODS.names),
        ("tasks", TASKS.names),
        ("suites", SUITES.names),
    ],
)
def test_list_prints_registered_names(cli: Cli, what: str, names) -> None:
    res = cli("list", what)
    assert res.code == 0, res.err
    listed = [line.split()[0] for line in res.out.splitlines() if line.strip()]
    assert listed == names()


def test_list_unknown_kind_exits_2(cli: Cli) -> None:
    res = cli("list", "widgets")
    assert res.code == 2
    assert len(res.err.strip().splitlines()) == 1


# --- usage errors: before any work, nothing written -------------------------------------------
@pytest.mark.parametrize("mode", ["run", "probe"])
@pytest.mark.parametrize(
    ("args", "kind"),
    [
        (("--methods", "nosuch"), "method"),
        (("--methods", "zz*"), "method"),
        (("--methods", "fixed,zz*"), "method"),
        (("--tasks", "nosuch"), "task"),
        (("--tasks", "zz*"), "task"),
        (("--suite", "nosuch"), "suite"),
        (("--set", "nosuch.K=3"), "method"),
    ],
    ids=lambda v: "-".join(v) if isinstance(v, tuple) else v,
)
def test_unknown_name_exits_2_listing_known_names(
    cli: Cli, no_work: list[int], tmp_path: Path, mode: str, args: tuple[str, ...], kind: str
) -> None:
    out = tmp_path / "out"
    res = cli(mode, "--seeds", "0", "--out", out, "--no-report", *args)
    known = {"method": METHODS.names(), "task": TASKS.names(), "suite": SUITES.names()}[kind]
    assert no_work == []
    _assert_usage_error(res, out, *known)


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("--set", "K=abc"), "K"),
        (("--set", "K=2.5"), "K"),
        (("--set", "unroll.K=0"), "K"),
        (("--set", "ift_neumann.alpha=-1"), "alpha"),  # a method that is not selected
        (("--set", "ift_neumann.nosuch=1"), "nosuch"),
        (("--set", "hyper_lr=-1"), "hyper_lr"),
        (("--set", "nosuchfield=1"), "nosuchfield"),
        (("--set", "K"), "key=value"),
        (("--set", "task.epochs=x"), "epochs"),
        (("--set", "task.nosuch=1"), "nosuch"),
        (("--set", "task.name=other"), "name"),
        (("--budget-s", "-1"), "budget"),
        (("--budget-s", "0"), "budget"),
        (("--timeout-s", "0"), "timeout"),
        (("--seeds", "a,b"), "seeds"),
        (("--dtype", "float16"), "dtype"),
        (("--device", "tpu"), "device"),
        (("--device", "cuda"), "cuda"),
        (("--nosuchflag",), "nosuchflag"),
    ],
)
def test_invalid_settings_exit_2_before_work(
    cli: Cli, no_work: list[int], tmp_path: Path, args: tuple[str, ...], fragment: str
) -> None:
    if args == ("--device", "cuda") and torch.cuda.is_available():
        pytest.skip("CUDA is available here: --device cuda is valid")
    out = tmp_path / "out"
    res = cli(
        "run",
        "--tasks",
        "ridge",
        "--methods",
        "unroll",
        "--seeds",
        "0",
        "--out",
        out,
        "--no-report",
        *args,
    )
    assert no_work == []
    _assert_usage_error(res, out, fragment)


def test_probe_repeats_must_be_positive(cli: Cli, no_work: list[int], tmp_path: Path) -> None:
    out = tmp_path / "out"
    res = cli("probe", "--tasks", "ridge", "--methods", "unroll", "--out", out, "--repeats", "0")
    assert no_work == []
    _assert_usage_error(res, out, "repeats")


def test_report_of_missing_results_exits_2(cli: Cli, tmp_path: Path) -> None:
    res = cli("report", tmp_path / "nothing")
    assert res.code == 2
    assert len(res.err.strip().splitlines()) == 1 and "results.jsonl" in res.err


@pytest.mark.parametrize(
    "args",
    [
        ("--budget-s", "nan"),
        ("--budget-s", "inf"),
        ("--timeout-s", "nan"),
    ],
    ids=["budget-nan", "budget-inf", "timeout-nan"],
)
def test_non_finite_limits_exit_2_before_work(
    cli: Cli, no_work: list[int], tmp_path: Path, args: tuple[str, ...]
) -> None:
    out = tmp_path / "out"
    res = cli(
        "run",
        "--tasks",
        "ridge",
        "--methods",
        "fixed",
        "--seeds",
        "0",
        "--out",
        out,
        "--no-report",
        *args,
    )
    assert no_work == []
    _assert_usage_error(res, out)


def test_repeated_seed_runs_its_cell_once(cli: Cli, tmp_path: Path) -> None:
    res = cli(
        "run",
        *RIDGE,
        "--methods",
        "fixed",
        "--seeds",
        "0,0",
        "--set",
        "task.epochs=1",
        "--out",
        tmp_path,
    )
    assert res.code == 0, res.err
    finals = _finals(read_rows(tmp_path / RESULTS_FILE))
    assert len(finals) == 1 and all(len(f) == 1 for f in finals.values())


def test_changed_task_setting_is_a_new_cell(cli: Cli, tmp_path: Path) -> None:
    common = (
        "run",
        "--tasks",
        "ridge",
        "--methods",
        "fixed",
        "--seeds",
        "0",
        "--out",
        tmp_path,
        "--no-report",
    )
    assert cli(*common, "--set", "task.epochs=1").code == 0
    res = cli(*common, "--set", "task.epochs=2")
    assert res.code == 0 and "skipping" not in res.err
    finals = [r for r in read_rows(tmp_path / RESULTS_FILE) if r["final"]]
    assert sorted(r["epoch"] for r in finals) == [1, 2]


@pytest.mark.parametrize(
    ("first", "second"),
    [
        (("--dtype", "float32"), ("--dtype", "float64")),
        (("--set", "task.epochs=1"), ("--set", "task.epochs=1", "--budget-s", "0.5")),
    ],
)
def test_changed_dtype_or_budget_is_a_new_cell(
    cli: Cli, tmp_path: Path, first: tuple[str, ...], second: tuple[str, ...]
) -> None:
    common = ("run", "--tasks", "ridge", "--methods", "fixed", "--seeds", "0", "--out", tmp_path)
    common += ("--no-report",)
    assert cli(*common, *first).code == 0
    res = cli(*common, *second)
    assert res.code == 0 and "skipping" not in res.err, res.err
    finals = [r for r in read_rows(tmp_path / RESULTS_FILE) if r["final"]]
    assert len(finals) == 2 and finals[0]["cell"] != finals[1]["cell"]
    assert cli(*common, *second).err.count("1 of 1 cells already finished") == 1


# --- resuming ----------------------------------------------------------------------------------
def test_rerun_skips_finished_cells_and_runs_only_new_ones(cli: Cli, tmp_path: Path) -> None:
    results = tmp_path / RESULTS_FILE
    argv = ("run", *RIDGE, "--methods", "fixed,unroll", "--out", tmp_path)

    first = cli(*argv, "--seeds", "0,1")
    assert first.code == 0, first.err
    assert str(results) in first.out
    assert re.search(r"\[cell 4/4\].*elapsed.*remaining", first.err), first.err  # progress
    rows = read_rows(results)
    finals = _finals(rows)
    assert len(finals) == 4 and all(len(f) == 1 for f in finals.values())
    assert {(f[0]["method"], f[0]["seed"]) for f in finals.values()} == {
        (m, s) for m in ("fixed", "unroll") for s in (0, 1)
    }
    snapshot = results.read_bytes()

    again = cli(*argv, "--seeds", "0,1")
    assert again.code == 0, again.err
    assert re.search(r"\b4 of 4 cells already finished.*skipping", again.err), again.err
    assert "[cell" not in again.err
    assert results.read_bytes() == snapshot  # nothing appended, nothing rewritten

    more = cli(*argv, "--seeds", "0,1,2")
    assert more.code == 0, more.err
    assert re.search(r"\b4 of 6 cells already finished.*skipping", more.err), more.err
    assert "[cell 2/2]" in more.err
    assert results.read_bytes().startswith(snapshot)
    new = read_rows(results)[len(rows) :]
    assert {(r["method"], r["seed"]) for r in new} == {("fixed", 2), ("unroll", 2)}
    finals = _finals(read_rows(results))
    assert len(finals) == 6 and all(len(f) == 1 for f in finals.values())


def test_interrupted_run_resumes_where_it_was_killed(
    cli: Cli, cli_process: Callable[..., subprocess.Popen], tmp_path: Path
) -> None:
    tasks, methods, seeds = ("digits_mlp", "ridge"), ("fixed", "unroll"), (0, 1, 2)
    n_cells = len(tasks) * len(methods) * len(seeds)
    out = tmp_path / "out"
    results = out / RESULTS_FILE
    argv = (
        "run",
        "--tasks",
        ",".join(tasks),
        "--methods",
        ",".join(methods),
        "--seeds",
        ",".join(map(str, seeds)),
        "--set",
        "task.epochs=2",
        "--out",
        out,
        "--no-report",
    )
    proc = cli_process(*argv)
    _wait_until(lambda: bool(ResultStore(out).finished_cells()), proc, timeout=240)
    assert proc.poll() is None, "the run finished before it could be killed"
    proc.kill()
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL

    # still a readable store: every complete line is JSON; at most the last write is torn
    for line in results.read_text().split("\n")[:-1]:
        json.loads(line)
    before = read_rows(results)
    done = {cell: f[0]["attempt"] for cell, f in _finals(before).items()}
    assert all(len(f) == 1 for f in _finals(before).values())
    assert 0 < len(done) < n_cells

    res = cli(*argv)
    assert res.code == 0, res.err
    assert re.search(rf"\b{len(done)} of {n_cells} cells already finished.*skipping", res.err)
    assert f"[cell {n_cells - len(done)}/{n_cells - len(done)}]" in res.err

    after = read_rows(results)
    assert after[: len(before)] == before  # appended only
    finals = _finals(after)
    assert len(finals) == n_cells
    assert all(len(f) == 1 for f in finals.values())
    assert {(f[0]["task"], f[0]["method"], f[0]["seed"]) for f in finals.values()} == {
        (t, m, s) for t in tasks for m in methods for s in seeds
    }
    assert all(f[0]["status"] == "ok" for f in finals.values())
    for cell, attempt in done.items():  # finished before the kill: not rerun
        assert finals[cell][0]["attempt"] == attempt
    rerun = after[len(before) :]
    assert {r["cell"] for r in rerun} == set(finals) - set(done)
    # the attempt in flight at the kill left no final row; the rerun repeated it afresh
    cut_short = {r["attempt"] for r in before if r["cell"] not in done}
    assert cut_short.isdisjoint(r["attempt"] for r in rerun)


def test_ctrl_c_exits_130_and_says_rerun_resumes(
    cli_process: Callable[..., subprocess.Popen], tmp_path: Path
) -> None:
    out = tmp_path / "out"
    proc = cli_process(
        "run",
        "--tasks",
        "ridge",
        "--methods",
        "fixed",
        "--seeds",
        "0",
        "--budget-s",
        "600",
        "--out",
        out,
        "--no-report",
    )
    _wait_until(lambda: bool(read_rows(out / RESULTS_FILE)), proc, timeout=240)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert re.search(r"rerun.*resume", err), err
    assert ResultStore(out).finished_cells() == set()  # the cell in flight did not finish


def test_budget_seconds_stops_each_cell_once_past_it(cli: Cli, tmp_path: Path) -> None:
    budget = 0.5
    res = cli(
        "run",
        "--tasks",
        "ridge",
        "--methods",
        "fixed,unroll",
        "--seeds",
        "0",
        "--budget-s",
        str(budget),
        "--out",
        tmp_path,
        "--no-report",
    )
    assert res.code == 0, res.err
    rows = read_rows(tmp_path / RESULTS_FILE)
    finals = _finals(rows)
    assert len(finals) == 2
    for cell, (final,) in finals.items():
        assert final["status"] == "ok", final["error"]
        times = [r["time_s"] for r in rows if r["cell"] == cell]
        # it used its budget, and stopped at the first checkpoint past it
        assert times[-1] >= budget
        assert all(t < budget for t in times[:-1])


# --- failures inside a suite --------------------------------------------------------------------
@dataclasses.dataclass
class FailsAfterFirstEpoch(Method):
    """Test double: one checkpoint, then a RuntimeError."""

    tunes_hparams = False

    def run(self, problem: Problem, budget: Budget) -> Iterator[Checkpoint]:
        yield Checkpoint(problem.init_params(), problem.init_hparams(), step=0, epoch=0.0)
        raise RuntimeError("deliberate failure in a test method")


def test_failing_method_is_a_failed_row_and_the_suite_goes_on(
    cli: Cli, register_test_method, tmp_path: Path
) -> None:
    name = register_test_method(FailsAfterFirstEpoch)
    res = cli("run", *RIDGE, "--methods", f"fixed,{name},unroll", "--seeds", "0", "--out", tmp_path)
    assert res.code == 0, res.err
    assert re.search(rf"{name}.*: failed", res.err)
    finals = _finals(read_rows(tmp_path / RESULTS_FILE))
    by_method = {f[0]["method"]: f[0] for f in finals.values()}
    assert by_method.keys() == {"fixed", name, "unroll"}
    assert by_method[name]["status"] == "failed"
    assert "RuntimeError" in by_method[name]["error"]
    assert "deliberate failure" in by_method[name]["error"]
    assert by_method["fixed"]["status"] == by_method["unroll"]["status"] == "ok"


# --- probe ---------------------------------------------------------------------------------------
def test_probe_unroll_error_shrinks_as_k_grows(cli: Cli, tmp_path: Path) -> None:
    """From an inner optimum, K unrolled steps approach the implicit hypergradient as K grows."""
    res = cli(
        "probe",
        "--tasks",
        "ridge",
        "--methods",
        "unroll",
        "--seeds",
        "0",
        "--repeats",
        "1",
        "--out",
        tmp_path,
        "--no-report",
    )
    assert res.code == 0, res.err
    finals = [f[0] for f in _finals(read_rows(tmp_path / RESULTS_FILE)).values()]
    grid = sorted(c["K"] for c in METHODS["unroll"].probe_grid)
    assert len(grid) >= 2
    seeds = sorted({r["seed"] for r in finals})
    assert seeds == [0]
    for row in finals:
        assert row["mode"] == "probe" and row["status"] == "ok", row["error"]
        assert row["dtype"] == "float64"
        assert row["hg_time_s"] > 0
    for seed in seeds:
        rows = sorted(
            (r for r in finals if r["seed"] == seed), key=lambda r: r["method_params"]["K"]
        )
        assert [r["method_params"]["K"] for r in rows] == grid
        errors = [r["hg_rel_err"] for r in rows]
        assert all(a > b for a, b in zip(errors, errors[1:], strict=False)), (seed, errors)
